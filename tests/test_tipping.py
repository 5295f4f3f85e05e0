"""Delta-adjusted tipping point against a hand computation in R 4.2.2 (lm, mice 3.15.0 pool.scalar).

Source: tests/reference/mi_tipping.R builds a 60-participant trial (mi_tipping_data.csv) whose
observed experimental-arm outcomes lie exactly on y = 2 + 0.5 baseline, so that "norm"
imputation is deterministic (residual SD 0) and every delta-adjusted analysis is one lm() on
the completed data with the imputed experimental outcomes shifted by delta, pooled with
between-imputation variance 0 (``mice::pool.scalar`` for the Barnard-Rubin df). R prints the
table in mi_tipping.out; mi_tipping.csv holds estimate, SE, df, interval and p per delta, the
tipping delta by linear interpolation of the upper bound between grid points, and the exact
root by uniroot. Further tests check identities that hold for any data.

Monte Carlo cross-check on realistic data: tests/reference/mi_tipping_mice.R runs mice 3.15.0
(pmm, m = 100, within arm) on the simulated MAR trial (mi_sim_data.csv, the 380 rows with a
baseline, so that y is the only incomplete column) with the delta added in mice's ``post`` hook
for the experimental arm, for deltas 0, 2, ..., 20 (mi_tipping_mice.csv, .out). Tolerances are
4 Monte Carlo SDs of the difference of two independent runs (see the tests).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.imputation import ImputationSpec, impute
from analysis.tipping import TippingSpec, crossing, tipping_point
from tests.conftest import REFERENCE
from trials.errors import AnalysisError

pytestmark = pytest.mark.reference

TOL = 1e-9
R = pd.read_csv(REFERENCE / "mi_tipping.csv")
DELTAS = tuple(float(d) for d in R["delta"])
IMP = ImputationSpec("e", "tip", m=20, method="norm", seed=1)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "mi_tipping_data.csv")


@pytest.fixture(scope="module")
def result(data):
    return tipping_point(data, TippingSpec("e", "tip", deltas=DELTAS, imputation=IMP))


@pytest.fixture(scope="module", params=range(len(DELTAS)), ids=lambda i: f"delta{DELTAS[i]:g}")
def row(request, result):
    i = request.param
    return result.rows[i], R.iloc[i]


def test_delta_estimate(row):
    got, r = row
    assert got.estimate == pytest.approx(r["estimate"], abs=TOL)  # R lm on shifted data


def test_delta_standard_error(row):
    got, r = row
    assert got.std_error == pytest.approx(r["se"], abs=TOL)  # R sqrt(pool.scalar t)


def test_delta_df(row):
    got, r = row
    assert got.df == pytest.approx(r["df"], rel=TOL)  # R pool.scalar df (b = 0, lambda floor)


def test_delta_upper_bound(row):
    got, r = row
    assert got.ci_upper == pytest.approx(r["upper"], abs=TOL)  # R qbar + qt(.975, df) se


def test_delta_lower_bound(row):
    got, r = row
    assert got.ci_lower == pytest.approx(r["lower"], abs=TOL)  # R qbar - qt(.975, df) se


def test_delta_p_value(row):
    got, r = row
    assert got.p_value == pytest.approx(r["p_value"], rel=1e-8)  # R 2 pt(-|t|, df)


def test_delta_conclusion(row):
    got, r = row
    assert got.conclusion_holds == (r["upper"] < 0)  # R: upper bound below threshold 0


def test_tipping_delta_interpolated(result):
    # R: linear interpolation of the upper bound between the grid points around its root
    assert result.tipping_delta == pytest.approx(R["tipping_interpolated"].iloc[0], abs=TOL)


def test_tipping_delta_close_to_exact_root(result):
    # R uniroot; the bound is smooth in delta, so a grid step of 1 misses the root by < 0.01
    assert result.tipping_delta == pytest.approx(R["tipping_exact"].iloc[0], abs=0.01)


def test_mar_estimate_is_delta_zero(result):
    zero = R[R["delta"] == 0].iloc[0]
    assert result.estimate.estimate == pytest.approx(zero["estimate"], abs=TOL)
    assert result.holds_under_mar
    assert result.estimate.details["tipping_delta"] == result.tipping_delta
    json.dumps(result.to_dict(), allow_nan=False)


def test_higher_direction_mirrors_lower(data, result):
    flipped = data.assign(y=-data["y"], baseline=-data["baseline"])
    spec = TippingSpec("e", "tip", deltas=tuple(-d for d in DELTAS), direction="higher",
                       imputation=IMP)
    mirrored = tipping_point(flipped, spec)
    assert mirrored.tipping_delta == pytest.approx(-result.tipping_delta, abs=1e-9)


def test_no_tipping_on_grid_gives_none(data):
    res = tipping_point(data, TippingSpec("e", "tip", deltas=(-1.0, 1.0, 2.0), imputation=IMP))
    assert res.tipping_delta is None
    assert all(r.conclusion_holds for r in res.rows)


# ------------------------------------------------------------------------- identities
@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "mi_sim_data.csv")


@pytest.mark.parametrize("arm", ["experimental", "comparator", "both"])
def test_unadjusted_shift_is_delta_times_imputed_fraction(sim, arm):
    # With y ~ treated only, each arm's mean moves by delta times its share of imputed y, the
    # same in every copy, so the pooled estimate moves by exactly that and B does not change.
    imp = ImputationSpec("e", "tip", m=5, covariates=(), auxiliary=("week4", "baseline"))
    res = tipping_point(sim, TippingSpec("e", "tip", deltas=(0.0, 3.0), arm=arm, imputation=imp))
    miss = sim["y"].isna()
    frac = {t: float(miss[sim["treated"] == t].mean()) for t in (0, 1)}
    move = {"experimental": frac[1], "comparator": -frac[0], "both": frac[1] - frac[0]}[arm]
    assert res.rows[1].estimate - res.rows[0].estimate == pytest.approx(3.0 * move, abs=1e-10)


def test_observed_outcomes_are_never_shifted(sim):
    imp = ImputationSpec("e", "tip", m=3, auxiliary=("week4",))
    base = tipping_point(sim, TippingSpec("e", "tip", deltas=(0.0,), imputation=imp))
    complete = sim.assign(y=impute(sim, imp)[0]["y"])
    shifted = tipping_point(complete, TippingSpec("e", "tip", deltas=(0.0, 5.0),
                                                  imputation=imp))
    assert shifted.rows[0].estimate == pytest.approx(shifted.rows[1].estimate, abs=1e-12)
    assert base.rows[0].estimate != shifted.rows[0].estimate


def test_same_seed_same_result(sim):
    spec = TippingSpec("e", "tip", deltas=(0.0, 1.0, 2.0),
                       imputation=ImputationSpec("e", "tip", m=5, auxiliary=("week4",)))
    assert tipping_point(sim, spec).to_dict() == tipping_point(sim, spec).to_dict()


def test_crossing_picks_the_root_nearest_zero():
    deltas = np.array([-4.0, -2.0, 0.0, 1.0, 3.0])
    margins = np.array([1.0, -1.0, -2.0, -1.0, 1.0])
    assert crossing(deltas, margins) == pytest.approx(2.0)  # -3 is farther than +2


@pytest.mark.parametrize("change, message", [
    ({"arm": "all"}, "tipping arm"),
    ({"direction": "down"}, "direction"),
    ({"deltas": ()}, "deltas"),
])
def test_bad_specs_are_rejected(sim, change, message):
    spec = TippingSpec("e", "tip", **{"deltas": (1.0,), **change})
    with pytest.raises(AnalysisError, match=message):
        tipping_point(sim, spec)


# ------------------------------------------------------------------------- mice post hook
MICE_POST = pd.read_csv(REFERENCE / "mi_tipping_mice.csv")


@pytest.fixture(scope="module")
def post_result(sim):
    frame = sim[sim["baseline"].notna()]
    imp = ImputationSpec("e", "tip", m=100, auxiliary=("week4",), seed=20261127)
    deltas = tuple(float(d) for d in MICE_POST["delta"])
    return tipping_point(frame, TippingSpec("e", "tip", deltas=deltas, imputation=imp))


@pytest.mark.parametrize("i", range(len(MICE_POST)))
def test_delta_estimate_matches_mice_post_hook(post_result, i):
    r = MICE_POST.iloc[i]
    got = post_result.rows[i]
    mc_sd = math.sqrt(2 * r["b"] / r["m"])  # both runs have m = 100 and about the same B
    # mice pool estimate with post-hook delta (mi_tipping_mice.csv); 4 Monte Carlo SDs
    assert got.estimate == pytest.approx(r["estimate"], abs=4 * mc_sd)


def test_tipping_delta_matches_mice_post_hook(post_result):
    r = MICE_POST
    i = int(np.flatnonzero((r["upper"].to_numpy()[:-1] < 0) & (r["upper"].to_numpy()[1:] >= 0))[0])
    slope = (r["upper"].iloc[i + 1] - r["upper"].iloc[i]) / (r["delta"].iloc[i + 1]
                                                             - r["delta"].iloc[i])
    row = r.iloc[i + 1]
    lam = (1 + 1 / row["m"]) * row["b"] / row["se"] ** 2
    q = 1.97  # t quantile at df > 250
    sd_bound = math.sqrt(row["b"] / row["m"]
                         + (q * row["se"] * lam / 2 * math.sqrt(2 / (row["m"] - 1))) ** 2)
    tol = 4 * math.sqrt(2) * sd_bound / slope
    # mice post-hook tipping delta, interpolated on the same grid (mi_tipping_mice.csv)
    assert post_result.tipping_delta == pytest.approx(r["tipping_interpolated"].iloc[0], abs=tol)
