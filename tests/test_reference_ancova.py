"""ANCOVA against R's lm (R 4.2.2, base stats).

Source: tests/reference/ancova_lm.R run on tests/reference/ancova_data.csv; raw output in
ancova_lm.out, full-precision values in ancova_lm.csv and ancova_lm_fit.csv.
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.ancova import AncovaSpec, fit_ancova
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

TOL = 1e-6  # the bar: match R lm to 1e-6


@pytest.fixture(scope="module")
def r_fit() -> pd.Series:
    return pd.read_csv(REFERENCE / "ancova_lm_fit.csv").iloc[0]


@pytest.fixture(scope="module")
def est(ancova_frame):
    spec = AncovaSpec("primary", "ref", ("baseline", "practice", "severity_stratum"), 0.95)
    return fit_ancova(ancova_frame, spec)


def test_estimate_matches_r(est, r_lm_arm):
    assert est.estimate == pytest.approx(r_lm_arm["estimate"], abs=TOL)


def test_standard_error_matches_r(est, r_lm_arm):
    assert est.std_error == pytest.approx(r_lm_arm["std_error"], abs=TOL)


def test_ci_lower_matches_r(est, r_lm_arm):
    assert est.ci_lower == pytest.approx(r_lm_arm["ci_lower"], abs=TOL)


def test_ci_upper_matches_r(est, r_lm_arm):
    assert est.ci_upper == pytest.approx(r_lm_arm["ci_upper"], abs=TOL)


def test_p_value_matches_r(est, r_lm_arm):
    assert est.p_value == pytest.approx(r_lm_arm["p_value"], rel=1e-6)


def test_n_and_df_match_r(est, r_fit):
    assert est.n_analysed == r_fit["n"]
    assert est.diagnostics["df_resid"] == r_fit["df_residual"]


def test_residual_sd_matches_r(est, r_fit):
    assert est.diagnostics["residual_sd"] == pytest.approx(r_fit["sigma"], abs=TOL)


def test_excluded_missing_outcomes_are_reported(est, r_fit):
    assert est.details["n_excluded"] == r_fit["n_read"] - r_fit["n"]
    assert any("excluded" in w for w in est.warnings)


def test_90_percent_interval_matches_r(ancova_frame, r_lm_arm):
    spec = AncovaSpec("primary", "ref", ("baseline", "practice", "severity_stratum"), 0.90)
    est90 = fit_ancova(ancova_frame, spec)
    assert est90.ci_lower == pytest.approx(r_lm_arm["ci90_lower"], abs=TOL)
    assert est90.ci_upper == pytest.approx(r_lm_arm["ci90_upper"], abs=TOL)


def test_caller_frame_is_not_modified(ancova_frame):
    before = ancova_frame.copy()
    fit_ancova(ancova_frame, AncovaSpec("primary", "ref", ("baseline",), 0.95))
    pd.testing.assert_frame_equal(ancova_frame, before)
