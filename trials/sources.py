"""Data sources beyond CSV and Parquet: Excel, SAS / SPSS / Stata, REDCap exports and SQL.

Every reader returns what :func:`trials.data._read_one` returns for a CSV file: one column per
variable, every cell TEXT (dtype ``"str"``, missing as NaN, empty text counted as missing), plus
the bookkeeping columns ``__source__`` (where the row came from) and ``__row__`` (where a human
finds it in that source). Validation against the protocol is therefore the same whatever the
source. Numbers become text as the Parquet path writes them: a whole number is ``"3"``, never
``"3.0"``; dates are ISO 8601 (``"2026-01-31"``, with the time only when it is not midnight).

``__row__`` by source: CSV line (the header is line 1); spreadsheet row; record number (1 for
the first record) in SAS / SPSS / Stata and Parquet files; position in the result set (from 1) for
SQL; for REDCap the export's CSV line(s) with the record and event, e.g.
``"12 (record CMP-0001, event week_4_arm_1)"``.

Every failure is a :class:`~trials.errors.DataError` whose message is one line naming the source;
passwords in database URLs are shown as ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trials.errors import DataError
from trials.redcap import read_redcap
from trials.tables import (
    _ROW,
    _SOURCE,
    _as_text,
    _cell_text,
    _check_path,
    _first_line,
    _text_frame,
    mask_url,
    read_csv_or_parquet,
)

PathLike = str | os.PathLike[str]

_STAT_READERS = {".sas7bdat": "read_sas7bdat", ".xpt": "read_xport", ".sav": "read_sav",
                 ".zsav": "read_sav", ".dta": "read_dta"}
_SUFFIXES = (".csv", ".parquet", ".pq", ".xlsx", ".xlsm", *_STAT_READERS)


def read_excel(path: PathLike, sheet: str | int | None = None) -> pd.DataFrame:
    """Read one worksheet of an ``.xlsx`` workbook as text cells.

    Parameters
    ----------
    path : str or PathLike
        The workbook.
    sheet : str or int, optional
        Sheet name, or its position from 0; the first sheet when omitted.

    Notes
    -----
    The first non-empty row is the header. Empty rows are skipped, but ``__row__`` is always the
    worksheet row number Excel shows. Formulas give the value Excel last saved with the file
    (a workbook never opened in a spreadsheet program has none, so the cell reads as missing).
    """
    from openpyxl import load_workbook

    path = Path(path)
    _check_path(path)
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot read as an Excel workbook ({_first_line(exc)})") from None
    try:
        names = book.sheetnames
        if sheet is None:
            name = names[0]
        elif isinstance(sheet, int) and not isinstance(sheet, bool):
            if not 0 <= sheet < len(names):
                raise DataError(f"{path}: no sheet number {sheet} (the workbook has "
                                f"{len(names)}: {', '.join(names)})")
            name = names[sheet]
        elif sheet in names:
            name = str(sheet)
        else:
            raise DataError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(names)})")
        ws = book[name]
        ws.reset_dimensions()  # a writer's stored dimensions can be wrong; read every row
        source = f"{path} [sheet {name}]"
        header: list[str] | None = None
        rows: list[tuple[Any, ...]] = []
        numbers: list[int] = []
        for number, row in enumerate(ws.iter_rows(values_only=True), start=1):
            if all(v is None or v == "" for v in row):
                continue
            if header is None:
                header = _sheet_header(row, source, number)
                continue
            extra = [v for v in row[len(header):] if v is not None and v != ""]
            if extra:
                raise DataError(f"{source}: row {number} has a value in column "
                                f"{len(header) + 1} or later, which has no header")
            rows.append(tuple(row[:len(header)]) + (None,) * (len(header) - len(row)))
            numbers.append(number)
    finally:
        book.close()
    if header is None:
        raise DataError(f"{source}: the sheet is empty")
    return _text_frame(rows, header, source, numbers)


def _sheet_header(row: tuple[Any, ...], source: str, number: int) -> list[str]:
    cells = [_cell_text(v) for v in row]
    while cells and cells[-1] is None:
        cells.pop()
    names: list[str] = []
    for i, name in enumerate(cells, start=1):
        if name is None:
            raise DataError(f"{source}: row {number} (the header) has no name in column {i}")
        if name in names:
            raise DataError(f"{source}: row {number} (the header) names column {name!r} twice")
        names.append(name)
    return names


# --------------------------------------------------------------------------- SAS, SPSS, Stata


def read_stat(path: PathLike) -> pd.DataFrame:
    """Read a SAS (``.sas7bdat``, ``.xpt``), SPSS (``.sav``, ``.zsav``) or Stata (``.dta``) file.

    Values are the stored codes, not their value labels; user-defined and extended missing values
    (SPSS missing codes, Stata ``.a``-``.z``, SAS special missings) are missing. ``__row__`` is
    the record number, from 1.
    """
    import pyreadstat

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _STAT_READERS:
        raise DataError(f"{path}: unsupported file type {suffix!r} for SAS / SPSS / Stata "
                        f"(use {', '.join(_STAT_READERS)})")
    _check_path(path)
    reader: Callable[..., Any] = getattr(pyreadstat, _STAT_READERS[suffix])
    try:
        frame, _meta = reader(str(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot read ({_first_line(exc)})") from None
    frame = _as_text(frame.reset_index(drop=True))
    frame[_SOURCE] = str(path)
    frame[_ROW] = np.arange(1, len(frame) + 1)
    return frame


# --------------------------------------------------------------------------- SQL


_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def read_sql(url: str, query_or_table: str,
             params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Read a table, or the result of a query, through SQLAlchemy 2.

    Parameters
    ----------
    url : str
        An SQLAlchemy URL: ``sqlite:///path/to/file.db`` (no server), or
        ``postgresql+psycopg://user:password@host:port/database`` (psycopg 3).
    query_or_table : str
        A table name (``visits`` or ``schema.visits``), read whole and ordered by its primary key
        when it has one; or a ``SELECT`` query, whose own ``ORDER BY`` fixes the row order.
    params : mapping, optional
        Values of the query's named parameters (``:name``); bound, never pasted into the SQL.

    Notes
    -----
    ``__row__`` is the position in the result (from 1), so a query without ``ORDER BY`` (or a
    table without a primary key) numbers rows in whatever order the database returns them.
    """
    import sqlalchemy as sa
    from sqlalchemy.exc import NoSuchTableError

    masked = mask_url(url)
    try:
        parsed = sa.make_url(url)
    except Exception:
        raise DataError(f"{masked}: not a database URL (e.g. sqlite:///study.db or "
                        "postgresql+psycopg://user:password@host/db)") from None
    masked = parsed.render_as_string(hide_password=True)
    password = parsed.password or ""
    is_table = bool(_TABLE_NAME.match(query_or_table.strip()))
    what = f"table {query_or_table.strip()}" if is_table else "query"
    source = f"{masked} [{what}]"
    if is_table and params:
        raise DataError(f"{source}: params apply to a query, not to a table")
    database = parsed.database or ""
    if (parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
            and not database.startswith("file:") and not Path(database).is_file()):
        # sqlite would otherwise create an empty database and report a missing table.
        raise DataError(f"{source}: database file {database} not found")

    def scrub(text: str) -> str:
        text = mask_url(text.replace(url, masked))
        return text.replace(password, "***") if len(password) >= 4 else text

    engine = None
    try:
        engine = sa.create_engine(parsed)
        with engine.connect() as conn:
            if is_table:
                schema, _, name = query_or_table.strip().rpartition(".")
                table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=conn)
                stmt: Any = sa.select(table).order_by(*table.primary_key.columns)
                result = conn.execute(stmt)
            else:
                result = conn.execute(sa.text(query_or_table), dict(params or {}))
            columns = list(result.keys())
            rows = [tuple(r) for r in result]
    except NoSuchTableError:
        raise DataError(f"{source}: no table {query_or_table.strip()!r}") from None
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc
        raise DataError(scrub(f"{source}: cannot read ({_first_line(cause)})")) from None
    finally:
        if engine is not None:
            engine.dispose()
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise DataError(f"{source}: the result names column(s) {', '.join(dup)} more than once")
    return _text_frame(rows, columns, source, range(1, len(rows) + 1))


