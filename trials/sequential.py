"""Group-sequential monitoring at a look: boundaries at the observed information, and the
criteria they imply for the decision engine.

The monitored analysis's estimate and standard error give Z (benefit positive). Boundaries come
from :mod:`designs.boundaries`, recomputed with the information observed at this look (a share
of ``planned_analysed``); earlier looks keep their planned fractions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.estimate import Estimate
from designs.boundaries import Boundaries, GroupSequentialDesign, HarmBoundary
from trials.decision import CriterionResult
from trials.protocol import GroupSequential, Protocol


@dataclass(frozen=True)
class LookMonitoring:
    """What the boundaries said at one look (serialisable for results and reports)."""

    look: str
    look_number: int
    observed_fraction: float
    z: float | None
    boundaries: Boundaries
    criteria: tuple[CriterionResult, ...]

    def to_dict(self) -> dict[str, Any]:
        k = self.look_number - 1
        b = self.boundaries.to_dict()
        return {
            "look": self.look, "look_number": self.look_number,
            "observed_fraction": self.observed_fraction, "z": self.z,
            "efficacy_z": b["efficacy_z"][k], "futility_z": b["futility_z"][k],
            "harm_z": b["harm_z"][k] if b.get("harm_z") else None,
            "boundaries": b,
        }


def design_of(gs: GroupSequential, fractions: tuple[float, ...]) -> GroupSequentialDesign:
    return GroupSequentialDesign(
        information_rates=fractions, alpha=gs.alpha, beta=gs.beta, efficacy=gs.efficacy,
        gamma_a=gs.gamma_a, futility=gs.futility, gamma_b=gs.gamma_b,
        binding_futility=gs.binding_futility,
        harm=HarmBoundary(z=gs.harm_z) if gs.harm_z is not None else None)


def monitored_completers(protocol: Protocol, scored: Any) -> int | None:
    """Participants of the monitored estimand's two arms with its outcome at its visit."""
    gs = protocol.group_sequential
    if gs is None:
        return None
    est = protocol.estimand(protocol.analysis(gs.analysis).estimand)
    v = est.variable
    at = scored[(scored["visit"] == v.visit) & scored[v.outcome].notna()
                & scored["arm"].isin([est.treatment.arm, est.treatment.comparator])]
    return int(at["participant"].nunique())


def recorded_fractions(entries: Sequence[Mapping[str, Any]], protocol: Protocol
                       ) -> dict[str, float]:
    """The information fraction observed at each earlier look, as its confirmatory run recorded
    it in the audit log (the latest run of each look counts)."""
    out: dict[str, float] = {}
    for e in entries:
        d = e.get("details") or {}
        if (e.get("event") == "run" and d.get("protocol_id") == protocol.id
                and not d.get("exploratory") and d.get("information_fraction") is not None):
            out[str(d["look"])] = float(d["information_fraction"])
    return out


