"""Decision v1: predefined criteria -> GO / NO-GO / STOP-FOR-HARM / CONTINUE with rationale."""

from __future__ import annotations

import pytest

from analysis.estimate import Estimate, PosteriorProbability
from tests.conftest import demo_protocol as _protocol
from trials.decision import Decision, decide


def _freq(analysis="primary_mmrm", est=-2.8, lo=-3.7, hi=-1.9, p=1e-9, estimand="primary"):
    return Estimate(estimand, analysis, "frequentist", "ancova", est, 0.44, lo, hi, 0.95, p_value=p)


def _bayes(prob=0.999, reliable=True, est=-2.8):
    probs = (PosteriorProbability("<", 0.0, prob),)
    return Estimate("primary", "primary_bayes", "bayesian", "ancova", est, 0.44, est - 0.9,
                    est + 0.9, 0.95, posterior_probabilities=probs, reliable=reliable)


def _safety(lo=-0.2, hi=0.01):
    return Estimate("phq9_item9", "phq9_item9", "exact", "risk_difference_newcombe",
                    (lo + hi) / 2, 0.05, lo, hi, 0.95, p_value=0.1)


def _process_safety(missed=0.0, within=0.96, sae_lo=-0.03):
    """The demo's escalation and serious-adverse-event measures, all reassuring by default."""
    return {
        "missed_escalations": Estimate("missed_escalations", "missed_escalations", "exact",
                                       "count", missed, float("nan"), float("nan"),
                                       float("nan"), 0.95),
        "escalation_within_limit": Estimate("escalation_within_limit",
                                            "escalation_within_limit", "exact",
                                            "proportion_wilson", within, 0.01, within - 0.03,
                                            min(1.0, within + 0.02), 0.95),
        "sae_any": Estimate("sae_any", "sae_any", "exact", "risk_difference_newcombe",
                            sae_lo + 0.03, 0.02, sae_lo, sae_lo + 0.06, 0.95),
    }


SAFE = {"phq9_item9": _safety(), **_process_safety()}


def _estimates(**over):
    out = {"primary_mmrm": _freq(), "primary_bayes": _bayes(),
           "anxiety_ancova": _freq("anxiety_ancova", estimand="anxiety")}
    out.update(over)
    return out


def _by_id(decision: Decision):
    return {c.id: c for c in decision.criteria}


def test_clear_benefit_is_go():
    d = decide(_protocol(), _estimates(), SAFE)
    assert d.outcome == "go" and d.label == "GO"
    assert all(c.met is (c.kind == "success") for c in d.criteria if c.kind != "secondary")


def test_each_criterion_has_observed_threshold_and_one_sentence():
    d = decide(_protocol(), _estimates(), SAFE)
    c = _by_id(d)["superiority"]
    assert c.observed == pytest.approx(-1.9)
    assert c.threshold == 0 and c.comparator == "<"
    assert c.rationale == "The upper 95% bound of primary_mmrm is -1.9, below 0: met."
    assert _by_id(d)["bayes_benefit"].observed == pytest.approx(0.999)


def test_significant_but_clinically_small_effect_is_no_go():
    # CI (-1.5, -0.3) excludes 0 (success) and excludes the CID of -2 (futility).
    est = _estimates(primary_mmrm=_freq(est=-0.9, lo=-1.5, hi=-0.3))
    d = decide(_protocol(), est, SAFE)
    assert d.outcome == "no_go"
    assert "futility_cid" in d.rationale and "too small to matter" in d.rationale


def test_no_benefit_is_no_go_naming_failed_criteria():
    est = _estimates(primary_mmrm=_freq(est=-0.5, lo=-2.5, hi=1.5),
                     primary_bayes=_bayes(prob=0.7))
    d = decide(_protocol(), est, SAFE)
    assert d.outcome == "no_go"
    assert "superiority" in d.rationale and "bayes_benefit" in d.rationale


def test_harm_on_red_flags_stops_even_when_benefit_is_clear():
    d = decide(_protocol(), _estimates(), {**SAFE, "phq9_item9": _safety(lo=0.02, hi=0.15)})
    assert d.outcome == "stop_for_harm" and d.label == "STOP-FOR-HARM"
    assert _by_id(d)["harm_item9"].met is True
    assert "harm_item9" in d.rationale


def test_worse_outcome_is_stop_for_harm():
    est = _estimates(primary_mmrm=_freq(est=2.0, lo=0.5, hi=3.5), primary_bayes=_bayes(0.01))
    d = decide(_protocol(), est, SAFE)
    assert d.outcome == "stop_for_harm"


def test_unreliable_bayesian_fit_cannot_support_go():
    d = decide(_protocol(), _estimates(primary_bayes=_bayes(reliable=False)),
               SAFE)
    assert d.outcome == "no_go"
    c = _by_id(d)["bayes_benefit"]
    assert c.met is True and c.counts_toward_decision is False
    assert "cannot support" in c.rationale


