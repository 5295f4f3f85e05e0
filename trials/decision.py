"""Decision v1: predefined criteria evaluated against estimates, into a decision with rationale.

Rules (documented in ``docs/protocol.md``):

* any harm criterion met at the look -> STOP-FOR-HARM (harm is applied even to an estimate that
  failed its diagnostics gate: safety first, and the rationale says so);
* final look: GO when every success criterion is met by a reliable estimate and no futility
  criterion is met; otherwise NO-GO;
* interim look: futility met -> STOP-FUTILITY; every success criterion met reliably ->
  STOP-EFFICACY; otherwise CONTINUE. Group-sequential boundaries enter as criteria too
  (:mod:`trials.sequential`);
* secondary criteria read the multiplicity-adjusted p-value of their analysis (Holm, Hochberg,
  fixed-sequence or Bonferroni, as the protocol declares); they are reported as claims and never
  change the decision;
* a failed pre-specified falsification check turns a GO (or STOP-EFFICACY) into NOT
  INTERPRETABLE, with the check named in the rationale.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import pandas as pd

from analysis.estimate import Estimate
from trials.protocol import Criterion, CriterionKind, Protocol, Statistic


class Outcome(StrEnum):
    go = "go"
    no_go = "no_go"
    stop_for_harm = "stop_for_harm"
    continue_ = "continue"
    stop_efficacy = "stop_efficacy"  # interim looks: stop early for benefit
    stop_futility = "stop_futility"  # interim looks: stop early for futility
    not_interpretable = "not_interpretable"  # a falsification check failed


_STAT_WORDS = {
    Statistic.estimate: "estimate",
    Statistic.ci_lower: "lower {level} bound",
    Statistic.ci_upper: "upper {level} bound",
    Statistic.p_value: "p-value",
}
_CMP_WORDS = {"<": "below", "<=": "at or below", ">": "above", ">=": "at or above"}


@dataclass(frozen=True)
class CriterionResult:
    id: str
    kind: str
    label: str
    source: str  # the analysis or safety measure read
    statistic: str
    comparator: str
    threshold: float
    probability: float | None
    observed: float | None
    met: bool | None  # None: could not be evaluated
    reliable: bool
    counts_toward_decision: bool
    rationale: str


@dataclass(frozen=True)
class Decision:
    outcome: str  # an Outcome value
    label: str  # the protocol's label for it
    look: str
    final: bool
    exploratory: bool
    rationale: str
    criteria: tuple[CriterionResult, ...]

    @property
    def display_label(self) -> str:
        return f"EXPLORATORY {self.label}" if self.exploratory else self.label

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["criteria"] = [asdict(c) for c in self.criteria]
        out["display_label"] = self.display_label
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        crit = tuple(CriterionResult(**c) for c in data["criteria"])
        keys = ("outcome", "label", "look", "final", "exploratory", "rationale")
        return cls(**{k: data[k] for k in keys}, criteria=crit)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"criterion": c.id, "kind": c.kind, "observed": c.observed,
                 "rule": _rule_text(c), "met": c.met, "reliable": c.reliable,
                 "rationale": c.rationale}
                for c in self.criteria
            ]
        ).set_index("criterion")

    def _repr_html_(self) -> str:
        head = f"<h3>{html.escape(self.display_label)} (look: {html.escape(self.look)})</h3>"
        return head + f"<p>{html.escape(self.rationale)}</p>" + self.to_frame().to_html()


def _rule_text(c: CriterionResult) -> str:
    if c.statistic == Statistic.posterior_probability:
        return f"P(effect {c.comparator} {c.threshold:g}) >= {c.probability:g}"
    return f"{c.statistic} {c.comparator} {c.threshold:g}"


def _observed(c: Criterion, est: Estimate) -> float | None:
    if c.statistic == Statistic.posterior_probability:
        return est.probability(c.comparator.value, c.threshold)
    value = getattr(est, c.statistic.value)
    return None if value is None or not math.isfinite(value) else float(value)


def evaluate_criterion(c: Criterion, est: Estimate | None,
                       adjusted: Mapping[str, Any] | None = None) -> CriterionResult:
    """Evaluate one criterion; ``adjusted`` (for secondary criteria) holds the multiplicity
    adjustment of the family: ``method`` and ``p_values`` by analysis id."""
    source = c.analysis or c.safety or c.responder or ""
    base = dict(id=c.id, kind=c.kind.value, label=c.label, source=source,
                statistic=c.statistic.value, comparator=c.comparator.value,
                threshold=c.threshold, probability=c.probability)
    if est is None:
        return CriterionResult(**base, observed=None, met=None, reliable=False,
                               counts_toward_decision=False,
                               rationale=f"Not evaluable: no result for {source!r}.")
    observed = _observed(c, est)
    note = ""
    rows = {r["hypothesis"]: r for r in (adjusted or {}).get("hypotheses", [])}
    if (c.kind == CriterionKind.secondary and adjusted is not None
            and rows.get(source, {}).get("tested") is False):
        return CriterionResult(
            **base, observed=float(adjusted["p_values"][source]), met=False,
            reliable=est.reliable, counts_toward_decision=False,
            rationale=(f"Not tested: the fixed sequence stopped at "
                       f"{adjusted.get('stopped_at')} before reaching {source}, so this claim "
                       "cannot be made: not met."))
    if c.kind == CriterionKind.secondary and adjusted is not None and observed is not None:
        raw = observed
        observed = float(adjusted["p_values"][source])
        note = f" ({adjusted['method']}-adjusted; unadjusted {raw:.3g})"
    if observed is None:
        return CriterionResult(**base, observed=None, met=None, reliable=est.reliable,
                               counts_toward_decision=False,
                               rationale=f"Not evaluable: {source} gave no {c.statistic.value}.")
    if c.statistic == Statistic.posterior_probability:
        assert c.probability is not None
        met = observed >= c.probability
        text = (f"P(effect {c.comparator.value} {c.threshold:g}) under {source} is "
                f"{observed:.3f}, {'at or above' if met else 'below'} the required "
                f"{c.probability:g}")
    else:
        met = c.comparator.func(observed, c.threshold)
        level = f"{est.ci_level:.0%}"
        what = _STAT_WORDS[c.statistic].format(level=level)
        words = _CMP_WORDS[c.comparator.value]
        relation = words if met else "not " + words
        text = f"The {what} of {source} is {observed:.3g}{note}, {relation} {c.threshold:g}"
    counts = c.kind != CriterionKind.secondary
    if not est.reliable:
        if c.kind == CriterionKind.harm:
            text += " (the fit failed its diagnostics gate; harm is still applied: safety first)"
        else:
            counts = False
            text += " (the fit failed its diagnostics gate, so it cannot support the decision)"
    verdict = "met" if met else "not met"
    return CriterionResult(**base, observed=observed, met=bool(met), reliable=est.reliable,
                           counts_toward_decision=counts, rationale=f"{text}: {verdict}.")


def decide(
    protocol: Protocol,
    estimates: Mapping[str, Estimate],
    safety: Mapping[str, Estimate],
    look: str | None = None,
    exploratory: bool = False,
    responders: Mapping[str, Estimate] | None = None,
    extra: Sequence[CriterionResult] = (),
    adjusted: Mapping[str, Any] | None = None,
    falsification: Sequence[Mapping[str, Any]] = (),
) -> Decision:
    """Evaluate the protocol's criteria at ``look`` (the final look by default).

    ``extra`` holds criteria evaluated elsewhere, such as group-sequential boundaries
    (:mod:`trials.sequential`); they count like the protocol's own. ``adjusted`` is the
    multiplicity adjustment of the secondary family (``method``, ``p_values``);
    ``falsification`` the pre-specified checks (``check``, ``passed``, ``detail``).
    """
    look = look or protocol.design.final_look
    final = look == protocol.design.final_look
    responders = responders or {}

    def target(c: Criterion) -> Estimate | None:
        if c.analysis:
            return estimates.get(c.analysis)
        if c.safety:
            return safety.get(c.safety)
        return responders.get(c.responder or "")

    results = tuple(evaluate_criterion(c, target(c), adjusted)
                    for c in protocol.criteria_at(look))
    results += tuple(extra)
    harm = [r for r in results if r.kind == "harm" and r.met]
    success = [r for r in results if r.kind == "success"]
    futility = [r for r in results if r.kind == "futility" and r.met and r.counts_toward_decision]
    success_ok = bool(success) and all(r.met and r.counts_toward_decision for r in success)
    labels = protocol.decision.labels
    if harm:
        outcome = Outcome.stop_for_harm
        why = "Harm criteria met: " + "; ".join(r.id for r in harm) + "."
    elif futility:
        outcome = Outcome.no_go if final else Outcome.stop_futility
        why = "Futility criteria met: " + "; ".join(r.id for r in futility) + "."
        if success_ok:
            why += (" The success criteria were met too: the benefit is statistically clear "
                    "but too small to matter clinically.")
    elif success_ok:
        outcome = Outcome.go if final else Outcome.stop_efficacy
        why = "Every success criterion was met and no futility or harm criterion was met."
        if not final:
            why += " The trial can stop early for benefit at this interim look."
    elif final:
        outcome = Outcome.no_go
        failed = [r.id for r in success if not (r.met and r.counts_toward_decision)]
        why = ("Success criteria not met: " + "; ".join(failed) + "."
               if failed else "The protocol defines no success criterion at this look.")
    else:
        outcome = Outcome.continue_
        why = "No stopping criterion was met at this interim look."
    failed_checks = [f for f in falsification if not f["passed"]]
    if failed_checks and outcome in (Outcome.go, Outcome.stop_efficacy):
        was = outcome
        outcome = Outcome.not_interpretable
        why = (f"The criteria pointed to {labels.go if was == Outcome.go else labels.stop_efficacy}"
               ", but pre-specified falsification checks failed, so the result cannot be "
               "interpreted as an effect of the intervention: "
               + "; ".join(f"{f.get('id', f['check'])} ({f['detail']})"
                           for f in failed_checks) + ".")
    label = {Outcome.go: labels.go, Outcome.not_interpretable: labels.not_interpretable,
             Outcome.no_go: labels.no_go,
             Outcome.stop_for_harm: labels.stop_for_harm,
             Outcome.continue_: labels.continue_, Outcome.stop_efficacy: labels.stop_efficacy,
             Outcome.stop_futility: labels.stop_futility}[outcome]
    if exploratory:
        why = ("EXPLORATORY: the protocol differs from its lock or is not locked, so this is not "
               "a confirmatory decision. " + why)
    return Decision(outcome.value, label, look, final, exploratory, why, results)