# --------------------------------------------------------------------------- dispatcher

_REDCAP_KEYS = {"records": "records_csv", "dictionary": "dictionary_csv",
                "event_visits": "event_visits", "field_map": "field_map",
                "visit_column": "visit_column", "forms": "forms",
                "participant_fields": "participant_fields"}


def _describe(spec: Any) -> str:
    text = mask_url(repr(spec) if not isinstance(spec, str | os.PathLike) else str(spec))
    text = re.sub(r"('password'\s*:\s*)'[^']*'", r"\1'***'", text)
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def read_source(spec: Any) -> pd.DataFrame:
    """Read any supported data source into text cells with ``__source__`` and ``__row__``.

    Parameters
    ----------
    spec : str, PathLike or dict
        A file path, chosen by suffix: ``.csv``, ``.parquet`` / ``.pq``, ``.xlsx`` / ``.xlsm``
        (first sheet), ``.sas7bdat``, ``.xpt``, ``.sav`` / ``.zsav``, ``.dta``. Or a dict with one
        key:

        - ``{"excel": {"path": ..., "sheet": ...}}``
        - ``{"redcap": {"records": ..., "dictionary": ..., "event_visits": {...},
          "field_map": {...}, "visit_column": ..., "forms": [...],
          "participant_fields": [...]}}`` (see :func:`read_redcap`)
        - ``{"sql": {"url": ..., "query": ... or "table": ..., "params": {...}}}``

    Raises
    ------
    DataError
        One line naming the source (passwords masked) for anything unsupported or unreadable.
    """
    if isinstance(spec, str | os.PathLike):
        path = Path(spec)
        suffix = path.suffix.lower()
        if suffix in (".csv", ".parquet", ".pq"):
            return read_csv_or_parquet(path)
        if suffix in (".xlsx", ".xlsm"):
            return read_excel(path)
        if suffix in _STAT_READERS:
            return read_stat(path)
        hint = " (save it as .xlsx)" if suffix == ".xls" else ""
        raise DataError(f"{_describe(spec)}: unsupported data source{hint}; use a file ending "
                        f"in {', '.join(_SUFFIXES)}, or a dict with 'redcap', 'sql' or 'excel'")
    if isinstance(spec, Mapping) and len(spec) == 1:
        kind, options = next(iter(spec.items()))
        if kind in ("redcap", "sql", "excel") and isinstance(options, Mapping):
            return _read_spec(kind, dict(options), spec)
    raise DataError(f"{_describe(spec)}: unsupported data source; use a file path or a dict with "
                    "one key, 'redcap', 'sql' or 'excel'")


