"""Aggregate patient-level panels to unit x period cells without loading every row into pandas.

Where the treatment varies only at the unit x period level, TWFE on cell means weighted by cell
counts is exactly the patient-level fit (point estimate and cluster-robust SE with the G/(G-1)
factor; see :func:`analysis.did.within_fit`), so large extracts can be reduced first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from trials.errors import AnalysisError

_CSV = (".csv", ".csv.gz", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq", ".parq")


def _quote(identifier: str) -> str:
    return '"' + str(identifier).replace('"', '""') + '"'


def _aggregate_sql(source_sql: str, *, unit: str, period: str, outcome: str, treated: str,
                   weight: str | None, covariates: Sequence[str], where: str | None) -> str:
    w = f"CAST({_quote(weight)} AS DOUBLE PRECISION)" if weight else "1.0"
    needed = [outcome, treated, unit, period, *covariates] + ([weight] if weight else [])
    conditions = [f"{_quote(c)} IS NOT NULL" for c in dict.fromkeys(needed)]
    if where:
        conditions.append(f"({where})")

    def mean(col: str) -> str:
        return f"SUM({w} * {_quote(col)}) / SUM({w})"

    select = [
        f"{_quote(unit)} AS unit", f"{_quote(period)} AS period",
        f"{mean(outcome)} AS y",
        f"MIN({_quote(treated)}) AS treated", f"MAX({_quote(treated)}) AS treated_max",
        f"SUM({w}) AS weight", "COUNT(*) AS n",
        *[f"{mean(c)} AS {_quote(c)}" for c in covariates],
    ]
    return (f"SELECT {', '.join(select)} FROM {source_sql} WHERE {' AND '.join(conditions)} "
            f"GROUP BY {_quote(unit)}, {_quote(period)} ORDER BY 1, 2")


def _file_source(path: str) -> str:
    lower = path.lower()
    literal = "'" + path.replace("'", "''") + "'"
    if lower.endswith(_PARQUET):
        return f"read_parquet({literal})"
    if lower.endswith(_CSV):
        return f"read_csv_auto({literal})"
    raise AnalysisError(f"panel source {path!r}: expected a .parquet or .csv file (glob ok) or "
                        "an SQLAlchemy URL")


def aggregate_panel(source: str | Path, *, unit: str, period: str, outcome: str, treated: str,
                    weight: str | None = None, covariates: Sequence[str] = (),
                    where: str | None = None, table: str | None = None,
                    query: str | None = None) -> pd.DataFrame:
    """Unit x period cell means and counts of a patient-level panel.

    Parameters
    ----------
    source
        A Parquet or CSV path (a glob such as ``"extract/*.parquet"`` reads every match), or an
        SQLAlchemy URL (``"sqlite:///clinic.db"``, ``"postgresql://..."``) with ``table`` or
        ``query``.
    unit, period, outcome, treated
        Source column names of the cell keys, the outcome and the 0/1 treatment indicator.
    weight
        Optional patient weight column; cell means are then weighted and ``weight`` is the sum.
    covariates
        Columns averaged within each cell (with the same weights).
    where
        Optional SQL predicate applied before grouping (trusted analysis-plan text, not user
        input: it is inserted into the query as is).
    table, query
        For SQL sources: a table name or a ``SELECT`` whose rows are the patient records.

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``unit``, ``period``, ``y`` (mean), ``treated``, ``weight`` (the
        number of rows, or the sum of weights), ``n`` (rows), covariate means, and
        ``first_treated`` (the unit's first treated period; missing if never treated), ready
        for :func:`analysis.did.fit_did`, :func:`analysis.event_study.fit_event_study` and
        :func:`analysis.staggered.fit_staggered`.

    Notes
    -----
    Files are grouped by DuckDB, which streams them and never materialises the rows in pandas.
    SQL sources run the same ``GROUP BY`` inside their own database through SQLAlchemy (DuckDB's
    database scanners are extensions that need a download), so again only cells travel.
    Rows with a missing key, outcome, treatment, weight or covariate are left out.
    """
    sql_args = {"unit": unit, "period": period, "outcome": outcome, "treated": treated,
                "weight": weight, "covariates": tuple(covariates), "where": where}
    text = str(source)
    if "://" in text:
        if (table is None) == (query is None):
            raise AnalysisError(f"panel source {text.split('://')[0]}://...: give exactly one of "
                                "table or query")
        inner = _quote(table) if table is not None else f"({query}) AS src"
        frame = _from_sql(text, _aggregate_sql(inner, **sql_args))
    else:
        if table is not None or query is not None:
            raise AnalysisError("panel source: table and query apply only to SQL sources")
        frame = _from_duckdb(_aggregate_sql(_file_source(text), **sql_args), text)
    return _finish(frame, covariates)


def _from_duckdb(sql: str, label: str) -> pd.DataFrame:
    import duckdb

    try:
        with duckdb.connect() as con:
            return con.execute(sql).df()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise AnalysisError(f"panel source {label!r}: {first}") from None


def _from_sql(url: str, sql: str) -> pd.DataFrame:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return pd.read_sql_query(sa.text(sql), con)
    except sa.exc.SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]
        raise AnalysisError(f"panel source {url.split('://')[0]}://...: {first}") from None
    finally:
        engine.dispose()


def _finish(frame: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    if frame.empty:
        raise AnalysisError("panel source: no complete rows")
    mixed = frame["treated"] != frame["treated_max"]
    if mixed.any():
        row = frame.loc[mixed].iloc[0]
        raise AnalysisError(f"panel source: 'treated' varies within unit {row['unit']!r}, period "
                            f"{row['period']!r}; aggregation is exact only for cell-level "
                            "treatment")
    out = frame.drop(columns="treated_max")
    out["treated"] = out["treated"].astype(np.int64)
    out["n"] = out["n"].astype(np.int64)
    for c in ("y", "weight", *covariates):
        out[c] = out[c].astype(float)
    first = out.loc[out["treated"] == 1].groupby("unit")["period"].min()
    out["first_treated"] = out["unit"].map(first)
    return out.reset_index(drop=True)
