"""Synthetic control: known effect, convex weights, nested V, placebo checks, validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.falsification import FalsificationResult
from analysis.synthetic_control import (
    SyntheticControlSpec,
    fit_synthetic_control,
    sc_placebo_in_time,
    simplex_qp,
)
from tests.conftest import REFERENCE
from trials.errors import AnalysisError

EFFECT = 3.0


def panel(rng: np.random.Generator, effect: float = EFFECT, start: int = 16,
          n_donors: int = 12, n_periods: int = 24, noise: float = 0.1) -> pd.DataFrame:
    """Donors from a two-factor model; the treated unit is 0.6 d1 + 0.4 d2 (+ effect)."""
    f = np.cumsum(rng.normal(0, 1, (2, n_periods)), axis=1)
    lam = rng.normal(0, 1, (n_donors, 2))
    y = {f"d{i + 1}": 20 + lam[i] @ f + rng.normal(0, noise, n_periods)
         for i in range(n_donors)}
    t = np.arange(n_periods)
    y["tr"] = 0.6 * y["d1"] + 0.4 * y["d2"] + effect * (t >= start)
    rows = [{"unit": u, "period": int(p), "y": float(v[p])} for u, v in y.items() for p in t]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return panel(np.random.default_rng(42))


@pytest.fixture(scope="module")
def fit_opt(sim):
    return fit_synthetic_control(sim, SyntheticControlSpec("e", "a", "tr", 16))


def test_recovers_known_effect(fit_opt):
    assert fit_opt.estimate.estimate == pytest.approx(EFFECT, abs=0.3)
    assert fit_opt.estimate.model == "synthetic_control"


def test_recovers_known_weights(fit_opt):
    assert fit_opt.weight("d1") == pytest.approx(0.6, abs=0.1)
    assert fit_opt.weight("d2") == pytest.approx(0.4, abs=0.1)


def test_weights_are_convex(fit_opt):
    w = np.array([d.weight for d in fit_opt.weights])
    assert w.min() >= 0
    assert w.sum() == pytest.approx(1.0, abs=1e-12)


def test_effect_is_mean_post_gap(fit_opt):
    gap = np.array(fit_opt.gap)
    assert fit_opt.estimate.estimate == pytest.approx(gap[16:].mean(), abs=1e-12)
    assert fit_opt.pre_rmspe == pytest.approx(np.sqrt(np.mean(gap[:16] ** 2)), abs=1e-12)


def test_significant_effect_ranks_first(fit_opt):
    # 13 units: the treated unit's RMSPE ratio is the largest, p = 1/13.
    assert fit_opt.estimate.p_value == pytest.approx(1 / 13)
    assert len(fit_opt.placebos) == 12


def test_optimised_v_fits_pre_period_no_worse_than_equal():
    data = pd.read_csv(REFERENCE / "sc_data.csv")
    opt = fit_synthetic_control(data, SyntheticControlSpec("e", "a", "treated", 2021,
                                                           ("x1", "x2")))
    equal = fit_synthetic_control(data, SyntheticControlSpec("e", "a", "treated", 2021,
                                                             ("x1", "x2"), v="equal"))
    assert opt.pre_rmspe <= equal.pre_rmspe + 1e-12
    assert sum(b.v for b in opt.balance) == pytest.approx(1.0)


def test_simplex_qp_beats_vertices_and_centre():
    rng = np.random.default_rng(1)
    X0 = rng.normal(size=(8, 5))
    X1 = rng.normal(size=8)
    v = rng.uniform(0.1, 1, 8)
    w = simplex_qp(X1, X0, v)

    def loss(x):
        r = X1 - X0 @ x
        return r @ (v * r)

    for cand in [*np.eye(5), np.full(5, 0.2)]:
        assert loss(w) <= loss(cand) + 1e-12
    assert w.sum() == pytest.approx(1.0) and w.min() >= 0


def test_placebo_in_time_passes_without_an_earlier_effect(sim):
    res = sc_placebo_in_time(sim, SyntheticControlSpec("e", "a", "tr", 16, v="equal"), 10)
    assert isinstance(res, FalsificationResult)
    assert res.passed
    assert json.dumps(res.to_dict(), allow_nan=False)


def test_placebo_in_time_fails_when_the_effect_started_earlier():
    data = panel(np.random.default_rng(42), start=10)
    res = sc_placebo_in_time(data, SyntheticControlSpec("e", "a", "tr", 16, v="equal"), 10,
                             alpha=0.1)
    assert not res.passed
    assert res.p_value == pytest.approx(1 / 13)


def test_placebo_in_time_must_precede_intervention(sim):
    with pytest.raises(AnalysisError, match="fake_intervention"):
        sc_placebo_in_time(sim, SyntheticControlSpec("e", "a", "tr", 16), 18)


def test_iso_date_periods(sim):
    dated = sim.assign(period=pd.to_datetime("2020-01-01")
                       + pd.to_timedelta(sim["period"] * 7, unit="D"))
    dated["period"] = dated["period"].dt.strftime("%Y-%m-%d")
    res = fit_synthetic_control(dated, SyntheticControlSpec("e", "a", "tr", "2020-04-22",
                                                            v="equal"))
    ref = fit_synthetic_control(sim, SyntheticControlSpec("e", "a", "tr", 16, v="equal"))
    assert res.estimate.estimate == pytest.approx(ref.estimate.estimate, abs=1e-10)
    assert res.periods[0] == "2020-01-01"


def test_to_dict_is_json_safe(fit_opt):
    out = json.loads(json.dumps(fit_opt.to_dict(), allow_nan=False))
    assert set(out["estimate"]["details"]["weights"]) == {f"d{i}" for i in range(1, 13)}


def test_caller_frame_is_not_modified(sim):
    before = sim.copy()
    fit_synthetic_control(sim, SyntheticControlSpec("e", "a", "tr", 16, v="equal"))
    pd.testing.assert_frame_equal(sim, before)


def test_one_donor_has_no_spread():
    data = panel(np.random.default_rng(3))
    data = data[data["unit"].isin(["tr", "d1"])]
    res = fit_synthetic_control(data, SyntheticControlSpec("e", "a", "tr", 16, v="equal"))
    assert res.weight("d1") == 1.0
    assert any("fewer than two placebo" in w for w in res.estimate.warnings)


@pytest.mark.parametrize(("edit", "spec", "message"), [
    (None, SyntheticControlSpec("e", "a", "nowhere", 16), "treated_unit"),
    (None, SyntheticControlSpec("e", "a", "tr", 16, v="ridge"), "v"),
    (None, SyntheticControlSpec("e", "a", "tr", 1), "pre-periods"),
    (None, SyntheticControlSpec("e", "a", "tr", 99), "post-period"),
    (None, SyntheticControlSpec("e", "a", "tr", 16, predictors=("gdp",)), "gdp"),
    (None, SyntheticControlSpec("e", "a", "tr", "2020-01-01"), "period"),
    ("missing_y", SyntheticControlSpec("e", "a", "tr", 16), "'y'"),
    ("duplicate", SyntheticControlSpec("e", "a", "tr", 16), "period"),
])
def test_invalid_input_names_the_field(sim, edit, spec, message):
    data = sim.copy()
    if edit == "missing_y":
        data.loc[3, "y"] = np.nan
    if edit == "duplicate":
        data = pd.concat([data, data.iloc[:1]])
    with pytest.raises(AnalysisError, match=message):
        fit_synthetic_control(data, spec)
