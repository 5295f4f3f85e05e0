"""Data intake v1: long-format CSV and Parquet validated against the protocol.

One row per participant and visit, with the participant ID, arm, visit, participant-level columns
(strata, demographics) and item columns named by the protocol's ``data.item_pattern``. Every
problem is collected and reported one line each (file, row, column); nothing is written when any
problem is found. Direct identifiers named in the protocol are dropped on reading.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from trials.errors import DataError
from trials.io import sha256_file
from trials.protocol import Protocol
from trials.schema import schema_problems
from trials.sources import read_source
from trials.tables import _ROW, _SOURCE


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


FILE_TYPES = (".csv", ".parquet", ".pq", ".xlsx", ".xlsm", ".sas7bdat", ".xpt", ".sav", ".zsav",
              ".dta")


def read_input(path: str | Path) -> pd.DataFrame:
    """A data file chosen by suffix (CSV, Parquet, Excel, SAS, SPSS, Stata), or a source
    specification file (``.yaml``: a REDCap export or an SQL query) whose relative paths are
    resolved against its own folder and whose ``${VARIABLES}`` come from the environment."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return read_source(load_source_spec(path))
    if suffix not in FILE_TYPES:
        raise DataError(f"{path}: unsupported file type {suffix!r} (use {', '.join(FILE_TYPES)}, "
                        "or a .yaml source specification for REDCap or SQL)")
    return read_source(path)


def load_source_spec(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise DataError(f"{path}: file not found") from None
    except yaml.YAMLError:
        raise DataError(f"{path}: not a valid YAML source specification") from None
    if not isinstance(spec, dict) or len(spec) != 1:
        raise DataError(f"{path}: a source specification has one key: redcap, sql or excel")
    kind, options = next(iter(spec.items()))
    if not isinstance(options, dict):
        raise DataError(f"{path}: {kind}: expected a mapping of options")
    resolved = dict(options)
    for key in ("records", "dictionary", "path"):
        if key in resolved and not Path(str(resolved[key])).is_absolute():
            resolved[key] = str(path.parent / str(resolved[key]))
    if "url" in resolved:
        url = os.path.expandvars(str(resolved["url"]))
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            target = Path(url.removeprefix("sqlite:///"))
            if not target.is_absolute():
                url = "sqlite:///" + str(path.parent / target)
        resolved["url"] = url
    return {kind: resolved}


def read_table(path: str | Path) -> pd.DataFrame:
    """A table of text cells with its ``__source__`` and ``__row__`` bookkeeping dropped."""
    frame = read_input(path)
    rows = frame[_ROW]
    if pd.api.types.is_integer_dtype(rows):  # messages then name the row a person sees
        frame.index = pd.Index([int(r) for r in rows], name="row")
    return frame.drop(columns=[_SOURCE, _ROW])


def content_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's cells (bookkeeping left out), the same whatever format held them."""
    body = frame.drop(columns=[c for c in (_SOURCE, _ROW) if c in frame.columns])
    body = body.sort_values(list(body.columns[:3]), kind="stable") if len(body.columns) else body
    return hashlib.sha256(body.to_csv(index=False).encode("utf-8")).hexdigest()


def _where(frame: pd.DataFrame, mask: pd.Series | np.ndarray) -> list[str]:
    sub = frame.loc[np.asarray(mask), [_SOURCE, _ROW]]
    return [f"{s}: row {r}" for s, r in zip(sub[_SOURCE], sub[_ROW], strict=True)]


def read_data(paths: Sequence[str | Path], protocol: Protocol) -> Intake:
    """Read and validate data files; raise :class:`DataError` listing every problem."""
    if not paths:
        raise DataError("no data files given")
    frames = [read_input(p) for p in paths]
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
        {"file": Path(p).name, "sha256": sha256_file(p), "rows": int(len(f)),
         "content_sha256": content_sha256(f)}
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
