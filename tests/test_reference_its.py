"""Interrupted time series against R: lm + sandwich::NeweyWest / vcovPL + lmtest::coeftest.

Source: tests/reference/its_seatbelts.R (R 4.2.2, sandwich 3.0.2, lmtest 0.9.40) run on base R's
``datasets::Seatbelts`` (UK monthly road casualties 1969-1984; front-seat belt law from
31 Jan 1983, Harvey & Durbin 1986, JRSS A 149:187-227), exported to its_seatbelts.csv; raw
output in its_seatbelts.out, 15-digit values in its_seatbelts_nw.csv. ``fit_its`` matches
``NeweyWest(fit, lag, prewhite = FALSE, adjust = TRUE)`` (the n/(n-k) factor); the
``adjust = FALSE`` rows in the CSV are kept only to show that they differ.
"""

from __future__ import annotations

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