def _read_spec(kind: str, options: dict[str, Any], spec: Any) -> pd.DataFrame:
    def need(keys: set[str], allowed: set[str]) -> None:
        missing = sorted(keys - options.keys())
        unknown = sorted(options.keys() - allowed)
        if missing or unknown:
            parts = ([f"missing {', '.join(missing)}"] if missing else [])
            parts += [f"unknown {', '.join(map(str, unknown))}"] if unknown else []
            raise DataError(f"{_describe(spec)}: {kind} source has {'; '.join(parts)} "
                            f"(allowed: {', '.join(sorted(allowed))})")

    if kind == "excel":
        need({"path"}, {"path", "sheet"})
        return read_excel(options["path"], options.get("sheet"))
    if kind == "sql":
        need({"url"}, {"url", "query", "table", "params"})
        if ("query" in options) == ("table" in options):
            raise DataError(f"{_describe(spec)}: sql source needs exactly one of query, table")
        return read_sql(options["url"], options.get("query") or options["table"],
                        options.get("params"))
    need({"records", "dictionary", "event_visits"}, set(_REDCAP_KEYS))
    return read_redcap(**{_REDCAP_KEYS[k]: v for k, v in options.items()})


__all__ = ["mask_url", "read_excel", "read_redcap", "read_source", "read_sql", "read_stat"]
