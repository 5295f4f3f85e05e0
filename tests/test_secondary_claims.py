"""Secondary claims under a multiplicity section, and falsification checks, in the decision.

Secondary criteria read the multiplicity-adjusted p-value of their analysis (computed by
:func:`trials.panels.multiplicity_adjustment`), are reported as claims and never change the
decision; a failed falsification check turns a GO into NOT INTERPRETABLE and leaves every other
outcome alone. Expected adjusted p-values are worked by hand in the comments (Holm 1979,
Hochberg 1988, fixed-sequence testing), never with the code under test.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from analysis.estimate import Estimate
from trials.decision import decide
from trials.panels import multiplicity_adjustment
from trials.protocol import Protocol, parse_protocol


def protocol(method: str = "holm", order: tuple[str, ...] = ("b", "c", "d")) -> Protocol:
    """A primary analysis ``a`` with success, futility and harm criteria, and three secondary
    analyses ``b, c, d`` each with a claim ``p < 0.05``."""
    analyses = [{"id": x, "estimand": "primary", "engine": "frequentist"} for x in "abcd"]
    criteria: list[dict[str, Any]] = [
        {"id": "success", "kind": "success", "analysis": "a", "statistic": "ci_upper",
         "comparator": "<", "threshold": 0},
        {"id": "futility", "kind": "futility", "analysis": "a", "statistic": "ci_lower",
         "comparator": ">", "threshold": -1.0},
        {"id": "harm", "kind": "harm", "analysis": "a", "statistic": "ci_lower",
         "comparator": ">", "threshold": 0},
    ] + [{"id": f"claim_{x}", "kind": "secondary", "analysis": x, "statistic": "p_value",
          "comparator": "<", "threshold": 0.05} for x in "bcd"]
    return parse_protocol(copy.deepcopy({
        "id": "CLAIMS", "title": "Secondary claims", "version": 1,
        "design": {"planned_size": 100,
                   "arms": [{"id": "usual_care", "label": "UC", "control": True},
                            {"id": "ai_cbt", "label": "AI"}]},
        "outcomes": [{"id": "phq9", "instrument": "PHQ-9", "visits": [0, 12],
                      "baseline_visit": 0}],
        "estimands": [{"id": "primary", "label": "PHQ-9", "population": "all",
                       "variable": {"outcome": "phq9", "visit": 12},
                       "treatment": {"arm": "ai_cbt", "comparator": "usual_care"}}],
        "analyses": analyses,
        "multiplicity": {"method": method, "alpha": 0.05, "hypotheses": list(order)},
        "criteria": criteria,
    }), "claims.yaml")


def est(analysis: str, estimate: float = -2.0, ci: tuple[float, float] = (-3.0, -1.5),
        p: float = 0.001) -> Estimate:
    return Estimate(estimand="primary", analysis=analysis, engine="frequentist", model="ancova",
                    estimate=estimate, std_error=0.5, ci_lower=ci[0], ci_upper=ci[1],
                    ci_level=0.95, p_value=p)


GO = est("a")  # upper bound below 0, lower bound below -1: success, no futility, no harm
NO_GO = est("a", -0.2, (-1.0, 0.6), 0.6)  # success not met
HARM = est("a", 2.0, (0.5, 3.5), 0.01)  # lower bound above 0


def estimates(primary: Estimate, **p: float) -> dict[str, Estimate]:
    return {"a": primary, **{k: est(k, p=v) for k, v in p.items()}}


def run(proto: Protocol, primary: Estimate, falsification: tuple[dict[str, Any], ...] = (),
        **p: float) -> Any:
    found = estimates(primary, **p)
    adjusted = multiplicity_adjustment(proto, found)
    return decide(proto, found, {}, adjusted=adjusted, falsification=falsification), adjusted


def claims(decision: Any) -> dict[str, Any]:
    return {c.id: c for c in decision.criteria if c.kind == "secondary"}


# --------------------------------------------------------------------------- multiplicity


def test_holm_adjusted_p_is_what_the_claim_reads():
    decision, adjusted = run(protocol("holm"), GO, b=0.01, c=0.04, d=0.03)
    # Holm: sorted 0.01 (b), 0.03 (d), 0.04 (c) -> 3*0.01 = 0.03, max(0.03, 2*0.03) = 0.06,
    # max(0.06, 1*0.04) = 0.06.
    assert adjusted["p_values"] == pytest.approx({"b": 0.03, "c": 0.06, "d": 0.06}, abs=1e-12)
    found = claims(decision)
    assert found["claim_b"].observed == pytest.approx(0.03, abs=1e-12)
    assert found["claim_b"].met is True
    # c's raw p (0.04) is below 0.05, its adjusted p is not: the claim is not met.
    assert found["claim_c"].observed == pytest.approx(0.06, abs=1e-12)
    assert found["claim_c"].met is False
    assert found["claim_d"].met is False


def test_claim_rationale_says_holm_adjusted_and_gives_the_unadjusted_p():
    decision, _ = run(protocol("holm"), GO, b=0.01, c=0.04, d=0.03)
    text = claims(decision)["claim_c"].rationale
    assert "holm-adjusted" in text and "unadjusted 0.04" in text and "not met" in text


def test_hochberg_step_up():
    decision, adjusted = run(protocol("hochberg"), GO, b=0.01, c=0.04, d=0.03)
    # Hochberg: from the largest, 0.04 (c); min(0.04, 2*0.03) = 0.04 (d);
    # min(0.04, 3*0.01) = 0.03 (b): all three claims met.
    assert adjusted["p_values"] == pytest.approx({"b": 0.03, "c": 0.04, "d": 0.04}, abs=1e-12)
    assert all(c.met for c in claims(decision).values())


def test_fixed_sequence_stops_at_the_first_failure():
    decision, adjusted = run(protocol("fixed_sequence", ("b", "c", "d")), GO,
                             b=0.01, c=0.2, d=0.001)
    assert adjusted["stopped_at"] == "c"
    found = claims(decision)
    assert found["claim_b"].met is True
    assert found["claim_c"].met is False
    # d's raw p is tiny, but it comes after c in the sequence: not claimable.
    assert found["claim_d"].met is False
    assert found["claim_d"].observed == pytest.approx(0.2, abs=1e-12)
    rows = {r["hypothesis"]: r for r in adjusted["hypotheses"]}
    assert rows["d"]["tested"] is False


def test_fixed_sequence_order_is_the_protocols():
    decision, _ = run(protocol("fixed_sequence", ("d", "c", "b")), GO, b=0.01, c=0.2, d=0.001)
    found = claims(decision)
    assert (found["claim_d"].met, found["claim_c"].met, found["claim_b"].met) == (
        True, False, False)


@pytest.mark.parametrize(("primary", "outcome"), [(GO, "go"), (NO_GO, "no_go"),
                                                  (HARM, "stop_for_harm")])
@pytest.mark.parametrize("p", [0.001, 0.5])
def test_secondary_claims_never_change_the_decision(primary, outcome, p):
    decision, _ = run(protocol("holm"), primary, b=p, c=p, d=p)
    assert decision.outcome == outcome
    for c in claims(decision).values():
        assert c.counts_toward_decision is False
        assert c.met is (p == 0.001)


def test_secondary_analysis_without_a_p_value_is_not_tested():
    proto = protocol("holm")
    found = estimates(GO, b=0.01, c=0.04)  # d was not fitted
    adjusted = multiplicity_adjustment(proto, found)
    assert adjusted["not_tested"] == ["d"]
    # Holm over the two tested: 2*0.01 = 0.02, max(0.02, 0.04) = 0.04
    assert adjusted["p_values"] == pytest.approx({"b": 0.02, "c": 0.04}, abs=1e-12)
    decision = decide(proto, found, {}, adjusted=adjusted)
    assert claims(decision)["claim_d"].met is None
    assert decision.outcome == "go"


# --------------------------------------------------------------------------- falsification


FAILED = ({"check": "pre_trends", "passed": False, "detail": "p = 0.003"},)
PASSED = ({"check": "pre_trends", "passed": True, "detail": "p = 0.41"},)


def test_failed_falsification_turns_go_into_not_interpretable():
    decision, _ = run(protocol(), GO, FAILED, b=0.01, c=0.01, d=0.01)
    assert decision.outcome == "not_interpretable"
    assert decision.label == "NOT INTERPRETABLE"
    assert "pre_trends (p = 0.003)" in decision.rationale and "GO" in decision.rationale


def test_passed_falsification_leaves_go():
    decision, _ = run(protocol(), GO, PASSED, b=0.01, c=0.01, d=0.01)
    assert decision.outcome == "go"


@pytest.mark.parametrize(("primary", "outcome"), [(NO_GO, "no_go"), (HARM, "stop_for_harm")])
def test_failed_falsification_leaves_no_go_and_harm_alone(primary, outcome):
    decision, _ = run(protocol(), primary, FAILED, b=0.01, c=0.01, d=0.01)
    assert decision.outcome == outcome


def test_not_interpretable_uses_the_protocols_label():
    proto = protocol()
    data = proto.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["decision"] = {"labels": {"not_interpretable": "UNINTERPRETABLE"}}
    relabelled = parse_protocol(data, "claims.yaml")
    decision, _ = run(relabelled, GO, FAILED, b=0.01, c=0.01, d=0.01)
    assert (decision.outcome, decision.label) == ("not_interpretable", "UNINTERPRETABLE")
