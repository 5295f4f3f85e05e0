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


def _aggregate_sql(source_sql: str, *, unit: str, period: str, outcome: str,
                   treated: str | None, adoption: str | None, weight: str | None,
                   covariates: Sequence[str], where: str | None) -> str:
    w = f"CAST({_quote(weight)} AS DOUBLE PRECISION)" if weight else "1.0"
    needed = [outcome, unit, period, *covariates] + [c for c in (treated, weight) if c]
    conditions = [f"{_quote(c)} IS NOT NULL" for c in dict.fromkeys(needed)]
    if where:
        conditions.append(f"({where})")

    def mean(col: str) -> str:
        return f"SUM({w} * {_quote(col)}) / SUM({w})"

    if adoption is None:
        on = _quote(treated)
        adopt = []
    else:
        # A missing adoption period means never switched on; comparing with NULL would drop it.
        a = _quote(adoption)
        on = f"CASE WHEN {a} IS NULL THEN 0 WHEN {_quote(period)} >= {a} THEN 1 ELSE 0 END"
        adopt = [f"MIN({a}) AS adoption", f"MAX({a}) AS adoption_max",
                 f"COUNT({a}) AS adoption_n"]
    select = [
        f"{_quote(unit)} AS unit", f"{_quote(period)} AS period",
        f"{mean(outcome)} AS y",
        f"MIN({on}) AS treated", f"MAX({on}) AS treated_max",
        f"SUM({w}) AS weight", "COUNT(*) AS n",
        *[f"{mean(c)} AS {_quote(c)}" for c in covariates], *adopt,
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


def aggregate_panel(source: str | Path, *, unit: str, period: str, outcome: str,
                    treated: str | None = None, adoption: str | None = None,
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
    unit, period, outcome
        Source column names of the cell keys and the outcome.
    treated, adoption
        Exactly one of: the 0/1 treatment indicator column, or the column holding the unit's
        switch-on period (empty / NULL when never treated), from which the indicator is
        derived in the database as ``period >= adoption``.
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
        ``first_treated`` (the unit's first treated period, or its ``adoption`` value when
        that is given, even if the unit has no rows in that period; missing if never treated),
        ready
        for :func:`analysis.did.fit_did`, :func:`analysis.event_study.fit_event_study` and
        :func:`analysis.staggered.fit_staggered`.

    Notes
    -----
    Files are grouped by DuckDB, which streams them and never materialises the rows in pandas.
    SQL sources run the same ``GROUP BY`` inside their own database through SQLAlchemy (DuckDB's
    database scanners are extensions that need a download), so again only cells travel.
    Rows with a missing key, outcome, treatment, weight or covariate are left out (a missing
    ``adoption`` is kept: it means never treated). ``period`` and ``adoption`` must be
    comparable in the database (both numbers or both dates). The adoption period must be the
    same on every row of a unit.
    """
    if (treated is None) == (adoption is None):
        raise AnalysisError("panel source: give exactly one of treated (a 0/1 column) or "
                            "adoption (the switch-on period column)")
    sql_args = {"unit": unit, "period": period, "outcome": outcome, "treated": treated,
                "adoption": adoption, "weight": weight, "covariates": tuple(covariates),
                "where": where}
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
    return _finish(frame, covariates, adoption)


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


def _adoption_by_unit(frame: pd.DataFrame, column: str) -> pd.Series:
    per_unit = frame.groupby("unit", sort=False).agg(
        low=("adoption", "min"), high=("adoption_max", "max"), known=("adoption_n", "sum"),
        rows=("n", "sum"))
    bad = (per_unit["low"] != per_unit["high"]) & per_unit["low"].notna()
    bad |= (per_unit["known"] > 0) & (per_unit["known"] < per_unit["rows"])
    if bad.any():
        raise AnalysisError(f"panel source: {column!r} differs between rows of unit "
                            f"{bad.idxmax()!r}; it must be the unit's single switch-on period")
    return per_unit["low"]


def _finish(frame: pd.DataFrame, covariates: Sequence[str],
            adoption: str | None = None) -> pd.DataFrame:
    if frame.empty:
        raise AnalysisError("panel source: no complete rows")
    first = None if adoption is None else _adoption_by_unit(frame, adoption)
    frame = frame.drop(columns=["adoption", "adoption_max", "adoption_n"], errors="ignore")
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
    if first is None:
        first = out.loc[out["treated"] == 1].groupby("unit")["period"].min()
    out["first_treated"] = out["unit"].map(first)
    return out.reset_index(drop=True)
