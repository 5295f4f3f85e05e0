"""DiD, event study and staggered adoption: exactness of aggregation, simulations, errors.

Reference comparisons with R live in tests/test_reference_did.py. Here: the patient-level and
cell-level fits agree (the claim that lets large panels be aggregated first), weighted TWFE
agrees with statsmodels WLS on explicit dummies, TWFE and Callaway-Sant'Anna intervals cover
the truth at near the nominal rate where each is valid, and TWFE is biased under heterogeneous
staggered effects where Callaway-Sant'Anna is not.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analysis.did import DidSpec, fit_did
from analysis.event_study import EventStudySpec, fit_event_study
from analysis.staggered import StaggeredSpec, fit_staggered
from trials.errors import AnalysisError


def patients(seed: int, n_units: int = 24, n_periods: int = 6, effect: float = 1.5,
             cohorts=(3, 5, None)) -> pd.DataFrame:
    """Patient rows: a variable number per clinic-month, treatment switching on by clinic."""
    rng = np.random.default_rng(seed)
    first = np.array([cohorts[i % len(cohorts)] for i in range(n_units)], dtype=float)
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    size = rng.integers(2, 15, unit.size)
    u, t = np.repeat(unit, size), np.repeat(period, size)
    treated = (t >= np.nan_to_num(first, nan=np.inf)[u]).astype(int)
    # A shock shared by each clinic-month makes clustering matter.
    cell_shock = rng.normal(0, 0.5, unit.size)
    y = (rng.normal(0, 2, n_units)[u] + 0.2 * t + effect * treated
         + np.repeat(cell_shock, size) + rng.normal(0, 1, u.size))
    return pd.DataFrame({"unit": [f"k{i:02d}" for i in u], "period": t, "y": y,
                         "treated": treated, "age": rng.normal(40, 10, u.size)})


def cells(frame: pd.DataFrame) -> pd.DataFrame:
    return (frame.groupby(["unit", "period"], as_index=False)
            .agg(y=("y", "mean"), treated=("treated", "first"), weight=("y", "size")))


def staggered_units(seed: int, heterogeneous: bool, n_per: int = 10) -> pd.DataFrame:
    """Unit-level staggered panel; cohorts 3, 5, 7 and never treated over 8 periods.

    Heterogeneous: the effect is 0.5 x (1 + periods since adoption) x (1 + early adopter), so
    TWFE's already-treated comparisons are contaminated.
    """
    rng = np.random.default_rng(seed)
    groups = np.repeat([3.0, 5.0, 7.0, np.nan], n_per)
    n = groups.size
    g = np.repeat(groups, 8)
    t = np.tile(np.arange(1, 9), n)
    on = t >= np.nan_to_num(g, nan=np.inf)
    since = np.where(on, t - np.nan_to_num(g), 0)
    eff = np.where(on, 0.5 * (1 + since) * np.where(g == 3, 2, 1) if heterogeneous else 1.0, 0)
    y = np.repeat(rng.normal(0, 1, n), 8) + 0.3 * t + eff + rng.normal(size=n * 8)
    return pd.DataFrame({"unit": np.repeat([f"u{i:03d}" for i in range(n)], 8), "period": t,
                         "treated": on.astype(int), "first_treated": g, "y": y})


def true_simple_att(n_per: int = 10) -> float:
    """The cohort-size-weighted mean of post-adoption effects for the heterogeneous design."""
    effects = [0.5 * (1 + t - g) * (2 if g == 3 else 1)
               for g in (3, 5, 7) for t in range(g, 9)]
    return float(np.mean(effects))  # cohorts are equal-sized, so each cell weighs the same


# ---------------------------------------------------------------------------- aggregation
@pytest.fixture(scope="module")
def patient_rows() -> pd.DataFrame:
    return patients(11)


def test_cell_means_give_the_patient_level_estimate(patient_rows):
    spec = DidSpec("e", "a")
    a = fit_did(patient_rows, spec).estimate
    b = fit_did(cells(patient_rows), spec).estimate
    assert b.estimate == pytest.approx(a.estimate, abs=1e-10)


def test_cell_means_give_the_patient_level_cluster_se(patient_rows):
    # small_sample = "cluster" (G/(G-1)) has no N in it, so it is exactly invariant
    spec = DidSpec("e", "a")
    a = fit_did(patient_rows, spec).estimate
    b = fit_did(cells(patient_rows), spec).estimate
    assert b.std_error == pytest.approx(a.std_error, abs=1e-10)


def test_hc1_differs_only_by_its_documented_factor(patient_rows):
    spec = DidSpec("e", "a", small_sample="hc1")
    a = fit_did(patient_rows, spec)
    b = fit_did(cells(patient_rows), spec)
    n_a, n_b = a.estimate.details["n_rows"], b.estimate.details["n_rows"]
    k = a.estimate.details["n_params_with_fixed_effects"]
    ratio = np.sqrt((n_a - 1) / (n_a - k) / ((n_b - 1) / (n_b - k)))
    assert a.estimate.std_error / b.estimate.std_error == pytest.approx(ratio, rel=1e-10)


def test_cells_count_patients(patient_rows):
    b = fit_did(cells(patient_rows), DidSpec("e", "a")).estimate
    assert b.n_analysed == len(patient_rows)


def test_weighted_twfe_matches_statsmodels_wls_dummies(patient_rows):
    agg = cells(patient_rows)
    wls = smf.wls("y ~ treated + C(unit) + C(period)", agg, weights=agg["weight"]).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(agg["unit"])[0],
                                      "use_correction": False})
    g = agg["unit"].nunique()
    est = fit_did(agg, DidSpec("e", "a")).estimate
    assert (est.estimate, est.std_error) == pytest.approx(
        (wls.params["treated"], wls.bse["treated"] * np.sqrt(g / (g - 1))), abs=1e-10)


def test_covariates_enter_linearly(patient_rows):
    res = fit_did(patient_rows, DidSpec("e", "a", covariates=("age",)))
    ols = smf.ols("y ~ treated + age + C(unit) + C(period)", patient_rows).fit()
    assert res.estimate.estimate == pytest.approx(ols.params["treated"], abs=1e-9)


def test_unbalanced_panel_converges_to_dummy_regression(patient_rows):
    agg = cells(patient_rows).sample(frac=0.8, random_state=1)
    ols = smf.wls("y ~ treated + C(unit) + C(period)", agg, weights=agg["weight"]).fit()
    assert fit_did(agg, DidSpec("e", "a")).estimate.estimate == pytest.approx(
        ols.params["treated"], abs=1e-9)


# ---------------------------------------------------------------------------- simulations
def test_twfe_covers_a_homogeneous_effect_at_nominal_rate():
    # 200 panels of 30 clinics x 6 months; 95% t-intervals; binomial SE of coverage ~1.5%
    hits = 0
    for seed in range(200):
        frame = cells(patients(seed, n_units=30, effect=1.5))
        est = fit_did(frame, DidSpec("e", "a")).estimate
        hits += est.ci_lower <= 1.5 <= est.ci_upper
    assert 0.90 <= hits / 200 <= 0.99


@pytest.fixture(scope="module")
def cs_fits():
    return [fit_staggered(staggered_units(seed, True), StaggeredSpec("e", "a"))
            for seed in range(200)]


def test_callaway_santanna_covers_heterogeneous_effects(cs_fits):
    # simple ATT, analytic influence-function SE, 200 replicates
    truth = true_simple_att()
    hits = sum(r.estimate.ci_lower <= truth <= r.estimate.ci_upper for r in cs_fits)
    assert 0.90 <= hits / 200 <= 0.99


def test_callaway_santanna_event_time_zero_covers_truth(cs_fits):
    # theta(0) = mean over equal cohorts of the on-impact effect: (1 + 0.5 + 0.5) / 3
    truth = 2 / 3
    hits = sum(d.ci_lower <= truth <= d.ci_upper
               for r in cs_fits for d in r.dynamic if d.event_time == 0)
    assert 0.90 <= hits / 200 <= 0.99


def test_callaway_santanna_pretrend_has_nominal_size(cs_fits):
    # Parallel trends hold before adoption; 200 replicates, so 0.05 + 2 MC SEs = 0.081.
    # Measured 0.050 (the former all-ATT(g,t) Wald test: 0.30; chi-squared on W: 0.14).
    rate = np.mean([r.pretrend.f_p_value < 0.05 for r in cs_fits])
    assert 0.01 <= rate <= 0.081


def many_pre_periods(seed: int, anticipation: float = 0.0, n_per: int = 6) -> pd.DataFrame:
    """24 units x 16 periods, cohorts adopting at 8, 11, 14 and never: 27 pre-period ATT(g,t),
    more than the 23 = G - 1 the cluster-robust covariance can support (as in the demo).

    ``anticipation`` lowers adopters' outcome in the two periods before adoption.
    """
    rng = np.random.default_rng(seed)
    groups = np.repeat([8.0, 11.0, 14.0, np.nan], n_per)
    n, T = groups.size, 16
    g, t = np.repeat(groups, T), np.tile(np.arange(1, T + 1), n)
    start = np.nan_to_num(g, nan=np.inf)
    on = t >= start
    y = (np.repeat(rng.normal(0, 1, n), T) + 0.3 * t + np.sin(t)
         + on * (1 + 0.2 * (t - np.nan_to_num(g))) - anticipation * (~on & (t >= start - 2))
         + rng.normal(size=n * T))
    return pd.DataFrame({"unit": np.repeat([f"u{i:03d}" for i in range(n)], T), "period": t,
                         "treated": on.astype(int), "first_treated": g, "y": y})


def test_callaway_santanna_pretrend_size_with_more_pre_cells_than_clusters():
    # The former Wald test on all 27 pre-period ATT(g,t) (pseudo-inverse, chi-squared on the
    # rank 23) rejected 99% of these replicates; the windowed Hotelling F rejects 5.0%.
    spec = StaggeredSpec("e", "a", control="not_yet_treated")
    fits = [fit_staggered(many_pre_periods(seed), spec) for seed in range(200)]
    assert sum(c.time < c.group for c in fits[0].att_gt) > fits[0].estimate.diagnostics[
        "n_clusters"] - 1
    rate = np.mean([r.pretrend.f_p_value < 0.05 for r in fits])
    assert 0.01 <= rate <= 0.081


def test_callaway_santanna_pretrend_detects_anticipation():
    # A dip of 1.5 in the two periods before adoption (Ashenfelter-style); 50 replicates,
    # measured power 0.96.
    spec = StaggeredSpec("e", "a", control="not_yet_treated")
    rate = np.mean([fit_staggered(many_pre_periods(seed, anticipation=1.5), spec)
                    .pretrend.f_p_value < 0.05 for seed in range(50)])
    assert rate >= 0.8


def test_callaway_santanna_pretrend_window_selects_event_times():
    frame = many_pre_periods(0)
    default = fit_staggered(frame, StaggeredSpec("e", "a")).pretrend
    short = fit_staggered(frame, StaggeredSpec("e", "a", pretrend_window=2)).pretrend
    assert default.event_times == (-6, -5, -4, -3, -2, -1)
    assert (default.df, default.f_df_denominator) == (6, 24 - 6)
    assert short.event_times == (-2, -1)


def test_callaway_santanna_refuses_a_singular_pretrend_covariance():
    # 12 clusters cannot support 13 pre-period event times (rank <= G - 1 = 11).
    frame = many_pre_periods(1, n_per=3)
    res = fit_staggered(frame, StaggeredSpec("e", "a", pretrend_window=15))
    assert res.pretrend is None
    assert any("singular covariance" in w for w in res.estimate.warnings)
    assert res.estimate.diagnostics["pretrend_p_value"] is None


def test_twfe_is_biased_under_heterogeneous_staggered_effects():
    # Goodman-Bacon (2021): early cohorts' growing effects enter later cohorts' controls, so
    # TWFE lands well below the cohort-weighted ATT; CS is centred on it.
    truth = true_simple_att()
    twfe = [fit_did(staggered_units(s, True), DidSpec("e", "a")).estimate.estimate
            for s in range(60)]
    cs = [fit_staggered(staggered_units(s, True), StaggeredSpec("e", "a")).estimate.estimate
          for s in range(60)]
    assert np.mean(twfe) < truth - 0.4
    assert abs(np.mean(cs) - truth) < 0.1


def test_event_study_pretrend_is_rejected_for_diverging_trends():
    frame = staggered_units(3, False)
    ever = frame["first_treated"].notna()
    frame.loc[ever, "y"] += 1.0 * frame.loc[ever, "period"]  # treated units trend upwards
    res = fit_event_study(frame, EventStudySpec("e", "a", leads=3, lags=3))
    assert res.pretrend.p_value < 0.01


def test_event_study_with_date_periods_equals_integer_periods():
    frame = staggered_units(4, True)
    dated = frame.assign(
        period=pd.to_datetime("2025-01-01") + pd.to_timedelta(frame["period"] * 31, "D"),
        first_treated=None).drop(columns="first_treated")
    a = fit_event_study(frame.drop(columns="first_treated"), EventStudySpec("e", "a"))
    b = fit_event_study(dated, EventStudySpec("e", "a"))
    assert b.estimate.estimate == pytest.approx(a.estimate.estimate, abs=1e-10)


def test_bootstrap_se_is_close_to_analytic_and_seeded():
    frame = staggered_units(5, True)
    analytic = fit_staggered(frame, StaggeredSpec("e", "a")).estimate.std_error
    boot = fit_staggered(frame, StaggeredSpec("e", "a", bootstrap=2000, seed=7)).estimate
    again = fit_staggered(frame, StaggeredSpec("e", "a", bootstrap=2000, seed=7)).estimate
    assert boot.std_error == pytest.approx(analytic, rel=0.15)
    assert again.std_error == boot.std_error


def test_staggered_not_yet_treated_works_without_never_treated():
    frame = staggered_units(6, True)
    frame = frame[frame["first_treated"].notna()]
    res = fit_staggered(frame, StaggeredSpec("e", "a", control="not_yet_treated"))
    assert res.att_gt and res.estimate.n_by_arm["never_treated"] == 0


def test_results_are_json_serialisable(patient_rows):
    frame = staggered_units(8, True)
    for res in (fit_did(cells(patient_rows), DidSpec("e", "a")),
                fit_event_study(frame, EventStudySpec("e", "a")),
                fit_staggered(frame, StaggeredSpec("e", "a"))):
        json.dumps(res.to_dict(), allow_nan=False)


def test_fit_does_not_mutate_the_frame(patient_rows):
    before = patient_rows.copy()
    fit_did(patient_rows, DidSpec("e", "a"))
    fit_event_study(patient_rows, EventStudySpec("e", "a", leads=2, lags=2))
    pd.testing.assert_frame_equal(patient_rows, before)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("change", "spec", "message"), [
    (lambda f: f.drop(columns="y"), DidSpec("e", "a"), "no column 'y'"),
    (lambda f: f, DidSpec("e", "a", method="ols"), "method must be"),
    (lambda f: f, DidSpec("e", "a", small_sample="hc3"), "small_sample must be"),
    (lambda f: f, DidSpec("e", "a", method="two_by_two"), "exactly two periods"),
    (lambda f: f.assign(treated=0), DidSpec("e", "a"), "treated and untreated"),
    (lambda f: f.assign(x=f["unit"].str.len()), DidSpec("e", "a", covariates=("x",)),
     "collinear with the fixed effects"),
])
def test_did_errors_name_the_problem(patient_rows, change, spec, message):
    with pytest.raises(AnalysisError, match=message):
        fit_did(change(patient_rows), spec)


def test_staggered_rejects_patient_rows(patient_rows):
    with pytest.raises(AnalysisError, match="aggregate first"):
        fit_staggered(patient_rows, StaggeredSpec("e", "a"))


def test_staggered_rejects_unbalanced_panels():
    frame = staggered_units(1, True).iloc[1:]
    with pytest.raises(AnalysisError, match="unbalanced"):
        fit_staggered(frame, StaggeredSpec("e", "a"))


def test_staggered_needs_never_treated_for_that_control():
    frame = staggered_units(1, True)
    with pytest.raises(AnalysisError, match="no never-treated"):
        fit_staggered(frame[frame["first_treated"].notna()], StaggeredSpec("e", "a"))


def test_staggered_pretrend_warns_about_a_one_unit_cohort():
    frame = many_pre_periods(2)
    lone = frame[(frame["first_treated"] != 14) | (frame["unit"] == "u012")]
    res = fit_staggered(lone, StaggeredSpec("e", "a"))
    assert any("one unit contributes no variance" in w for w in res.estimate.warnings)


@pytest.mark.parametrize("window", [0, -2, 2.5, True])
def test_staggered_pretrend_window_must_be_a_positive_integer(window):
    with pytest.raises(AnalysisError, match="pretrend_window"):
        fit_staggered(staggered_units(1, True), StaggeredSpec("e", "a", pretrend_window=window))


def test_event_study_reference_must_be_in_window():
    with pytest.raises(AnalysisError, match="outside the event window"):
        fit_event_study(staggered_units(1, True), EventStudySpec("e", "a", reference=-9))


# ---------------------------------------------------------------------------- Bayesian
@pytest.mark.slow
def test_bayesian_twfe_agrees_with_least_squares():
    # Weak priors: the posterior mean sits on the weighted least-squares estimate.
    from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings
    from analysis.bayes_did import BayesDidSpec, fit_bayes_did

    frame = cells(patients(21, n_units=8, n_periods=4, cohorts=(3, None)))
    ols = fit_did(frame, DidSpec("e", "a")).estimate
    spec = BayesDidSpec("e", "a", sampler=SamplerSettings(draws=300, tune=300, chains=2),
                        gate=DiagnosticsGate(min_ess_bulk=100, min_ess_tail=100, max_rhat=1.05),
                        probabilities=((">", 0.0),))
    res = fit_bayes_did(frame, spec)
    est = res.estimate
    assert (est.engine, est.model, est.n_analysed) == ("bayesian", "did_twfe", ols.n_analysed)
    assert est.estimate == pytest.approx(ols.estimate, abs=5 * est.diagnostics["mcse_effect"]
                                         + 0.05)
    assert est.probability(">", 0.0) > 0.99
    assert est.reliable, est.warnings
    json.dumps(res.to_dict(), allow_nan=False)
