"""Tables of text cells: the common currency of every data source.

A reader returns one column per variable with every cell as text (dtype ``"str"``, missing as
NaN), plus two bookkeeping columns: ``__source__`` (where the row came from) and ``__row__``
(where a human finds it there). Validation against the protocol then works the same way for
every source. Passwords in database URLs never appear in a message.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trials.errors import DataError

_SOURCE = "__source__"
_ROW = "__row__"


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet keeps its own types; turn every cell into text as a CSV reader would, so the same
    data give the same frame (and the same model terms) from either format."""
    out = pd.DataFrame(index=frame.index)
    for c in frame.columns:
        col = frame[c]
        text = col.astype(object).where(col.isna(), col.astype(str))
        if pd.api.types.is_float_dtype(col):
            whole = col.notna() & (col == col.round())
            text = text.where(~whole, col.where(whole, 0).astype("int64").astype(str))
        out[c] = text.where(text != "", None).where(col.notna(), None)
    return out.astype("str")


def read_csv_or_parquet(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            first_row = 2  # line 1 is the header
        elif suffix in (".parquet", ".pq"):
            frame = _as_text(pd.read_parquet(path))
            first_row = 1
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # a parser's own message, kept to one line
        raise DataError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    frame = frame.reset_index(drop=True)
    frame[_SOURCE] = str(path)
    frame[_ROW] = np.arange(first_row, first_row + len(frame))
    return frame


# --------------------------------------------------------------------------- shared helpers


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*(?=@)")


def mask_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL shown as ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***", text)


def _cell_text(value: Any) -> str | None:
    """One cell as the text a CSV export would hold (None when missing)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return None
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None and value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _text_frame(rows: Sequence[Sequence[Any]], columns: Sequence[str], source: str,
                row_numbers: Sequence[Any]) -> pd.DataFrame:
    cells = [[_cell_text(v) for v in row] for row in rows]
    frame = pd.DataFrame(cells, columns=list(columns), dtype=object)
    frame = frame.astype("str") if len(frame.columns) else frame
    frame[_SOURCE] = source
    frame[_ROW] = np.asarray(list(row_numbers), dtype=np.int64)
    return frame


def _check_path(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file")


def _raise_problems(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise DataError(problems[0] + more, problems)


# --------------------------------------------------------------------------- Excel

