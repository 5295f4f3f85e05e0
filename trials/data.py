"""Data intake v1: long-format CSV and Parquet validated against the protocol.

One row per participant and visit, with the participant ID, arm, visit, participant-level columns
(strata, demographics) and item columns named by the protocol's ``data.item_pattern``. Every
problem is collected and reported one line each (file, row, column); nothing is written when any
problem is found. Direct identifiers named in the protocol are dropped on reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trials.errors import DataError
from trials.io import sha256_file
from trials.protocol import Protocol
from trials.schema import schema_problems

_SOURCE = "__source__"
_ROW = "__row__"


@dataclass(frozen=True)
class Intake:
    """Validated data and where they came from (file names, SHA-256, row counts)."""

    frame: pd.DataFrame
    sources: tuple[dict[str, Any], ...]
    dropped_identifiers: tuple[str, ...]


def item_columns(protocol: Protocol, outcome_id: str) -> list[str]:
    outcome = protocol.outcome(outcome_id)
    n = protocol.instrument(outcome.id).n_items
    return [protocol.data.item_pattern.format(outcome=outcome_id, item=i) for i in range(1, n + 1)]


def _read_one(path: Path) -> pd.DataFrame:
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


def read_table(path: str | Path) -> pd.DataFrame:
    """A table of text cells with its ``__source__`` and ``__row__`` bookkeeping dropped."""
    return _read_one(Path(path)).drop(columns=[_SOURCE, _ROW])


def _where(frame: pd.DataFrame, mask: pd.Series | np.ndarray) -> list[str]:
    sub = frame.loc[np.asarray(mask), [_SOURCE, _ROW]]
    return [f"{s}: row {r}" for s, r in zip(sub[_SOURCE], sub[_ROW], strict=True)]


def read_data(paths: Sequence[str | Path], protocol: Protocol) -> Intake:
    """Read and validate data files; raise :class:`DataError` listing every problem."""
    if not paths:
        raise DataError("no data files given")
    frames = [_read_one(Path(p)) for p in paths]
    problems: list[str] = []
    cols = protocol.data
    dropped: set[str] = set()
    required = _required_columns(protocol)
    for i, (path, frame) in enumerate(zip(paths, frames, strict=True)):
        present = [c for c in protocol.privacy.direct_identifiers if c in frame.columns]
        frames[i] = frame = frame.drop(columns=present)
        dropped.update(present)
        problems += [f"{path}: column {c!r} is missing" for c in required
                     if c not in frame.columns]
        if len(frame) == 0:
            problems.append(f"{path}: no data rows")
    data = pd.concat(frames, ignore_index=True)
    for c in required:  # so that the row checks below still run on what is there
        if c not in data.columns:
            data[c] = None
    missing = {c for c in required if any(c not in f.columns for f in frames)}
    checked = [c for c in required if c not in missing]
    cell_problems = schema_problems(protocol, data, checked)
    keys = (cols.participant, cols.arm, cols.visit)
    in_keys = [p for p in cell_problems if any(f"column {k!r}:" in p for k in keys)]
    problems += in_keys
    problems += _check_duplicates(data, protocol, missing)
    problems += [p for p in cell_problems if p not in in_keys]
    problems += _check_participant_constants(data, protocol, missing)
    if problems:
        raise DataError(f"{len(problems)} problem(s) in the data", problems)
    data[cols.visit] = pd.to_numeric(data[cols.visit]).astype(int)
    for outcome in protocol.outcomes:
        for c in item_columns(protocol, outcome.id):
            data[c] = pd.to_numeric(data[c]).astype("Int64")
    sources = tuple(
        {"file": Path(p).name, "sha256": sha256_file(p), "rows": int(len(f))}
        for p, f in zip(paths, frames, strict=True)
    )
    keep = [cols.participant, cols.arm, cols.visit, *_participant_level(protocol)]
    if cols.completed_at:
        keep.append(cols.completed_at)
    keep += [c for o in protocol.outcomes for c in item_columns(protocol, o.id)]
    clean = data[keep].sort_values([cols.participant, cols.visit], kind="stable")
    return Intake(clean.reset_index(drop=True), sources, tuple(sorted(dropped)))


def _participant_level(protocol: Protocol) -> list[str]:
    out = list(protocol.design.strata)
    out += [c for c in protocol.data.participant_columns if c not in out]
    return out


def _required_columns(protocol: Protocol) -> list[str]:
    cols = protocol.data
    req = [cols.participant, cols.arm, cols.visit, *_participant_level(protocol)]
    if cols.completed_at:
        req.append(cols.completed_at)
    for outcome in protocol.outcomes:
        req += item_columns(protocol, outcome.id)
    return req


def _check_duplicates(data: pd.DataFrame, protocol: Protocol, missing: set[str]) -> list[str]:
    """One line per participant-visit given more than once, naming every row involved."""
    cols = protocol.data
    if {cols.participant, cols.visit} & missing:
        return []
    pid = data[cols.participant]
    visit = pd.to_numeric(data[cols.visit], errors="coerce")
    key = pd.DataFrame({"p": pid, "v": visit})
    dup = key.duplicated(keep=False) & pid.notna() & visit.notna()
    problems = []
    if dup.any():
        sub = data.loc[dup, [_SOURCE, _ROW]].assign(p=pid[dup], v=visit[dup])
        for (p, v), group in sub.groupby(["p", "v"], sort=True):
            rows = ", ".join(f"{s}: row {r}" for s, r in zip(group[_SOURCE], group[_ROW],
                                                            strict=True))
            problems.append(f"{rows}, columns {cols.participant!r}/{cols.visit!r}: duplicate "
                            f"participant-visit (participant {p!r}, visit {int(v)}) "
                            "[rule unique_participant_visit]")
    return problems


def _check_participant_constants(data: pd.DataFrame, protocol: Protocol,
                                 missing: set[str]) -> list[str]:
    cols = protocol.data
    problems: list[str] = []
    if cols.participant in missing:
        return problems
    for c in [cols.arm, *_participant_level(protocol)]:
        if c in missing:
            continue
        n_values = data.groupby(cols.participant, sort=True)[c].nunique(dropna=True)
        for p in n_values.index[n_values > 1]:
            rows = data.loc[data[cols.participant] == p, [_SOURCE, _ROW]]
            first = f"{rows[_SOURCE].iat[0]}: rows {', '.join(map(str, rows[_ROW]))}"
            problems.append(f"{first}, column {c!r}: differs between visits of participant "
                            f"{p!r} (must be constant) [rule constant_per_participant]")
    return problems
