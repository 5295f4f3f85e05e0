"""Adverse and serious adverse events by arm: exact per-arm proportions and arm differences.

Input is one row per event (participant, arm, serious, term) plus the number of participants
per arm: all randomised, or all exposed to the intervention (the caller chooses and says which;
with exposed denominators the caller also restricts the events to exposed participants).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from analysis.estimate import Estimate
from analysis.proportions import risk_difference

_TYPES = (("any", "ae_any"), ("serious", "sae_any"))


def clopper_pearson(x: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson ("exact") interval for a binomial proportion x / n.

    Notes
    -----
    With :math:`\\alpha = 1 - \\text{level}`, the limits are the beta quantiles
    :math:`L = B^{-1}(\\alpha/2;\\, x,\\, n - x + 1)` (0 when :math:`x = 0`) and
    :math:`U = B^{-1}(1 - \\alpha/2;\\, x + 1,\\, n - x)` (1 when :math:`x = n`), as in R's
    ``binom.test``. Clopper CJ, Pearson ES (1934) Biometrika 26:404-413.
    """
    for name, v in (("x", x), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if n < 1 or not 0 <= x <= n:
        raise ValueError(f"need 0 <= x <= n and n >= 1, got x={x}, n={n}")
    if not isinstance(level, float | int) or not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    alpha = 1 - level
    lower = 0.0 if x == 0 else float(stats.beta.ppf(alpha / 2, x, n - x + 1))
    upper = 1.0 if x == n else float(stats.beta.ppf(1 - alpha / 2, x + 1, n - x))
    return (lower, upper)


@dataclass(frozen=True)
class AdverseEvents:
    """Result of :func:`adverse_events`.

    ``estimates``: ``ae_any`` and ``sae_any`` (experimental minus control risk difference).
    ``by_arm``: tidy table, one row per (event type, arm). ``by_term``: participants and
    events per (event type, term, arm).
    """

    estimates: Mapping[str, Estimate]
    by_arm: pd.DataFrame
    by_term: pd.DataFrame
    population: str


def _py(value: Any) -> Any:
    """A numpy scalar as the plain Python value, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value


def _validate(events: pd.DataFrame, denominators: Mapping[str, int], experimental: str,
              control: str, cols: dict[str, str], level: float) -> pd.DataFrame:
    if not isinstance(events, pd.DataFrame):
        raise ValueError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    missing = [c for c in cols.values() if c not in events.columns]
    if missing:
        raise ValueError(f"events lacks column(s) {', '.join(map(repr, missing))}")
    if not isinstance(denominators, Mapping) or not denominators:
        raise ValueError("denominators must map each arm to its number of participants")
    for a, n in denominators.items():
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"denominators[{a!r}] must be a positive integer, got {n!r}")
    for role, a in (("experimental", experimental), ("control", control)):
        if a not in denominators:
            raise ValueError(f"{role} arm {a!r} has no denominator")
    if experimental == control:
        raise ValueError(f"experimental and control are the same arm {control!r}")
    if not isinstance(level, float | int) or not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    pid, arm, serious, term = cols["participant"], cols["arm"], cols["serious"], cols["term"]
    for c in (pid, arm, serious, term):
        bad = events.index[events[c].isna()]
        if len(bad):
            raise ValueError(f"events row {_py(bad[0])!r}: {c!r} is missing")
    unknown = events.index[~events[arm].isin(list(denominators))]
    if len(unknown):
        raise ValueError(f"events row {_py(unknown[0])!r}: arm "
                         f"{_py(events.at[unknown[0], arm])!r} has "
                         "no denominator")
    flag = events[serious]
    ok = flag.map(lambda v: isinstance(v, bool | np.bool_) or (
        isinstance(v, int | np.integer) and v in (0, 1)))
    if not ok.all():
        row = events.index[~ok.to_numpy()][0]
        raise ValueError(f"events row {_py(row)!r}: {serious!r} must be True/False, got "
                         f"{_py(events.at[row, serious])!r}")
    arms_per = events.groupby(pid, sort=True)[arm].nunique()
    if (arms_per > 1).any():
        raise ValueError(f"participant {_py(arms_per.index[arms_per > 1][0])!r} has events in "
                         "more than one arm")
    out = events[[pid, arm, term]].copy()
    out.columns = ["participant", "arm", "term"]
    out["serious"] = flag.astype(bool).to_numpy()
    return out


def adverse_events(
    events: pd.DataFrame,
    denominators: Mapping[str, int],
    *,
    experimental: str,
    control: str,
    population: Literal["randomised", "exposed"] = "randomised",
    participant: str = "participant",
    arm: str = "arm",
    serious: str = "serious",
    term: str = "term",
    level: float = 0.95,
) -> AdverseEvents:
    """Adverse events (any, and serious) by arm, and experimental minus control.

    Parameters
    ----------
    events : DataFrame
        One row per event, with ``participant``, ``arm``, ``serious`` (bool) and ``term``.
        Participants without events do not appear; they are in the denominators.
    denominators : mapping
        Participants per arm (every arm in ``events`` must have one).
    experimental, control : str
        The arms compared; the estimates are experimental minus control.
    population : {"randomised", "exposed"}
        Which participants the denominators count; recorded in the result.
    level : float
        Level of the Clopper-Pearson and Newcombe intervals.

    Returns
    -------
    AdverseEvents
        ``estimates["ae_any"]`` and ``estimates["sae_any"]``: the difference in the share of
        participants with at least one (serious) event, Newcombe hybrid score interval and
        two-sided Fisher exact p (:func:`analysis.proportions.risk_difference`); ``by_arm``:
        per event type and arm, ``n`` (denominator), ``participants_with_event``,
        ``n_events``, ``proportion`` with Clopper-Pearson ``ci_lower``/``ci_upper`` and
        ``events_per_participant`` (events / denominator); ``by_term``.

    Notes
    -----
    Counts are raw: suppress small cells before sharing.
    """
    if population not in ("randomised", "exposed"):
        raise ValueError(f"population must be 'randomised' or 'exposed', got {population!r}")
    cols = {"participant": participant, "arm": arm, "serious": serious, "term": term}
    ev = _validate(events, denominators, experimental, control, cols, level)
    arms = list(denominators)
    rows: list[dict[str, Any]] = []
    estimates: dict[str, Estimate] = {}
    for kind, analysis_id in _TYPES:
        sub = ev if kind == "any" else ev[ev["serious"]]
        people = sub.groupby("arm", sort=False)["participant"].nunique()
        count = sub.groupby("arm", sort=False).size()
        x = {a: int(people.get(a, 0)) for a in arms}
        k = {a: int(count.get(a, 0)) for a in arms}
        for a in arms:
            n = int(denominators[a])
            if x[a] > n:
                raise ValueError(f"arm {a!r}: {x[a]} participants with events but a "
                                 f"denominator of {n}")
            lo, hi = clopper_pearson(x[a], n, level)
            rows.append({"event_type": kind, "arm": a, "n": n, "participants_with_event": x[a],
                         "n_events": k[a], "proportion": x[a] / n, "ci_lower": lo,
                         "ci_upper": hi, "ci_level": float(level),
                         "events_per_participant": k[a] / n, "population": population})
        est = risk_difference(x[experimental], int(denominators[experimental]), x[control],
                              int(denominators[control]), level=level, estimand=analysis_id,
                              analysis=analysis_id, arms=(experimental, control))
        cp = {a: clopper_pearson(x[a], int(denominators[a]), level)
              for a in (experimental, control)}
        estimates[analysis_id] = replace(est, details={
            **est.details,
            "event_type": kind,
            "population": population,
            "n_events": {a: k[a] for a in (experimental, control)},
            "clopper_pearson": {a: list(v) for a, v in cp.items()},
        })
    by_arm = pd.DataFrame(rows)
    term_rows = []
    for kind, _ in _TYPES:
        sub = ev if kind == "any" else ev[ev["serious"]]
        for (t, a), g in sub.groupby(["term", "arm"], sort=True):
            n = int(denominators[a])
            term_rows.append({"event_type": kind, "term": t, "arm": a, "n": n,
                              "participants_with_event": int(g["participant"].nunique()),
                              "n_events": len(g)})
    by_term = pd.DataFrame(term_rows, columns=["event_type", "term", "arm", "n",
                                               "participants_with_event", "n_events"])
    return AdverseEvents(estimates=estimates, by_arm=by_arm, by_term=by_term,
                         population=population)


__all__ = ["AdverseEvents", "adverse_events", "clopper_pearson"]