def test_harm_is_applied_even_from_an_unreliable_fit():
    def harm_on_bayes(p):
        p["criteria"].append({"id": "harm_bayes", "kind": "harm", "analysis": "primary_bayes",
                              "statistic": "posterior_probability", "comparator": ">",
                              "threshold": 0, "probability": 0.9})
    bad = Estimate("primary", "primary_bayes", "bayesian", "ancova", 2.0, 0.5, 1.0, 3.0, 0.95,
                   posterior_probabilities=(PosteriorProbability("<", 0.0, 0.0),
                                            PosteriorProbability(">", 0.0, 0.99)),
                   reliable=False)
    d = decide(_protocol(harm_on_bayes), _estimates(primary_bayes=bad), SAFE)
    assert d.outcome == "stop_for_harm"
    assert "safety first" in _by_id(d)["harm_bayes"].rationale


def test_missing_estimate_is_not_evaluable_and_blocks_go():
    est = _estimates()
    del est["primary_bayes"]
    d = decide(_protocol(), est, SAFE)
    c = _by_id(d)["bayes_benefit"]
    assert c.met is None and c.observed is None and d.outcome == "no_go"


def _with_interim(p):
    p["design"]["looks"] = [{"id": "interim", "information_fraction": 0.5},
                            {"id": "final", "information_fraction": 1.0}]
    p["criteria"] += [
        {"id": "interim_efficacy", "kind": "success", "look": "interim",
         "analysis": "primary_mmrm", "statistic": "p_value", "comparator": "<",
         "threshold": 0.001},
        {"id": "interim_futility", "kind": "futility", "look": "interim",
         "analysis": "primary_mmrm", "statistic": "estimate", "comparator": ">",
         "threshold": 0},
    ]


def test_interim_without_stopping_is_continue():
    est = _estimates(primary_mmrm=_freq(est=-1.0, lo=-2.5, hi=0.5, p=0.2))
    d = decide(_protocol(_with_interim), est, SAFE, look="interim")
    assert d.outcome == "continue" and not d.final
    assert {c.id for c in d.criteria} == {"interim_efficacy", "interim_futility"}


def test_interim_efficacy_is_go_and_interim_futility_is_no_go():
    p = _protocol(_with_interim)
    go = decide(p, _estimates(primary_mmrm=_freq(p=1e-6)), {}, look="interim")
    assert go.outcome == "stop_efficacy" and go.label == "STOP-EFFICACY"
    fut = decide(p, _estimates(primary_mmrm=_freq(est=0.4, lo=-1, hi=1.8, p=0.5)), {},
                 look="interim")
    assert fut.outcome == "stop_futility" and fut.label == "STOP-FUTILITY"


def test_protocol_labels_are_used():
    def labels(p):
        p["decision"]["labels"] = {"go": "ADOPT", "no_go": "DO NOT ADOPT",
                                   "stop_for_harm": "HALT", "continue": "KEEP GOING"}
    d = decide(_protocol(labels), _estimates(), SAFE)
    assert d.label == "ADOPT" and d.outcome == "go"


def test_exploratory_decision_is_stamped():
    d = decide(_protocol(), _estimates(), SAFE, exploratory=True)
    assert d.display_label == "EXPLORATORY GO"
    assert d.rationale.startswith("EXPLORATORY")


def test_decision_round_trips_through_dict():
    d = decide(_protocol(), _estimates(), SAFE)
    assert Decision.from_dict(d.to_dict()) == d
    assert "superiority" in d.to_frame().index
    assert "GO" in d._repr_html_()


def test_missed_escalation_stops_for_harm():
    d = decide(_protocol(), _estimates(),
               {**SAFE, **_process_safety(missed=1.0)})
    assert d.outcome == "stop_for_harm"
    assert _by_id(d)["harm_missed_escalation"].met is True


def test_slow_escalation_stops_for_harm():
    d = decide(_protocol(), _estimates(),
               {**SAFE, **_process_safety(within=0.85)})
    assert d.outcome == "stop_for_harm"
    assert "harm_slow_escalation" in d.rationale


def test_responder_criterion_reads_responder_estimates():
    def responder_rule(p):
        p["criteria"].append({"id": "more_responders", "kind": "success",
                              "responder": "phq9_response", "statistic": "ci_lower",
                              "comparator": ">", "threshold": 0})
    rd = Estimate("phq9_response", "phq9_response", "exact", "risk_difference_newcombe",
                  0.2, 0.05, 0.1, 0.3, 0.95)
    d = decide(_protocol(responder_rule), _estimates(),
               SAFE, responders={"phq9_response": rd})
    assert _by_id(d)["more_responders"].met is True and d.outcome == "go"


def test_analysis_runs_only_at_its_looks():
    p = _protocol(_with_interim)
    assert {a.id for a in p.analyses_at("interim")} == {"primary_mmrm", "primary_ancova",
                                                      "anxiety_ancova"}
    assert {a.id for a in p.analyses_at("final")} == {a.id for a in p.analyses}


def test_criterion_cannot_read_an_analysis_not_run_at_its_look():
    from trials.errors import ProtocolError

    def bayes_at_interim(p):
        _with_interim(p)
        p["criteria"].append({"id": "interim_bayes", "kind": "success", "look": "interim",
                              "analysis": "primary_bayes", "statistic": "posterior_probability",
                              "comparator": "<", "threshold": 0, "probability": 0.99})
    with pytest.raises(ProtocolError, match="is not run at look 'interim'"):
        _protocol(bayes_at_interim)
