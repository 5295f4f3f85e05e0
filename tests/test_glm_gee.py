"""Binary and count GLMs and GEE: behaviour, validation and small-sample corrections.

Numerical agreement with R is in test_reference_glm_gee.py; these tests check the contract
(errors that name the column, warnings turned into ``reliable=False``, JSON-safe results) and
properties that hold by construction.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.gee import GeeSpec, fit_gee
from analysis.glm import BinarySpec, CountSpec, fit_binary, fit_count
from trials.errors import AnalysisError


def _binary_frame(rng, n=200) -> pd.DataFrame:
    treated = np.repeat([0, 1], n // 2)
    baseline = rng.normal(18, 4, n)
    p = 1 / (1 + np.exp(-(-0.3 + 0.7 * treated - 0.05 * (baseline - 18))))
    return pd.DataFrame({"participant": np.arange(n), "treated": treated,
                         "arm": np.where(treated == 1, "ai_cbt", "usual_care"),
                         "baseline": baseline, "y": rng.binomial(1, p)})


def _long_frame(rng, n=40, visits=4, family="gaussian") -> pd.DataFrame:
    ids = np.repeat(np.arange(n), visits)
    treated = (ids % 2).astype(int)
    u = rng.normal(0, 0.7, n)[ids]
    eta = 0.2 + 0.5 * treated + u
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    elif family == "poisson":
        y = rng.poisson(np.exp(eta))
    else:
        y = eta + rng.normal(0, 1, len(ids))
    return pd.DataFrame({"participant": ids, "visit": np.tile(np.arange(1, visits + 1), n),
                         "treated": treated, "arm": np.where(treated == 1, "a", "c"), "y": y})


def test_binary_summaries_are_consistent():
    res = fit_binary(_binary_frame(np.random.default_rng(1)),
                     BinarySpec("r", "a", ("baseline",), summary="risk_ratio"))
    s = res.summaries
    risks = s["risk_difference"].details["marginal_risk"]
    assert s["risk_difference"].estimate == pytest.approx(risks["treated"] - risks["control"])
    assert res.estimate is s["risk_ratio"]
    assert s["risk_ratio"].estimate == pytest.approx(risks["treated"] / risks["control"])
    assert s["odds_ratio"].ci_lower < s["odds_ratio"].estimate < s["odds_ratio"].ci_upper
    assert res.exact is None
    json.dumps(res.to_dict(), allow_nan=False)


def test_unadjusted_binary_carries_newcombe_and_fisher():
    res = fit_binary(_binary_frame(np.random.default_rng(2)), BinarySpec("r", "a"))
    assert res.exact is not None
    assert res.exact["newcombe_lower"] < res.estimate.estimate < res.exact["newcombe_upper"]
    assert 0 <= res.exact["fisher_p"] <= 1


def test_perfect_separation_is_unreliable_not_an_exception():
    data = _binary_frame(np.random.default_rng(3), n=40)
    data["y"] = data["treated"]
    res = fit_binary(data, BinarySpec("r", "a"))
    assert res.estimate.reliable is False
    assert res.estimate.warnings


def test_binary_rejects_non_binary_outcome():
    data = _binary_frame(np.random.default_rng(4))
    data.loc[0, "y"] = 2
    with pytest.raises(AnalysisError, match="'y'"):
        fit_binary(data, BinarySpec("r", "a"))


def test_binary_rejects_unknown_summary():
    with pytest.raises(AnalysisError, match="summary"):
        fit_binary(_binary_frame(np.random.default_rng(5)), BinarySpec("r", "a", summary="nnt"))


def test_missing_covariate_column_is_named():
    with pytest.raises(AnalysisError, match="'age'"):
        fit_binary(_binary_frame(np.random.default_rng(6)), BinarySpec("r", "a", ("age",)))


def _count_frame(rng, n=300, overdispersed=True) -> pd.DataFrame:
    treated = np.repeat([0, 1], n // 2)
    exposure = rng.integers(20, 100, n)
    mu = exposure / 30 * np.exp(0.5 - 0.4 * treated)
    y = rng.negative_binomial(1.5, 1.5 / (1.5 + mu)) if overdispersed else rng.poisson(mu)
    return pd.DataFrame({"treated": treated, "arm": np.where(treated == 1, "a", "c"),
                         "exposure": exposure, "y": y})


def test_rate_ratio_is_on_ratio_scale_with_log_se():
    res = fit_count(_count_frame(np.random.default_rng(7)),
                    CountSpec("c", "a", "negative_binomial"))
    e = res.estimate
    assert e.details["std_error_scale"] == "log"
    assert e.estimate == pytest.approx(math.exp(e.details["log_estimate"]))
    assert math.log(e.ci_upper) - math.log(e.ci_lower) == pytest.approx(2 * 1.959964 * e.std_error,
                                                                        rel=1e-5)
    assert 0.2 < res.alpha < 2
    json.dumps(res.to_dict(), allow_nan=False)


def test_overdispersion_widens_the_negative_binomial_interval():
    data = _count_frame(np.random.default_rng(8))
    pois = fit_count(data, CountSpec("c", "a", "poisson")).estimate
    nb = fit_count(data, CountSpec("c", "a", "negative_binomial")).estimate
    assert pois.diagnostics["pearson_dispersion"] > 1.5
    assert nb.std_error > pois.std_error


def test_count_rejects_non_positive_exposure_and_negative_counts():
    data = _count_frame(np.random.default_rng(9))
    bad = data.assign(exposure=data["exposure"].where(data.index != 3, 0))
    with pytest.raises(AnalysisError, match="'exposure'"):
        fit_count(bad, CountSpec("c", "a"))
    with pytest.raises(AnalysisError, match="'y'"):
        fit_count(data.assign(y=data["y"] - 100), CountSpec("c", "a"))


def test_count_without_offset():
    res = fit_count(_count_frame(np.random.default_rng(10)).drop(columns="exposure"),
                    CountSpec("c", "a", exposure=None))
    assert res.estimate.details["offset"] is None


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
@pytest.mark.parametrize("corr", ["independence", "exchangeable", "ar1", "unstructured"])
def test_gee_fits_every_family_and_structure(family, corr):
    data = _long_frame(np.random.default_rng(11), n=60, family=family)
    res = fit_gee(data, GeeSpec("y", "a", family, corr))
    assert res.estimate.reliable
    assert res.estimate.n_analysed == len(data)
    assert res.estimate.details["scale"] == {"gaussian": "difference", "binomial": "odds_ratio",
                                             "poisson": "rate_ratio"}[family]
    json.dumps(res.to_dict(), allow_nan=False)


def test_small_sample_corrections_inflate_the_sandwich():
    res = fit_gee(_long_frame(np.random.default_rng(12), n=16), GeeSpec("y", "a"))
    se = res.std_errors
    assert se["mancl_derouen"] > se["kauermann_carroll"] > se["robust"]
    assert any("groups" in w for w in res.estimate.warnings)


def test_bias_reduced_se_uses_t_with_groups_minus_p_df():
    res = fit_gee(_long_frame(np.random.default_rng(13), n=16),
                  GeeSpec("y", "a", se="mancl_derouen"))
    assert res.estimate.details["reference_distribution"] == "t(14)"


def test_gee_ar1_needs_time():
    with pytest.raises(AnalysisError, match="time"):
        fit_gee(_long_frame(np.random.default_rng(14)), GeeSpec("y", "a", correlation="ar1",
                                                                time=None))


def test_gee_rejects_duplicate_times_within_group_for_ar1():
    data = _long_frame(np.random.default_rng(15))
    data.loc[1, "visit"] = 1
    with pytest.raises(AnalysisError, match="'visit'"):
        fit_gee(data, GeeSpec("y", "a", correlation="ar1"))


def test_gee_exchangeable_accepts_repeated_times_in_a_cluster():
    data = _long_frame(np.random.default_rng(18))
    data["cluster"] = data["participant"] // 4  # four participants per cluster, same visits
    res = fit_gee(data, GeeSpec("y", "a", groups="cluster"))
    assert res.estimate.diagnostics["n_groups"] == 10
    assert res.estimate.n_by_arm == {"a": 20, "c": 20}  # participants, not observations


def test_gee_unstructured_handles_missing_visits():
    data = _long_frame(np.random.default_rng(16), n=60)
    data = data.drop(index=[1, 6, 11, 30]).reset_index(drop=True)
    res = fit_gee(data, GeeSpec("y", "a", correlation="unstructured"))
    assert len(res.working_correlation["alpha"]) == 6
    assert res.estimate.n_analysed == len(data)


def test_gee_does_not_modify_the_frame():
    data = _long_frame(np.random.default_rng(17)).sample(frac=1, random_state=0)
    before = data.copy()
    fit_gee(data, GeeSpec("y", "a", correlation="ar1"))
    pd.testing.assert_frame_equal(data, before)
