"""Safety escalation timeliness: was each red flag followed up, and how fast?

Inputs are two plain DataFrames whose column names are passed as arguments (nothing here reads
a protocol):

* **flags**, one row per red-flag occurrence: participant, arm, visit and ``flag_time`` (when
  the flag was raised, e.g. the questionnaire's completion time);
* **escalation log**, one row per escalation entry: participant, a key to match it to its flag
  (the visit, or the flag time), ``contact_time`` (when a clinician made contact; may be
  missing) and the outcome category ("safety plan", "urgent referral", ...).

:func:`match_escalations` pairs them, :func:`escalation_summary` tabulates by arm and overall,
and :func:`escalation_estimates` returns :class:`analysis.estimate.Estimate` records that harm
criteria can read (``missed_escalations``, ``escalation_within_limit``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

OVERALL = "overall"
NOT_RECORDED = "not recorded"
_ADDED = ("escalated", "n_log_entries", "log_row", "contact_time", "hours_to_contact",
          "within_limit", "missed", "outcome")


@dataclass(frozen=True)
class EscalationMatch:
    """Flags paired with their escalations.

    ``flags`` has one row per flag (the caller's index and columns, ``flag_time`` as datetimes)
    plus ``escalated``, ``n_log_entries``, ``log_row`` (index label of the log entry used),
    ``contact_time``, ``hours_to_contact``, ``within_limit``, ``missed`` and ``outcome``.
    ``unmatched_log`` holds the log entries that matched no flag (the caller's index and
    columns plus ``reason``): they are reported, never dropped silently.
    """

    flags: pd.DataFrame
    unmatched_log: pd.DataFrame
    limit_hours: float
    by: str
    participant: str
    arm: str


# --------------------------------------------------------------------------- validation


def _py(value: Any) -> Any:
    """A numpy scalar as the plain Python value, so that messages read ``row 3``, not
    ``row np.int64(3)``."""
    return value.item() if isinstance(value, np.generic) else value


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(map(repr, missing))}")


def _limit(limit_hours: Any) -> float:
    if isinstance(limit_hours, bool) or not isinstance(limit_hours, int | float):
        raise ValueError(f"limit_hours must be a number of hours, got {limit_hours!r}")
    if not math.isfinite(limit_hours) or limit_hours <= 0:
        raise ValueError(f"limit_hours must be finite and positive, got {limit_hours!r}")
    return float(limit_hours)


def _timestamps(series: pd.Series, label: str) -> tuple[pd.Series, bool | None]:
    """Parse ``series`` to datetimes without shifting any clock time.

    Returns the parsed series and whether it is time-zone aware (None when every value is
    missing, so it constrains nothing).
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series, True if series.notna().any() else None
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series, False if series.notna().any() else None
    values: list[pd.Timestamp] = []
    aware_at: Hashable | None = None
    naive_at: Hashable | None = None
    for idx, v in series.items():
        if v is None or v is pd.NaT or (not isinstance(v, str | dt.datetime) and pd.isna(v)):
            values.append(pd.NaT)
            continue
        if not isinstance(v, str | dt.datetime | np.datetime64):
            raise ValueError(f"{label} row {_py(idx)!r}: {_py(v)!r} is not a timestamp")
        try:
            ts = pd.Timestamp(v)
        except (ValueError, TypeError):
            raise ValueError(f"{label} row {_py(idx)!r}: {_py(v)!r} is not a timestamp") from None
        if ts is pd.NaT:
            values.append(pd.NaT)
            continue
        idx = _py(idx)
        if ts.tzinfo is None:
            naive_at = idx if naive_at is None else naive_at
        else:
            aware_at = idx if aware_at is None else aware_at
            ts = ts.tz_convert("UTC")  # the same instant; only the display zone changes
        values.append(ts)
    if aware_at is not None and naive_at is not None:
        raise ValueError(f"{label} mixes time-zone-aware (row {aware_at!r}) and naive "
                         f"(row {naive_at!r}) timestamps; give every time with an offset or none")
    parsed = pd.Series(pd.to_datetime(values, utc=aware_at is not None), index=series.index,
                       name=series.name)
    if aware_at is None and naive_at is None:
        return parsed, None
    return parsed, aware_at is not None


def _same_awareness(parsed: Mapping[str, tuple[pd.Series, bool | None]]) -> None:
    aware = [k for k, (_, a) in parsed.items() if a is True]
    naive = [k for k, (_, a) in parsed.items() if a is False]
    if aware and naive:
        raise ValueError(f"{aware[0]} is time-zone-aware but {naive[0]} is naive; "
                         "timestamps are compared as given, so give all with an offset or none")


def _no_missing(frame: pd.DataFrame, column: str, what: str) -> None:
    bad = frame.index[frame[column].isna()]
    if len(bad):
        raise ValueError(f"{what} row {_py(bad[0])!r}: {column!r} is missing")


def _same_kind(a: pd.Series, b: pd.Series, column: str, log_column: str) -> None:
    num_a = pd.api.types.is_numeric_dtype(a.dtype) and not pd.api.types.is_bool_dtype(a.dtype)
    num_b = pd.api.types.is_numeric_dtype(b.dtype) and not pd.api.types.is_bool_dtype(b.dtype)
    if b.notna().any() and num_a != num_b:
        raise ValueError(f"flags {column!r} is {a.dtype} but log {log_column!r} is {b.dtype}; "
                         "keys must be of the same type to match")


# --------------------------------------------------------------------------- matching


def match_escalations(
    flags: pd.DataFrame,
    log: pd.DataFrame,
    *,
    limit_hours: float,
    by: Literal["visit", "time"] = "visit",
    tolerance: pd.Timedelta | dt.timedelta | str = "0s",
    participant: str = "participant",
    arm: str = "arm",
    visit: str = "visit",
    flag_time: str = "flag_time",
    log_participant: str | None = None,
    log_visit: str | None = None,
    log_flag_time: str | None = None,
    contact_time: str = "contact_time",
    outcome: str = "outcome",
) -> EscalationMatch:
    """Pair each red flag with its escalation log entry and time the clinician's contact.

    Parameters
    ----------
    flags : DataFrame
        One row per flag, with columns ``participant``, ``arm``, ``flag_time`` and (for
        ``by="visit"``) ``visit``.
    log : DataFrame
        One row per escalation entry, with ``log_participant`` (default: ``participant``),
        ``contact_time``, ``outcome`` and the key: ``log_visit`` (default: ``visit``) for
        ``by="visit"``, ``log_flag_time`` (default: ``flag_time``) for ``by="time"``.
    limit_hours : float
        The protocol's limit from flag to contact; ``within_limit`` is
        ``hours_to_contact <= limit_hours``.
    by : {"visit", "time"}
        The matching rule (see Notes).
    tolerance : Timedelta or str
        For ``by="time"``: the largest gap between a log entry's flag time and the flag's
        ``flag_time`` that still counts as the same flag (default exact equality).

    Returns
    -------
    EscalationMatch
        Per-flag results and the log entries that matched no flag.

    Notes
    -----
    Matching rule. ``by="visit"``: a log entry belongs to the flag with the same participant
    and visit; (participant, visit) must then be unique among flags. ``by="time"``: a log
    entry belongs to the same participant's flag whose ``flag_time`` is nearest to the entry's
    flag time, provided the gap is at most ``tolerance`` (an exact tie goes to the earlier
    flag). A flag may have several log entries (for example a failed call, then contact): the
    flag is *escalated* if it has any, its contact is the earliest ``contact_time`` among them,
    and its outcome is that entry's (or the first entry's, in log order, when none has a
    contact time). ``hours_to_contact`` is ``contact_time - flag_time`` in hours, NaN without
    contact. A flag is *missed* when it has no log entry or no contact time; a missed flag is
    never within the limit. Timestamps are compared as given (naive clock times are not
    shifted; aware ones compare as instants); mixing aware and naive times is refused. A
    contact before its flag time is a data error.
    """
    if by not in ("visit", "time"):
        raise ValueError(f"by must be 'visit' or 'time', got {by!r}")
    limit = _limit(limit_hours)
    try:
        tol = pd.Timedelta(tolerance)
    except (ValueError, TypeError):
        raise ValueError(f"tolerance must be a time span such as '15min', got {tolerance!r}") \
            from None
    if tol is pd.NaT or tol < pd.Timedelta(0):
        raise ValueError(f"tolerance must be zero or positive, got {tolerance!r}")
    lp = log_participant or participant
    log_key = (log_visit or visit) if by == "visit" else (log_flag_time or flag_time)
    _require(flags, [participant, arm, flag_time] + ([visit] if by == "visit" else []), "flags")
    _require(log, list(dict.fromkeys([lp, log_key, contact_time, outcome])), "escalation log")
    clash = [c for c in _ADDED if c in flags.columns and c != flag_time]
    if clash:
        raise ValueError(f"flags already has column(s) {', '.join(map(repr, clash))}, which "
                         "match_escalations adds; rename them first")
    for col in (participant, arm, flag_time) + ((visit,) if by == "visit" else ()):
        _no_missing(flags, col, "flags")
    _same_kind(flags[participant], log[lp], participant, lp)
    if by == "visit":
        _same_kind(flags[visit], log[log_key], visit, log_key)

    times = {f"flags {flag_time!r}": _timestamps(flags[flag_time], f"flags {flag_time!r}"),
             f"log {contact_time!r}": _timestamps(log[contact_time], f"log {contact_time!r}")}
    if by == "time":
        times[f"log {log_key!r}"] = _timestamps(log[log_key], f"log {log_key!r}")
    elif flag_time in log.columns:
        times[f"log {flag_time!r}"] = _timestamps(log[flag_time], f"log {flag_time!r}")
    _same_awareness(times)
    f_time = times[f"flags {flag_time!r}"][0]
    contact = times[f"log {contact_time!r}"][0]
    own_time = times.get(f"log {log_key!r}" if by == "time" else f"log {flag_time!r}")
    if own_time is not None:  # the log's own flag time must not follow its contact
        _contact_not_before(log, lp, contact, own_time[0], range(len(log)), None)

    out = flags.copy()
    out[flag_time] = f_time
    f_pid = flags[participant].tolist()
    f_t = list(f_time)
    l_pid = log[lp].tolist()

    # log position -> flag position (or a reason it matched none)
    assigned: list[int | None] = [None] * len(log)
    reasons: list[str] = [""] * len(log)
    if by == "visit":
        f_keys = list(zip(f_pid, flags[visit].tolist(), strict=True))
        position: dict[tuple[Any, Any], int] = {}
        for i, k in enumerate(f_keys):
            if k in position:
                raise ValueError(f"flags rows {_py(flags.index[position[k]])!r} and "
                                 f"{_py(flags.index[i])!r} share participant and visit "
                                 f"{tuple(map(_py, k))!r}; "
                                 "match by='time' instead")
            position[k] = i
        has_pid = set(f_pid)
        for j, (p, v) in enumerate(zip(l_pid, log[log_key].tolist(), strict=True)):
            if pd.isna(p):
                reasons[j] = f"no {lp}"
            elif pd.isna(v):
                reasons[j] = f"no {log_key}"
            elif (p, v) in position:
                assigned[j] = position[(p, v)]
            else:
                reasons[j] = ("no flag at this visit" if p in has_pid
                              else "no flag for this participant")
    else:
        by_pid: dict[Any, list[int]] = {}
        for i, p in enumerate(f_pid):
            by_pid.setdefault(p, []).append(i)
        l_t = list(times[f"log {log_key!r}"][0])
        for j, (p, t) in enumerate(zip(l_pid, l_t, strict=True)):
            if pd.isna(p):
                reasons[j] = f"no {lp}"
                continue
            if t is pd.NaT:
                reasons[j] = f"no {log_key}"
                continue
            candidates = by_pid.get(p, [])
            if not candidates:
                reasons[j] = "no flag for this participant"
                continue
            best = min(candidates, key=lambda i, t=t: (abs(f_t[i] - t), f_t[i], i))
            if abs(f_t[best] - t) <= tol:
                assigned[j] = best
            else:
                reasons[j] = f"no flag within {tol} of this flag time"

    matched_rows = [j for j, i in enumerate(assigned) if i is not None]
    _contact_not_before(log, lp, contact, f_t, matched_rows, assigned)

    entries: dict[int, list[int]] = {}
    for j in matched_rows:
        entries.setdefault(assigned[j], []).append(j)  # type: ignore[arg-type]
    c_t = list(contact)
    outcomes = log[outcome].tolist()
    n_entries, chosen_label, chosen_contact, chosen_outcome = [], [], [], []
    for i in range(len(flags)):
        rows = entries.get(i, [])
        n_entries.append(len(rows))
        if not rows:
            chosen_label.append(None)
            chosen_contact.append(pd.NaT)
            chosen_outcome.append(None)
            continue
        with_contact = [j for j in rows if c_t[j] is not pd.NaT]
        j = min(with_contact, key=lambda j: (c_t[j], j)) if with_contact else rows[0]
        chosen_label.append(_py(log.index[j]))
        chosen_contact.append(c_t[j])
        text = outcomes[j]
        chosen_outcome.append(NOT_RECORDED if pd.isna(text) or not str(text).strip()
                              else str(text).strip())
    out["escalated"] = np.array(n_entries) > 0
    out["n_log_entries"] = np.array(n_entries, dtype=int)
    out["log_row"] = pd.Series(chosen_label, index=out.index, dtype=object)
    out["contact_time"] = pd.Series(pd.to_datetime(chosen_contact, utc=_is_aware(f_time)),
                                    index=out.index)
    hours = (out["contact_time"] - out[flag_time]).dt.total_seconds() / 3600.0
    out["hours_to_contact"] = hours.astype(float)
    out["within_limit"] = (out["hours_to_contact"] <= limit).fillna(False).astype(bool)
    out["missed"] = out["hours_to_contact"].isna().astype(bool)
    out["outcome"] = pd.Series(chosen_outcome, index=out.index, dtype=object)

    unmatched = log.iloc[[j for j, i in enumerate(assigned) if i is None]].copy()
    unmatched["reason"] = [reasons[j] for j, i in enumerate(assigned) if i is None]
    return EscalationMatch(flags=out, unmatched_log=unmatched, limit_hours=limit, by=by,
                           participant=participant, arm=arm)


def _is_aware(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.DatetimeTZDtype)


def _contact_not_before(log: pd.DataFrame, lp: str, contact: pd.Series, flag_times: Any,
                        rows: Any, assigned: list[int | None] | None) -> None:
    c_t = list(contact)
    f_t = list(flag_times)
    for j in rows:
        ft = f_t[j] if assigned is None else f_t[assigned[j]]  # type: ignore[index]
        if c_t[j] is not pd.NaT and ft is not pd.NaT and c_t[j] < ft:
            raise ValueError(f"escalation log row {_py(log.index[j])!r} (participant "
                             f"{_py(log[lp].iloc[j])!r}): contact_time {c_t[j]} is before the flag "
                             f"time {ft}")


# --------------------------------------------------------------------------- summaries
