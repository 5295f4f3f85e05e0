"""The run's results as plain, deterministic, shareable data (small cells suppressed)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.estimate import Estimate
from trials.data import Intake
from trials.measures import Measures, summarise_engagement
from trials.privacy import suppress
from trials.protocol import Protocol
from trials.stages import Fits

RESULTS_SCHEMA = "trials.results/1"


def _cell(n: int, threshold: int) -> int | str:
    return suppress(n, threshold)


def summarise(protocol: Protocol, intake: Intake, scored: pd.DataFrame, fits: Fits,
              safety: dict[str, Estimate], look: str, exploratory: bool,
              measures: Measures | None = None) -> dict[str, Any]:
    """The run's results as plain, deterministic data (no times, no participant IDs)."""
    k = protocol.privacy.small_cell_threshold
    arms = [a.id for a in protocol.design.arms]
    people = scored.groupby("participant", sort=True).first()
    primary = protocol.estimands[0]
    at_primary = scored.loc[(scored["visit"] == primary.variable.visit)
                            & scored[primary.variable.outcome].notna()]
    analysed = next((e.n_by_arm for e in fits.estimates.values()
                     if e.estimand == primary.id and e.engine == "frequentist"), {})
    flow = {
        a: {
            "randomised": _cell(int((people["arm"] == a).sum()), k),
            "with_primary_outcome": _cell(int((at_primary["arm"] == a).sum()), k),
            "analysed_primary": _cell(int(analysed.get(a, 0)), k),
        }
        for a in arms
    }
    outcomes: dict[str, Any] = {}
    for outcome in protocol.outcomes:
        inst = protocol.instrument(outcome.id)
        rows = []
        for (arm, visit), g in scored.groupby(["arm", "visit"], sort=True):
            if visit not in outcome.visits:
                continue
            vals = g[outcome.id].dropna()
            small = len(vals) < k
            rows.append({"arm": arm, "visit": int(visit), "n": _cell(len(vals), k),
                         "mean": None if small else float(vals.mean()),
                         "sd": None if small or len(vals) < 2 else float(vals.std(ddof=1)),
                         "n_prorated": _cell(int(g[f"{outcome.id}_prorated"].sum()), k)})
        outcomes[outcome.id] = {"instrument": inst.name, "missing_rule": inst.missing_rule,
                                "source": inst.source, "by_arm_visit": rows}
    red_flags = []
    for flag in protocol.safety.red_flags:
        est = safety[flag.id]
        col = scored[f"flag_{flag.id}"]
        by_arm = {}
        for a in arms:
            in_arm = scored["arm"] == a
            by_arm[a] = {
                "participants_flagged": _cell(int(est.details["events"].get(a, 0)), k),
                "participants_assessed": _cell(int(est.n_by_arm.get(a, 0)), k),
                "flagged_visits_all": _cell(int(col[in_arm].fillna(False).sum()), k),
                "visits_not_screened": _cell(int(col[in_arm].isna().sum()), k),
            }
        red_flags.append({"id": flag.id, "label": flag.label, "window": flag.window,
                          "by_arm": by_arm, "estimate": _public_estimate(est, k)})
    return {
        "schema": RESULTS_SCHEMA,
        "protocol": {"id": protocol.id, "title": protocol.title, "version": protocol.version,
                     "sha256": protocol.sha256()},
        "look": look,
        "exploratory": exploratory,
        "data": {"sources": list(intake.sources),
                 "dropped_identifiers": list(intake.dropped_identifiers),
                 "participants": _cell(len(people), k), "rows": int(len(scored))},
        "arms": [{"id": a.id, "label": a.label, "control": a.control}
                 for a in protocol.design.arms],
        "flow": flow,
        "estimands": [
            {"id": e.id, "label": e.label, "population": e.population,
             "outcome": e.variable.outcome, "visit": e.variable.visit,
             "measure": e.variable.measure, "arm": e.treatment.arm,
             "comparator": e.treatment.comparator, "summary": e.summary,
             "intercurrent_events": [ie.model_dump(mode="json") for ie in e.intercurrent_events],
             "clinically_important_difference": e.clinically_important_difference,
             "analyses": [a.id for a in protocol.analyses if a.estimand == e.id]}
            for e in protocol.estimands
        ],
        "estimates": [_shared_estimate(fits.estimates[a.id], k) for a in protocol.analyses],
        "outcomes": outcomes,
        "safety": {"red_flags": red_flags},
        "fairness": fairness_panel(protocol, scored),
        "small_cell_threshold": k,
        **measures_summary(protocol, measures or Measures(), k),
    }


def _public_estimate(est: Estimate, k: int) -> dict[str, Any]:
    """A safety estimate as shared: event counts of 1..k-1 suppressed, and with them every
    number from which they could be worked back (shares, difference, interval)."""
    d = est.to_dict()
    events = {a: _cell(v, k) for a, v in est.details["events"].items()}
    hidden = any(isinstance(v, str) for v in events.values())
    d["details"] = {"events": events,
                    "proportions": {a: None if hidden else p
                                    for a, p in est.details["proportions"].items()}}
    d["n_by_arm"] = {a: _cell(v, k) for a, v in est.n_by_arm.items()}
    if hidden:
        d.update(estimate=None, ci_lower=None, ci_upper=None, std_error=None)
        d["warnings"] = [*d["warnings"], "small cells: counts and the difference are suppressed "
                         "in shared outputs (the decision used the full data)"]
    d["suppressed"] = hidden
    return d


