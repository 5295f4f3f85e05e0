"""The run's results as plain, deterministic, shareable data (small cells suppressed)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimate import Estimate
from analysis.fairness import suppression_pattern
from trials.data import Intake
from trials.measures import Measures, summarise_engagement
from trials.privacy import suppress
from trials.protocol import Protocol
from trials.stages import Fits, bayes_spec

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
             "analyses": [a.id for a in protocol.analyses
                          if a.estimand == e.id and a.id in fits.estimates]}
            for e in protocol.estimands
        ],
        "estimates": [_shared_estimate(fits.estimates[a.id], k) for a in protocol.analyses
                      if a.id in fits.estimates],
        "outcomes": outcomes,
        "safety": {"red_flags": red_flags},
        "fairness": fairness_panel(protocol, scored),
        "small_cell_threshold": k,
        **measures_summary(protocol, measures or Measures(), k),
        "baseline": baseline_table(protocol, scored),
        "consort": consort_flow(protocol, scored, analysed, measures or Measures()),
        "pooled": pooled_summary(protocol, scored, safety, measures or Measures()),
        "analysis_plan": analysis_plan(protocol),
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
        groups = dict(tuple(people.groupby([var, "arm"], sort=True)))
        levels = sorted({lv for lv, _ in groups})
        arms = sorted({a for _, a in groups})
        counts = np.array([[len(groups[(lv, a)]) if (lv, a) in groups else 0 for a in arms]
                           for lv in levels], dtype=np.int64)
        # complementary suppression: no hidden count may be worked back from published totals
        _, _, hidden = suppression_pattern(counts, k)
        for (level, arm), g in groups.items():
            n, r = len(g), int(g["retained"].sum())
            dropped = n - r
            withheld = bool(hidden[levels.index(level), arms.index(arm)])
            show_share = (n >= k and not withheld and not (0 < r < k)
                          and not (0 < dropped < k))
            rows.append({"subgroup": var, "level": str(level), "arm": arm,
                         "randomised": None if withheld and n >= k else _cell(n, k),
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


# --------------------------------------------------------------------------- report sections
# What the full and monitoring reports show beyond the brief: Table 1, the CONSORT flow, the
# pooled (arm-blind) view for the open part of a monitoring report, the analysis plan and the
# protocol's lock chain. The same small-cell rules as above apply.


def _level_cell(x: int, n: int, k: int) -> dict[str, Any]:
    """A category count and its percentage of ``n``; both are withheld when the count or its
    complement is a small cell (as in :func:`fairness_panel`)."""
    share = _share_or_none(x, n, k)
    hidden = share is None and x > 0
    return {"n": None if hidden and x >= k else _cell(x, k),
            "percent": None if share is None else 100 * share, "suppressed": hidden}


def baseline_table(protocol: Protocol, scored: pd.DataFrame) -> dict[str, Any]:
    """Table 1: participant characteristics and baseline scores by arm, among the randomised.

    Categories are the protocol's participant columns (missing values counted as their own
    row); baseline scores are mean (SD) of every outcome with a baseline visit. A mean or SD
    rests on at least ``small_cell_threshold`` people.
    """
    k = protocol.privacy.small_cell_threshold
    arms = [a.id for a in protocol.design.arms]
    people = scored.groupby("participant", sort=True).first()
    sizes = {a: int((people["arm"] == a).sum()) for a in arms}
    categorical = []
    for var in protocol.data.participant_columns:
        values = people[var].astype("string")
        levels: list[str | None] = sorted(str(v) for v in values.dropna().unique())
        if values.isna().any():
            levels.append(None)
        counts = np.array([[int(((people["arm"] == a) & (values.isna() if level is None
                                                          else values == level)).sum())
                            for a in arms] for level in levels], dtype=np.int64)
        # Arm sizes are published, so a lone hidden count in an arm could be worked back by
        # subtraction: withhold further cells until no hidden count is determined by the totals.
        _, _, hidden = suppression_pattern(counts, k)
        rows = []
        for i, level in enumerate(levels):
            by_arm = {}
            for j, a in enumerate(arms):
                cell = _level_cell(int(counts[i, j]), sizes[a], k)
                if hidden[i, j] and not cell["suppressed"]:
                    cell = {"n": None, "percent": None, "suppressed": True}
                by_arm[a] = cell
            rows.append({"level": level, "by_arm": by_arm})
        categorical.append({"variable": var, "subgroup": var in protocol.subgroups,
                            "stratum": var in protocol.design.strata, "levels": rows})
    continuous = []
    for outcome in protocol.outcomes:
        if outcome.baseline_visit is None:
            continue
        at = scored.loc[scored["visit"] == outcome.baseline_visit]
        by_arm = {}
        for a in arms:
            vals = at.loc[at["arm"] == a, outcome.id].dropna()
            small = len(vals) < k
            by_arm[a] = {"n": _cell(len(vals), k),
                         "missing": _cell(sizes[a] - len(vals), k),
                         "mean": None if small else float(vals.mean()),
                         "sd": None if small or len(vals) < 2 else float(vals.std(ddof=1))}
        continuous.append({"outcome": outcome.id,
                           "instrument": protocol.instrument(outcome.id).name,
                           "visit": outcome.baseline_visit, "by_arm": by_arm})
    return {"randomised": {a: _cell(n, k) for a, n in sizes.items()},
            "categorical": categorical, "continuous": continuous}


def consort_flow(protocol: Protocol, scored: pd.DataFrame, analysed: dict[str, int],
                 measures: Measures) -> dict[str, Any]:
    """The CONSORT flow by arm: allocated, used the intervention (when an engagement log is
    given), with and without the primary outcome, excluded from and included in the primary
    analysis. Eligibility screening is not in the trial data, so it is not reported here."""
    k = protocol.privacy.small_cell_threshold
    primary = protocol.estimands[0]
    people = scored.groupby("participant", sort=True).first()
    has = scored.loc[(scored["visit"] == primary.variable.visit)
                     & scored[primary.variable.outcome].notna(), ["participant", "arm"]]
    used = None
    if measures.engagement is not None:
        pp = measures.engagement.per_participant
        used = pp.loc[pp["sessions"] > 0].groupby("arm").size()
    arms = {}
    for a in (arm.id for arm in protocol.design.arms):
        n = int((people["arm"] == a).sum())
        with_outcome = int(has.loc[has["arm"] == a, "participant"].nunique())
        n_analysed = int(analysed.get(a, 0))
        # A complete-case analysis (ANCOVA) analyses people with the outcome at the primary
        # visit, minus those missing a covariate. A likelihood-based repeated-measures analysis
        # (MMRM) also uses people seen only at earlier visits (valid under MAR): it excludes
        # those with no post-baseline outcome or a missing covariate.
        earlier_only = max(n_analysed - with_outcome, 0)
        excluded = (n - n_analysed) if earlier_only else (with_outcome - n_analysed)
        arms[a] = {"allocated": _cell(n, k),
                   "used_intervention": None if used is None else _cell(int(used.get(a, 0)), k),
                   "with_primary_outcome": _cell(with_outcome, k),
                   "without_primary_outcome": _cell(n - with_outcome, k),
                   "excluded_from_analysis": _cell(excluded, k),
                   "analysed_with_earlier_visits_only": _cell(earlier_only, k),
                   "analysed": _cell(n_analysed, k)}
    repeated = any(int(analysed.get(a.id, 0)) > 0 for a in protocol.design.arms) and any(
        arms[a]["analysed_with_earlier_visits_only"] not in (0, None) for a in arms)
    return {"randomised": _cell(len(people), k), "primary_visit": primary.variable.visit,
            "primary_outcome": primary.variable.outcome, "arms": arms,
            "exclusion_reason": ("no post-baseline outcome or a missing covariate" if repeated
                                 else "missing covariate")}


def _pooled_cell(by_arm: dict[str, int], k: int) -> int | str | None:
    """A total over arms. Withheld (``None``) when an arm's own count is a small cell but the
    total is not, since the total minus the shown arms would give that count back."""
    total = int(sum(by_arm.values()))
    if total >= k and any(0 < int(v) < k for v in by_arm.values()):
        return None
    return _cell(total, k)


def pooled_summary(protocol: Protocol, scored: pd.DataFrame, safety: dict[str, Estimate],
                   measures: Measures) -> dict[str, Any]:
    """The arm-blind view for the open part of a monitoring report: recruitment against the
    planned size, retention by visit, and safety counts pooled over arms."""
    k = protocol.privacy.small_cell_threshold
    primary = protocol.estimands[0].variable
    people = scored.groupby("participant", sort=True).first()
    n = len(people)
    retention = []
    for visit, g in scored.groupby("visit", sort=True):
        x = int(g.loc[g[primary.outcome].notna(), "participant"].nunique())
        share = _share_or_none(x, n, k)
        retention.append({"visit": int(visit), "with_outcome": _cell(x, k),
                          "share_of_randomised": share})
    red_flags = []
    for flag in protocol.safety.red_flags:
        est = safety[flag.id]
        red_flags.append({"id": flag.id, "label": flag.label,
                          "participants_flagged": _pooled_cell(est.details["events"], k),
                          "participants_assessed": _pooled_cell(est.n_by_arm, k)})
    adverse = []
    if measures.adverse_events is not None:
        t = measures.adverse_events.by_arm
        for event_type, g in t.groupby("event_type", sort=True):
            adverse.append({
                "event_type": str(event_type),
                "participants": _pooled_cell(dict(zip(g["arm"], g["n"], strict=True)), k),
                "participants_with_event": _pooled_cell(
                    dict(zip(g["arm"], g["participants_with_event"], strict=True)), k),
                "events": _pooled_cell(dict(zip(g["arm"], g["n_events"], strict=True)), k)})
    return {"planned_size": protocol.design.planned_size, "randomised": _cell(n, k),
            "primary_outcome": primary.outcome, "primary_visit": primary.visit,
            "retention_by_visit": retention,
            "safety": {"red_flags": red_flags, "adverse_events": adverse}}


def analysis_plan(protocol: Protocol) -> list[dict[str, Any]]:
    """Each pre-specified analysis as run: model, covariates, interval level and, for Bayesian
    fits, the prior, the sampler and the diagnostic thresholds in force (defaults filled in)."""
    plan = []
    for a in protocol.analyses:
        row: dict[str, Any] = {"id": a.id, "estimand": a.estimand, "engine": a.engine,
                               "model": a.model, "purpose": a.purpose,
                               "covariates": list(a.covariates),
                               "interval_level": a.interval_level}
        if a.engine == "bayesian" and a.model == "ancova":
            spec = bayes_spec(protocol, a)
            row.update(prior=asdict(spec.prior), sampler=asdict(spec.sampler),
                       diagnostics_gate=asdict(spec.gate))
        elif a.engine == "bayesian":  # the other families take a named prior set
            from trials.fitting import prior_set, sampler_and_gate
            sampler, gate = sampler_and_gate(a)
            row.update(prior=asdict(prior_set(protocol, a, a.prior)), sampler=asdict(sampler),
                       diagnostics_gate=asdict(gate))
        plan.append(row)
    return plan


def protocol_history(protocol: Protocol, lock: dict[str, Any] | None) -> dict[str, Any]:
    """The lock chain as shared: each version's number, event, SHA-256 and reason (lock and
    amendment times are left out so results stay deterministic), and whether this run's
    protocol is the latest locked version."""
    versions = [{"version": v["version"], "event": v.get("event"), "sha256": v["sha256"],
                 "reason": v.get("reason")} for v in (lock or {}).get("versions", [])]
    return {"versions": versions, "run_protocol_sha256": protocol.sha256(),
            "matches_latest_lock": bool(versions) and versions[-1]["sha256"] == protocol.sha256()}