def monitor(protocol: Protocol, estimates: Mapping[str, Estimate],
            look: str, earlier: Mapping[str, float] | None = None,
            completers: int | None = None) -> LookMonitoring | None:
    """Boundaries and boundary criteria at ``look``; ``None`` without group_sequential.

    ``earlier`` holds the information fractions observed at earlier looks (from the audit log,
    :func:`recorded_fractions`); the spending at those looks used them, so the boundary at this
    look is recomputed with them. An earlier look with no recorded run keeps its planned
    fraction.

    The information observed at an interim look is ``completers`` (participants of the two arms
    with the monitored estimand's outcome at its visit, counted by the pipeline) over
    ``planned_analysed``; without it, the analysis's ``n_analysed``, which for an MMRM counts
    everyone with any post-baseline visit and so overstates the information about the last one.
    """
    gs = protocol.group_sequential
    if gs is None:
        return None
    looks = [lk.id for lk in protocol.design.looks]
    k = looks.index(look)
    planned = tuple(lk.information_fraction for lk in protocol.design.looks)
    est = estimates.get(gs.analysis)
    target = gs.planned_analysed or protocol.design.planned_size
    final = k == len(looks) - 1
    if est is None:
        fraction = planned[k]
    else:
        n = completers if completers is not None else est.n_analysed
        fraction = 1.0 if final else min(n / target, 1.0)
    # Earlier looks at the fractions they observed (else planned), strictly increasing.
    before: list[float] = []
    for j in range(k):
        f = (earlier or {}).get(looks[j], planned[j])
        low = before[-1] + 1e-3 if before else 1e-3
        before.append(min(max(f, low), 1.0 - 1e-3 * (k - j + 1)))
    fraction = max(fraction, before[-1] + 1e-3) if k else max(fraction, 1e-3)
    if not final and fraction >= planned[k + 1]:
        fraction = planned[k + 1] - 1e-3
    observed = (*before, fraction)
    bounds = design_of(gs, planned).compute(observed)
    z = None
    if est is not None and est.std_error and est.std_error > 0:
        sign = -1.0 if gs.direction == "lower" else 1.0
        z = sign * est.estimate / est.std_error
    b = bounds.to_dict()
    crit = [_criterion("gs_efficacy", "success", gs, est, z, ">=", b["efficacy_z"][k], k, looks,
                       "efficacy boundary")]
    fut = b["futility_z"][k]
    if gs.futility is not None and fut is not None and not final:
        crit.append(_criterion("gs_futility", "futility", gs, est, z, "<=", fut, k, looks,
                               "futility boundary"))
    if gs.harm_z is not None:
        crit.append(_criterion("gs_harm", "harm", gs, est, z, "<=", -gs.harm_z, k, looks,
                               "harm boundary"))
    return LookMonitoring(look, k + 1, fraction, z, bounds, tuple(crit))


def _criterion(cid: str, kind: str, gs: GroupSequential, est: Estimate | None,
               z: float | None, comparator: str, threshold: float, k: int, looks: list[str],
               what: str) -> CriterionResult:
    method = {"success": gs.efficacy, "futility": gs.futility or ""}.get(kind, "constant")
    label = f"Group-sequential {what} ({method}), look {k + 1} of {len(looks)}"
    if est is None or z is None:
        return CriterionResult(cid, kind, label, gs.analysis, "z", comparator, threshold, None,
                               None, None, False, False,
                               f"Not evaluable: no estimate from {gs.analysis!r}.")
    met = z >= threshold if comparator == ">=" else z <= threshold
    word = {">=": "at or above", "<=": "at or below"}[comparator]
    text = (f"Z of {gs.analysis} (benefit positive) is {z:.3g}, "
            f"{word if met else 'not ' + word} the {what} {threshold:.3g}: "
            f"{'met' if met else 'not met'}.")
    return CriterionResult(cid, kind, label, gs.analysis, "z", comparator, float(threshold),
                           None, float(z), bool(met), est.reliable, True, text)


def open_summary(scored: Any, primary_outcome: str, primary_visit: int, k: int) -> dict[str, Any]:
    """The open (pooled, arm-blind) part of a monitoring report: recruitment, retention and
    the pooled primary outcome by visit, with small cells suppressed."""
    from trials.privacy import suppress

    people = scored.groupby("participant", sort=False).first()
    has = scored.loc[(scored["visit"] == primary_visit) & scored[primary_outcome].notna(),
                     "participant"].nunique()
    by_visit = []
    for visit, g in scored.groupby("visit", sort=True):
        vals = g[primary_outcome].dropna()
        by_visit.append({"visit": int(visit), "n": suppress(len(vals), k),
                         "mean": float(vals.mean()) if len(vals) >= k else None,
                         "sd": float(vals.std(ddof=1)) if len(vals) >= k else None})
    return {"randomised": suppress(len(people), k), "with_primary_outcome": suppress(has, k),
            "primary_by_visit": by_visit}
