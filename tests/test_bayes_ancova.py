"""Bayesian ANCOVA (PyMC): small but real fits, the diagnostics gate, stated priors.

The reference for agreement is R's lm on tests/reference/ancova_data.csv (ancova_lm.csv): under
a weak prior the posterior mean of the effect must sit within Monte Carlo error (plus the small
pull of the prior) of the least-squares estimate, and the posterior SD near its standard error.
"""

from __future__ import annotations

import pytest

from analysis.bayes_ancova import (
    BayesAncovaSpec,
    DiagnosticsGate,
    Prior,
    SamplerSettings,
    fit_bayes_ancova,
)

COVS = ("baseline", "practice", "severity_stratum")


@pytest.fixture(scope="module")
def weak(ancova_frame):
    spec = BayesAncovaSpec("primary", "bayes", COVS, prior=Prior(effect_sd=100, coef_sd=100),
                           sampler=SamplerSettings(draws=600, tune=600, chains=2, seed=11),
                           gate=DiagnosticsGate(min_ess_bulk=200, min_ess_tail=200),
                           probabilities=(("<", 0.0), ("<", -2.0)))
    return fit_bayes_ancova(ancova_frame, spec)


def test_weak_prior_posterior_mean_agrees_with_r_lm(weak, r_lm_arm):
    e = weak.estimate
    mcse = e.diagnostics["mcse_effect"]
    assert abs(e.estimate - r_lm_arm["estimate"]) < 4 * mcse + 0.02


def test_weak_prior_posterior_sd_near_r_standard_error(weak, r_lm_arm):
    assert weak.estimate.std_error == pytest.approx(r_lm_arm["std_error"], rel=0.15)


def test_posterior_probabilities_requested_by_criteria(weak):
    e = weak.estimate
    p0 = e.probability("<", 0.0)
    p2 = e.probability("<", -2.0)
    assert p0 is not None and p2 is not None
    assert p0 > 0.99 and 0.5 < p2 < 1.0  # effect about -2.45 with SE 0.5
    assert e.probability(">", 0.0) is None  # never computed, never guessed


def test_weak_prior_fit_passes_its_gate(weak):
    e = weak.estimate
    assert e.reliable
    assert e.diagnostics["max_rhat"] <= 1.01 and e.diagnostics["divergences"] == 0
    assert "Normal(0, 100)" in e.details["prior"]


def test_sceptical_prior_shrinks_towards_zero(ancova_frame, weak):
    spec = BayesAncovaSpec("primary", "bayes", COVS, prior=Prior(effect_sd=0.25),
                           sampler=SamplerSettings(draws=300, tune=300, chains=2, seed=11),
                           gate=DiagnosticsGate(min_ess_bulk=100, min_ess_tail=100))
    shrunk = fit_bayes_ancova(ancova_frame, spec).estimate
    assert abs(shrunk.estimate) < abs(weak.estimate.estimate) / 2


def test_too_short_sampling_fails_the_gate(ancova_frame):
    spec = BayesAncovaSpec("primary", "bayes", COVS,
                           sampler=SamplerSettings(draws=30, tune=30, chains=2, seed=3))
    e = fit_bayes_ancova(ancova_frame, spec).estimate
    assert not e.reliable
    assert any("diagnostics gate failed" in w and "ESS" in w for w in e.warnings)


def test_same_seed_same_posterior(ancova_frame):
    spec = BayesAncovaSpec("primary", "bayes", ("baseline",),
                           sampler=SamplerSettings(draws=100, tune=100, chains=2, seed=5))
    a = fit_bayes_ancova(ancova_frame, spec).estimate
    b = fit_bayes_ancova(ancova_frame, spec).estimate
    assert a.estimate == b.estimate and a.ci_lower == b.ci_lower
