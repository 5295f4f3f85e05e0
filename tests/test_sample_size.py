"""Sample size and power (designs/sample_size.py) against R, statsmodels and closed forms.

Sources:
* tests/reference/sample_size.R → sample_size.csv (R 4.2.2): base R ``power.t.test`` and
  ``power.prop.test`` (solved with tol = 1e-12), pwr 1.3-0 (``pwr.t2n.test``, ``pwr.2p.test``,
  ``pwr.2p2n.test``), rpact 3.3.4 fixed designs (``getSampleSizeMeans/Rates``,
  ``getPowerMeans/Rates``), formulas coded by hand in R (ANCOVA noncentral t with one df for the
  covariate; Zhu & Lakkis 2014 methods 1-3; Keene et al. 2007; design effects of Eldridge et al.
  2006) and the Hussey & Hughes (2007) variance from the full GLS matrix formula.
* statsmodels' power module, called here: ``TTestIndPower``, ``NormalIndPower`` with
  ``proportion_effectsize``, ``power_proportions_2indep``, ``power_negbin_ratio_2indep`` and
  ``power_poisson_ratio_2indep``.
Tolerances follow the reference's own precision (noted where it is not ~1e-10).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import power_proportions_2indep, proportion_effectsize
from statsmodels.stats.rates import power_negbin_ratio_2indep, power_poisson_ratio_2indep

from designs.sample_size import (
    design_effect,
    inflate_for_dropout,
    n_clusters,
    n_means,
    n_proportions,
    n_rates,
    n_stepped_wedge,
    power_at,
    power_clusters,
    power_means,
    power_proportions,
    power_rates,
    power_stepped_wedge,
    stepped_wedge_design,
    stepped_wedge_variance,
)
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

REF = pd.read_csv(
    REFERENCE / "sample_size.csv",
    dtype={"strict": str, "covariate_df": str, "method": str, "null_variance": str,
           "design": str},
)


def _rows(quantity, prefixes, source=None, exclude=None):
    sel = REF[(REF["quantity"] == quantity) & REF["case"].str.startswith(tuple(prefixes))]
    if source is not None:
        sel = sel[sel["source"] == source]
    if exclude is not None:
        sel = sel[~sel["case"].str.startswith(exclude)]
    return [pytest.param(r, id=f"{r['case']}-{r['quantity']}-{r['source']}")
            for r in sel.to_dict("records")]


def _flag(value) -> bool:
    return isinstance(value, str) and value == "TRUE"


def _means_kw(r) -> dict:
    return {"alpha": r["alpha"], "sides": int(r["sides"]), "method": r["method"],
            "strict": _flag(r["strict"]),
            "baseline_correlation": 0.0 if pd.isna(r["baseline_correlation"])
            else r["baseline_correlation"],
            "covariate_df": _flag(r["covariate_df"])}


def _props_kw(r) -> dict:
    return {"alpha": r["alpha"], "sides": int(r["sides"]), "method": r["method"],
            "strict": _flag(r["strict"])}


def _rates_kw(r) -> dict:
    return {"exposure": r["exposure"], "dispersion": r["dispersion"], "alpha": r["alpha"],
            "sides": int(r["sides"]), "null_variance": r["null_variance"],
            "strict": _flag(r["strict"])}


def _design(text: str) -> np.ndarray:
    return np.array([[float(c) for c in row] for row in text.split(";")])


# ----------------------------------------------------------------------- continuous vs R

@pytest.mark.parametrize("r", _rows("n_control", ["t_n", "ancova_n"]))
def test_means_n_matches_r(r):
    # power.t.test (tol 1e-12) and the hand-coded ANCOVA uniroot (tol 1e-12)
    res = n_means(r["delta"], r["sd"], power=r["power"], allocation=r["allocation"], **_means_kw(r))
    assert res.n_unrounded[0] == pytest.approx(r["value"], rel=1e-9)


@pytest.mark.parametrize("r", _rows("power", ["t_power", "ancova_power", "t2n_power"]))
def test_means_power_matches_r(r):
    # power.t.test(strict = TRUE), pwr.t2n.test, hand-coded ANCOVA noncentral t
    res = power_means(r["delta"], r["sd"], r["n_control"], r["n_treatment"], **_means_kw(r))
    assert res.power == pytest.approx(r["value"], abs=1e-10)


@pytest.mark.parametrize("r", _rows("n_control", ["rpact_means"]) + _rows("n_treatment",
                                                                            ["rpact_means"]))
def test_means_n_matches_rpact(r):
    # rpact getSampleSizeMeans: the normal approximation is its closed form (exact); its t
    # search stops at ~3e-7 relative (63.765784 vs power.t.test's 63.765764), hence 1e-6.
    res = n_means(r["delta"], r["sd"], power=r["power"], allocation=r["allocation"], **_means_kw(r))
    arm = 0 if r["quantity"] == "n_control" else 1
    rel = 1e-6 if r["method"] == "t" else 1e-10
    assert res.n_unrounded[arm] == pytest.approx(r["value"], rel=rel)


def test_means_power_matches_rpact():
    r = REF.set_index("case").loc["rpact_power_means"]
    # rpact getPowerMeans, fixed two-sided design; rpact's critical value is numerical (~1e-9)
    res = power_means(r["delta"], r["sd"], r["n_control"], r["n_treatment"], method="t")
    assert res.power == pytest.approx(r["value"], abs=1e-8)


# ----------------------------------------------------------------------- continuous vs statsmodels

@pytest.mark.parametrize(("d", "n1", "ratio", "alt", "sides"), [
    (0.5, 64, 1.0, "two-sided", 2), (0.3, 40, 2.0, "two-sided", 2), (0.8, 10, 0.5, "larger", 1),
])
def test_t_power_matches_statsmodels(d, n1, ratio, alt, sides):
    # statsmodels TTestIndPower.power (noncentral t, both tails when two-sided)
    expected = TTestIndPower().power(d, n1, 0.05, ratio=ratio, alternative=alt)
    res = power_means(d, 1.0, n1, n1 * ratio, sides=sides, method="t")
    assert res.power == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("d", "n1", "ratio"), [(0.5, 64, 1.0), (0.3, 40, 2.0), (0.2, 300, 0.5)])
def test_normal_power_matches_statsmodels(d, n1, ratio):
    # statsmodels NormalIndPower.power
    expected = NormalIndPower().power(d, n1, 0.05, ratio=ratio)
    res = power_means(d, 1.0, n1, n1 * ratio, method="normal")
    assert res.power == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_t_n_matches_statsmodels_solve_power(ratio):
    # statsmodels TTestIndPower.solve_power; its brentq stops at ~1e-8 relative
    expected = TTestIndPower().solve_power(0.5, power=0.8, alpha=0.05, ratio=ratio)
    assert n_means(0.5, 1.0, allocation=ratio).n_unrounded[0] == pytest.approx(expected, rel=1e-7)


def test_normal_n_matches_statsmodels_solve_power():
    # statsmodels NormalIndPower.solve_power (both tails counted)
    expected = NormalIndPower().solve_power(0.5, power=0.8, alpha=0.05)
    assert n_means(0.5, 1.0, method="normal").n_unrounded[0] == pytest.approx(expected, rel=1e-7)


# ----------------------------------------------------------------------- proportions

@pytest.mark.parametrize("r", _rows("n_control", ["prop_n"]))
def test_proportions_n_matches_power_prop_test(r):
    # power.prop.test (tol 1e-12), pooled variance under H0
    res = n_proportions(r["p_control"], r["p_treatment"], power=r["power"],
                        allocation=r["allocation"], **_props_kw(r))
    assert res.n_unrounded[0] == pytest.approx(r["value"], rel=1e-9)


@pytest.mark.parametrize("r", _rows("power", ["prop_power", "h_power"]))
def test_proportions_power_matches_r(r):
    # power.prop.test(strict = TRUE); pwr.2p.test and pwr.2p2n.test (arcsine)
    res = power_proportions(r["p_control"], r["p_treatment"], r["n_control"], r["n_treatment"],
                            **_props_kw(r))
    assert res.power == pytest.approx(r["value"], abs=1e-10)


def test_cohens_h_matches_pwr():
    r = REF.set_index("case").loc["h_025_040"]
    # pwr::ES.h(0.40, 0.25)
    res = power_proportions(r["p_control"], r["p_treatment"], 100, method="arcsine")
    assert res.details["cohens_h"] == pytest.approx(r["value"], abs=1e-14)


def test_arcsine_n_matches_pwr():
    r = REF.set_index("case").loc["h_n"]
    # pwr.2p.test solves n with uniroot at its default tol (~1.2e-4 on n), hence 1e-3
    res = n_proportions(r["p_control"], r["p_treatment"], power=r["power"], method="arcsine")
    assert res.n_unrounded[0] == pytest.approx(r["value"], abs=1e-3)


@pytest.mark.parametrize("r", _rows("n_control", ["rpact_rates"]) + _rows("n_treatment",
                                                                            ["rpact_rates"]))
def test_proportions_n_matches_rpact(r):
    # rpact getSampleSizeRates: closed form (one tail), pooled H0 variance, allocation weights
    res = n_proportions(r["p_control"], r["p_treatment"], power=r["power"],
                        allocation=r["allocation"], **_props_kw(r))
    arm = 0 if r["quantity"] == "n_control" else 1
    assert res.n_unrounded[arm] == pytest.approx(r["value"], rel=1e-10)


def test_proportions_power_matches_rpact():
    r = REF.set_index("case").loc["rpact_power_rates"]
    # rpact getPowerRates folds sigma0/sigma1 into one drift, exact only for the near tail:
    # its far tail differs from power.prop.test's by 2.4e-7 here (see sample_size.out).
    res = power_proportions(r["p_control"], r["p_treatment"], r["n_control"])
    assert res.power == pytest.approx(r["value"], abs=1e-6)


@pytest.mark.parametrize(("p_c", "p_t", "n_c", "n_t"), [
    (0.25, 0.40, 150, 150), (0.10, 0.20, 120, 240), (0.60, 0.45, 90, 60),
])
def test_pooled_power_matches_statsmodels(p_c, p_t, n_c, n_t):
    # statsmodels power_proportions_2indep (pooled under H0; sample 1 = control here)
    expected = power_proportions_2indep(p_c - p_t, p_t, n_c, ratio=n_t / n_c).power
    assert power_proportions(p_c, p_t, n_c, n_t).power == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("p_c", "p_t", "n_c", "ratio"), [
    (0.25, 0.40, 150, 1.0), (0.10, 0.20, 120, 2.0), (0.60, 0.45, 90, 0.5),
])
def test_arcsine_power_matches_statsmodels(p_c, p_t, n_c, ratio):
    # statsmodels NormalIndPower with proportion_effectsize (Cohen's h)
    expected = NormalIndPower().power(proportion_effectsize(p_t, p_c), n_c, 0.05, ratio=ratio)
    res = power_proportions(p_c, p_t, n_c, n_c * ratio, method="arcsine")
    assert res.power == pytest.approx(expected, abs=1e-12)


def test_arcsine_n_matches_statsmodels_solve_power():
    # statsmodels NormalIndPower.solve_power with proportion_effectsize
    expected = NormalIndPower().solve_power(proportion_effectsize(0.40, 0.25), power=0.8,
                                            alpha=0.05, ratio=2.0)
    res = n_proportions(0.25, 0.40, method="arcsine", allocation=2.0)
    assert res.n_unrounded[0] == pytest.approx(expected, rel=1e-7)


# ----------------------------------------------------------------------- counts

@pytest.mark.parametrize("r", _rows("n_control", ["nb_", "poisson_"]))
def test_rates_n_matches_zhu_lakkis(r):
    # Zhu & Lakkis (2014) closed form coded in R (methods 1-3); Keene et al. (2007) for 1:1
    res = n_rates(r["rate_control"], r["rate_treatment"], power=r["power"],
                  allocation=r["allocation"], **_rates_kw(r))
    assert res.n_unrounded[0] == pytest.approx(r["value"], rel=1e-10)


@pytest.mark.parametrize("r", _rows("power", ["nb_", "poisson_"]))
def test_rates_power_matches_zhu_lakkis(r):
    # Zhu & Lakkis (2014) power (both tails) coded in R
    res = power_rates(r["rate_control"], r["rate_treatment"], r["n_control"], r["n_treatment"],
                      **_rates_kw(r))
    assert res.power == pytest.approx(r["value"], abs=1e-12)


@pytest.mark.parametrize(("ours", "theirs"), [("pooled", "ftotal"), ("alternative", "alt")])
@pytest.mark.parametrize(("r_c", "r_t", "n_c", "kappa", "t", "k"), [
    (1.0, 0.7, 200, 1.0, 1.0, 0.5), (0.8, 0.6, 150, 2.0, 1.5, 0.8), (2.0, 2.6, 80, 0.5, 0.5, 0.2),
])
def test_negbin_power_matches_statsmodels(ours, theirs, r_c, r_t, n_c, kappa, t, k):
    # statsmodels power_negbin_ratio_2indep (Zhu & Lakkis; sample 1 = control here)
    expected = power_negbin_ratio_2indep(r_c, r_t, n_c, nobs_ratio=kappa, exposure=t,
                                         dispersion=k, method_var=theirs).power
    res = power_rates(r_c, r_t, n_c, n_c * kappa, exposure=t, dispersion=k, null_variance=ours)
    assert res.power == pytest.approx(expected, abs=1e-12)


def test_poisson_power_matches_statsmodels():
    # statsmodels power_poisson_ratio_2indep (dispersion 1 = Poisson), variance at H1
    expected = power_poisson_ratio_2indep(2.0, 1.5, 200, nobs_ratio=1.5, exposure=0.5, value=1,
                                          alternative="two-sided", method_var="alt").power
    res = power_rates(2.0, 1.5, 200, 300, exposure=0.5, null_variance="alternative")
    assert res.power == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------- clusters

@pytest.mark.parametrize("r", _rows("design_effect", ["cluster_"]))
def test_design_effect_matches_hand(r):
    # 1 + ((cv^2 + 1) m - 1) rho (Eldridge et al. 2006), computed in R
    assert design_effect(r["cluster_size"], r["icc"], r["cv"]) == pytest.approx(r["value"],
                                                                               abs=1e-14)


def _cluster_result(r):
    base = n_means(r["delta"], r["sd"], power=r["power"], **_means_kw(r))
    return n_clusters(base, r["cluster_size"], r["icc"], r["cv"])


@pytest.mark.parametrize("r", _rows("clusters_per_arm", ["cluster_"]))
def test_clusters_per_arm_matches_hand(r):
    # ceil(n DE / m) from the closed-form z-test n, computed in R
    assert _cluster_result(r).clusters_per_arm == (int(r["value"]), int(r["value"]))


@pytest.mark.parametrize("r", _rows("power", ["cluster_"]))
def test_cluster_power_matches_hand(r):
    # z-test power at the effective n k m / DE per arm, computed in R
    assert _cluster_result(r).power == pytest.approx(r["value"], abs=1e-12)


def test_power_clusters_equals_n_clusters_at_same_clusters():
    base = n_means(5, 10, method="normal")
    solved = n_clusters(base, 20, 0.05, cv=0.4)
    given = power_clusters(base, solved.clusters_per_arm, 20, 0.05, cv=0.4)
    assert given.power == pytest.approx(solved.power, abs=1e-15)


def test_unequal_allocation_clusters_keep_ratio():
    solved = n_clusters(n_means(5, 10, allocation=2.0), 15, 0.02)
    assert solved.clusters_per_arm[1] == 2 * solved.clusters_per_arm[0]


# ----------------------------------------------------------------------- stepped wedge

@pytest.mark.parametrize("r", _rows("variance", ["sw_"]))
def test_stepped_wedge_variance_matches_r(r):
    # Hussey & Hughes (2007): "gls" = full GLS matrix formula, "hand" = closed form, in R
    var = stepped_wedge_variance(_design(r["design"]), r["cluster_period_size"], r["icc"],
                                 r["total_variance"])
    assert var == pytest.approx(r["value"], rel=1e-12)


@pytest.mark.parametrize("r", _rows("variance", ["sw_"], source="gls", exclude="sw_irregular"))
def test_stepped_wedge_design_matches_r(r):
    # the R script's standard design: equal groups cross over at each of the steps
    x = stepped_wedge_design(int(r["clusters"]), int(r["steps"]))
    assert np.array_equal(x, _design(r["design"]))


@pytest.mark.parametrize("r", _rows("power", ["sw_"], source="gls", exclude="sw_need"))
def test_stepped_wedge_power_matches_r(r):
    # normal power (both tails) from the GLS variance, in R
    res = power_stepped_wedge(r["delta"], int(r["clusters"]), int(r["steps"]),
                              r["cluster_period_size"], r["icc"], r["total_variance"])
    assert res.power == pytest.approx(r["value"], abs=1e-12)


@pytest.mark.parametrize("case", ["sw_need_4", "sw_need_6"])
def test_stepped_wedge_clusters_needed_match_r(case):
    rows = REF[REF["case"] == case].set_index("quantity")
    r = rows.loc["clusters"]
    res = n_stepped_wedge(r["delta"], int(r["steps"]), r["cluster_period_size"], r["icc"],
                          r["total_variance"], power=r["power"])
    # R: search over multiples of steps with the GLS variance
    assert res.clusters == int(r["value"])
    assert res.power == pytest.approx(rows.loc["power", "value"], abs=1e-12)


def test_stepped_wedge_replication_divides_variance():
    # Hussey & Hughes closed form: doubling every step group halves Var(theta-hat)
    v1 = stepped_wedge_variance(stepped_wedge_design(4, 4), 10, 0.05)
    v3 = stepped_wedge_variance(stepped_wedge_design(12, 4), 10, 0.05)
    assert v3 == pytest.approx(v1 / 3, rel=1e-12)


# ----------------------------------------------------------------------- record and rules

def test_record_is_frozen_and_serialisable():
    res = n_means(5, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.power = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        res.inputs["delta"] = 1.0  # type: ignore[index]
    assert json.loads(json.dumps(res.to_dict()))["n_per_arm"] == [64, 64]


def test_rationale_is_one_quotable_line():
    res = n_proportions(0.25, 0.40)
    assert "\n" not in res.rationale
    assert res.rationale.startswith("152 per arm (304 in total) give 80.0% power")


def test_integer_n_is_the_smallest_reaching_target():
    res = n_means(5, 10)
    n_c, n_t = res.n_per_arm
    assert res.power >= 0.8
    assert power_at(res, n_c - 1, n_t - 1) < 0.8


def test_allocation_rounds_control_then_multiplies():
    res = n_means(5, 10, allocation=2.0)
    assert res.n_per_arm == (48, 96)


def test_ancova_without_correlation_is_the_t_test():
    plain, ancova = n_means(5, 10), n_means(5, 10, baseline_correlation=0.0)
    assert ancova.n_unrounded == plain.n_unrounded


def test_dropout_inflation():
    base = n_means(5, 10)
    res = inflate_for_dropout(base, 0.2)
    assert res.n_per_arm == (80, 80)  # 64 / 0.8
    assert res.power == pytest.approx(base.power, abs=1e-12)


def test_dropout_on_cluster_result_is_refused():
    with pytest.raises(ValueError, match="individually randomised"):
        inflate_for_dropout(n_clusters(n_means(5, 10), 20, 0.05), 0.1)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: n_means(5, 10, alpha=1.5), "alpha"),
    (lambda: n_means(5, 10, power=0.02), "must exceed alpha"),
    (lambda: n_means(5, 10, sides=3), "sides"),
    (lambda: n_means(5, 10, method="normal", covariate_df=True), "covariate_df"),
    (lambda: n_proportions(0.3, 0.3), "must differ"),
    (lambda: n_rates(1.0, 0.7, dispersion=-1), "dispersion"),
    (lambda: design_effect(20, 1.5), "icc"),
    (lambda: stepped_wedge_design(10, 4), "multiple of steps"),
])
def test_invalid_inputs_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
