"""Run-level panels beyond the per-analysis fits: the multiplicity adjustment of the secondary
family, subgroup effects with their shrinkage, and the equity measures of the fairness panel.

Each function turns protocol sections into the specification objects of :mod:`analysis` and
returns JSON-ready data for ``results.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis.estimate import Estimate
from trials.errors import AnalysisError
from trials.protocol import Protocol


def multiplicity_adjustment(protocol: Protocol,
                            estimates: Mapping[str, Estimate]) -> dict[str, Any] | None:
    """Adjusted p-values of the protocol's secondary family, or None when it declares none.

    A hypothesis whose analysis gave no p-value (not fitted at this look) is left out of the
    family at this look and listed under ``not_tested``.
    """
    m = protocol.multiplicity
    if m is None:
        return None
    from analysis.multiplicity import MultiplicitySpec, adjust

    raw = {h: estimates[h].p_value for h in m.hypotheses
           if h in estimates and estimates[h].p_value is not None}
    order = tuple(h for h in m.hypotheses if h in raw)
    out: dict[str, Any] = {"method": m.method, "alpha": m.alpha, "order": list(m.hypotheses),
                           "not_tested": [h for h in m.hypotheses if h not in raw]}
    if not raw:
        return {**out, "p_values": {}, "hypotheses": []}
    result = adjust(raw, MultiplicitySpec(method=m.method, alpha=m.alpha, order=order))
    d = result.to_dict()
    adjusted = {r["hypothesis"]: r["adjusted_p"] for r in d["rows"]}
    return {**out, "p_values": adjusted, "hypotheses": d["rows"],
            "stopped_at": d["stopped_at"]}


def _min_cell(protocol: Protocol) -> int:
    k = protocol.privacy.small_cell_threshold
    f = protocol.fairness
    return max(k, f.min_cell) if f is not None and f.min_cell is not None else max(k, 10)


def subgroup_effects(protocol: Protocol, scored: pd.DataFrame) -> list[dict[str, Any]]:
    """Per analysis named under ``fairness.subgroup_effects``: interaction-model effects by
    subgroup level (forest-plot data) with their Bayesian hierarchical shrinkage."""
    f = protocol.fairness
    if f is None or not f.subgroup_effects:
        return []
    from analysis.shrinkage import ShrinkageSpec, shrink
    from analysis.subgroups import SubgroupSpec, fit_subgroups
    from trials.stages import analysis_frame

    out = []
    for s in f.subgroup_effects:
        analysis = protocol.analysis(s.analysis)
        covariates = tuple(c for c in analysis.covariates if c not in protocol.subgroups)
        frame = analysis_frame(protocol, scored, analysis.id)
        people = scored.groupby("participant", sort=True)[list(protocol.subgroups)].first()
        frame = frame.drop(columns=[c for c in protocol.subgroups if c in frame.columns])
        frame = frame.join(people, on="participant")
        res = fit_subgroups(frame, SubgroupSpec(
            estimand=analysis.estimand, analysis=analysis.id, subgroups=protocol.subgroups,
            covariates=covariates, min_cell=_min_cell(protocol),
            interval_level=analysis.interval_level))
        entry: dict[str, Any] = {"analysis": analysis.id, "estimand": analysis.estimand,
                                 **res.to_dict()}
        if s.shrinkage:
            try:
                shrunk = shrink(res.rows, ShrinkageSpec(draws=s.draws, tune=s.tune,
                                                        chains=s.chains, seed=s.seed))
            except AnalysisError as exc:  # e.g. every level too small to report: say so
                entry["shrinkage"] = {"skipped": str(exc)}
            else:
                entry["shrinkage"] = shrunk.to_dict()
        out.append(entry)
    return out


def equity_measures(protocol: Protocol, scored: pd.DataFrame,
                    logs: Mapping[str, pd.DataFrame],
                    engagement: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """Attrition, engagement, red flags and adverse events by subgroup level and arm, with small
    cells (and the cells they could be worked back from) suppressed."""
    if protocol.fairness is None or not protocol.subgroups:
        return None
    from analysis.fairness import FairnessSpec
    from analysis.fairness import equity_measures as measure

    primary = protocol.estimands[0].variable
    people = scored.groupby("participant", sort=True)[["arm", *protocol.subgroups]].first()
    has = scored.loc[(scored["visit"] == primary.visit) & scored[primary.outcome].notna(),
                     "participant"].unique()
    people["attrited"] = ~people.index.isin(has)
    if protocol.safety.red_flags:
        flags = [f"flag_{f.id}" for f in protocol.safety.red_flags]
        any_flag = scored[flags].fillna(False).astype(bool).any(axis=1)
        people["red_flag"] = any_flag.groupby(scored["participant"]).any().reindex(
            people.index).fillna(False).astype(bool)
    ae = protocol.safety.adverse_events
    if ae is not None and "adverse_events" in logs:
        log = logs["adverse_events"]
        ids = log[ae.participant]
        people["adverse_event"] = people.index.isin(ids)
        serious = log[ae.serious].astype(str).str.strip().str.lower().isin(["true", "1", "yes"])
        people["serious_ae"] = people.index.isin(ids[serious])
    if engagement is not None and "sessions" in engagement.columns:
        people["engaged"] = engagement["sessions"].reindex(people.index).fillna(0) > 0
    primary_estimand = protocol.estimands[0].treatment
    result = measure(people.reset_index(), FairnessSpec(
        subgroups=protocol.subgroups, min_cell=_min_cell(protocol),
        experimental=primary_estimand.arm, comparator=primary_estimand.comparator))
    return result.to_dict()
