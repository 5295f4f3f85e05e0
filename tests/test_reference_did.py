"""DiD, event study and Callaway-Sant'Anna against R 4.2.2 (plm 2.6.2, sandwich 3.0.2, lmtest
0.9.40, AER 1.2.10) and Stock & Watson, Introduction to Econometrics, Table 10.1.

Source: tests/reference/did_twfe.R run on tests/reference/did_panel.csv (simulated staggered
panel, did_make_data.py) and AER::Fatalities (exported to did_fatalities.csv); raw output in
did_twfe.out; full-precision numbers in did_twfe.csv, did_event_study.csv, did_cs_attgt.csv and
did_cs_aggregate.csv. TWFE: ``plm(model = "within", effect = "twoways")`` with
``vcovHC(method = "arellano")`` and ``lm`` with unit and period dummies with
``sandwich::vcovCL``; event study: ``lm`` + ``vcovCL`` + ``lmtest::waldtest``; ATT(g,t): 2x2
differences of group means in base R (the ``did`` package is not installable here);
Callaway-Sant'Anna pre-trend test: tests/reference/did_cs_pretrend.R (hand computation of the
windowed event-time Hotelling F test; its Welch cell covariance checked there against
clubSandwich 0.5.8 ``vcovCR(type = "CR2")``), raw output did_cs_pretrend.out, numbers in
did_cs_pretrend.csv.
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.did import DidSpec, fit_did
from analysis.event_study import EventStudySpec, fit_event_study
from analysis.staggered import StaggeredSpec, fit_staggered
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

TOL = 1e-8  # estimates and SEs: double-precision agreement with R (observed ~1e-14)

TWFE = pd.read_csv(REFERENCE / "did_twfe.csv")
ES = pd.read_csv(REFERENCE / "did_event_study.csv").set_index("term")
ATT = pd.read_csv(REFERENCE / "did_cs_attgt.csv")
AGG = pd.read_csv(REFERENCE / "did_cs_aggregate.csv")
PRE = pd.read_csv(REFERENCE / "did_cs_pretrend.csv")
STATS = ("estimate", "std_error", "ci_lower", "ci_upper", "p_value")


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "did_panel.csv")


@pytest.fixture(scope="module")
def fatalities() -> pd.DataFrame:
    # Beer tax is a continuous dose; TWFE treats it as the regressor of interest.
    return pd.read_csv(REFERENCE / "did_fatalities.csv").rename(columns={"beertax": "treated"})


def _fit(row: pd.Series, panel: pd.DataFrame, fatalities: pd.DataFrame):
    small = {"plm_sss": "cluster", "cluster_region": "cluster"}.get(row["fit"], row["fit"])
    cluster = "region" if row["fit"] == "cluster_region" else "unit"
    if row["data"] == "fatalities":
        data, method = fatalities, "twfe"
    elif row["data"] == "panel_2x2":
        data, method = panel[panel["period"].isin([3, 5])], "two_by_two"
    else:
        data, method = panel, "twfe"
    spec = DidSpec("e", "ref", method=method, cluster=cluster, small_sample=small)
    return fit_did(data, spec).estimate


@pytest.mark.parametrize("stat", STATS)
@pytest.mark.parametrize("index", range(len(TWFE)),
                         ids=[f"{d}-{f}" for d, f in zip(TWFE["data"], TWFE["fit"], strict=True)])
def test_twfe_matches_r(index, stat, panel, fatalities):
    # R: plm within twoways + vcovHC(arellano) / lm + vcovCL (did_twfe.csv); t on G - 1 df
    row = TWFE.iloc[index]
    est = _fit(row, panel, fatalities)
    rel = 1e-6 if stat == "p_value" else 0
    assert getattr(est, stat) == pytest.approx(row[stat], abs=TOL, rel=rel)


def test_fatalities_matches_stock_watson_coefficient(fatalities):
    # Stock & Watson Table 10.1 col. (3) / eq. (10.21): beer tax -0.64, state and year effects
    est = fit_did(fatalities, DidSpec("e", "ref")).estimate
    assert est.estimate == pytest.approx(-0.64, abs=0.005)


def test_fatalities_matches_stock_watson_clustered_se(fatalities):
    # Stock & Watson Table 10.1 col. (3): SE 0.36 clustered by state (Stata's factor also has
    # (N-1)/(N-K) over the 8 non-absorbed terms, +1%; hence the 0.01 tolerance)
    est = fit_did(fatalities, DidSpec("e", "ref")).estimate
    assert est.std_error == pytest.approx(0.36, abs=0.01)


# ---------------------------------------------------------------------------- event study
@pytest.fixture(scope="module")
def event_study(panel):
    return fit_event_study(panel, EventStudySpec("e", "ref", leads=3, lags=4, reference=-1))


@pytest.mark.parametrize("stat", ("estimate", "std_error", "ci_lower", "ci_upper"))
@pytest.mark.parametrize("term", [t for t in ES.index if t.startswith(("lead", "lag"))])
def test_event_coefficient_matches_r(event_study, term, stat):
    # R: lm(y ~ leads + lags + factor(unit) + factor(period)) + vcovCL HC0 cadjust
    k = int(ES.loc[term, "event_time"])
    row = next(c for c in event_study.coefficients if c.event_time == k)
    assert getattr(row, stat) == pytest.approx(ES.loc[term, stat], abs=TOL)


def test_event_average_matches_r(event_study):
    # R: mean of lag coefficients, hand linear combination
    assert event_study.estimate.estimate == pytest.approx(ES.loc["average_post", "estimate"],
                                                          abs=TOL)


def test_event_average_se_matches_r(event_study):
    # R: sqrt(a' V a) with vcovCL
    assert event_study.estimate.std_error == pytest.approx(ES.loc["average_post", "std_error"],
                                                           abs=TOL)


def test_pretrend_chi2_matches_lmtest(event_study):
    # R: lmtest::waldtest(..., test = "Chisq") and hand Wald
    assert event_study.pretrend.chi2 == pytest.approx(ES.loc["wald_chi2", "estimate"], rel=1e-9)


def test_pretrend_df_matches_lmtest(event_study):
    # R: lmtest::waldtest Df
    assert event_study.pretrend.df == int(ES.loc["wald_df", "estimate"])


def test_pretrend_p_matches_lmtest(event_study):
    # R: lmtest::waldtest Pr(>Chisq)
    assert event_study.pretrend.p_value == pytest.approx(ES.loc["wald_p_chi2", "estimate"],
                                                         rel=1e-8)


def test_pretrend_f_p_matches_r(event_study):
    # R: pf(W / q, q, G - 1, lower.tail = FALSE)
    assert event_study.pretrend.f_p_value == pytest.approx(ES.loc["wald_p_F", "estimate"],
                                                           rel=1e-8)


# ---------------------------------------------------------------------------- Callaway-Sant'Anna
@pytest.fixture(scope="module", params=("never_treated", "not_yet_treated"))
def staggered(request, panel):
    control = request.param
    result = fit_staggered(panel, StaggeredSpec("e", "ref", control=control))
    got = pd.DataFrame([vars(r) for r in result.att_gt])
    ref = ATT[ATT["control"] == control].reset_index(drop=True)
    return control, result, got, ref


def test_att_gt_cells_match_r(staggered):
    # R: the same (g, t, base) cells in the same order
    _, _, got, ref = staggered
    assert got[["group", "time", "base"]].to_numpy().tolist() == \
        ref[["group", "time", "base"]].to_numpy().tolist()


def test_att_gt_control_sizes_match_r(staggered):
    # R: sum of the control indicator per cell
    _, _, got, ref = staggered
    assert got["n_control"].tolist() == ref["n_control"].tolist()


def test_att_gt_estimates_match_r(staggered):
    # R: mean(dy[g]) - mean(dy[control]) per cell (did_cs_attgt.csv)
    _, _, got, ref = staggered
    assert (got["estimate"] - ref["att"]).abs().max() == pytest.approx(0, abs=TOL)


def test_att_gt_standard_errors_match_r(staggered):
    # R: sqrt(var_g / n_g + var_c / n_c), divisor-n variances (did's analytic IF SE)
    _, _, got, ref = staggered
    assert (got["std_error"] - ref["std_error"]).abs().max() == pytest.approx(0, abs=TOL)


def test_simple_aggregation_matches_r(staggered):
    # R: cohort-size-weighted mean of post-adoption ATT(g,t) (did_cs_aggregate.csv)
    control, result, _, _ = staggered
    ref = AGG[(AGG["control"] == control) & (AGG["type"] == "simple")]["estimate"].iloc[0]
    assert result.estimate.estimate == pytest.approx(ref, abs=TOL)


def test_dynamic_aggregation_matches_r(staggered):
    # R: cohort-size-weighted mean of ATT(g, g + e) for each e
    control, result, _, _ = staggered
    ref = AGG[(AGG["control"] == control) & (AGG["type"] == "dynamic")]
    got = pd.Series({r.event_time: r.estimate for r in result.dynamic})
    diff = (got - ref.set_index("event_time")["estimate"]).abs()
    assert len(got) == len(ref) and diff.max() == pytest.approx(0, abs=TOL)


# ---------------------------------------------------------------------------- CS pre-trend test
@pytest.fixture(scope="module", params=[(c, k) for c in ("never_treated", "not_yet_treated")
                                        for k in ("unit", "region")], ids=str)
def pretrend(request, panel):
    control, cluster = request.param
    result = fit_staggered(panel, StaggeredSpec("e", "ref", control=control, cluster=cluster))
    ref = PRE[(PRE["control"] == control) & (PRE["cluster"] == cluster)]
    return result, ref, ref[ref["statistic"] != "theta"].set_index("statistic")["value"]


def test_pretrend_event_times_and_thetas_match_r(pretrend):
    # R: cohort-share weighted means of the pre-period ATT(g, t) with t - g = e, e = -6..-1
    result, ref, _ = pretrend
    theta = ref[ref["statistic"] == "theta"]
    got = {d.event_time: d.estimate for d in result.dynamic}
    assert result.pretrend.event_times == tuple(int(e) for e in theta["event_time"])
    diff = max(abs(got[int(e)] - v) for e, v in zip(theta["event_time"], theta["value"],
                                                      strict=True))
    assert diff == pytest.approx(0, abs=TOL)


def test_pretrend_wald_matches_r(pretrend):
    # R: theta' V^-1 theta, V from cluster sums of the Welch-scaled influence functions
    result, _, stat = pretrend
    assert result.pretrend.chi2 == pytest.approx(stat["chi2"], rel=1e-9)


def test_pretrend_degrees_of_freedom_match_r(pretrend):
    # R: k = number of event times in the window, G - k
    result, _, stat = pretrend
    assert (result.pretrend.df, result.pretrend.f_df_denominator) == (
        int(stat["df"]), int(stat["f_df_denominator"]))


def test_pretrend_f_matches_r(pretrend):
    # R: W (G - k) / (G k)
    result, _, stat = pretrend
    assert result.pretrend.f_stat == pytest.approx(stat["f_stat"], rel=1e-9)


def test_pretrend_f_p_value_matches_r(pretrend):
    # R: pf(F, k, G - k, lower.tail = FALSE)
    result, _, stat = pretrend
    assert result.pretrend.f_p_value == pytest.approx(stat["f_p_value"], rel=1e-8)


def test_pretrend_chi2_p_value_matches_r(pretrend):
    # R: pchisq(W, k, lower.tail = FALSE)
    result, _, stat = pretrend
    assert result.pretrend.p_value == pytest.approx(stat["p_value"], rel=1e-8)
