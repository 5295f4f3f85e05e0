"""Intake of a quasi-experimental study's data: validation of the patient-level (or cell-level)
records and their aggregation to unit x period cells, both inside DuckDB so that a panel of
millions of rows is never loaded into pandas.

Every problem is one line naming the file, the first offending row (1-based, header excluded)
and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trials.errors import DataError
from trials.io import sha256_file
from trials.quasi_protocol import QuasiProtocol

_SUFFIXES = (".csv", ".parquet", ".pq")


def _source(path: Path) -> str:
    literal = "'" + str(path).replace("'", "''") + "'"
    if path.suffix.lower() == ".csv":
        return f"read_csv({literal}, header = true, all_varchar = true)"
    return f"read_parquet({literal})"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class PanelIntake:
    """The validated input: per outcome, its unit x period cells (``unit, period, y, treated,
    weight, n, first_treated``); for RD the patient-level rows of running variable and
    outcomes; and the provenance of the files."""

    cells: dict[str, pd.DataFrame]
    rows: pd.DataFrame | None
    sources: tuple[dict[str, str], ...]
    n_records: int


def read_panel(protocol: QuasiProtocol, paths: Sequence[str | Path]) -> PanelIntake:
    import duckdb

    if len(paths) != 1:
        raise DataError(f"a quasi-experimental study reads one data file, got {len(paths)}")
    path = Path(paths[0])
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() not in _SUFFIXES:
        raise DataError(f"{path}: expected a .csv or .parquet file")
    d = protocol.data
    needed = [d.unit, d.period, *(c for c in (d.adoption, d.running, d.received) if c),
              *(o.column for o in protocol.outcomes), *d.covariates]
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE raw AS SELECT row_number() OVER () AS __row, * "
                    f"FROM {_source(path)}")
        columns = [r[0] for r in con.execute("DESCRIBE raw").fetchall()]
        missing = [c for c in dict.fromkeys(needed) if c not in columns]
        if missing:
            raise DataError(f"{path}: column {missing[0]!r} named in the protocol's data or "
                            f"outcomes is missing (columns: {', '.join(columns[1:])})")
        _check_numeric(con, path, d.period, integer=True, required=True)
        if d.adoption:
            _check_numeric(con, path, d.adoption, integer=True, required=False)
            bad = con.execute(
                f"SELECT {_q(d.unit)} FROM raw GROUP BY 1 "
                f"HAVING COUNT(DISTINCT COALESCE(CAST({_q(d.adoption)} AS VARCHAR), '')) > 1 "
                "ORDER BY 1 LIMIT 1").fetchone()
            if bad:
                raise DataError(f"{path}: column {d.adoption!r}: unit {bad[0]!r} has more than "
                                "one adoption period (it must be constant within a unit)")
        if d.level == "unit_period":  # rows are cells: a second row would be averaged in
            dup = con.execute(
                f"SELECT __row, {_q(d.unit)}, {_q(d.period)} FROM (SELECT __row, {_q(d.unit)}, "
                f"{_q(d.period)}, ROW_NUMBER() OVER (PARTITION BY {_q(d.unit)}, "
                f"TRY_CAST(TRIM(CAST({_q(d.period)} AS VARCHAR)) AS DOUBLE) ORDER BY __row) "
                "AS k FROM raw) WHERE k > 1 ORDER BY __row LIMIT 1").fetchone()
            if dup:
                raise DataError(f"{path}: row {dup[0]}, columns {d.unit!r}/{d.period!r}: unit "
                                f"{dup[1]!r} period {dup[2]} appears more than once (data.level "
                                "unit_period: one row per unit and period)")
        for c in (d.running, d.received, *d.covariates):
            if c:
                _check_numeric(con, path, c, integer=False, required=True)
        for o in protocol.outcomes:
            _check_numeric(con, path, o.column, integer=False, required=False,
                           binary=o.kind == "binary")
        n = int(con.execute("SELECT COUNT(*) FROM raw").fetchone()[0])
        cells = {o.id: _cells(con, protocol, o.column) for o in protocol.outcomes}
        rows = None
        if d.running:
            cols = [d.unit, d.period, d.running, *(c for c in (d.received,) if c),
                    *(o.column for o in protocol.outcomes), *d.covariates]
            sel = ", ".join(f"TRY_CAST({_q(c)} AS DOUBLE) AS {_q(c)}" if c != d.unit
                            else _q(c) for c in dict.fromkeys(cols))
            rows = con.execute(f"SELECT {sel} FROM raw ORDER BY __row").df()
    except duckdb.Error as exc:
        raise DataError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    finally:
        con.close()
    return PanelIntake(cells, rows, ({"file": path.name, "sha256": sha256_file(path)},), n)


def _check_numeric(con: object, path: Path, column: str, *, integer: bool, required: bool,
                   binary: bool = False) -> None:
    c = _q(column)
    value = f"TRY_CAST(TRIM(CAST({c} AS VARCHAR)) AS DOUBLE)"
    text = f"NULLIF(TRIM(CAST({c} AS VARCHAR)), '')"
    tests = [f"({text} IS NOT NULL AND {value} IS NULL)", f"isinf({value})", f"isnan({value})"]
    what = "a number"
    if integer:
        tests.append(f"({value} IS NOT NULL AND {value} <> FLOOR({value}))")
        what = "an integer"
    if binary:
        tests.append(f"({value} IS NOT NULL AND {value} NOT IN (0, 1))")
        what = "0 or 1"
    if required:
        tests.append(f"{text} IS NULL")
    row = con.execute(  # type: ignore[attr-defined]
        f"SELECT __row, CAST({c} AS VARCHAR) FROM raw WHERE {' OR '.join(tests)} "
        "ORDER BY __row LIMIT 1").fetchone()
    if row:
        shown = "empty" if row[1] is None or not str(row[1]).strip() else repr(row[1])
        raise DataError(f"{path}: row {row[0]}, column {column!r}: {shown} is not {what}")


def _cells(con: object, protocol: QuasiProtocol, column: str) -> pd.DataFrame:
    d = protocol.data
    unit, period, y = _q(d.unit), _q(d.period), _q(column)
    num = "TRY_CAST(TRIM(CAST({} AS VARCHAR)) AS DOUBLE)"
    p = num.format(period)
    if d.adoption:
        a = num.format(_q(d.adoption))
        treated = f"CASE WHEN {a} IS NOT NULL AND {p} >= {a} THEN 1 ELSE 0 END"
        first = f"MIN({a})"
    else:
        treated, first = "0", "NULL"
    sql = (f"SELECT {unit} AS unit, CAST({p} AS BIGINT) AS period, AVG({num.format(y)}) AS y, "
           f"MAX({treated}) AS treated, COUNT(*) AS n, {first} AS first_treated FROM raw "
           f"WHERE {num.format(y)} IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2")
    frame = con.execute(sql).df()  # type: ignore[attr-defined]
    frame["unit"] = frame["unit"].astype(str)
    frame["weight"] = frame["n"].astype(float)
    frame["treated"] = frame["treated"].astype(int)
    frame["n"] = frame["n"].astype(int)
    frame["y"] = frame["y"].astype(float)
    return frame
