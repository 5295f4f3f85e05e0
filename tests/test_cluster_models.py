"""Cluster-randomised and stepped-wedge models: coverage simulation and behaviour checks.

The coverage test simulates a small cluster RCT with a known effect and ICC and checks that the
between-within t interval covers the true effect at close to the nominal rate, while the
normal-theory interval from the same fits undercovers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.cluster import (
    ClusterSpec,
    SteppedWedgeSpec,
    fit_cluster,
    fit_stepped_wedge,
)
from trials.errors import AnalysisError


def _crt(rng, m=10, n=8, icc=0.1, tau=0.5) -> pd.DataFrame:
    cl = np.repeat(np.arange(m), n)
    trt = (cl % 2).astype(int)
    y = tau * trt + rng.normal(0, math.sqrt(icc), m)[cl] + rng.normal(0, math.sqrt(1 - icc), m * n)
    return pd.DataFrame({"participant": np.arange(m * n), "cluster": [f"K{c}" for c in cl],
                         "arm": np.where(trt == 1, "ai_cbt", "usual_care"), "treated": trt,
                         "y": y})


def test_between_within_interval_covers_at_nominal_rate():
    # 10 clusters of 8, ICC 0.1, effect 0.5; 200 replicates (Monte Carlo SE of coverage ~0.015).
    rng = np.random.default_rng(20261127)
    tau, reps, z = 0.5, 200, stats.norm.ppf(0.975)
    t_cover = z_cover = icc_cover = 0
    for _ in range(reps):
        res = fit_cluster(_crt(rng, tau=tau), ClusterSpec("y", "sim", covariates=()))
        e = res.estimate
        t_cover += e.ci_lower <= tau <= e.ci_upper
        z_cover += e.estimate - z * e.std_error <= tau <= e.estimate + z * e.std_error
        upper = res.icc["ci_upper"] if res.icc["ci_upper"] is not None else 1.0
        icc_cover += res.icc["ci_lower"] <= 0.1 <= upper
    assert 0.92 <= t_cover / reps <= 0.98
    assert z_cover < t_cover
    assert 0.90 <= icc_cover / reps <= 0.99


def test_cluster_level_df_is_clusters_minus_two():
    res = fit_cluster(_crt(np.random.default_rng(1)), ClusterSpec("y", "a", covariates=()))
    assert res.estimate.diagnostics["df"] == 8
    assert res.estimate.details["clusters_by_treated"] == {"0": 5, "1": 5}


def test_residual_df_option():
    data = _crt(np.random.default_rng(2))
    res = fit_cluster(data, ClusterSpec("y", "a", covariates=(), df="residual"))
    assert res.estimate.diagnostics["df"] == len(data) - 2


def test_unknown_df_method_is_refused_with_a_clear_message():
    with pytest.raises(AnalysisError, match="df must be one of"):
        fit_cluster(_crt(np.random.default_rng(3)),
                    ClusterSpec("y", "a", covariates=(), df="containment"))


def test_kenward_roger_inflates_se_and_balanced_df_equal_between_within():
    # Balanced cluster RCT without covariates: KR and Satterthwaite df equal m - 2 exactly
    # (the cluster-means t test), and the KR-adjusted SE equals the model SE.
    data = _crt(np.random.default_rng(3), icc=0.3)
    kr = fit_cluster(data, ClusterSpec("y", "a", covariates=(), df="kenward_roger")).estimate
    sat = fit_cluster(data, ClusterSpec("y", "a", covariates=(), df="satterthwaite")).estimate
    assert kr.diagnostics["df"] == pytest.approx(8, rel=1e-6)
    assert sat.diagnostics["df"] == pytest.approx(8, rel=1e-6)
    assert kr.std_error == pytest.approx(sat.std_error, rel=1e-6)


def test_missing_cluster_column_is_named():
    with pytest.raises(AnalysisError, match="'cluster'"):
        fit_cluster(_crt(np.random.default_rng(4)).drop(columns="cluster"),
                    ClusterSpec("y", "a", covariates=()))


def test_zero_cluster_variance_is_a_boundary_fit_with_warning():
    rng = np.random.default_rng(5)
    data = _crt(rng, icc=0.0)
    data["y"] = data["treated"] * 0.3 + rng.normal(0, 1, len(data))
    res = fit_cluster(data, ClusterSpec("y", "a", covariates=(), df="satterthwaite"))
    if res.variance_components["cluster_variance"] == 0:
        assert res.estimate.diagnostics["boundary"] is True
        assert res.icc["ci_lower"] == 0
        assert any("zero" in w for w in res.estimate.warnings)


def test_caller_frame_is_not_modified_and_result_is_json_safe():
    import json

    data = _crt(np.random.default_rng(6))
    before = data.copy()
    res = fit_cluster(data, ClusterSpec("y", "a", covariates=()))
    pd.testing.assert_frame_equal(data, before)
    json.dumps(res.to_dict(), allow_nan=False)


def test_gee_method_reports_exchangeable_icc():
    res = fit_cluster(_crt(np.random.default_rng(7)), ClusterSpec("y", "a", method="gee",
                                                                  covariates=()))
    assert res.estimate.details["se_type"] == "mancl_derouen"
    assert res.icc["ci_lower"] is None


def _stepped_wedge(rng, k=6, periods=4, n=5, theta=-1.0) -> pd.DataFrame:
    step = np.repeat(np.arange(2, periods + 1), k // (periods - 1))
    rows = []
    u = rng.normal(0, 0.5, k)
    for c in range(k):
        for p in range(1, periods + 1):
            treated = int(p >= step[c])
            for _ in range(n):
                rows.append({"cluster": f"S{c}", "period": p, "treated": treated,
                             "arm": "ai_cbt" if treated else "usual_care",
                             "y": 0.2 * p + theta * treated + u[c] + rng.normal()})
    return pd.DataFrame(rows)


def test_stepped_wedge_recovers_effect_and_lists_period_effects():
    res = fit_stepped_wedge(_stepped_wedge(np.random.default_rng(8), n=40),
                            SteppedWedgeSpec("y", "sw", df="satterthwaite"))
    assert res.estimate.ci_lower < -1.0 < res.estimate.ci_upper
    assert [p["period"] for p in res.period_effects] == ["2", "3", "4"]
    assert res.to_dict()["period_effects"][0]["ci_lower"] < res.period_effects[0]["estimate"]


def test_stepped_wedge_needs_period_column():
    with pytest.raises(AnalysisError, match="'period'"):
        fit_stepped_wedge(_stepped_wedge(np.random.default_rng(9)).drop(columns="period"),
                          SteppedWedgeSpec("y", "sw"))
