"""GLM and GEE against R 4.2.2 ``stats::glm``, ``MASS::glm.nb`` 7.3-58.2, ``geepack::geeglm`` 1.3.9.

Sources: tests/reference/glm_reference.R on glm_data.csv (logistic; marginal risk difference and
risk ratio by g-computation with analytic delta-method SEs written by hand in R; Poisson with
offset; negative binomial) and tests/reference/gee_respiratory.R on gee_respiratory_data.csv (the
``geepack::respiratory`` trial; geeglm with independence, exchangeable, ar1 and unstructured
working correlations; robust ``san.se`` and model-based SEs from geeglm; Mancl-DeRouen and
Kauermann-Carroll SEs computed by hand in R from geeglm's fitted pieces). Raw output in the
``.out`` files; values with 15 significant digits in the ``.csv`` files.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.gee import GeeSpec, fit_gee
from analysis.glm import BinarySpec, CountSpec, fit_binary, fit_count
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

TOL = 1e-6      # GLM: IRLS to 1e-12 on both sides
NB_TOL = 1e-5   # glm.nb alternates theta and beta; both sides converge to the same joint MLE
GEE_TOL = 1e-6  # GEE: both sides iterate to convergence from the same estimating equations


@pytest.fixture(scope="module")
def glm_ref() -> dict[tuple[str, str], float]:
    r = pd.read_csv(REFERENCE / "glm_reference.csv")
    return {(m, s): float(v) for m, s, v in r.itertuples(index=False)}


@pytest.fixture(scope="module")
def glm_data() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "glm_data.csv")


def _binary(glm_data, covariates, level=0.95):
    frame = glm_data.rename(columns={"responder": "y"})
    return fit_binary(frame, BinarySpec("resp", "ref", covariates, interval_level=level))


@pytest.fixture(scope="module")
def adjusted(glm_data):
    return _binary(glm_data, ("baseline", "practice"))


@pytest.fixture(scope="module")
def unadjusted(glm_data):
    return _binary(glm_data, ())


SCALES = {"rd": "risk_difference", "rr": "risk_ratio", "or": "odds_ratio"}
FIELDS = ("estimate", "std_error", "ci_lower", "ci_upper", "p_value")


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("stat", FIELDS)
def test_adjusted_binary_matches_r(adjusted, glm_ref, scale, stat):
    # R glm(binomial) + hand g-computation / delta method (glm_reference.R)
    got = getattr(adjusted.summaries[SCALES[scale]], stat)
    assert got == pytest.approx(glm_ref[("logistic_adjusted", f"{scale}_{stat}")], abs=TOL,
                                rel=1e-6)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("stat", FIELDS)
def test_unadjusted_binary_matches_r(unadjusted, glm_ref, scale, stat):
    # R glm(responder ~ treated, binomial) + hand g-computation (glm_reference.R)
    got = getattr(unadjusted.summaries[SCALES[scale]], stat)
    assert got == pytest.approx(glm_ref[("logistic_unadjusted", f"{scale}_{stat}")], abs=TOL,
                                rel=1e-6)


@pytest.mark.parametrize("scale", SCALES)
def test_binary_90_percent_interval_matches_r(glm_data, glm_ref, scale):
    # R glm + hand delta method at level 0.90 (glm_reference.R)
    est = _binary(glm_data, ("baseline", "practice"), 0.90).summaries[SCALES[scale]]
    assert est.ci_lower == pytest.approx(glm_ref[("logistic_adjusted", f"{scale}_ci_lower_90")],
                                         abs=TOL)
    assert est.ci_upper == pytest.approx(glm_ref[("logistic_adjusted", f"{scale}_ci_upper_90")],
                                         abs=TOL)


def test_binary_marginal_risks_match_r(adjusted, glm_ref):
    # R: mean(plogis(X1 b)), mean(plogis(X0 b)) (glm_reference.R)
    risks = adjusted.estimate.details["marginal_risk"]
    assert risks["treated"] == pytest.approx(glm_ref[("logistic_adjusted", "risk_treated")],
                                             abs=TOL)
    assert risks["control"] == pytest.approx(glm_ref[("logistic_adjusted", "risk_control")],
                                             abs=TOL)


def test_binary_n_and_deviance_match_r(adjusted, glm_ref):
    # R: nobs(fit), deviance(fit)
    assert adjusted.estimate.n_analysed == glm_ref[("logistic_adjusted", "n")]
    assert adjusted.estimate.diagnostics["deviance"] == pytest.approx(
        glm_ref[("logistic_adjusted", "deviance")], abs=TOL)


def test_unadjusted_rd_equals_crude_difference(unadjusted):
    # With no covariates the standardised RD is the crude difference of proportions.
    assert unadjusted.estimate.estimate == pytest.approx(unadjusted.exact["risk_difference"],
                                                         abs=1e-9)


MODELS = {"poisson": "poisson_offset", "negative_binomial": "negbin_offset"}


@pytest.fixture(scope="module", params=list(MODELS))
def count_fit(request, glm_data):
    frame = glm_data.rename(columns={"events": "y"})
    spec = CountSpec("events", "ref", request.param, ("baseline", "practice"))
    return request.param, fit_count(frame, spec)


def _tol(family):
    return TOL if family == "poisson" else NB_TOL


def test_rate_ratio_matches_r(count_fit, glm_ref):
    # R glm(poisson, offset) / MASS::glm.nb: exp(coef["treated"])
    family, res = count_fit
    assert res.estimate.estimate == pytest.approx(glm_ref[(MODELS[family], "rate_ratio")],
                                                  rel=_tol(family))


def test_log_rate_ratio_se_matches_r(count_fit, glm_ref):
    # R summary(fit)$coefficients["treated", "Std. Error"]
    family, res = count_fit
    assert res.estimate.std_error == pytest.approx(glm_ref[(MODELS[family], "std_error")],
                                                   rel=_tol(family))


def test_rate_ratio_interval_matches_r(count_fit, glm_ref):
    # R exp(coef -/+ qnorm(0.975) * se)
    family, res = count_fit
    assert res.estimate.ci_lower == pytest.approx(
        glm_ref[(MODELS[family], "rate_ratio_ci_lower")], rel=_tol(family))
    assert res.estimate.ci_upper == pytest.approx(
        glm_ref[(MODELS[family], "rate_ratio_ci_upper")], rel=_tol(family))


def test_count_p_value_matches_r(count_fit, glm_ref):
    # R summary(fit)$coefficients["treated", "Pr(>|z|)"]
    family, res = count_fit
    assert res.estimate.p_value == pytest.approx(glm_ref[(MODELS[family], "p_value")],
                                                 rel=1e-4)


def test_count_baseline_coefficient_matches_r(count_fit, glm_ref):
    # R coef(fit)["baseline"] and its SE
    family, res = count_fit
    row = next(c for c in res.coefficients if c["term"] == "Q('baseline')")
    assert row["estimate"] == pytest.approx(glm_ref[(MODELS[family], "baseline_coef")],
                                            abs=_tol(family))
    assert row["std_error"] == pytest.approx(glm_ref[(MODELS[family], "baseline_se")],
                                             abs=_tol(family))


def test_count_log_likelihood_matches_r(count_fit, glm_ref):
    # R logLik(fit)
    family, res = count_fit
    assert res.estimate.details["log_likelihood"] == pytest.approx(
        glm_ref[(MODELS[family], "log_likelihood")], abs=1e-6)


def test_negative_binomial_theta_matches_r(glm_data, glm_ref):
    # MASS::glm.nb(...)$theta
    res = fit_count(glm_data.rename(columns={"events": "y"}),
                    CountSpec("events", "ref", "negative_binomial", ("baseline", "practice")))
    assert res.estimate.details["nb_theta"] == pytest.approx(glm_ref[("negbin_offset", "theta")],
                                                             rel=1e-5)


# ---------------------------------------------------------------------------- GEE
CORRS = ("independence", "exchangeable", "ar1", "unstructured")
N_ALPHA = {"independence": 0, "exchangeable": 1, "ar1": 1, "unstructured": 6}
GEE_COVARIATES = ("center", "sex", "age", "baseline")


@pytest.fixture(scope="module")
def gee_ref() -> dict[tuple[str, str], float]:
    r = pd.read_csv(REFERENCE / "gee_respiratory.csv")
    return {(m, s): float(v) for m, s, v in r.itertuples(index=False)}


@pytest.fixture(scope="module", params=CORRS)
def gee_fit(request):
    data = pd.read_csv(REFERENCE / "gee_respiratory_data.csv")
    spec = GeeSpec("status", "ref", "binomial", request.param, covariates=GEE_COVARIATES)
    return request.param, fit_gee(data, spec)


def test_gee_log_odds_ratio_matches_geeglm(gee_fit, gee_ref):
    # geepack::geeglm(...)$geese$beta["treated"]
    cs, res = gee_fit
    assert res.estimate.details["log_estimate"] == pytest.approx(gee_ref[(cs, "estimate")],
                                                                 abs=GEE_TOL)


def test_gee_odds_ratio_is_exp_of_coefficient(gee_fit, gee_ref):
    # geeglm coefficient, exponentiated (the Estimate reports the odds ratio)
    cs, res = gee_fit
    assert res.estimate.estimate == pytest.approx(math.exp(gee_ref[(cs, "estimate")]),
                                                  rel=GEE_TOL)


@pytest.mark.parametrize("se", ["robust", "model", "mancl_derouen", "kauermann_carroll"])
def test_gee_standard_errors_match_r(gee_fit, gee_ref, se):
    # robust: geeglm san.se; model: geese vbeta.naiv; MD / KC: hand R code in gee_respiratory.R
    cs, res = gee_fit
    assert res.std_errors[se] == pytest.approx(gee_ref[(cs, f"se_{se}")], abs=GEE_TOL)


def test_gee_robust_interval_and_p_match_r(gee_fit, gee_ref):
    # exp(beta -/+ qnorm(0.975) san.se); summary(geeglm) Pr(>|W|)
    cs, res = gee_fit
    assert res.estimate.ci_lower == pytest.approx(gee_ref[(cs, "exp_ci_lower_robust")], rel=1e-6)
    assert res.estimate.ci_upper == pytest.approx(gee_ref[(cs, "exp_ci_upper_robust")], rel=1e-6)
    assert res.estimate.p_value == pytest.approx(gee_ref[(cs, "p_value_robust")], rel=1e-5)


def test_gee_scale_matches_geeglm(gee_fit, gee_ref):
    # geeglm(...)$geese$gamma
    cs, res = gee_fit
    assert res.working_correlation["scale"] == pytest.approx(gee_ref[(cs, "scale")], abs=GEE_TOL)


def test_gee_working_correlation_matches_geeglm(gee_fit, gee_ref):
    # geeglm(...)$geese$alpha (unstructured order 1:2, 1:3, 1:4, 2:3, 2:4, 3:4)
    cs, res = gee_fit
    alpha = res.working_correlation["alpha"]
    assert len(alpha) == N_ALPHA[cs]
    for k, a in enumerate(alpha, start=1):
        assert a == pytest.approx(gee_ref[(cs, f"alpha_{k}")], abs=1e-6)


def test_gee_mancl_derouen_t_interval_matches_r(gee_ref):
    # exp(beta -/+ qt(0.975, K - p) se_MD), 2 pt(-|z|, K - p), hand R (gee_respiratory.R)
    data = pd.read_csv(REFERENCE / "gee_respiratory_data.csv")
    spec = GeeSpec("status", "ref", "binomial", "ar1", covariates=GEE_COVARIATES,
                   se="mancl_derouen")
    est = fit_gee(data, spec).estimate
    assert est.ci_lower == pytest.approx(gee_ref[("ar1", "exp_ci_lower_mancl_derouen")], rel=1e-6)
    assert est.ci_upper == pytest.approx(gee_ref[("ar1", "exp_ci_upper_mancl_derouen")], rel=1e-6)
    assert est.p_value == pytest.approx(gee_ref[("ar1", "p_value_mancl_derouen")], rel=1e-5)


EPIL = ("exchangeable", "ar1")


@pytest.fixture(scope="module", params=EPIL)
def epil_fit(request):
    data = pd.read_csv(REFERENCE / "gee_epilepsy_data.csv")
    spec = GeeSpec("seizures", "ref", "poisson", request.param, covariates=("lbase", "lage"))
    return f"epil_{request.param}", fit_gee(data, spec)


def test_poisson_gee_log_rate_ratio_matches_geeglm(epil_fit, gee_ref):
    # geeglm(y ~ treated + lbase + lage, poisson) on MASS::epil
    label, res = epil_fit
    assert res.estimate.details["log_estimate"] == pytest.approx(gee_ref[(label, "estimate")],
                                                                 abs=GEE_TOL)


@pytest.mark.parametrize("se", ["robust", "model", "mancl_derouen", "kauermann_carroll"])
def test_poisson_gee_standard_errors_match_r(epil_fit, gee_ref, se):
    # robust: san.se; model: vbeta.naiv; MD / KC: hand R code in gee_respiratory.R
    label, res = epil_fit
    assert res.std_errors[se] == pytest.approx(gee_ref[(label, f"se_{se}")], abs=GEE_TOL)


def test_poisson_gee_scale_and_alpha_match_geeglm(epil_fit, gee_ref):
    # geeglm(...)$geese$gamma and $alpha
    label, res = epil_fit
    assert res.working_correlation["scale"] == pytest.approx(gee_ref[(label, "scale")],
                                                             abs=GEE_TOL)
    assert res.working_correlation["alpha"][0] == pytest.approx(gee_ref[(label, "alpha_1")],
                                                                abs=GEE_TOL)


def test_poisson_gee_rate_ratio_interval_matches_r(epil_fit, gee_ref):
    # exp(beta -/+ qnorm(0.975) san.se)
    label, res = epil_fit
    assert res.estimate.ci_lower == pytest.approx(gee_ref[(label, "exp_ci_lower_robust")],
                                                  rel=1e-6)
    assert res.estimate.ci_upper == pytest.approx(gee_ref[(label, "exp_ci_upper_robust")],
                                                  rel=1e-6)
