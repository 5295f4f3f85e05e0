"""Bayesian MMRM-like, logistic, count and cluster models against R's frequentist fits.

Source: tests/reference/bayes_reference.csv, written by tests/reference/bayes_reference.R under
R 4.2.2 with nlme 3.1-162 (``gls`` with ``corSymm`` + ``varIdent``, REML), stats ``glm``
(binomial, poisson), MASS 7.3-58.2 ``glm.nb`` and lme4 1.1-31 ``lmer`` (REML), on the simulated
inputs tests/reference/bayes_*_data.csv (see tests/reference/bayes.md).

Under a weak prior the posterior mean equals the likelihood estimate up to Monte Carlo error
and an O(1/n) difference between a posterior mean and a mode (skewness of the posterior), so
each posterior mean must lie within 4 Monte Carlo SEs plus 10% of the reference standard error
of the R estimate; the posterior SD must be within 15% of R's standard error (with about 300
effective draws the SD itself has about 4% Monte Carlo error). Each fit must also cover the true
simulated value and pass a diagnostics gate sized for the few draws used here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings
from analysis.bayes_glm import BayesBinarySpec, BayesCountSpec, fit_bayes_binary, fit_bayes_count
from analysis.bayes_hierarchical import BayesClusterSpec, fit_bayes_cluster
from analysis.bayes_longitudinal import LongitudinalSpec, fit_bayes_longitudinal
from analysis.bayes_priors import PriorSet
from trials.errors import AnalysisError

pytestmark = pytest.mark.reference

REF = Path(__file__).parent / "reference"
SAMPLER = SamplerSettings(draws=300, tune=300, chains=2, seed=20261127)
GATE = DiagnosticsGate(max_rhat=1.05, min_ess_bulk=100, min_ess_tail=100)
WEAK = PriorSet("weak", 0.0, 100.0, 100.0, 100.0, 25.0)  # outcome scale (SD about 5)
WEAK_LINEAR = PriorSet("weak", 0.0, 10.0, 10.0, 10.0, 10.0)  # log-odds / log-rate scale


def ref(case: str, statistic: str) -> float:
    table = pd.read_csv(REF / "bayes_reference.csv")
    row = table[(table["case"] == case) & (table["statistic"] == statistic)]
    return float(row["value"].iloc[0])


def close_to_r(estimate: float, mcse: float, r_value: float, r_se: float) -> bool:
    return abs(estimate - r_value) < 4 * mcse + 0.1 * r_se


# ------------------------------------------------------------------ MMRM-like
@pytest.fixture(scope="module")
def long_frame():
    return pd.read_csv(REF / "bayes_long_data.csv")


@pytest.fixture(scope="module")
def mmrm(long_frame):
    # baseline by visit, severity stratum as a main effect (categorical), as in the R gls
    spec = LongitudinalSpec("change_w12", "bayes_mmrm", 3, WEAK,
                            covariates=("baseline", "severity_stratum"), sampler=SAMPLER,
                            gate=GATE, probabilities=(("<", 0.0), ("<", -2.0)))
    return fit_bayes_longitudinal(long_frame, spec)


def test_mmrm_effect_at_target_visit_matches_r_gls_reml(mmrm):
    e = mmrm.estimate
    # R nlme::gls REML, fvisit3:treated
    assert close_to_r(e.estimate, e.diagnostics["mcse_effect"], ref("mmrm_reml", "effect_visit3"),
                      ref("mmrm_reml", "se_visit3"))


def test_mmrm_posterior_sd_matches_r_gls_se(mmrm):
    # R nlme::gls REML, sqrt(vcov) of fvisit3:treated
    assert mmrm.estimate.std_error == pytest.approx(ref("mmrm_reml", "se_visit3"), rel=0.15)


@pytest.mark.parametrize("visit", [1, 2])
def test_mmrm_effects_at_other_visits_match_r(mmrm, visit):
    row = mmrm.tables["effects_by_visit"][visit - 1]
    mcse = row["sd"] / math.sqrt(100)  # the gate guarantees at least 100 effective draws
    # R nlme::gls REML, fvisit{visit}:treated
    assert close_to_r(row["mean"], mcse, ref("mmrm_reml", f"effect_visit{visit}"),
                      ref("mmrm_reml", f"se_visit{visit}"))


@pytest.mark.parametrize("visit", [1, 2, 3])
def test_mmrm_visit_sds_match_r(mmrm, visit):
    sd = math.sqrt(mmrm.tables["covariance"][visit - 1][visit - 1])
    # R nlme::gls REML, getVarCov (unstructured); posterior mean of the variance, 10%
    assert sd == pytest.approx(ref("mmrm_reml", f"sd_visit{visit}"), rel=0.10)


def test_mmrm_covers_truth_and_passes_gate(mmrm):
    e = mmrm.estimate
    assert e.ci_lower < -3.0 < e.ci_upper  # simulated effect at visit 3
    assert e.reliable and e.engine == "bayesian" and e.model == "mmrm"
    assert e.details["missingness_patterns"] == 4  # 3 monotone + visit 2 skipped
    assert e.n_analysed == 160
    assert e.details["covariate_columns"] == ["severity_stratum[severe]"]
    assert e.probability("<", 0.0) > 0.99


def test_mmrm_result_is_json_safe_and_idata_round_trips(mmrm, tmp_path):
    json.dumps(mmrm.to_dict())
    path = tmp_path / "mmrm.nc"
    mmrm.idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    np.testing.assert_array_equal(back.posterior["effect"].to_numpy(),
                                  mmrm.idata.posterior["effect"].to_numpy())


def test_mmrm_input_errors(long_frame):
    spec = LongitudinalSpec("e", "a", 3, WEAK, sampler=SAMPLER)
    with pytest.raises(AnalysisError, match="visit 7"):
        fit_bayes_longitudinal(long_frame, LongitudinalSpec("e", "a", 7, WEAK))
    with pytest.raises(AnalysisError, match="two visits"):
        fit_bayes_longitudinal(long_frame[long_frame["visit"] == 3], spec)
    with pytest.raises(AnalysisError, match="baseline"):
        fit_bayes_longitudinal(long_frame.drop(columns="baseline"), spec)


# ------------------------------------------------------------------ logistic and counts
@pytest.fixture(scope="module")
def glm_frame():
    return pd.read_csv(REF / "bayes_glm_data.csv")


@pytest.fixture(scope="module")
def logistic(glm_frame):
    frame = glm_frame.rename(columns={"response": "y"})
    spec = BayesBinarySpec("response", "bayes_logistic", WEAK_LINEAR, ("baseline", "site"),
                           sampler=SAMPLER, gate=GATE, probabilities=((">", 0.0),))
    return fit_bayes_binary(frame, spec)


def test_logistic_log_odds_ratio_matches_r_glm(logistic):
    log_or = logistic.idata.posterior["effect"].to_numpy()
    mcse = float(az.mcse(az.convert_to_dataset(log_or))["x"])
    # R stats::glm(binomial), coefficient of treated
    assert close_to_r(float(log_or.mean()), mcse, ref("logistic", "log_or"),
                      ref("logistic", "se_log_or"))
    assert float(log_or.std()) == pytest.approx(ref("logistic", "se_log_or"), rel=0.15)
    assert 0.8 > float(np.quantile(log_or, 0.025))  # the simulated log OR is covered


def test_logistic_risk_difference_matches_r_standardisation(logistic):
    e = logistic.estimate
    # R: mean predicted risk with treated = 1 minus with treated = 0 at the glm MLE; the
    # posterior SD of the RD (about 0.045) stands in for its SE
    assert close_to_r(e.estimate, e.diagnostics["mcse_effect"],
                      ref("logistic", "risk_difference"), e.std_error)
    assert e.probability(">", 0.0) > 0.99 and e.details["summary"] == "risk_difference"


def test_logistic_risk_ratio_and_odds_ratio_tables(logistic):
    s = logistic.tables["summaries"]
    # R: ratio of the standardised risks; the odds ratio is exp of the log OR
    assert s["risk_ratio"]["mean"] == pytest.approx(ref("logistic", "risk_ratio"), rel=0.05)
    assert s["odds_ratio"]["ci_lower"] < math.exp(ref("logistic", "log_or")) < \
        s["odds_ratio"]["ci_upper"]


def test_logistic_agrees_with_statsmodels(logistic, glm_frame):
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    fit = smf.glm("response ~ treated + baseline + C(site)", glm_frame,
                  family=sm.families.Binomial()).fit()
    log_or = logistic.idata.posterior["effect"].to_numpy()
    assert float(log_or.mean()) == pytest.approx(fit.params["treated"],
                                                 abs=0.2 * fit.bse["treated"] + 0.05)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_count_rate_ratio_matches_r(glm_frame, family):
    frame = glm_frame.rename(columns={"count": "y"})
    spec = BayesCountSpec("events", "bayes_count", WEAK_LINEAR, family, covariates=("baseline",),
                          sampler=SAMPLER, gate=GATE, probabilities=(("<", 1.0),))
    res = fit_bayes_count(frame, spec)
    e = res.estimate
    log_rr = res.tables["log_rate_ratio"]
    mcse = log_rr["sd"] / math.sqrt(100)
    # R stats::glm(poisson) / MASS::glm.nb, coefficient of treated (log rate ratio)
    assert close_to_r(log_rr["mean"], mcse, ref(family, "log_rr"), ref(family, "se_log_rr"))
    assert log_rr["sd"] == pytest.approx(ref(family, "se_log_rr"), rel=0.15)
    assert e.ci_lower < math.exp(-0.4) < e.ci_upper  # simulated rate ratio
    assert e.ci_lower == pytest.approx(math.exp(log_rr["ci_lower"]), rel=1e-6)
    assert e.reliable and e.probability("<", 1.0) > 0.95
    if family == "negative_binomial":
        # MASS::glm.nb 1 / theta; the posterior mean of a skewed dispersion, 25%
        assert e.details["dispersion_posterior_mean"] == pytest.approx(
            ref(family, "dispersion"), rel=0.25)


def test_glm_input_errors(glm_frame):
    bad = glm_frame.rename(columns={"count": "y"})
    with pytest.raises(AnalysisError, match="0/1"):
        fit_bayes_binary(bad, BayesBinarySpec("e", "a", WEAK_LINEAR))
    with pytest.raises(AnalysisError, match="summary"):
        fit_bayes_binary(bad, BayesBinarySpec("e", "a", WEAK_LINEAR, summary="hazard"))
    with pytest.raises(AnalysisError, match="exposure"):
        fit_bayes_count(bad.assign(exposure=0.0), BayesCountSpec("e", "a", WEAK_LINEAR))


# ------------------------------------------------------------------ cluster random intercepts
@pytest.fixture(scope="module")
def cluster_frame():
    return pd.read_csv(REF / "bayes_cluster_data.csv")


@pytest.fixture(scope="module")
def cluster(cluster_frame):
    spec = BayesClusterSpec("primary", "bayes_cluster", WEAK, cluster_sd_prior=5.0,
                            sampler=SAMPLER, gate=GATE)
    return fit_bayes_cluster(cluster_frame, spec)


def test_cluster_effect_matches_r_lmer(cluster):
    e = cluster.estimate
    # R lme4::lmer REML, fixef treated
    assert close_to_r(e.estimate, e.diagnostics["mcse_effect"], ref("cluster", "effect"),
                      ref("cluster", "se_effect"))
    # Posterior SD exceeds the REML SE a little: it integrates over the cluster SD (12 per arm)
    assert e.std_error == pytest.approx(ref("cluster", "se_effect"), rel=0.20)
    assert e.ci_lower < -2.5 < e.ci_upper and e.reliable


def test_cluster_icc_and_sds_match_r_lmer(cluster):
    d = cluster.estimate.details
    # R lme4::lmer REML variance components; the posterior mean of a skewed SD or ICC from 24
    # clusters lies above the REML mode, hence the wide absolute tolerances
    assert d["icc"]["mean"] == pytest.approx(ref("cluster", "icc"), abs=0.05)
    assert d["cluster_sd"]["mean"] == pytest.approx(ref("cluster", "cluster_sd"), abs=0.6)
    assert d["residual_sd"]["mean"] == pytest.approx(ref("cluster", "residual_sd"), rel=0.05)
    assert d["n_clusters"] == 24 and d["icc"]["ci_lower"] < 0.1 < d["icc"]["ci_upper"]


def test_results_are_json_safe(logistic, cluster):
    for result in (logistic, cluster):
        data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert data["estimate"]["engine"] == "bayesian"


def test_cluster_agrees_with_statsmodels_mixedlm(cluster, cluster_frame):
    import statsmodels.formula.api as smf

    fit = smf.mixedlm("y ~ treated + baseline", cluster_frame,
                      groups=cluster_frame["cluster"]).fit(reml=True)
    e = cluster.estimate
    assert close_to_r(e.estimate, e.diagnostics["mcse_effect"], fit.params["treated"],
                      fit.bse["treated"])


def test_mmrm_pattern_likelihood_equals_scipy_multivariate_normal():
    import pytensor.tensor as pt
    from scipy import stats

    from analysis.bayes_longitudinal import _mvn_logp, _small_cholesky

    cov = np.array([[16.0, 9.0, 7.5], [9.0, 20.0, 13.0], [7.5, 13.0, 22.0]])
    idx = [0, 2]  # a non-monotone pattern: visit 2 missing
    sub = cov[np.ix_(idx, idx)]
    obs = np.random.default_rng(4).normal(10, 4, size=(6, 2))
    mu = np.full((6, 2), 9.0)
    low = _small_cholesky(pt.as_tensor(sub), 2)
    # scipy.stats.multivariate_normal log density, summed over rows
    expected = stats.multivariate_normal(mu[0], sub).logpdf(obs).sum()
    assert float(_mvn_logp(obs, pt.as_tensor(mu), low, 2).eval()) == pytest.approx(expected,
                                                                                    rel=1e-12)
