"""Multiple imputation by chained equations: behaviour, determinism and bias properties.

The comparisons with R's mice are in tests/test_reference_pooling.py; this module checks the
API contract and two properties by small simulations: under MCAR with no auxiliaries the MI
estimate is close to the complete-case one, and under MAR through an auxiliary MI removes the
bias the complete-case analysis has.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.ancova import AncovaSpec, fit_ancova
from analysis.imputation import ImputationSpec, fit_mi_ancova, impute
from tests.conftest import REFERENCE
from trials.errors import AnalysisError


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "mi_sim_data.csv")


@pytest.fixture(scope="module")
def btheb() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "mi_btheb_data.csv")


SPEC = ImputationSpec("week12", "mi", m=5, iterations=5, auxiliary=("week4",), seed=3)
BSPEC = ImputationSpec("bdi_8m", "mi", m=4, iterations=5, auxiliary=("bdi_2m", "bdi_3m",
                       "bdi_5m"), covariates=("baseline", "drug", "length"), seed=3)


def test_impute_returns_m_complete_copies(sim):
    copies = impute(sim, SPEC)
    assert len(copies) == SPEC.m
    for c in copies:
        assert not c[["y", "baseline", "week4"]].isna().any().any()
        assert list(c.columns) == list(sim.columns)


def test_observed_values_are_kept(sim):
    for c in impute(sim, SPEC):
        obs = sim["y"].notna()
        pd.testing.assert_series_equal(c.loc[obs, "y"], sim.loc[obs, "y"])
        obs_b = sim["baseline"].notna()
        pd.testing.assert_series_equal(c.loc[obs_b, "baseline"], sim.loc[obs_b, "baseline"])


def test_pmm_imputes_observed_values_of_the_same_arm(sim):
    for c in impute(sim, SPEC):
        for t in (0, 1):
            arm = sim["treated"] == t
            donors = set(sim.loc[arm & sim["y"].notna(), "y"])
            assert set(c.loc[arm & sim["y"].isna(), "y"]) <= donors


def test_norm_imputes_continuous_draws(sim):
    spec = ImputationSpec("week12", "mi", m=2, method="norm", auxiliary=("week4",), seed=1)
    imputed = impute(sim, spec)[0].loc[sim["y"].isna(), "y"]
    assert not set(imputed) <= set(sim["y"].dropna())


def test_caller_frame_is_not_modified(sim):
    before = sim.copy()
    fit_mi_ancova(sim, SPEC)
    pd.testing.assert_frame_equal(sim, before)


def test_same_seed_gives_identical_results(sim):
    a, b = fit_mi_ancova(sim, SPEC), fit_mi_ancova(sim, SPEC)
    assert a.to_dict() == b.to_dict()


def test_different_seed_gives_different_imputations(sim):
    a = impute(sim, SPEC)[0]
    b = impute(sim, ImputationSpec("week12", "mi", m=5, iterations=5, auxiliary=("week4",),
                                   seed=4))[0]
    assert not a["y"].equals(b["y"])


def test_copy_j_does_not_depend_on_m(sim):
    short = impute(sim, SPEC)
    long = impute(sim, ImputationSpec("week12", "mi", m=8, iterations=5, auxiliary=("week4",),
                                      seed=3))
    for a, b in zip(short, long[:5], strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_row_order_does_not_change_results(sim):
    shuffled = sim.sample(frac=1.0, random_state=7)
    a = fit_mi_ancova(sim, SPEC).estimate.estimate
    b = fit_mi_ancova(shuffled, SPEC).estimate.estimate
    assert a == pytest.approx(b, abs=1e-12)


def test_categorical_covariates_and_several_incomplete_columns(btheb):
    res = fit_mi_ancova(btheb, BSPEC)
    assert res.estimate.n_analysed == len(btheb)
    assert len(res.per_imputation) == BSPEC.m
    for c in impute(btheb, BSPEC):
        assert not c[["y", "bdi_2m", "bdi_3m", "bdi_5m"]].isna().any().any()


def test_estimate_contract_and_json(sim):
    res = fit_mi_ancova(sim, SPEC)
    e = res.estimate
    assert e.model == "ancova_mi" and e.engine == "frequentist"
    assert e.ci_lower < e.estimate < e.ci_upper
    for key in ("m", "within_variance", "between_variance", "riv", "lambda", "fmi", "df"):
        assert key in e.details
    assert dict(e.n_by_arm) == {"ai_cbt": 200, "usual_care": 200}
    assert any("imputed" in w for w in e.warnings)
    json.dumps(res.to_dict(), allow_nan=False)
    assert all(type(v) is float for v in (e.details["fmi"], e.details["df"]))


def test_pooled_estimate_is_mean_of_per_imputation_estimates(sim):
    res = fit_mi_ancova(sim, SPEC)
    assert res.estimate.estimate == pytest.approx(np.mean([e for e, _ in res.per_imputation]))


@pytest.mark.parametrize("change, message", [
    ({"method": "mean"}, "method"),
    ({"m": 1}, r"m \(imputations\)"),
    ({"iterations": 0}, "iterations"),
    ({"auxiliary": ("nope",)}, "'nope'"),
])
def test_bad_specs_are_rejected(sim, change, message):
    spec = ImputationSpec("week12", "mi", **{"auxiliary": ("week4",), **change})
    with pytest.raises(AnalysisError, match=message):
        impute(sim, spec)


def test_missing_categorical_covariate_is_rejected(btheb):
    frame = btheb.copy()
    frame.loc[0, "drug"] = np.nan
    with pytest.raises(AnalysisError, match="'drug'"):
        impute(frame, BSPEC)


def test_arm_without_observed_outcomes_is_rejected(sim):
    frame = sim.copy()
    frame.loc[frame["treated"] == 1, "y"] = np.nan
    with pytest.raises(AnalysisError, match="fewer than 2 observed"):
        impute(frame, SPEC)


# ------------------------------------------------------------------------- properties
def _trial(rng: np.random.Generator, n: int, mar: bool) -> pd.DataFrame:
    """Outcome y depends on baseline and an auxiliary w that does not depend on treatment, so
    the ANCOVA effect of treatment given baseline is -2. Under ``mar`` treated participants
    with high w drop out more often (MAR given w); otherwise 30% are missing at random."""
    t = np.repeat([0, 1], n // 2)
    b = rng.normal(18, 4, n)
    w = rng.normal(0, 1.5, n)
    y = 2 + 0.5 * b + 2 * w - 2.0 * t + rng.normal(0, 1.5, n)
    p = 1 / (1 + np.exp(-(-1.0 + 1.5 * w * t))) if mar else np.full(n, 0.3)
    y[rng.uniform(size=n) < p] = np.nan
    return pd.DataFrame({"participant": np.arange(n), "arm": np.where(t == 1, "exp", "ctl"),
                         "treated": t, "baseline": b, "aux": w, "y": y})


def test_mcar_without_auxiliaries_mi_matches_complete_case():
    frame = _trial(np.random.default_rng(11), 600, mar=False)
    cc = fit_ancova(frame, AncovaSpec("e", "cc"))
    res = fit_mi_ancova(frame, ImputationSpec("e", "mi", m=40, seed=5))
    # Under MCAR given baseline, both estimate the same thing from the same information, so
    # they differ by the Monte Carlo error of the m imputations, SD sqrt(B / m); allow 4 SDs.
    mc_sd = np.sqrt(res.pooled.between / 40)
    assert res.estimate.estimate == pytest.approx(cc.estimate, abs=4 * mc_sd)
    assert res.estimate.std_error == pytest.approx(cc.std_error, rel=0.10)


def test_mar_via_auxiliary_mi_removes_complete_case_bias():
    rng = np.random.default_rng(1)
    cc, mi = [], []
    for r in range(20):
        frame = _trial(rng, 300, mar=True)
        cc.append(fit_ancova(frame, AncovaSpec("e", "cc")).estimate)
        spec = ImputationSpec("e", "mi", m=5, auxiliary=("aux",), seed=r)
        mi.append(fit_mi_ancova(frame, spec).estimate.estimate)
    # 20 replicates; the SD of one MI estimate is about 0.45, so the mean has MC SD ~0.1.
    assert np.mean(cc) + 2.0 < -0.8  # complete cases are badly biased (about -1.3)
    assert abs(np.mean(mi) + 2.0) < 0.3
