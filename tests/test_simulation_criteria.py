"""The protocol's own criteria and decision rule in simulated trials (designs.simulation_criteria).

Expected values come from independent sources: :func:`trials.decision.decide` with the
group-sequential criteria of :func:`trials.sequential.monitor` (the rule the runs apply), scipy's
normal and Student t distributions and the conjugate normal posterior written out here, the
power of a one-sided z-test (normal formula), and the crossing probabilities of
:mod:`designs.boundaries` (numerical integration, checked against rpact 3.3.4 in
test_boundaries.py). Simulated probabilities must agree within 4 Monte Carlo SEs (fixed seeds,
so the checks are deterministic).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from scipy import stats

from analysis.estimate import Estimate, PosteriorProbability
from designs.boundaries import GroupSequentialDesign
from designs.simulation import Scenario, SimulationSpec, run_simulation
from designs.simulation_criteria import (
    CONTINUE,
    DECISIONS,
    AnalysisRule,
    CriteriaError,
    CriterionRule,
    DecisionRules,
    look_decisions,
)
from trials.decision import decide
from trials.demo import demo_protocol_text
from trials.protocol import parse_protocol
from trials.sequential import design_of, monitor
from trials.simulate import decision_rules, simulate_protocol

Z_TOL = 4.0


def demo(**changes):
    data = yaml.safe_load(demo_protocol_text())
    for key, value in changes.items():
        data[key] = value
    return parse_protocol(data)


def assert_mc(simulated, expected, n, label=""):
    se = math.sqrt(expected * (1 - expected) / n)
    assert abs(simulated - expected) <= Z_TOL * max(se, 1e-12), (label, simulated, expected, se)


# ------------------------------------------------------------------ the statistics


def test_frequentist_statistics_match_scipy():
    # Source: scipy.stats.norm and scipy.stats.t quantiles and tail areas
    rng = np.random.default_rng(3)
    est, se = rng.normal(0, 2, 50), rng.uniform(0.3, 2.0, 50)
    normal = AnalysisRule("a", interval_level=0.9).statistics(est, se, math.inf)
    q = stats.norm.ppf(0.95)
    np.testing.assert_allclose(normal.ci_lower, est - q * se, rtol=0, atol=1e-12)
    np.testing.assert_allclose(normal.ci_upper, est + q * se, rtol=0, atol=1e-12)
    np.testing.assert_allclose(normal.p_value, 2 * stats.norm.sf(np.abs(est / se)), rtol=1e-10)
    t = AnalysisRule("a").statistics(est, se, 17.0)
    q = stats.t.ppf(0.975, 17)
    np.testing.assert_allclose(t.ci_upper, est + q * se, rtol=0, atol=1e-10)
    np.testing.assert_allclose(t.p_value, 2 * stats.t.sf(np.abs(est / se), 17), rtol=1e-9)
    assert t.probability("<", 0.0) is None


def test_bayesian_statistics_are_the_conjugate_normal_posterior():
    # Source: conjugate normal-normal update written out here (Gelman et al., BDA3, sec. 2.5)
    est, se = np.array([-1.2, 0.4]), np.array([0.6, 0.9])
    m0, s0 = 0.5, 2.0
    post_var = 1 / (1 / s0**2 + 1 / se**2)
    post_mean = post_var * (m0 / s0**2 + est / se**2)
    s = AnalysisRule("b", "bayesian", 0.95, m0, s0).statistics(est, se, math.inf)
    np.testing.assert_allclose(s.estimate, post_mean, rtol=1e-12)
    lo = stats.norm.ppf(0.025, post_mean, np.sqrt(post_var))
    np.testing.assert_allclose(s.ci_lower, lo, rtol=1e-10)
    below = stats.norm.cdf(-2.0, post_mean, np.sqrt(post_var))
    np.testing.assert_allclose(s.probability("<", -2.0), below, rtol=1e-10)
    np.testing.assert_allclose(s.probability(">=", -2.0), 1 - below, rtol=1e-10)
    assert s.p_value is None


# ------------------------------------------------------------------ rule == decide()


def _estimates(protocol, est, se, n_analysed):
    """What each analysis of the primary estimand would report, from scipy (not the code under
    test): normal intervals and p-values; the conjugate posterior for the Bayesian ones."""
    out = {}
    for a in protocol.analyses:
        if a.estimand != "primary":
            continue
        q = stats.norm.ppf((1 + a.interval_level) / 2)
        if a.engine == "frequentist":
            out[a.id] = Estimate("primary", a.id, "frequentist", a.model, est, se, est - q * se,
                                 est + q * se, a.interval_level,
                                 p_value=float(2 * stats.norm.sf(abs(est / se))),
                                 n_analysed=n_analysed)
            continue
        if isinstance(a.prior, str):  # sceptical (Spiegelhalter et al. 1994): N(0, |CID| / z_0.95)
            assert a.prior == "sceptical"
            cid = protocol.estimand("primary").clinically_important_difference
            m0, s0 = 0.0, abs(cid) / stats.norm.ppf(0.95)
        else:
            m0, s0 = a.prior.treatment_effect.mean, a.prior.treatment_effect.sd
        var = 1 / (1 / s0**2 + 1 / se**2)
        mean = var * (m0 / s0**2 + est / se**2)
        probs = [PosteriorProbability(c.comparator.value, c.threshold, float(
            stats.norm.cdf(c.threshold, mean, math.sqrt(var)) if c.comparator.value in ("<", "<=")
            else stats.norm.sf(c.threshold, mean, math.sqrt(var))))
            for c in protocol.criteria if c.analysis == a.id and c.probability is not None]
        out[a.id] = Estimate("primary", a.id, "bayesian", a.model, mean, math.sqrt(var),
                             mean - q * math.sqrt(var), mean + q * math.sqrt(var),
                             a.interval_level, posterior_probabilities=tuple(probs),
                             n_analysed=n_analysed)
    return out


@pytest.fixture
def cached_boundaries(monkeypatch):
    """monitor() recomputes the same boundaries for every input; compute them once."""
    original, cache = GroupSequentialDesign.compute, {}

    def compute(self, observed_rates=None):
        key = (self, None if observed_rates is None else tuple(observed_rates))
        if key not in cache:
            cache[key] = original(self, observed_rates)
        return cache[key]

    monkeypatch.setattr(GroupSequentialDesign, "compute", compute)


@pytest.mark.parametrize("look", ["interim", "final"])
def test_vectorised_rule_equals_decide(look, cached_boundaries):
    # Source: trials.decision.decide with trials.sequential.monitor's boundary criteria.
    # planned_analysed 300: the interim look falls exactly at its planned fraction (75 of 150
    # per arm), so the run's boundaries and the simulation's agree at both looks.
    base = yaml.safe_load(demo_protocol_text())
    analyses = base["analyses"] + [
        {"id": "sceptic_bayes", "estimand": "primary", "engine": "bayesian", "model": "ancova",
         "purpose": "sensitivity", "prior": "sceptical"}]
    criteria = base["criteria"] + [
        {"id": "sceptic", "kind": "success", "analysis": "sceptic_bayes",
         "statistic": "posterior_probability", "comparator": "<", "threshold": 0,
         "probability": 0.9},
        {"id": "interim_harm", "kind": "harm", "analysis": "primary_ancova",
         "statistic": "p_value", "comparator": "<", "threshold": 0.001, "look": "interim"}]
    gs = dict(base["group_sequential"], planned_analysed=300)
    protocol = demo(group_sequential=gs, analyses=analyses, criteria=criteria)
    spec = SimulationSpec(design_of(protocol.group_sequential, (0.5, 1.0)), direction="lower",
                          rules=decision_rules(protocol))
    plan = spec.plan(Scenario("s", 0.0, 5.5, 150))
    k = ["interim", "final"].index(look)
    n_analysed = 2 * plan.completers[k]
    rng = np.random.default_rng(20 + k)
    est, se = rng.uniform(-4.5, 3.0, 400), rng.uniform(0.25, 1.6, 400)
    codes = look_decisions(plan, k, est, se, math.inf, -est / se)
    names = {code: name for code, name in enumerate(DECISIONS)} | {CONTINUE: "continue"}
    seen = set()
    for i in range(est.size):
        estimates = _estimates(protocol, float(est[i]), float(se[i]), n_analysed)
        extra = monitor(protocol, estimates, look).criteria
        expected = decide(protocol, estimates, {}, look=look, extra=extra).outcome
        assert names[int(codes[i])] == expected, (i, est[i], se[i])
        seen.add(expected)
    wanted = ({"continue", "stop_efficacy", "stop_futility", "stop_for_harm"} if k == 0 else
              {"go", "no_go", "stop_for_harm"})
    assert wanted <= seen


def test_demo_rules_name_what_is_simulated():
    rules = decision_rules(demo())
    assert [c.id for c in rules.criteria] == ["superiority", "bayes_benefit", "futility_cid",
                                              "harm_worse"]
    bayes = rules.criteria[1].analysis
    assert (bayes.engine, bayes.prior_mean, bayes.prior_sd, bayes.looks) == ("bayesian", 0.0,
                                                                             5.0, (1,))
    skipped = dict(rules.not_simulated)
    assert "secondary" in skipped["anxiety_claim"]
    assert "harm-event rule" in skipped["harm_serious_events"]


def test_criteria_change_the_decisions_but_not_the_stops():
    protocol = demo()
    with_criteria = simulate_protocol(protocol, trials=4_000)
    boundaries_only = simulate_protocol(protocol, trials=4_000, criteria=False)
    for a, b in zip(with_criteria.scenarios, boundaries_only.scenarios, strict=True):
        # the interim look has no protocol criterion, so its stops are the same trials
        assert a.stop_efficacy[0] == b.stop_efficacy[0]
        assert a.stop_futility[0] == b.stop_futility[0]
        assert a.go <= b.go  # the final GO needs the criteria as well as the boundary
        total = sum(sum(a.decisions[d]) for d in DECISIONS)
        assert total == pytest.approx(1.0, abs=1e-12)
        assert a.go == pytest.approx(a.decisions["go"][-1]) and a.decisions["go"][0] == 0.0
        assert a.success == pytest.approx(a.go + sum(a.decisions["stop_efficacy"]))


# ------------------------------------------------------------------ analytic and alpha checks


@pytest.mark.parametrize("effect", [0.0, -0.6])
def test_one_look_ci_upper_criterion_is_a_one_sided_z_test(effect):
    # Source: power of a one-sided z-test at alpha/2 = 0.025, Phi(-theta / SE - z_0.975)
    sd, n = 2.0, 60
    rule = CriterionRule("superiority", "success", AnalysisRule("a"), "ci_upper", "<", 0.0)
    spec = SimulationSpec(GroupSequentialDesign((1.0,)), direction="lower",
                          rules=DecisionRules((rule,), boundaries=False))
    r = run_simulation(spec, Scenario("s", effect, sd, n), 40_000, 11, scheduler="synchronous",
                       progress=False)["s"]
    se = sd * math.sqrt(2 / n)
    expected = stats.norm.cdf(-effect / se - stats.norm.ppf(0.975))
    assert_mc(r.go, expected, r.n_trials, "P(GO)")
    assert r.no_go == pytest.approx(1 - r.go, abs=1e-12)


def test_demo_type_one_error_at_the_observed_information():
    # Source: designs.boundaries at the looks' information (78 and 155 of 155 per arm):
    # alpha = 0.025 with futility ignored, sum(stop_efficacy_h0) with it obeyed
    gs = demo().group_sequential
    design = design_of(gs, (0.5, 1.0))
    null = Scenario("no_effect", 0.0, 5.5, 155, dropout=0.2)
    ignored = run_simulation(SimulationSpec(design, direction="lower", obey_futility=False),
                             null, 40_000, 5, scheduler="synchronous", progress=False)
    r = ignored["no_effect"]
    assert r.information_fractions == pytest.approx((78 / 155, 1.0), abs=1e-15)
    assert r.efficacy_z == pytest.approx(design.compute((78 / 155, 1.0)).efficacy_z, abs=1e-12)
    assert_mc(r.success, 0.025, r.n_trials, "alpha, futility ignored")
    obeyed = run_simulation(SimulationSpec(design, direction="lower"), null, 40_000, 5,
                            scheduler="synchronous", progress=False)["no_effect"]
    expected = sum(design.compute((78 / 155, 1.0)).stop_efficacy_h0)
    assert_mc(obeyed.success, expected, obeyed.n_trials, "alpha, futility obeyed")


# ------------------------------------------------------------------ determinism and checks


def test_same_decisions_whatever_the_workers():
    spec = SimulationSpec(design_of(demo().group_sequential, (0.5, 1.0)), direction="lower",
                          rules=decision_rules(demo()))
    scenarios = [Scenario("null", 0.0, 5.5, 40), Scenario("benefit", -2.0, 5.5, 40)]
    common = {"chunk_size": 300, "progress": False, "processes": False}
    one = run_simulation(spec, scenarios, 1_200, 9, scheduler=None, n_workers=1, **common)
    two = run_simulation(spec, scenarios, 1_200, 9, scheduler=None, n_workers=2, **common)
    here = run_simulation(spec, scenarios, 1_200, 9, scheduler="synchronous", **common)
    texts = [json.dumps(r.to_dict(), sort_keys=True, allow_nan=False) for r in (one, two, here)]
    assert texts[0] == texts[1] == texts[2]
    assert '"decisions"' in texts[0] and '"not_simulated"' in texts[0]


@pytest.mark.parametrize(("make", "field"), [
    (lambda: CriterionRule("c", "secondary", AnalysisRule("a"), "estimate", "<", 0.0), "kind"),
    (lambda: CriterionRule("c", "success", AnalysisRule("a"), "mean", "<", 0.0), "statistic"),
    (lambda: CriterionRule("c", "success", AnalysisRule("a"), "estimate", "<", 0.0, 0.9),
     "probability"),
    (lambda: AnalysisRule("b", "bayesian"), "prior"),
    (lambda: AnalysisRule("a", interval_level=1.0), "interval_level"),
])
def test_invalid_rules_name_the_field(make, field):
    with pytest.raises(CriteriaError, match=field):
        make()
