"""Interrupted time series: simulated recovery, coverage, placebo checks, validation, Bayes."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analysis.bayes_ancova import SamplerSettings
from analysis.bayes_its import BayesItsSpec, fit_bayes_its
from analysis.falsification import FalsificationResult
from analysis.its import ItsSpec, fit_its, its_placebo
from tests.conftest import REFERENCE
from trials.errors import AnalysisError

LEVEL, SLOPE, TREND = -3.0, 0.2, 0.05


def simulate(rng: np.random.Generator, n: int = 96, t0: int = 60, rho: float = 0.0,
             level: float = LEVEL, slope: float = SLOPE, sd: float = 1.0) -> pd.DataFrame:
    u = rng.normal(0, sd, n)
    e = np.empty(n)
    e[0] = u[0] / np.sqrt(1 - rho**2)
    for t in range(1, n):
        e[t] = rho * e[t - 1] + u[t]
    t = np.arange(n)
    post = t >= t0
    y = 10 + TREND * t + level * post + slope * post * (t - t0) + e
    return pd.DataFrame({"period": t + 100, "y": y})


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    return simulate(np.random.default_rng(11), sd=0.5)


def test_recovers_level_and_slope(series):
    res = fit_its(series, ItsSpec("e", "a", 160, horizon=6))
    assert res.coefficient("level").estimate == pytest.approx(LEVEL, abs=0.5)
    assert res.coefficient("slope").estimate == pytest.approx(SLOPE, abs=0.05)
    assert res.coefficient("pre_trend").estimate == pytest.approx(TREND, abs=0.01)
    h = res.coefficient("at_horizon").estimate
    assert h == pytest.approx(res.coefficient("level").estimate
                              + 6 * res.coefficient("slope").estimate, abs=1e-12)


def test_effect_selects_the_primary_estimate(series):
    for effect in ("level", "slope"):
        res = fit_its(series, ItsSpec("e", "a", 160, effect=effect))
        assert res.estimate.estimate == res.coefficient(effect).estimate
    res = fit_its(series, ItsSpec("e", "a", 160, effect="at_horizon", horizon=12))
    assert res.estimate.estimate == res.coefficient("at_horizon").estimate
    assert res.estimate.model == "its_segmented"


def test_counterfactual_removes_only_the_change(series):
    res = fit_its(series, ItsSpec("e", "a", 160))
    fitted, cf = np.array(res.fitted), np.array(res.counterfactual)
    pre = np.array(res.periods) < 160
    np.testing.assert_allclose(fitted[pre], cf[pre])
    k = np.arange(int((~pre).sum()))
    lvl, slp = res.coefficient("level").estimate, res.coefficient("slope").estimate
    np.testing.assert_allclose(fitted[~pre] - cf[~pre], lvl + slp * k)


def test_coverage_of_newey_west_interval():
    # AR(1) errors (rho 0.3), 240 periods: Newey-West at the default lag is known to be a little
    # anti-conservative in series this short (about 0.90 for a nominal 0.95 in a 1000-run
    # check), so the band is wide; it catches gross errors (e.g. a naive SE gives ~0.80).
    rng = np.random.default_rng(2026)
    reps, hits = 150, 0
    for _ in range(reps):
        frame = simulate(rng, n=240, t0=120, rho=0.3)
        est = fit_its(frame, ItsSpec("e", "a", 220)).estimate
        hits += est.ci_lower <= LEVEL <= est.ci_upper
    assert 0.83 <= hits / reps <= 0.99


def test_coverage_of_ar1_interval():
    # AR(1) errors (rho 0.3), 60 and 120 periods: REML GLS with Satterthwaite df covers the
    # level change at about the nominal rate (0.950 and 0.948 in a 400-run check each, where
    # Newey-West gave 0.855 and 0.888); 100 runs per length, band about +/-2.5 MC SE.
    rng = np.random.default_rng(2027)
    reps, hits = 100, 0
    for n in (60, 120):
        for _ in range(reps):
            frame = simulate(rng, n=n, t0=n // 2, rho=0.3)
            est = fit_its(frame, ItsSpec("e", "a", 100 + n // 2, errors="ar1")).estimate
            hits += est.ci_lower <= LEVEL <= est.ci_upper
    assert 0.91 <= hits / (2 * reps) <= 0.99


def _placebo_runs(n_pre: int, rho: float, errors: str, reps: int, seed: int,
                  shift: float = 0.0) -> tuple[float, float]:
    """Share of runs whose three-date placebo check fails, and the per-date rejection rate at
    0.05/3, for series of ``n_pre`` pre-periods (plus 6 after) with no change before the
    interruption (or a level ``shift`` at the middle placebo date)."""
    rng = np.random.default_rng(seed)
    dates = [100 + round(n_pre * k / 4) for k in (1, 2, 3)]
    failed = rejected = 0
    for _ in range(reps):
        frame = simulate(rng, n=n_pre + 6, t0=n_pre, rho=rho)
        frame.loc[frame["period"] >= dates[1], "y"] += shift
        res = its_placebo(frame, ItsSpec("e", "a", 100 + n_pre, errors=errors), dates)
        failed += not res.passed
        rejected += res.statistic
    return failed / reps, rejected / (3 * reps)


@pytest.mark.parametrize(("n_pre", "rho"), [(24, 0.0), (24, 0.3), (48, 0.0), (48, 0.3)])
def test_placebo_check_false_alarm_rate(n_pre, rho):
    # 150 pure-noise pre-periods per case. Newey-West (lag floor(4 (T/100)^(2/9)) = 2 or 3)
    # rejects 0.10-0.14 per date at 0.05/3 and fails the check 0.27-0.38 of the time (400-run
    # check); AR(1) GLS with Satterthwaite df fails it 0.04-0.05 at 48 pre-periods and
    # 0.055-0.085 at 24 (tests/reference/its_sc.md). MC SE of a 0.05 rate in 150 runs: 0.018.
    seed = 40 + n_pre + int(10 * rho)
    nw_check, nw_date = _placebo_runs(n_pre, rho, "newey_west", 150, seed)
    ar_check, ar_date = _placebo_runs(n_pre, rho, "ar1", 150, seed)
    assert nw_check > 0.15
    assert nw_date > 0.05
    limit = 0.05 + 2.5 * 0.018 + (0.04 if n_pre < 36 else 0.0)  # 24 periods: known excess
    assert ar_check <= limit
    assert ar_date <= 0.0167 + 0.035 / (1 if n_pre < 36 else 2)


def test_ar1_placebo_check_detects_an_earlier_break():
    # A level shift of 4 (innovation SD 1, rho 0.3: error SD 1.05) at the middle of 48
    # pre-periods: flagged in 200 of 200 runs (shift 3: 0.88, Newey-West 0.97; shift 2: 0.51,
    # Newey-West 0.79 -- Newey-West's extra "power" is its inflated false-alarm rate).
    power, _ = _placebo_runs(48, 0.3, "ar1", 50, seed=77, shift=-4.0)
    assert power >= 0.9


def test_ar1_rejects_what_it_cannot_fit(series):
    with pytest.raises(AnalysisError, match="single series"):
        fit_its(pd.concat([series.assign(comp=0), series.assign(comp=1)]),
                ItsSpec("e", "a", 160, comparison="comp", errors="ar1"))
    with pytest.raises(AnalysisError, match="hac_lags"):
        fit_its(series, ItsSpec("e", "a", 160, errors="ar1", hac_lags=2))
    with pytest.raises(AnalysisError, match="ar1_df"):
        fit_its(series, ItsSpec("e", "a", 160, errors="ar1", ar1_df="kenward_roger"))
    with pytest.raises(AnalysisError, match="errors"):
        fit_its(series, ItsSpec("e", "a", 160, errors="arma"))


def test_ar1_result_is_json_safe_and_labelled(series):
    res = fit_its(series, ItsSpec("e", "a", 160, errors="ar1", horizon=6))
    d = res.to_dict()
    assert json.dumps(d, allow_nan=False)
    assert d["estimate"]["details"]["errors"] == "ar1"
    assert set(d["estimate"]["diagnostics"]["satterthwaite_df"]) == {
        "level", "slope", "pre_trend", "at_horizon"}
    # The AR(1) whitening leaves uncorrelated residuals when the model is right.
    assert abs(d["estimate"]["diagnostics"]["residual_lag1_autocorrelation"]) < 0.3


def test_month_seasonality_with_dates_and_integers_agree():
    rng = np.random.default_rng(5)
    frame = simulate(rng, n=72, t0=48)
    frame["y"] += 2 * np.sin(2 * np.pi * np.arange(72) / 12)
    dated = frame.assign(period=pd.date_range("2019-01-01", periods=72, freq="MS")
                         .strftime("%Y-%m-%d"))
    a = fit_its(dated, ItsSpec("e", "a", "2023-01-01", seasonality="month"))
    b = fit_its(frame, ItsSpec("e", "a", 148, seasonality="month"))
    assert a.estimate.estimate == pytest.approx(b.estimate.estimate, abs=1e-9)
    assert a.periods[0] == "2019-01-01"


def test_fourier_terms_are_named():
    frame = simulate(np.random.default_rng(6), n=60, t0=40)
    res = fit_its(frame, ItsSpec("e", "a", 140, seasonality="fourier:2"))
    assert {"sin_1", "cos_1", "sin_2", "cos_2"} <= set(res.estimate.details["terms"])


def test_missing_outcome_is_dropped_and_reported(series):
    frame = series.copy()
    frame.loc[[5, 70], "y"] = np.nan
    res = fit_its(frame, ItsSpec("e", "a", 160))
    assert res.estimate.n_analysed == len(frame) - 2
    assert res.estimate.details["n_excluded"] == 2
    assert any("excluded" in w for w in res.estimate.warnings)


def test_weights_give_weighted_least_squares(series):
    equal = fit_its(series.assign(weight=3.0), ItsSpec("e", "a", 160))
    plain = fit_its(series, ItsSpec("e", "a", 160))
    assert equal.estimate.estimate == pytest.approx(plain.estimate.estimate, abs=1e-10)
    assert equal.estimate.details["weighted"] is True


def test_controlled_its_differences_out_a_shared_shock():
    rng = np.random.default_rng(9)
    treated = simulate(rng, sd=0.5)
    comparison = simulate(rng, sd=0.5, level=0.0, slope=0.0)
    shock = np.where(np.arange(96) >= 60, 4.0, 0.0)  # hits both series at the interruption
    frame = pd.concat([treated.assign(y=treated["y"] + shock, comp=0),
                       comparison.assign(y=comparison["y"] + shock, comp=1)])
    res = fit_its(frame, ItsSpec("e", "a", 160, comparison="comp"))
    assert res.estimate.estimate == pytest.approx(LEVEL, abs=0.6)
    assert res.estimate.details["controlled"] is True
    assert len(res.fitted) == 96


def test_to_dict_is_json_safe(series):
    res = fit_its(series, ItsSpec("e", "a", 160, horizon=3))
    text = json.dumps(res.to_dict(), allow_nan=False)
    assert "at_horizon" in text


def test_caller_frame_is_not_modified(series):
    before = series.copy()
    fit_its(series, ItsSpec("e", "a", 160, seasonality="month"))
    pd.testing.assert_frame_equal(series, before)


@pytest.mark.parametrize(("spec", "message"), [
    (ItsSpec("e", "a", 160, effect="peak"), "effect"),
    (ItsSpec("e", "a", 160, effect="at_horizon"), "horizon"),
    (ItsSpec("e", "a", 160, seasonality="weekly"), "seasonality"),
    (ItsSpec("e", "a", 194), "fewer than"),
    (ItsSpec("e", "a", 160, covariates=("dose",)), "dose"),
    (ItsSpec("e", "a", 160, comparison="comp"), "comp"),
    (ItsSpec("e", "a", 160, hac_lags=-1), "hac_lags"),
    (ItsSpec("e", "a", "2020-01-01"), "period"),
])
def test_invalid_specs_name_the_field(series, spec, message):
    with pytest.raises(AnalysisError, match=message):
        fit_its(series, spec)


def test_repeated_period_is_rejected(series):
    with pytest.raises(AnalysisError, match="period"):
        fit_its(pd.concat([series, series.iloc[:1]]), ItsSpec("e", "a", 160))


def test_placebo_passes_without_a_pre_period_change():
    frame = simulate(np.random.default_rng(12), n=200, t0=140)
    res = its_placebo(frame, ItsSpec("e", "a", 240), [160, 180, 200])
    assert isinstance(res, FalsificationResult)
    assert res.passed
    assert res.statistic == 0.0
    assert res.threshold == 0.05
    assert json.dumps(res.to_dict())


@pytest.mark.parametrize("errors", ["newey_west", "ar1"])
def test_placebo_fails_when_the_change_came_earlier(errors):
    frame = simulate(np.random.default_rng(3), sd=0.3)
    frame.loc[frame["period"] >= 130, "y"] -= 5  # a real break 30 periods before the "change"
    res = its_placebo(frame, ItsSpec("e", "a", 160, errors=errors), [130])
    assert not res.passed
    assert res.p_value < 0.05


def test_placebo_flags_the_1974_break_in_seatbelts():
    # Real data: UK drivers killed fell sharply with the 1973-74 oil crisis, nine years before
    # the seat-belt law; a segmented model of 1969-1983 alone cannot be trusted to carry a
    # stable pre-trend, and the placebo check says so.
    data = pd.read_csv(REFERENCE / "its_seatbelts.csv").rename(columns={"DriversKilled": "y"})
    spec = ItsSpec("e", "a", "1983-02-01", seasonality="month")
    res = its_placebo(data, spec, ["1974-01-01", "1977-01-01", "1980-01-01"])
    assert not res.passed
    assert res.statistic == 2.0
    # With AR(1) GLS errors the 1974 break is still flagged (p 1e-4), 1977 and 1980 no longer.
    res = its_placebo(data, replace(spec, errors="ar1"),
                      ["1974-01-01", "1977-01-01", "1980-01-01"])
    assert not res.passed
    assert res.statistic == 1.0


def test_placebo_after_the_interruption_is_rejected(series):
    with pytest.raises(AnalysisError, match="not before"):
        its_placebo(series, ItsSpec("e", "a", 160), [170])


# ---------------------------------------------------------------- Bayesian ITS
FAST = SamplerSettings(draws=300, tune=300, chains=2, seed=7)


@pytest.fixture(scope="module")
def bayes(series):
    return fit_bayes_its(series, BayesItsSpec("e", "a", 160, sampler=FAST,
                                              probabilities=(("<", 0.0),)))


def test_bayes_recovers_the_level_change(bayes):
    est = bayes.estimate
    assert est.engine == "bayesian"
    assert est.ci_lower < LEVEL < est.ci_upper
    assert est.probability("<", 0.0) > 0.99


def test_bayes_is_close_to_ols_under_a_weak_prior(series, bayes):
    ols = fit_its(series, ItsSpec("e", "a", 160)).estimate
    # Posterior mean vs OLS: a weak prior moves it by far less than a tenth of an SE; the
    # allowance is Monte Carlo error (mcse ~0.01) plus that.
    assert bayes.estimate.estimate == pytest.approx(ols.estimate, abs=0.1 * ols.std_error + 0.05)


def test_bayes_result_is_json_safe(bayes):
    assert json.dumps(bayes.to_dict(), allow_nan=False)
    assert len(bayes.counterfactual_mean) == 96


@pytest.mark.slow
def test_bayes_ar1_runs_and_reports_rho():
    frame = simulate(np.random.default_rng(4), n=60, t0=36, rho=0.5, sd=0.5)
    res = fit_bayes_its(frame, BayesItsSpec("e", "a", 136, ar1=True, sampler=FAST))
    assert 0.0 < res.estimate.diagnostics["rho_mean"] < 0.9
    assert res.estimate.ci_lower < LEVEL < res.estimate.ci_upper
