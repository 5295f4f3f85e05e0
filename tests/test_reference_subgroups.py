"""Subgroup interaction ANCOVA against R 4.2.2 ``lm``, ``anova`` and emmeans 1.8.4-1.

Source: tests/reference/subgroup_lm.R (R 4.2.2, stats ``lm``/``anova``/``vcov``, emmeans 1.8.4-1
``contrast(emmeans(fit, ~ arm | sub), "revpairwise")``, HSAUR3 1.0-13 data) run on the Beat the
Blues trial (HSAUR3 ``BtheB``, written to subgroup_btheb_data.csv) and on simulated data
(subgroup_sim_data.csv); raw output in subgroup_lm.out, 15-digit values in subgroup_lm.csv.
The shrinkage check at the end compares PyMC draws with the closed-form normal posterior of the
normal-normal model at a fixed between-level SD, written out by hand in this file.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.shrinkage import ShrinkageSpec, shrink
from analysis.subgroups import SubgroupSpec, fit_subgroups
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

TOL = 1e-8  # lm is exact linear algebra; agreement is ~1e-13 in practice
DATASETS = {
    "btheb": ("BtheB", ("drug", "length")),
    "sim": ("ai_cbt", ("age_group", "gender", "imd_quintile", "ethnicity")),
}
R = pd.read_csv(REFERENCE / "subgroup_lm.csv", keep_default_na=False, dtype={"level": str})


def _r(dataset: str, variable: str, level: str, statistic: str) -> float:
    m = R[(R.dataset == dataset) & (R.variable == variable) & (R.level == level)
          & (R.statistic == statistic)]
    assert len(m) == 1, (dataset, variable, level, statistic)
    return float(m["value"].iloc[0])


def _cases(statistic: str) -> list[tuple[str, str, str]]:
    m = R[R.statistic == statistic]
    return [(d, v, lv) for d, v, lv in zip(m.dataset, m.variable, m.level, strict=True)]


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    out = {}
    for name, (exp, subs) in DATASETS.items():
        frame = pd.read_csv(REFERENCE / f"subgroup_{name}_data.csv")
        frame["treated"] = (frame["arm"] == exp).astype(int)
        out[name] = fit_subgroups(frame, SubgroupSpec("primary", "subgroups", subs))
    return out


def _row(results, dataset, variable, level):
    rows = [r for r in results[dataset].rows if r.variable == variable and r.level == level]
    assert len(rows) == 1
    return rows[0]


def _reported(results, dataset, variable, level):
    row = _row(results, dataset, variable, level)
    assert not row.suppressed
    return row


# Levels with fewer than 10 analysed participants in an arm (R's counts) are suppressed and
# checked as such in test_counts_by_arm_or_small_cell_label; the rest are compared here.
LEVELS = [c for c in _cases("se") if min(_r(*c, "n_exp"), _r(*c, "n_ctl")) >= 10]


@pytest.mark.parametrize(("dataset", "variable", "level"), LEVELS)
def test_within_level_estimate(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R: L'b from lm(y ~ arm * sub + baseline) (subgroup_lm.csv "estimate")
    assert row.estimate == pytest.approx(_r(dataset, variable, level, "estimate"), abs=TOL)


@pytest.mark.parametrize(("dataset", "variable", "level"), LEVELS)
def test_within_level_se(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R: sqrt(L' vcov(fit) L) (subgroup_lm.csv "se")
    assert row.se == pytest.approx(_r(dataset, variable, level, "se"), abs=TOL)


@pytest.mark.parametrize(("dataset", "variable", "level"), LEVELS)
def test_within_level_ci_lower(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R: estimate - qt(0.975, df.residual) * se
    assert row.ci_lower == pytest.approx(_r(dataset, variable, level, "ci_lower"), abs=TOL)


@pytest.mark.parametrize(("dataset", "variable", "level"), LEVELS)
def test_within_level_ci_upper(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R: estimate + qt(0.975, df.residual) * se
    assert row.ci_upper == pytest.approx(_r(dataset, variable, level, "ci_upper"), abs=TOL)


@pytest.mark.parametrize(("dataset", "variable", "level"), LEVELS)
def test_within_level_p_value(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R: 2 * pt(-|t|, df.residual)
    assert row.p_value == pytest.approx(_r(dataset, variable, level, "p_value"), rel=1e-6,
                                        abs=1e-14)


BTHEB_LEVELS = [c for c in _cases("emmeans_se") if c[0] == "btheb"]


@pytest.mark.parametrize(("dataset", "variable", "level"), BTHEB_LEVELS)
def test_btheb_estimate_matches_emmeans(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R emmeans 1.8.4-1: contrast(emmeans(fit, ~ arm | sub), "revpairwise") estimate
    assert row.estimate == pytest.approx(_r(dataset, variable, level, "emmeans_estimate"),
                                         abs=TOL)


@pytest.mark.parametrize(("dataset", "variable", "level"), BTHEB_LEVELS)
def test_btheb_se_matches_emmeans(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R emmeans 1.8.4-1: SE of the contrast
    assert row.se == pytest.approx(_r(dataset, variable, level, "emmeans_se"), abs=TOL)


@pytest.mark.parametrize(("dataset", "variable", "level"), BTHEB_LEVELS)
def test_btheb_ci_matches_emmeans(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R emmeans 1.8.4-1: lower.CL (upper.CL is checked against the hand combination above)
    assert row.ci_lower == pytest.approx(_r(dataset, variable, level, "emmeans_ci_lower"),
                                         abs=TOL)


@pytest.mark.parametrize(("dataset", "variable", "level"), BTHEB_LEVELS)
def test_btheb_p_matches_emmeans(results, dataset, variable, level):
    row = _reported(results, dataset, variable, level)
    # R emmeans 1.8.4-1: p.value of the contrast
    assert row.p_value == pytest.approx(_r(dataset, variable, level, "emmeans_p_value"),
                                        rel=1e-6)


VARIABLES = [(d, v) for d, v, _ in _cases("F")]


def _test(results, dataset, variable):
    return next(t for t in results[dataset].interactions if t.variable == variable)


@pytest.mark.parametrize(("dataset", "variable"), VARIABLES)
def test_interaction_f(results, dataset, variable):
    # R: anova(lm(y ~ arm + sub + baseline), lm(y ~ arm * sub + baseline))$F[2]
    assert _test(results, dataset, variable).F == pytest.approx(
        _r(dataset, variable, "", "F"), abs=1e-8)


@pytest.mark.parametrize(("dataset", "variable"), VARIABLES)
def test_interaction_p(results, dataset, variable):
    # R: anova(...)$"Pr(>F)"[2]
    assert _test(results, dataset, variable).p == pytest.approx(
        _r(dataset, variable, "", "p"), rel=1e-6)


@pytest.mark.parametrize(("dataset", "variable"), VARIABLES)
def test_interaction_df(results, dataset, variable):
    t = _test(results, dataset, variable)
    # R: anova(...)$Df[2] and $Res.Df[2]
    assert (t.df1, t.df2) == (_r(dataset, variable, "", "df1"), _r(dataset, variable, "", "df2"))


@pytest.mark.parametrize(("dataset", "variable", "level"), _cases("n_exp"))
def test_counts_by_arm_or_small_cell_label(results, dataset, variable, level):
    row = _row(results, dataset, variable, level)
    # R: table(sub, arm) on the complete cases
    n_exp, n_ctl = _r(dataset, variable, level, "n_exp"), _r(dataset, variable, level, "n_ctl")
    for n, shown, label in ((n_exp, row.n_exp, row.n_exp_label),
                            (n_ctl, row.n_ctl, row.n_ctl_label)):
        if 0 < n < 10:
            assert shown is None and label == "<10"
        else:
            assert shown in (None, int(n)) and label in ("[c]", str(int(n)))
    assert row.suppressed == (min(n_exp, n_ctl) < 10)


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("statistic", ["estimate", "se", "ci_lower", "ci_upper"])
def test_overall_effect(results, dataset, statistic):
    e = results[dataset].estimate
    got = {"estimate": e.estimate, "se": e.std_error, "ci_lower": e.ci_lower,
           "ci_upper": e.ci_upper}[statistic]
    # R: lm(y ~ arm + baseline), summary and confint
    assert got == pytest.approx(_r(dataset, "overall", "all", statistic), abs=TOL)


# ------------------------------------------------------------------ shrinkage, tau fixed
TAU = 2.0
MU_MEAN, MU_SD = 0.0, 10.0


@pytest.fixture(scope="module")
def fixed_tau():
    """Raw level effects of BtheB's two subgroups from R (not from the code under test)."""
    rows = [{"variable": v, "level": lv, "estimate": _r("btheb", v, lv, "estimate"),
             "se": _r("btheb", v, lv, "se"), "suppressed": False}
            for _, v, lv in LEVELS if _ == "btheb"]
    spec = ShrinkageSpec(draws=1000, tune=400, chains=2, seed=5, tau_fixed=TAU,
                         mu_prior_mean=MU_MEAN, mu_prior_sd=MU_SD)
    return rows, shrink(rows, spec)


