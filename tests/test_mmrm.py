"""MMRM: properties, error handling, serialisation and a small coverage simulation.

Comparisons with R (nlme::gls, emmeans) are in tests/test_reference_mmrm.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.mmrm import MmrmSpec, fit_mmrm
from analysis.mmrm_covariance import STRUCTURES, CovarianceStructure
from tests.conftest import REFERENCE
from trials.errors import AnalysisError


def simulate(n: int, visits: tuple[int, ...], seed: int, effect: float = -2.0,
             dropout: float = 0.1) -> pd.DataFrame:
    """A small two-arm trial with an AR(1)-like unstructured covariance and MAR dropout."""
    rng = np.random.default_rng(seed)
    t = len(visits)
    treated = np.arange(n) % 2
    baseline = rng.normal(20, 4, n)
    sd = np.linspace(3, 5, t)
    cov = 0.6 ** np.abs(np.subtract.outer(range(t), range(t))) * np.outer(sd, sd)
    err = rng.multivariate_normal(np.zeros(t), cov, n)
    y = 10 + 0.5 * baseline[:, None] + effect * treated[:, None] * np.arange(1, t + 1) / t + err
    for v in range(1, t):
        y[(rng.uniform(size=n) < dropout) | np.isnan(y[:, v - 1]), v:] = np.nan
    return pd.DataFrame({
        "participant": np.repeat(np.arange(n), t), "visit": np.tile(visits, n),
        "treated": np.repeat(treated, t), "arm": np.repeat(np.where(treated, "exp", "ctl"), t),
        "y": y.ravel(), "baseline": np.repeat(baseline, t)})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulate(80, (1, 2, 4), seed=3)


def spec(**kw) -> MmrmSpec:
    return MmrmSpec(**{"estimand": "primary", "analysis": "mmrm", "visit": 4, **kw})


# ------------------------------------------------------------------ covariance structures
@pytest.mark.parametrize("name", STRUCTURES)
def test_structure_is_positive_definite_anywhere(name):
    struct = CovarianceStructure(name, 4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        sigma = struct.matrix(rng.normal(0, 1.5, struct.n_params))
        assert np.allclose(sigma, sigma.T)
        assert np.linalg.eigvalsh(sigma).min() > 0


@pytest.mark.parametrize("name", STRUCTURES)
def test_complex_step_jacobian_matches_finite_differences(name):
    struct = CovarianceStructure(name, 4)
    theta = np.random.default_rng(1).normal(0, 0.5, struct.n_params)
    h = 1e-6
    fd = np.stack([(struct.matrix(theta + h * e) - struct.matrix(theta - h * e)) / (2 * h)
                   for e in np.eye(struct.n_params)])
    assert struct.jacobian(theta) == pytest.approx(fd, abs=1e-6)


def test_toeplitz_with_partial_autocorrelations_gives_known_ar1():
    # an AR(1) process has partial autocorrelation rho at lag 1 and 0 beyond
    rho = 0.6
    sigma = CovarianceStructure("toeplitz", 4).matrix(np.array([0.0, np.arctanh(rho), 0, 0]))
    assert sigma == pytest.approx(rho ** np.abs(np.subtract.outer(range(4), range(4))))


def test_unknown_structure_is_an_analysis_error():
    with pytest.raises(AnalysisError, match="covariance"):
        CovarianceStructure("banded", 3)


# ------------------------------------------------------------------ equivalences (no R needed)
def _loglik(frame, **kw) -> float:
    return fit_mmrm(frame, spec(**kw)).estimate.diagnostics["log_likelihood"]


@pytest.fixture(scope="module")
def two_visits(frame) -> pd.DataFrame:
    return frame[frame["visit"].isin([1, 2])]


def test_heterogeneous_toeplitz_equals_unstructured_on_two_visits(two_visits):
    # nlme has corARMA (our Toeplitz reference) but this property needs no reference: with two
    # visits both structures have two variances and one free correlation
    assert _loglik(two_visits, visit=2, covariance="heterogeneous_toeplitz") == pytest.approx(
        _loglik(two_visits, visit=2, covariance="unstructured"), abs=1e-6)


def test_toeplitz_equals_compound_symmetry_on_two_visits(two_visits):
    assert _loglik(two_visits, visit=2, covariance="toeplitz") == pytest.approx(
        _loglik(two_visits, visit=2, covariance="compound_symmetry"), abs=1e-6)


def test_heterogeneous_ar1_equals_unstructured_on_two_visits(two_visits):
    assert _loglik(two_visits, visit=2, covariance="heterogeneous_ar1") == pytest.approx(
        _loglik(two_visits, visit=2, covariance="unstructured"), abs=1e-6)


def test_complete_data_unstructured_matches_ols_by_visit():
    # with complete data and only visit-specific terms, the unstructured GLS estimate at each
    # visit is that visit's OLS estimate (seemingly unrelated regressions with equal regressors)
    data = simulate(60, (1, 2, 3), seed=5, dropout=0.0)
    res = fit_mmrm(data, spec(visit=3))
    for visit, contrast in zip(res.visits, res.contrasts, strict=True):
        one = data[data["visit"] == visit]
        x = np.column_stack([np.ones(len(one)), one["treated"], one["baseline"]])
        coef = np.linalg.lstsq(x, one["y"].to_numpy(), rcond=None)[0]
        assert contrast.estimate == pytest.approx(coef[1], abs=1e-8)


def test_residual_df_is_observations_minus_parameters(frame):
    res = fit_mmrm(frame, spec(df="residual"))
    n_obs, n_beta = res.estimate.details["n_observations"], len(res.terms)
    assert all(c.df == n_obs - n_beta for c in res.contrasts)


def test_ml_and_reml_give_different_likelihoods(frame):
    assert _loglik(frame, method="ml") != pytest.approx(_loglik(frame, method="reml"))


# ------------------------------------------------------------------ result contract
def test_estimate_contract(frame):
    res = fit_mmrm(frame, spec())
    est = res.estimate
    assert (est.model, est.engine, est.ci_level) == ("mmrm", "frequentist", 0.95)
    assert est.estimate == res.contrasts[-1].estimate
    assert est.ci_lower < est.estimate < est.ci_upper
    assert set(est.diagnostics) == {"converged", "iterations", "log_likelihood", "aic", "bic",
                                    "df"}
    assert est.reliable and est.diagnostics["converged"]
    assert est.details["visits"] == [1, 2, 4]
    assert np.asarray(est.details["covariance"]) == pytest.approx(res.covariance)
    assert est.n_analysed == sum(est.n_by_arm.values())


def test_lsmean_difference_is_the_contrast(frame):
    res = fit_mmrm(frame, spec())
    for j, contrast in enumerate(res.contrasts):
        ctl, exp = res.lsmeans[2 * j], res.lsmeans[2 * j + 1]
        assert (ctl.arm, exp.arm) == ("ctl", "exp")
        assert exp.estimate - ctl.estimate == pytest.approx(contrast.estimate)


def test_to_dict_is_json_serialisable(frame):
    res = fit_mmrm(frame, spec(interval_level=0.9))
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert out["estimate"]["ci_level"] == 0.9
    assert len(out["lsmeans"]) == 6 and len(out["contrasts"]) == 3
    json.dumps(res.estimate.to_dict(), allow_nan=False)


def test_results_are_read_only(frame):
    res = fit_mmrm(frame, spec())
    with pytest.raises(ValueError):
        res.beta[0] = 1.0


def test_caller_frame_is_not_modified(frame):
    before = frame.copy()
    fit_mmrm(frame, spec())
    pd.testing.assert_frame_equal(frame, before)


def test_row_order_does_not_matter(frame):
    shuffled = frame.sample(frac=1.0, random_state=7)
    assert fit_mmrm(shuffled, spec()).beta == pytest.approx(fit_mmrm(frame, spec()).beta,
                                                            abs=1e-8)


def test_participants_without_any_outcome_are_not_analysed(frame):
    data = frame.copy()
    data.loc[data["participant"] == 0, "y"] = np.nan
    n_with_outcome = data.dropna(subset=["y"])["participant"].nunique()
    assert fit_mmrm(data, spec()).estimate.n_analysed == n_with_outcome


def test_visit_given_as_string_is_found(frame):
    assert fit_mmrm(frame, spec(visit="2")).estimate.estimate == pytest.approx(
        fit_mmrm(frame, spec(visit=2)).estimate.estimate)


def test_missing_covariate_drops_participant_with_warning():
    data = pd.read_csv(REFERENCE / "mmrm_sim_data.csv")
    res = fit_mmrm(data, spec(visit=12, covariates=("baseline", "age", "site")))
    assert res.estimate.details["n_excluded"] == 3
    assert any("missing covariate" in w for w in res.estimate.warnings)


# ------------------------------------------------------------------ failures
def test_non_convergence_is_reported_not_raised():
    # the two visits' residuals are perfectly correlated: Sigma is singular at the optimum
    rng = np.random.default_rng(1)
    base, noise = rng.normal(20, 3, 40), rng.normal(0, 3, 40)
    data = pd.DataFrame({
        "participant": np.repeat(np.arange(40), 2), "visit": np.tile([1, 2], 40),
        "treated": np.repeat(np.arange(40) % 2, 2), "arm": np.repeat(np.arange(40) % 2, 2),
        "baseline": np.repeat(base, 2),
        "y": np.repeat(base + noise, 2) + np.tile([0.0, 1.0], 40)})
    data["arm"] = np.where(data["arm"] == 1, "exp", "ctl")
    est = fit_mmrm(data, spec(visit=2)).estimate
    assert not est.reliable
    assert any("did not converge" in w for w in est.warnings)


def test_fewer_than_two_visits_is_an_error(frame):
    with pytest.raises(AnalysisError, match="two visits"):
        fit_mmrm(frame[frame["visit"] == 4], spec())


def test_arm_without_outcomes_at_a_visit_is_a_singular_design(frame):
    data = frame.copy()
    data.loc[(data["visit"] == 4) & (data["treated"] == 1), "y"] = np.nan
    with pytest.raises(AnalysisError, match="singular design: no outcomes in arm 'exp'"):
        fit_mmrm(data, spec())


def test_collinear_covariate_is_a_singular_design(frame):
    data = frame.assign(baseline_copy=2 * frame["baseline"])
    with pytest.raises(AnalysisError, match="singular design: .*not estimable"):
        fit_mmrm(data, spec(visit=4, covariates=("baseline", "baseline_copy")))


@pytest.mark.parametrize(("field", "value"), [("method", "bayes"), ("df", "kenward_roger"),
                                              ("df", "containment"), ("interval_level", 1.5),
                                              ("visit", 99), ("covariates", ("missing_col",))])
def test_bad_specification_names_the_field(frame, field, value):
    with pytest.raises(AnalysisError, match=str(value if field == "covariates" else field)
                       .strip("()',")):
        fit_mmrm(frame, spec(**{field: value}))


# ------------------------------------------------------------------ coverage
def test_interval_coverage_is_nominal():
    # 300 trials of 40 participants, 3 visits, 10% dropout per visit; true effect -2 at visit 3
    hits = 0
    for seed in range(300):
        est = fit_mmrm(simulate(40, (1, 2, 3), seed=1000 + seed), spec(visit=3)).estimate
        hits += est.ci_lower <= -2.0 <= est.ci_upper
    # binomial 99.9% band around 0.95 for 300 trials: about 0.908 to 0.992
    assert 0.908 <= hits / 300 <= 0.992
