"""Regression discontinuity: behaviour, simulation coverage and falsification checks.

Comparisons with rdrobust, rddensity and R live in tests/test_reference_rd.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings
from analysis.bayes_rd import BayesRdSpec, fit_bayes_rd
from analysis.falsification import FalsificationResult
from analysis.rd import RdSpec, fit_rd
from analysis.rd_bandwidth import nn_residuals
from analysis.rd_checks import (
    bandwidth_sensitivity,
    covariate_balance,
    density_test,
    placebo_cutoffs,
)
from trials.errors import AnalysisError

JUMP = 1.0


def sharp_frame(seed: int, n: int = 500, jump: float = JUMP) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = 0.5 + 1.2 * x - 0.8 * x**2 + jump * (x >= 0) + rng.normal(0, 0.5, n)
    return pd.DataFrame({"score": x, "y": y, "age": rng.normal(40, 10, n)})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return sharp_frame(7, n=800)


def test_robust_interval_covers_known_jump_near_nominal_rate():
    # 300 simulated sharp designs (n = 500, curved mean, jump 1): the robust bias-corrected
    # 95% interval should cover the true jump about 95% of the time (binomial SE 1.3 points).
    hits = 0
    for seed in range(300):
        e = fit_rd(sharp_frame(seed), RdSpec("e", "sim")).estimate
        hits += e.ci_lower <= JUMP <= e.ci_upper
    assert 0.91 <= hits / 300 <= 0.985


def test_fuzzy_interval_covers_known_effect():
    # Fuzzy design: take-up 0.2 below / 0.8 above, effect of treatment received 2.
    hits = 0
    for seed in range(150):
        rng = np.random.default_rng(1000 + seed)
        x = rng.uniform(-1, 1, 800)
        t = (rng.uniform(size=800) < np.where(x >= 0, 0.8, 0.2)).astype(float)
        y = 1 + 0.8 * x + 2 * t + rng.normal(0, 1, 800)
        e = fit_rd(pd.DataFrame({"score": x, "t": t, "y": y}),
                   RdSpec("e", "sim", fuzzy="t")).estimate
        hits += e.ci_lower <= 2 <= e.ci_upper
    assert 0.88 <= hits / 150 <= 1.0


def test_estimate_contract(frame):
    r = fit_rd(frame, RdSpec("primary", "rd_main"))
    e = r.estimate
    assert (e.engine, e.model, e.estimand, e.analysis) == ("frequentist", "rd_sharp", "primary",
                                                          "rd_main")
    assert e.details["interval"].startswith("robust bias-corrected")
    assert e.ci_lower < e.ci_upper and e.std_error > 0
    assert e.n_analysed == r.n_left + r.n_right
    assert dict(e.n_by_arm) == {"below_cutoff": r.n_left, "at_or_above_cutoff": r.n_right}
    json.dumps(r.to_dict(), allow_nan=False)
    assert all(type(v) in (float, int, str, bool, list, type(None))
               for v in e.details.values())


def test_does_not_mutate_frame(frame):
    before = frame.copy()
    fit_rd(frame, RdSpec("e", "a", covariates=("age",)))
    pd.testing.assert_frame_equal(frame, before)


def test_treated_below_reverses_sign(frame):
    above = fit_rd(frame, RdSpec("e", "a", bandwidth=0.4)).estimate
    below = fit_rd(frame, RdSpec("e", "a", bandwidth=0.4, treated_above=False)).estimate
    assert below.estimate == pytest.approx(-above.estimate, abs=1e-12)
    assert below.ci_lower == pytest.approx(-above.ci_upper, abs=1e-12)


def test_cutoff_shift_is_equivariant(frame):
    shifted = frame.assign(score=frame["score"] + 50)
    a = fit_rd(frame, RdSpec("e", "a")).estimate
    b = fit_rd(shifted, RdSpec("e", "a", cutoff=50.0)).estimate
    assert b.estimate == pytest.approx(a.estimate, abs=1e-8)


def test_missing_rows_are_dropped_with_warning(frame):
    holed = frame.copy()
    holed.loc[:9, "y"] = np.nan
    e = fit_rd(holed, RdSpec("e", "a")).estimate
    assert e.details["n_excluded"] == 10
    assert any("10 row(s)" in w for w in e.warnings)


@pytest.mark.parametrize("spec, message", [
    (RdSpec("e", "a", running="nope"), "'nope'"),
    (RdSpec("e", "a", kernel="gaussian"), "kernel"),
    (RdSpec("e", "a", bandwidth="ik"), "bandwidth"),
    (RdSpec("e", "a", bandwidth=-1.0), "bandwidth"),
    (RdSpec("e", "a", vce="hc3"), "vce"),
    (RdSpec("e", "a", cutoff=5.0), "one side"),
    (RdSpec("e", "a", bandwidth=0.001), "bandwidth"),
])
def test_errors_name_the_problem(frame, spec, message):
    with pytest.raises(AnalysisError, match=message):
        fit_rd(frame, spec)


def test_fuzzy_without_first_stage_is_an_error(frame):
    with pytest.raises(AnalysisError, match="fuzzy"):
        fit_rd(frame.assign(t=1.0), RdSpec("e", "a", fuzzy="t", bandwidth=0.5))


def test_nn_residuals_use_nearest_values_and_ties():
    x = np.array([0.0, 1.0, 2.0, 2.0, 10.0])
    d = np.array([[1.0], [2.0], [3.0], [5.0], [7.0]])
    res = nn_residuals(x, d, matches=2)
    # x = 0: nearest two are x = 1 and the tie group at 2 (all taken): J = 3, mean 10/3.
    assert res[0, 0] == pytest.approx(np.sqrt(3 / 4) * (1 - 10 / 3))
    # x = 2 (first of the tie): its twin plus x = 1: J = 2, mean (5 + 2) / 2.
    assert res[2, 0] == pytest.approx(np.sqrt(2 / 3) * (3 - 3.5))


# ----------------------------------------------------------------- falsification checks
def test_density_test_passes_without_manipulation(frame):
    res = density_test(frame, RdSpec("e", "a"))
    assert isinstance(res, FalsificationResult)
    assert res.passed and res.check == "rd_density"
    json.dumps(res.to_dict())


def test_density_test_detects_bunching_above_the_cutoff():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-1, 1, 1000), rng.uniform(0, 0.15, 250)])
    res = density_test(pd.DataFrame({"score": x}), RdSpec("e", "a"))
    assert not res.passed and res.statistic > 0


def test_covariate_balance(frame):
    data = frame.assign(shifted=frame["age"] + 15 * (frame["score"] >= 0))
    ok, bad = covariate_balance(data, RdSpec("e", "a"), ["age", "shifted"])
    assert ok.passed and ok.check == "rd_covariate_balance:age"
    assert not bad.passed


def test_bandwidth_sensitivity_passes_on_smooth_design(frame):
    res = bandwidth_sensitivity(frame, RdSpec("e", "a"))
    assert res.passed and res.statistic == 0.0


def test_bandwidth_sensitivity_fails_when_estimate_moves():
    # A steep bump just above the cut-off: narrow and wide windows disagree.
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 3000)
    y = 4 * np.exp(-((x - 0.25) / 0.08) ** 2) + rng.normal(0, 0.2, 3000)
    res = bandwidth_sensitivity(pd.DataFrame({"score": x, "y": y}),
                                RdSpec("e", "a", bandwidth=0.3), multipliers=(0.25, 3.0))
    assert not res.passed and res.statistic >= 1


def test_placebo_cutoffs(frame):
    res = placebo_cutoffs(frame, RdSpec("e", "a"), [-0.5, 0.5])
    assert res.passed and res.statistic == 0.0
    data = frame.assign(y=frame["y"] + 2.0 * (frame["score"] >= 0.5))
    assert not placebo_cutoffs(data, RdSpec("e", "a"), [-0.5, 0.5]).passed


def test_placebo_at_real_cutoff_is_an_error(frame):
    with pytest.raises(AnalysisError, match="equals the real one"):
        placebo_cutoffs(frame, RdSpec("e", "a"), [0.0])


# ----------------------------------------------------------------- Bayesian engine
def test_bayes_rd_agrees_with_local_linear_fit(frame):
    spec = BayesRdSpec("e", "bayes", bandwidth=0.5, probabilities=((">", 0.0),),
                       sampler=SamplerSettings(draws=300, tune=300, chains=2, seed=11),
                       gate=DiagnosticsGate(min_ess_bulk=100, min_ess_tail=100))
    res = fit_bayes_rd(frame, spec)
    freq = fit_rd(frame, RdSpec("e", "a", bandwidth=0.5)).estimate
    e = res.estimate
    assert (e.engine, e.model) == ("bayesian", "rd_sharp")
    assert e.reliable
    assert e.estimate == pytest.approx(freq.estimate, abs=0.5 * freq.std_error)
    assert 0.5 < e.std_error / freq.std_error < 2
    assert e.probability(">", 0.0) > 0.99
    json.dumps(res.to_dict(), allow_nan=False)