def _hand_posterior(rows, variable):
    """theta_j | y, tau ~ N(w_j y_j + (1 - w_j) M, w_j s_j^2 + (1 - w_j)^2 / P), where
    w_j = tau^2 / (tau^2 + s_j^2), P = 1 / s_mu^2 + sum 1 / (s_j^2 + tau^2) and
    M = (m / s_mu^2 + sum y_j / (s_j^2 + tau^2)) / P (mu integrated out analytically)."""
    ys = np.array([r["estimate"] for r in rows if r["variable"] == variable])
    ss = np.array([r["se"] for r in rows if r["variable"] == variable])
    precision = 1 / MU_SD**2 + np.sum(1 / (ss**2 + TAU**2))
    m = (MU_MEAN / MU_SD**2 + np.sum(ys / (ss**2 + TAU**2))) / precision
    w = TAU**2 / (TAU**2 + ss**2)
    return w * ys + (1 - w) * m, np.sqrt(w * ss**2 + (1 - w) ** 2 / precision)


@pytest.mark.parametrize("variable", ["drug", "length"])
def test_fixed_tau_posterior_means_match_closed_form(fixed_tau, variable):
    rows, result = fixed_tau
    mean, sd = _hand_posterior(rows, variable)
    got = [r for r in result.rows if r.variable == variable]
    for k, r in enumerate(got):
        mcse = sd[k] / math.sqrt(result.diagnostics["min_ess_bulk"])
        # closed form above; Monte Carlo error only
        assert r.shrunk_estimate == pytest.approx(mean[k], abs=4 * mcse + 0.01)


@pytest.mark.parametrize("variable", ["drug", "length"])
def test_fixed_tau_posterior_sds_match_closed_form(fixed_tau, variable):
    rows, result = fixed_tau
    _, sd = _hand_posterior(rows, variable)
    got = [r.shrunk_sd for r in result.rows if r.variable == variable]
    # closed form above; the SD of ~1000 effective draws is within a few percent
    assert got == pytest.approx(list(sd), rel=0.08)


def test_fixed_tau_fit_passes_its_gate(fixed_tau):
    _, result = fixed_tau
    assert result.reliable, result.warnings