def _shared_estimate(est: Estimate, k: int) -> dict[str, Any]:
    d = est.to_dict()
    d["n_by_arm"] = {a: _cell(v, k) for a, v in est.n_by_arm.items()}
    return d


def fairness_panel(protocol: Protocol, scored: pd.DataFrame) -> list[dict[str, Any]]:
    """Randomised and retained (primary outcome observed) by subgroup level and arm, with small
    cells suppressed; a share is shown only when neither its numerator nor its complement is a
    small cell (otherwise the count could be worked back)."""
    k = protocol.privacy.small_cell_threshold
    primary = protocol.estimands[0]
    people = scored.groupby("participant", sort=True).first()
    has = scored.loc[(scored["visit"] == primary.variable.visit)
                     & scored[primary.variable.outcome].notna(), "participant"].unique()
    people["retained"] = people.index.isin(has)
    rows = []
    for var in protocol.subgroups:
        for (level, arm), g in people.groupby([var, "arm"], sort=True):
            n, r = len(g), int(g["retained"].sum())
            dropped = n - r
            show_share = n >= k and not (0 < r < k) and not (0 < dropped < k)
            rows.append({"subgroup": var, "level": str(level), "arm": arm,
                         "randomised": _cell(n, k),
                         "retained": _cell(r, k) if show_share else None,
                         "retention": float(r / n) if show_share else None,
                         "suppressed": not show_share, "too_small": n < k})
    return rows


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _share_or_none(x: int, n: int, k: int) -> float | None:
    """A share that cannot be used to work back a small count (numerator or complement)."""
    if n == 0 or 0 < x < k or 0 < n - x < k:
        return None
    return x / n


def _psychometrics_row(row: dict[str, Any], k: int) -> dict[str, Any]:
    counts = {c: _cell(int(row[c]), k) for c in ("n", "n_complete") if c in row}
    out = {**row, **counts}
    if any(isinstance(v, str) for v in counts.values()) and out.get("notes"):
        out["notes"] = f"fewer than {k} respondents"  # notes may name the small count
    return out


def measures_summary(protocol: Protocol, m: Measures, k: int) -> dict[str, Any]:
    """Responders, psychometrics, escalation, adverse events and engagement, as shared."""
    out: dict[str, Any] = {}
    by_id = {r.id: r for r in protocol.responders}
    out["responders"] = [
        {"id": rid, "label": by_id[rid].label, "kind": by_id[rid].kind.value,
         "outcome": by_id[rid].outcome, "paired_outcome": by_id[rid].paired_outcome,
         "visit": by_id[rid].visit, "estimate": _public_estimate(est, k)}
        for rid, est in m.responders.items()
    ]
    out["psychometrics"] = {oid: [_psychometrics_row(r, k) for r in _records(t)]
                            for oid, t in m.psychometrics.items()}
    if m.escalation is not None:
        counts = ["n_flags", "n_escalated", "n_contacted", "n_within_limit", "n_missed",
                  "n_log_without_flag"]
        rows = []
        for row in _records(m.escalation.summary):
            share = _share_or_none(int(row["n_within_limit"]), int(row["n_flags"]), k)
            shown = {c: _cell(int(row[c]), k) for c in counts if c in row}
            rows.append({
                "group": row.get("index", row.get("arm")), **shown,
                "share_within_limit": share,
                "ci_lower": row["ci_lower"] if share is not None else None,
                "ci_upper": row["ci_upper"] if share is not None else None,
                "limit_hours": row["limit_hours"], "median_hours": row["median_hours"],
                "q1_hours": row["q1_hours"], "q3_hours": row["q3_hours"],
                "outcomes": {str(o): _cell(int(n), k)
                             for o, n in sorted(row["outcome_counts"].items())},
            })
        out["escalation"] = {
            "limit_hours": protocol.safety.escalation.limit_hours
            if protocol.safety.escalation else None,
            "summary": rows,
            "log_entries_without_flag": _cell(m.escalation.unmatched, k),
            "estimates": [_public_estimate(e, k) for e in m.escalation.estimates.values()],
        }
    if m.adverse_events is not None:
        rows = []
        for row in _records(m.adverse_events.by_arm):
            x, n = int(row["participants_with_event"]), int(row["n"])
            hidden = 0 < x < k
            rows.append({"event_type": row["event_type"], "arm": row["arm"],
                         "participants": _cell(n, k),
                         "participants_with_event": _cell(x, k),
                         "events": _cell(int(row["n_events"]), k),
                         "proportion": None if hidden else row["proportion"],
                         "ci_lower": None if hidden else row["ci_lower"],
                         "ci_upper": None if hidden else row["ci_upper"]})
        out["adverse_events"] = {
            "by_arm": rows,
            "estimates": [_public_estimate(e, k) for e in m.adverse_events.estimates.values()],
        }
    if m.reliability is not None:
        out["reliability"] = m.reliability
    if m.clinician_ratings is not None:
        out["clinician_ratings"] = m.clinician_ratings
    if m.engagement is not None:
        out["engagement"] = {
            **summarise_engagement(m.engagement, k),
            "exploratory_estimates": [_shared_estimate(e, k)
                                      for e in m.engagement.estimates.values()],
        }
    return out
