"""The diagnostics gate, the sampler and the posterior summary shared by the Bayesian models.

Source of the conjugate reference: the normal model with known variance, whose posterior is
normal with precision 1/s0^2 + n/sigma^2 and mean (m0/s0^2 + sum(y)/sigma^2) / precision
(Gelman et al., *Bayesian Data Analysis*, 3rd ed., 2013, section 2.5, eq. 2.12), computed by
hand in the test, not by the code under test.
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
from scipy import stats

from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings
from analysis.bayes_gate import apply_gate, chain_draws, run_sampler, summarise_draws
from trials.errors import AnalysisError

pytestmark = pytest.mark.reference

GATE = DiagnosticsGate(max_rhat=1.01, min_ess_bulk=400, min_ess_tail=400, max_divergences=0)


def fake_idata(mu_by_chain, *, draws=1000, divergences=0, seed=1):
    rng = np.random.default_rng(seed)
    chains = len(mu_by_chain)
    x = np.stack([rng.normal(m, 1.0, draws) for m in mu_by_chain])
    # a correlation-matrix-like variable with a constant diagonal and one varying element
    corr = np.ones((chains, draws, 2, 2))
    corr[..., 0, 1] = corr[..., 1, 0] = rng.uniform(-0.5, 0.5, (chains, draws))
    diverging = np.zeros((chains, draws), dtype=bool)
    diverging.flat[:divergences] = True
    return az.from_dict(posterior={"effect": x, "corr": corr},
                        sample_stats={"diverging": diverging})


def test_gate_accepts_well_mixed_independent_draws():
    diagnostics, reliable, warn = apply_gate(fake_idata([0, 0, 0, 0]), ["effect", "corr"], GATE)
    assert reliable and warn == ()
    assert diagnostics["max_rhat"] <= 1.01 and diagnostics["min_ess_bulk"] > 2000
    assert diagnostics["draws"] == 4000 and diagnostics["chains"] == 4
    assert all(isinstance(v, (int, float)) for v in diagnostics.values())


def test_gate_rejects_chains_that_disagree_and_names_r_hat():
    _, reliable, warn = apply_gate(fake_idata([0, 0, 0, 3]), ["effect"], GATE)
    assert not reliable
    assert any(w.startswith("diagnostics gate failed: R-hat") for w in warn)


def test_gate_rejects_divergences_and_names_them():
    _, reliable, warn = apply_gate(fake_idata([0, 0], divergences=3), ["effect"], GATE)
    assert not reliable and warn == ("diagnostics gate failed: 3 divergent transitions > 0",)


def test_gate_names_every_failed_criterion():
    _, reliable, warn = apply_gate(fake_idata([0, 5], draws=50, divergences=1), ["effect"], GATE)
    text = " ".join(warn)
    assert not reliable
    for criterion in ("R-hat", "bulk ESS", "tail ESS", "divergent"):
        assert criterion in text


def test_gate_unknown_variable_is_an_error():
    with pytest.raises(AnalysisError, match="no posterior variable sigma"):
        apply_gate(fake_idata([0, 0]), ["sigma"], GATE)


def non_identified_model(y):
    import pymc as pm

    with pm.Model() as model:
        a = pm.Normal("a", 0, 100)
        b = pm.Normal("b", 0, 100)
        pm.Normal("y", a + b, 1.0, observed=y)
    return model


def test_gate_rejects_a_badly_mixed_real_fit():
    # only a + b is identified; with 5 tuning steps and 20 draws the chains cannot mix
    y = np.random.default_rng(2).normal(3, 1, 30)
    idata = run_sampler(non_identified_model(y),
                        SamplerSettings(draws=20, tune=5, chains=2, seed=9))
    _, reliable, warn = apply_gate(idata, ["a", "b"], GATE)
    assert not reliable
    assert any("R-hat" in w for w in warn) and any("ESS" in w for w in warn)


@pytest.fixture(scope="module")
def conjugate():
    """y_i ~ N(mu, sigma = 2) with sigma known, mu ~ N(m0 = 1, s0 = 3); n = 25."""
    import pymc as pm

    y = np.random.default_rng(7).normal(4.0, 2.0, 25)
    with pm.Model() as model:
        mu = pm.Normal("mu", 1.0, 3.0)
        pm.Normal("y", mu, 2.0, observed=y)
    idata = run_sampler(model, SamplerSettings(draws=1000, tune=500, chains=2, seed=31))
    # Hand formula (Gelman et al. 2013, eq. 2.12)
    precision = 1 / 3.0**2 + len(y) / 2.0**2
    mean = (1.0 / 3.0**2 + y.sum() / 2.0**2) / precision
    return idata, mean, math.sqrt(1 / precision)


def test_conjugate_fit_passes_the_gate(conjugate):
    idata, _, _ = conjugate
    _, reliable, warn = apply_gate(idata, ["mu"], GATE)
    assert reliable and warn == ()


def summary(idata, level=0.95, probabilities=()):
    import pandas as pd

    data = pd.DataFrame({"arm": ["a", "b"]})
    return summarise_draws(chain_draws(idata, "mu"), estimand="e", analysis="conjugate",
                           model="normal", interval_level=level, probabilities=probabilities,
                           gate_result=apply_gate(idata, ["mu"], GATE), data=data)


def test_conjugate_posterior_mean_within_monte_carlo_error(conjugate):
    idata, mean, _ = conjugate
    e = summary(idata)
    # analytic posterior mean; 4 Monte Carlo SEs
    assert e.estimate == pytest.approx(mean, abs=4 * e.diagnostics["mcse_effect"])


def test_conjugate_posterior_sd_within_monte_carlo_error(conjugate):
    idata, _, sd = conjugate
    e = summary(idata)
    ess = e.diagnostics["min_ess_bulk"]
    # analytic posterior SD; the SD of ESS normal draws has relative SE 1 / sqrt(2 ESS)
    assert e.std_error == pytest.approx(sd, rel=4 / math.sqrt(2 * ess))


def test_conjugate_interval_and_probability_match_the_normal_posterior(conjugate):
    idata, mean, sd = conjugate
    e = summary(idata, level=0.9, probabilities=(("<", mean - sd),))
    ess = e.diagnostics["min_ess_tail"]
    p = stats.norm.cdf(-1.0)
    # analytic P(mu < mean - sd) = Phi(-1); binomial Monte Carlo SE on the effective draws
    assert e.probability("<", mean - sd) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / ess))
    # analytic 5% and 95% quantiles; a quantile's Monte Carlo SE is about
    # sqrt(q (1 - q) / ESS) / density, which is 0.0058 / 0.103 * sd here
    tol = 4 * math.sqrt(0.05 * 0.95 / ess) / stats.norm.pdf(stats.norm.ppf(0.05)) * sd
    assert e.ci_lower == pytest.approx(mean + stats.norm.ppf(0.05) * sd, abs=tol)
    assert e.ci_upper == pytest.approx(mean + stats.norm.ppf(0.95) * sd, abs=tol)
    assert e.ci_level == 0.9 and e.engine == "bayesian"


def test_summary_rejects_an_unknown_comparator(conjugate):
    with pytest.raises(AnalysisError, match="comparator"):
        summary(conjugate[0], probabilities=(("==", 0.0),))


def test_same_seed_same_draws():
    y = np.random.default_rng(2).normal(3, 1, 30)
    s = SamplerSettings(draws=30, tune=30, chains=2, seed=4)
    a = run_sampler(non_identified_model(y), s).posterior["a"].to_numpy()
    b = run_sampler(non_identified_model(y), s).posterior["a"].to_numpy()
    np.testing.assert_array_equal(a, b)
