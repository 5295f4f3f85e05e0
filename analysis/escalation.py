"""Escalation timeliness as numbers: per-arm summaries and Estimates usable by harm criteria.

Matching flags to the escalation log is outcome measurement and lives in
:mod:`outcomes.escalation`; this module summarises the matched flags.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimate import Estimate
from analysis.proportions import wilson_interval
from outcomes.escalation import (
    NOT_RECORDED,
    OVERALL,
    EscalationMatch,
    _limit,
    _no_missing,
    _require,
)


def _flag_frame(matched: EscalationMatch | pd.DataFrame, arm_column: str | None
                ) -> tuple[pd.DataFrame, str, pd.DataFrame | None, float | None]:
    if isinstance(matched, EscalationMatch):
        frame, arm, extra, limit = (matched.flags, arm_column or matched.arm,
                                    matched.unmatched_log, matched.limit_hours)
    elif isinstance(matched, pd.DataFrame):
        frame, arm, extra, limit = matched, arm_column or "arm", None, None
    else:
        raise ValueError("matched must be an EscalationMatch or its flags DataFrame, got "
                         f"{type(matched).__name__}")
    _require(frame, [arm, "escalated", "hours_to_contact", "missed", "outcome"],
             "matched flags")
    _no_missing(frame, arm, "matched flags")
    if (frame[arm].astype(str) == OVERALL).any():
        raise ValueError(f"an arm may not be called {OVERALL!r}: that label is the total row")
    return frame, arm, extra, limit


def _log_arms(matched: EscalationMatch | pd.DataFrame, extra: pd.DataFrame | None,
              arm: str) -> pd.Series:
    """The arm of each unmatched log entry: its own ``arm`` column, else the participant's arm
    among the flags; NaN when neither is known (counted in the overall row only)."""
    if extra is None or not len(extra):
        return pd.Series([], dtype=object)
    if arm in extra.columns:
        return extra[arm]
    assert isinstance(matched, EscalationMatch)
    arms = matched.flags.groupby(matched.participant, sort=False)[arm].first()
    pid = matched.participant if matched.participant in extra.columns else None
    if pid is None:
        return pd.Series([np.nan] * len(extra), index=extra.index, dtype=object)
    return extra[pid].map(arms)


def escalation_summary(
    matched: EscalationMatch | pd.DataFrame,
    arm_column: str | None = None,
    limit_hours: float | None = None,
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """Escalation timeliness by arm and overall.

    Parameters
    ----------
    matched : EscalationMatch or DataFrame
        The result of :func:`match_escalations` (or its ``flags`` frame).
    arm_column : str, optional
        The arm column (default: the one given to :func:`match_escalations`, else ``"arm"``).
    limit_hours : float, optional
        The limit for ``n_within_limit`` (default: the one used when matching).
    level : float
        Level of the Wilson interval for the share within the limit.

    Returns
    -------
    DataFrame
        Indexed by arm (sorted) then ``"overall"``, with ``n_flags``, ``n_escalated``,
        ``n_contacted``, ``n_within_limit``, ``share_within_limit``, ``ci_lower``,
        ``ci_upper``, ``ci_level``, ``limit_hours``, ``median_hours``, ``q1_hours``,
        ``q3_hours``, ``n_missed``, ``n_log_without_flag`` and ``outcome_counts`` (a dict of
        outcome category to number of escalated flags, sorted by category).

    Notes
    -----
    The share within the limit is over *all* flags (a missed flag was not followed up in
    time), with the Wilson score interval. Median and quartiles of hours to contact are over
    contacted flags (linear interpolation, R's type 7); NaN when none was contacted. Counts
    are raw: suppress small cells before sharing.
    """
    frame, arm, extra, matched_limit = _flag_frame(matched, arm_column)
    if limit_hours is None:
        if matched_limit is None:
            raise ValueError("limit_hours is required when matched is a DataFrame")
        limit_hours = matched_limit
    limit = _limit(limit_hours)
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    log_arms = _log_arms(matched, extra, arm)
    rows: dict[str, dict[str, Any]] = {}
    groups = [(str(a), g) for a, g in frame.groupby(arm, sort=True)] + [(OVERALL, frame)]
    for label, g in groups:
        hours = g["hours_to_contact"].astype(float)
        n = len(g)
        within = int((hours <= limit).sum())
        lo, hi = wilson_interval(within, n, level)
        contacted = hours.dropna().to_numpy()
        q1, med, q3 = (np.quantile(contacted, [0.25, 0.5, 0.75]) if len(contacted)
                       else (np.nan, np.nan, np.nan))
        esc = g.loc[g["escalated"].astype(bool), "outcome"]
        counts = esc.fillna(NOT_RECORDED).astype(str).value_counts()
        orphan = (len(log_arms) if label == OVERALL
                  else int((log_arms.astype(str) == label).sum()) if len(log_arms) else 0)
        rows[label] = {
            "n_flags": n,
            "n_escalated": int(g["escalated"].astype(bool).sum()),
            "n_contacted": len(contacted),
            "n_within_limit": within,
            "share_within_limit": within / n if n else math.nan,
            "ci_lower": lo,
            "ci_upper": hi,
            "ci_level": level,
            "limit_hours": limit,
            "median_hours": float(med),
            "q1_hours": float(q1),
            "q3_hours": float(q3),
            "n_missed": int(g["missed"].astype(bool).sum()),
            "n_log_without_flag": orphan,
            "outcome_counts": {k: int(counts[k]) for k in sorted(counts.index)},
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "arm"
    return table


def escalation_estimates(
    matched: EscalationMatch | pd.DataFrame,
    arm_column: str | None = None,
    limit_hours: float | None = None,
    *,
    level: float = 0.95,
) -> dict[str, Estimate]:
    """Escalation measures as :class:`Estimate` records that harm criteria can read.

    Returns
    -------
    dict
        ``missed_escalations``: estimate = number of missed escalations overall (engine
        ``"exact"``, model ``"count"``; a count has no standard error or interval, so those
        are NaN and a criterion must read ``estimate``). ``escalation_within_limit``:
        estimate = share of all flags contacted within ``limit_hours`` overall, with the
        Wilson interval (the standard error is the Wald one, for information).

    Notes
    -----
    Both are overall measures, not arm differences. ``n_analysed`` is the number of flags and
    ``n_by_arm`` the flags per arm; ``details["events"]`` and ``details["proportions"]`` hold
    the per-arm numerators and shares (the same keys as the red-flag safety estimates, so
    the same small-cell suppression applies). Log entries that matched no flag are counted in
    ``details["n_log_without_flag"]`` and named in ``warnings``.
    """
    table = escalation_summary(matched, arm_column, limit_hours, level=level)
    arms = [a for a in table.index if a != OVERALL]
    total = table.loc[OVERALL]
    n = int(total["n_flags"])
    n_by_arm = {a: int(table.at[a, "n_flags"]) for a in arms}
    warnings: list[str] = []
    orphans = int(total["n_log_without_flag"])
    if orphans:
        warnings.append(f"{orphans} escalation log entr{'y' if orphans == 1 else 'ies'} "
                        "matched no red flag")
    if n == 0:
        warnings.append("no red flags: the share within the limit is undefined")
    common = {"limit_hours": float(total["limit_hours"]), "n_flags": n,
              "n_log_without_flag": orphans}

    def share(col: str, a: str) -> float:
        k = int(table.at[a, "n_flags"])
        return int(table.at[a, col]) / k if k else math.nan

    missed = int(total["n_missed"])
    p = float(total["share_within_limit"])
    return {
        "missed_escalations": Estimate(
            estimand="missed_escalations", analysis="missed_escalations", engine="exact",
            model="count", estimate=float(missed), std_error=math.nan, ci_lower=math.nan,
            ci_upper=math.nan, ci_level=level, n_analysed=n, n_by_arm=n_by_arm,
            warnings=tuple(warnings),
            details={**common, "measure": "number of red flags with no escalation entry or "
                                          "no contact time",
                     "events": {a: int(table.at[a, "n_missed"]) for a in arms},
                     "proportions": {a: share("n_missed", a) for a in arms}},
        ),
        "escalation_within_limit": Estimate(
            estimand="escalation_within_limit", analysis="escalation_within_limit",
            engine="exact", model="proportion_wilson", estimate=p,
            std_error=math.sqrt(p * (1 - p) / n) if n else math.nan,
            ci_lower=float(total["ci_lower"]), ci_upper=float(total["ci_upper"]),
            ci_level=level, n_analysed=n, n_by_arm=n_by_arm, warnings=tuple(warnings),
            details={**common, "measure": "share of red flags with clinician contact within "
                                          "the limit",
                     "events": {a: int(table.at[a, "n_within_limit"]) for a in arms},
                     "proportions": {a: share("n_within_limit", a) for a in arms}},
        ),
    }


__all__ = [
    "escalation_estimates",
    "escalation_summary",
]
