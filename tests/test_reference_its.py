"""Interrupted time series against R: lm + sandwich::NeweyWest / vcovPL + lmtest::coeftest, and
nlme::gls with corAR1 (REML) + emmeans Satterthwaite df.

Source: tests/reference/its_seatbelts.R (R 4.2.2, sandwich 3.0.2, lmtest 0.9.40) run on base R's
``datasets::Seatbelts`` (UK monthly road casualties 1969-1984; front-seat belt law from
31 Jan 1983, Harvey & Durbin 1986, JRSS A 149:187-227), exported to its_seatbelts.csv; raw
output in its_seatbelts.out, 15-digit values in its_seatbelts_nw.csv. ``fit_its`` matches
``NeweyWest(fit, lag, prewhite = FALSE, adjust = TRUE)`` (the n/(n-k) factor); the
``adjust = FALSE`` rows in the CSV are kept only to show that they differ.

AR(1) errors (``errors="ar1"``): tests/reference/its_ar1.R (R 4.2.2, nlme 3.1-162, emmeans
1.8.4-1), ``nlme::gls(..., correlation = corAR1(form = ~ time), method = "REML")`` (with
``weights = varFixed(~ 1 / weight)`` for the weighted fit) on the Seatbelts series and on a
simulated 72-period series with two missing periods (its_ar1_sim.csv); residual-df tests as
``summary.gls``, Satterthwaite df from ``emmeans::ref_grid(fit, mode = "satterthwaite")``; raw
output its_ar1.out, 15-digit values its_ar1.csv.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from analysis.its import ItsSpec, default_hac_lags, fit_its
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

TOL = 1e-8  # absolute, on the outcome's scale (deaths per month); observed agreement ~1e-11

SPECS = {
    "drivers_month": ItsSpec("drivers_killed", "its", "1983-02-01", horizon=12,
                             seasonality="month"),
    "drivers_month_cov": ItsSpec("drivers_killed", "its", "1983-02-01", horizon=12,
                                 seasonality="month", covariates=("kms", "PetrolPrice")),
    "drivers_fourier2_lag12": ItsSpec("drivers_killed", "its", "1983-02-01", horizon=12,
                                      seasonality="fourier:2", hac_lags=12),
    "front_vs_rear": ItsSpec("front_seat", "cits", "1983-02-01", horizon=12,
                             seasonality="month", comparison="rear_seat"),
}
TERMS = ("level", "slope", "pre_trend", "at_horizon")
STATS = ("estimate", "std_error", "t_value", "ci_lower", "ci_upper")


@pytest.fixture(scope="module")
def r_rows() -> pd.DataFrame:
    rows = pd.read_csv(REFERENCE / "its_seatbelts_nw.csv")
    return rows[rows["adjust"]].set_index(["fit", "term"])


@pytest.fixture(scope="module")
def fits() -> dict:
    data = pd.read_csv(REFERENCE / "its_seatbelts.csv")
    drivers = data.rename(columns={"DriversKilled": "y"})
    stacked = pd.concat([data.assign(y=data["front"], rear_seat=0),
                         data.assign(y=data["rear"], rear_seat=1)], ignore_index=True)
    return {name: fit_its(stacked if spec.comparison else drivers, spec)
            for name, spec in SPECS.items()}


@pytest.mark.parametrize("stat", STATS)
@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("fit", list(SPECS))
def test_coefficient_matches_r(fits, r_rows, fit, term, stat):
    # R: lmtest::coeftest(lm, vcov. = NeweyWest/vcovPL(..., adjust = TRUE)), its_seatbelts.R
    ours = getattr(fits[fit].coefficient(term), stat)
    assert ours == pytest.approx(r_rows.loc[(fit, term), stat], abs=TOL, rel=1e-9)


@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("fit", list(SPECS))
def test_p_value_matches_r(fits, r_rows, fit, term):
    # R: 2 * pt(-|t|, df.residual), its_seatbelts.R
    ours = fits[fit].coefficient(term).p_value
    assert ours == pytest.approx(r_rows.loc[(fit, term), "p_value"], rel=1e-7, abs=1e-300)


@pytest.mark.parametrize("fit", list(SPECS))
def test_residual_df_matches_r(fits, r_rows, fit):
    # R: fit$df.residual, its_seatbelts.R
    assert fits[fit].estimate.diagnostics["df_resid"] == r_rows.loc[(fit, "level"), "df_residual"]


@pytest.mark.parametrize("fit", list(SPECS))
def test_residual_sd_matches_r(fits, r_rows, fit):
    # R: summary(fit)$sigma, its_seatbelts.R
    assert fits[fit].estimate.diagnostics["residual_sd"] == pytest.approx(
        r_rows.loc[(fit, "level"), "sigma"], rel=1e-10)


@pytest.mark.parametrize("fit", list(SPECS))
def test_hac_lag_matches_r(fits, r_rows, fit):
    # R: lag = floor(4 * (n / 100)^(2/9)) = 4 for n = 192, or 12 as given, its_seatbelts.R
    assert fits[fit].estimate.diagnostics["hac_lags"] == r_rows.loc[(fit, "level"), "lag"]


def test_default_lag_rule():
    # R: floor(4 * (192 / 100)^(2/9)) = 4, its_seatbelts.out header
    assert default_hac_lags(192) == 4


def test_primary_estimate_is_the_level_change(fits, r_rows):
    # R: coef "level" (-19.07 drivers killed per month), its_seatbelts_nw.csv
    est = fits["drivers_month"].estimate
    assert est.estimate == pytest.approx(r_rows.loc[("drivers_month", "level"), "estimate"],
                                         abs=TOL)


def test_unadjusted_standard_error_differs(r_rows):
    # Documents which sandwich option fit_its follows: adjust = FALSE is ~4% smaller here.
    rows = pd.read_csv(REFERENCE / "its_seatbelts_nw.csv").set_index(["fit", "term", "adjust"])
    ratio = (rows.loc[("drivers_month", "level", True), "std_error"]
             / rows.loc[("drivers_month", "level", False), "std_error"])
    assert ratio == pytest.approx((192 / 177) ** 0.5, rel=1e-9)


# ---------------------------------------------------------------- AR(1) errors (nlme::gls REML)
AR1_SPECS = {
    "drivers_month": ItsSpec("drivers_killed", "its", "1983-02-01", horizon=12,
                             seasonality="month", errors="ar1"),
    "drivers_month_cov": ItsSpec("drivers_killed", "its", "1983-02-01", horizon=12,
                                 seasonality="month", covariates=("kms", "PetrolPrice"),
                                 errors="ar1"),
    "sim_unweighted": ItsSpec("y", "its", 148, horizon=12, errors="ar1"),
    "sim_weighted": ItsSpec("y", "its", 148, horizon=12, errors="ar1"),
}
# nlme stops its optimiser (nlminb) at a relative tolerance near 1e-7 in rho, so agreement is
# ~1e-7 relative, not 1e-11; Satterthwaite df agree to ~1e-3 because nlme's apVar is a coarser
# finite-difference Hessian (fdHess) than ours.
AR1_EST_TOL = 1e-6  # relative, estimates (observed <= 1.2e-7 abs)
AR1_SE_TOL = 1e-6  # relative (observed <= 1.2e-7)
AR1_DF_TOL = 3e-3  # relative, Satterthwaite df (observed <= 1.2e-3)


@pytest.fixture(scope="module")
def r_ar1() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "its_ar1.csv").set_index(["fit", "term"])


def _ar1_frame(name: str) -> pd.DataFrame:
    if name.startswith("drivers"):
        return pd.read_csv(REFERENCE / "its_seatbelts.csv").rename(columns={"DriversKilled": "y"})
    sim = pd.read_csv(REFERENCE / "its_ar1_sim.csv")
    return sim if name == "sim_weighted" else sim.drop(columns="weight")


@pytest.fixture(scope="module")
def ar1_fits() -> dict:
    return {name: fit_its(_ar1_frame(name), spec) for name, spec in AR1_SPECS.items()}


@pytest.fixture(scope="module")
def ar1_residual_df_fits() -> dict:
    return {name: fit_its(_ar1_frame(name), replace(spec, ar1_df="residual"))
            for name, spec in AR1_SPECS.items()}


@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_estimate_matches_nlme(ar1_fits, r_ar1, fit, term):
    # R: coef(gls(..., corAR1(form = ~ time), method = "REML")) contrasts, its_ar1.csv
    ours = ar1_fits[fit].coefficient(term).estimate
    assert ours == pytest.approx(r_ar1.loc[(fit, term), "estimate"], rel=AR1_EST_TOL, abs=1e-6)


@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_standard_error_matches_nlme(ar1_fits, r_ar1, fit, term):
    # R: sqrt(c' vcov(gls) c), its_ar1.csv
    ours = ar1_fits[fit].coefficient(term).std_error
    assert ours == pytest.approx(r_ar1.loc[(fit, term), "std_error"], rel=AR1_SE_TOL)


@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_rho_matches_nlme(ar1_fits, r_ar1, fit):
    # R: coef(fit$modelStruct$corStruct, unconstrained = FALSE), its_ar1.csv
    ours = ar1_fits[fit].estimate.diagnostics["rho"]
    assert ours == pytest.approx(r_ar1.loc[(fit, "level"), "rho"], abs=1e-6)


@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_sigma_matches_nlme(ar1_fits, r_ar1, fit):
    # R: fit$sigma (REML), its_ar1.csv
    ours = ar1_fits[fit].estimate.diagnostics["residual_sd"]
    assert ours == pytest.approx(r_ar1.loc[(fit, "level"), "sigma"], rel=1e-6)


@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_reml_log_likelihood_matches_nlme(ar1_fits, r_ar1, fit):
    # R: logLik(fit) (REML), its_ar1.csv; flat at the optimum, so tight even with rho at 1e-7
    ours = ar1_fits[fit].estimate.diagnostics["reml_log_likelihood"]
    assert ours == pytest.approx(r_ar1.loc[(fit, "level"), "loglik"], abs=1e-8)


@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_residual_df_matches_nlme(ar1_residual_df_fits, r_ar1, fit):
    # R: fit$dims$N - fit$dims$p, its_ar1.csv
    est = ar1_residual_df_fits[fit].estimate
    assert est.diagnostics["df_resid"] == r_ar1.loc[(fit, "level"), "df_residual"]
    assert est.n_analysed == r_ar1.loc[(fit, "level"), "nobs"]


@pytest.mark.parametrize("stat", ("p_value", "ci_lower", "ci_upper"))
@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_residual_df_inference_matches_nlme(ar1_residual_df_fits, r_ar1, fit, term, stat):
    # R: 2 * pt(-|t|, N - p) and est -/+ qt(0.975, N - p) * SE (summary.gls), its_ar1.csv
    ours = getattr(ar1_residual_df_fits[fit].coefficient(term), stat)
    assert ours == pytest.approx(r_ar1.loc[(fit, term), stat], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_satterthwaite_df_matches_emmeans(ar1_fits, r_ar1, fit, term):
    # R: ref_grid(fit, mode = "satterthwaite")@dffun(c, @dfargs), emmeans 1.8.4-1, its_ar1.csv
    ours = ar1_fits[fit].estimate.diagnostics["satterthwaite_df"][term]
    assert ours == pytest.approx(r_ar1.loc[(fit, term), "df_satterthwaite"], rel=AR1_DF_TOL)


@pytest.mark.parametrize("side", ("lower", "upper"))
@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_satterthwaite_interval_matches_emmeans(ar1_fits, r_ar1, fit, term, side):
    # R: est -/+ qt(0.975, Satterthwaite df) * SE, its_ar1.csv; a 1e-3 relative df error moves
    # the t quantile by far less than 1e-2 SE even at 4 df
    row = r_ar1.loc[(fit, term)]
    ours = getattr(ar1_fits[fit].coefficient(term), f"ci_{side}")
    assert ours == pytest.approx(row[f"ci_{side}_satterthwaite"], abs=1e-2 * row["std_error"])


@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("fit", list(AR1_SPECS))
def test_ar1_satterthwaite_p_value_matches_emmeans(ar1_fits, r_ar1, fit, term):
    # R: 2 * pt(-|t|, Satterthwaite df), its_ar1.csv (observed <= 8.4e-3 relative)
    ours = ar1_fits[fit].coefficient(term).p_value
    assert ours == pytest.approx(r_ar1.loc[(fit, term), "p_value_satterthwaite"], rel=3e-2)


def test_ar1_primary_estimate_is_the_level_change(ar1_fits, r_ar1):
    # R: gls level coefficient, -18.76 drivers killed per month (NW/OLS: -19.07), its_ar1.csv
    est = ar1_fits["drivers_month"].estimate
    assert est.estimate == pytest.approx(r_ar1.loc[("drivers_month", "level"), "estimate"],
                                         rel=AR1_EST_TOL)
    assert est.details["errors"] == "ar1"
