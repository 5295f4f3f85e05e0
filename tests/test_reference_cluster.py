"""Cluster-randomised and stepped-wedge models against R 4.2.2 ``lme4::lmer`` 1.1-31 (REML),
``lmerTest`` 3.1-3 (Satterthwaite df), ``nlme::lme`` 3.1-162 (between-within df) and
``geepack::geeglm`` 1.3.9.

Source: tests/reference/cluster_reference.R on cluster_crt_data.csv (14-practice cluster RCT)
and cluster_sw_data.csv (8-cluster, 5-period stepped wedge); raw output in
cluster_reference.out, values with 15 significant digits in cluster_reference.csv. The ICC
interval is the profile REML likelihood interval found in R with ``uniroot`` on lme4's own REML
deviance function (``lmer(..., devFunOnly = TRUE)``); Kenward-Roger df and adjusted SE from
``pbkrtest`` 0.5-2 through ``lmerTest``; the GEE Mancl-DeRouen SE is hand-coded in
R from geeglm's fit.
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.cluster import (
    ClusterSpec,
    SteppedWedgeSpec,
    fit_cluster,
    fit_stepped_wedge,
)
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

# lmer's bobyqa optimum and lme's agree with each other to ~1e-8; ours is the exact 1-D optimum.
TOL = 1e-6


@pytest.fixture(scope="module")
def ref() -> dict[tuple[str, str], float]:
    r = pd.read_csv(REFERENCE / "cluster_reference.csv")
    return {(m, s): float(v) for m, s, v in r.itertuples(index=False)}


@pytest.fixture(scope="module")
def crt() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "cluster_crt_data.csv")


@pytest.fixture(scope="module")
def sw() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "cluster_sw_data.csv")


DFS = ("between_within", "satterthwaite", "kenward_roger")


@pytest.fixture(scope="module")
def crt_fit(crt):
    return fit_cluster(crt, ClusterSpec("y", "ref"))


@pytest.fixture(scope="module", params=[(m, d) for m in ("crt", "sw") for d in DFS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def any_fit(request, crt, sw):
    model, df = request.param
    if model == "crt":
        return model, df, fit_cluster(crt, ClusterSpec("y", "ref", df=df))
    return model, df, fit_stepped_wedge(sw, SteppedWedgeSpec("y", "ref", df=df))


def test_treatment_effect_matches_lmer(any_fit, ref):
    # lmerTest summary(fit)$coefficients["treated", "Estimate"]
    model, _, res = any_fit
    assert res.estimate.estimate == pytest.approx(ref[(model, "estimate")], abs=TOL)


def test_standard_error_matches_lmer(any_fit, ref):
    # lmerTest summary(fit)$coefficients["treated", "Std. Error"]; for Kenward-Roger the
    # adjusted SE sqrt(pbkrtest::vcovAdj) that summary(fit, ddf = "Kenward-Roger") reports
    model, df, res = any_fit
    key = "kenward_roger_se" if df == "kenward_roger" else "std_error"
    assert res.estimate.std_error == pytest.approx(ref[(model, key)], abs=TOL)


def test_df_matches_r(any_fit, ref):
    # between_within: nlme::lme tTable DF; satterthwaite / kenward_roger: lmerTest df
    model, df, res = any_fit
    assert res.estimate.diagnostics["df"] == pytest.approx(ref[(model, f"{df}_df")], rel=1e-5)


def test_interval_matches_r(any_fit, ref):
    # estimate -/+ qt(0.975, df) * SE with R's df (cluster_reference.R)
    model, df, res = any_fit
    assert res.estimate.ci_lower == pytest.approx(ref[(model, f"{df}_ci_lower")], abs=1e-5)
    assert res.estimate.ci_upper == pytest.approx(ref[(model, f"{df}_ci_upper")], abs=1e-5)


def test_p_value_matches_r(any_fit, ref):
    # lmerTest Pr(>|t|) (Satterthwaite, Kenward-Roger) or nlme p-value (between-within)
    model, df, res = any_fit
    assert res.estimate.p_value == pytest.approx(ref[(model, f"{df}_p")], rel=1e-4, abs=1e-8)


def test_variance_components_match_vcorr(any_fit, ref):
    # as.data.frame(VarCorr(fit))$vcov
    model, _, res = any_fit
    vc = res.variance_components
    assert vc["cluster_variance"] == pytest.approx(ref[(model, "cluster_variance")], abs=1e-5)
    assert vc["residual_variance"] == pytest.approx(ref[(model, "residual_variance")], abs=1e-5)


def test_reml_criterion_matches_lmer(any_fit, ref):
    # lme4::REMLcrit(fit)
    model, _, res = any_fit
    assert res.variance_components["reml_deviance"] == pytest.approx(
        ref[(model, "reml_criterion")], abs=1e-7)


def test_icc_matches_vcorr(any_fit, ref):
    # s2_b / (s2_b + s2_e) from VarCorr(fit)
    model, _, res = any_fit
    assert res.icc["estimate"] == pytest.approx(ref[(model, "icc")], abs=1e-6)


def test_icc_profile_interval_matches_r(any_fit, ref):
    # uniroot on lme4's devFunOnly REML deviance, mapped theta^2 / (1 + theta^2)
    model, _, res = any_fit
    assert res.icc["ci_lower"] == pytest.approx(ref[(model, "icc_ci_lower")], abs=1e-7)
    assert res.icc["ci_upper"] == pytest.approx(ref[(model, "icc_ci_upper")], abs=1e-7)


def test_90_percent_intervals_match_r(crt, ref):
    # qt(0.95, df) intervals and the 90% profile ICC interval (cluster_reference.R)
    res = fit_cluster(crt, ClusterSpec("y", "ref", df="satterthwaite", interval_level=0.90))
    assert res.estimate.ci_lower == pytest.approx(ref[("crt", "satterthwaite_ci_lower_90")],
                                                  abs=1e-5)
    assert res.estimate.ci_upper == pytest.approx(ref[("crt", "satterthwaite_ci_upper_90")],
                                                  abs=1e-5)
    assert res.icc["ci_lower"] == pytest.approx(ref[("crt", "icc_ci_lower_90")], abs=1e-7)
    assert res.icc["ci_upper"] == pytest.approx(ref[("crt", "icc_ci_upper_90")], abs=1e-7)


def test_n_matches_lmer(crt_fit, ref):
    # nobs(fit): 5 participants with a missing outcome are excluded
    res = crt_fit
    assert res.estimate.n_analysed == ref[("crt", "n")]
    assert res.estimate.details["n_excluded"] == 5


@pytest.mark.parametrize("period", [2, 3, 4, 5])
def test_period_effects_match_lme(sw, ref, period):
    # nlme::lme tTable rows period2..period5 (Value, Std.Error, DF)
    res = fit_stepped_wedge(sw, SteppedWedgeSpec("y", "ref"))
    row = next(p for p in res.period_effects if p["period"] == str(period))
    assert row["estimate"] == pytest.approx(ref[("sw", f"period{period}_estimate")], abs=TOL)
    assert row["std_error"] == pytest.approx(ref[("sw", f"period{period}_se")], abs=TOL)
    assert row["df"] == ref[("sw", f"period{period}_df")]


def test_gee_cluster_matches_geeglm_and_hand_mancl_derouen(crt, ref):
    # geeglm(gaussian, exchangeable) beta and alpha; Mancl-DeRouen SE and t(K - p) interval
    # hand-coded in R
    res = fit_cluster(crt, ClusterSpec("y", "ref", method="gee"))
    assert res.estimate.estimate == pytest.approx(ref[("crt_gee", "estimate")], abs=1e-8)
    assert res.icc["estimate"] == pytest.approx(ref[("crt_gee", "alpha")], abs=1e-8)
    assert res.estimate.std_error == pytest.approx(ref[("crt_gee", "se_mancl_derouen")],
                                                   abs=1e-8)
    assert res.estimate.ci_lower == pytest.approx(ref[("crt_gee", "ci_lower")], abs=1e-8)
    assert res.estimate.ci_upper == pytest.approx(ref[("crt_gee", "ci_upper")], abs=1e-8)
