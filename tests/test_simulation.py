"""Operating characteristics by simulation (designs.simulation).

Expected values come from designs.boundaries (numerical integration, itself checked against
rpact 3.3.4 in test_boundaries.py) or from closed forms; simulated values must agree within
Monte Carlo error. Every comparison uses |difference| <= 4 Monte Carlo SEs: the seeds are fixed,
so these are deterministic checks, and with 4 SEs another seed fails with probability < 1e-4.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.ancova import AncovaSpec, fit_ancova
from designs.boundaries import GroupSequentialDesign, HarmBoundary
from designs.simulation import (
    HarmEventRule,
    Scenario,
    SimulationError,
    SimulationSpec,
    chunk_seeds,
    plot_operating_characteristics,
    run_simulation,
)
from designs.simulation_engines import _closed_form_ancova, patient_data

Z_TOL = 4.0
THREE_LOOKS = (1 / 3, 2 / 3, 1.0)
ASOF = GroupSequentialDesign(THREE_LOOKS, alpha=0.025, beta=0.2, efficacy="asOF")
ASOF_BSOF = GroupSequentialDesign(THREE_LOOKS, alpha=0.025, beta=0.2, efficacy="asOF",
                                  futility="bsOF", binding_futility=False)
N_MAX = 60  # per arm; looks at 20, 40, 60 completers


def run(spec, scenarios, n_trials=20_000, seed=2024, **kwargs):
    kwargs.setdefault("scheduler", "synchronous")
    kwargs.setdefault("progress", False)
    return run_simulation(spec, scenarios, n_trials, seed, **kwargs)


def alternative(boundaries, sd=1.0, n_max=N_MAX):
    """The effect whose drift theta sqrt(I_max), I_max = n_max / (2 sd^2), is the design's."""
    return boundaries.drift * sd * math.sqrt(2.0 / n_max)


def assert_mc(simulated, se, expected, label=""):
    assert abs(simulated - expected) <= Z_TOL * max(se, 1e-12), (label, simulated, expected, se)


def p_se(p, n):
    return math.sqrt(p * (1 - p) / n)


def test_type_one_error_equals_nominal_alpha():
    # Source: the design's alpha (0.025) and per-look alpha spent by designs.boundaries
    spec = SimulationSpec(ASOF)
    result = run(spec, Scenario("null", 0.0, 1.0, N_MAX))["null"]
    n = result.n_trials
    assert_mc(result.success, p_se(0.025, n), 0.025)
    for k, expected in enumerate(spec.boundaries.stop_efficacy_h0):
        assert_mc(result.stop_efficacy[k], p_se(expected, n), expected, f"look {k + 1}")


@pytest.mark.parametrize("design", [ASOF, ASOF_BSOF], ids=["asOF", "asOF+bsOF"])
def test_power_and_stopping_probabilities_match_boundaries(design):
    # Source: Boundaries.power, stop_efficacy_h0/h1 and stop_futility_h0/h1 (futility obeyed)
    spec = SimulationSpec(design)
    b = spec.boundaries
    scenarios = [Scenario("H0", 0.0, 2.0, N_MAX), Scenario("H1", alternative(b, 2.0), 2.0, N_MAX)]
    results = run(spec, scenarios)
    n = results.n_trials
    assert_mc(results["H1"].success, p_se(b.power[-1], n), b.power[-1], "power")
    for name, eff, fut in (("H0", b.stop_efficacy_h0, b.stop_futility_h0),
                           ("H1", b.stop_efficacy_h1, b.stop_futility_h1)):
        r = results[name]
        for k in range(3):
            assert_mc(r.stop_efficacy[k], p_se(eff[k], n), eff[k], f"{name} efficacy {k + 1}")
            assert_mc(r.stop_futility[k], p_se(fut[k], n), fut[k], f"{name} futility {k + 1}")
        assert r.stop_futility[-1] == 0.0  # no futility boundary at the last look


def test_non_binding_futility_ignored_keeps_alpha():
    # Source: alpha_spent of a non-binding design is computed ignoring futility
    spec = SimulationSpec(ASOF_BSOF, obey_futility=False)
    result = run(spec, Scenario("null", 0.0, 1.0, N_MAX))["null"]
    assert_mc(result.success, p_se(0.025, result.n_trials), 0.025)
    assert result.stop_early_futility == 0.0


def test_lower_direction_mirrors_higher():
    # PHQ-9 style: effect -0.4 with "lower" is benefit 0.4 on the boundaries' Z scale
    higher = run(SimulationSpec(ASOF_BSOF), Scenario("s", 0.4, 1.0, N_MAX), 10_000)["s"]
    lower = run(SimulationSpec(ASOF_BSOF, direction="lower"), Scenario("s", -0.4, 1.0, N_MAX),
                10_000, seed=99)["s"]
    for name in ("success", "stop_early_efficacy", "stop_early_futility"):
        se = math.hypot(getattr(higher, f"{name}_se"), getattr(lower, f"{name}_se"))
        assert_mc(getattr(lower, name), se, getattr(higher, name), name)
    assert_mc(lower.mean_estimate, math.hypot(lower.bias_se, higher.bias_se),
              -higher.mean_estimate)
    assert lower.success > 0.5


def test_patient_engine_agrees_with_summary_engine():
    spec = SimulationSpec(ASOF_BSOF, direction="lower")
    b = spec.boundaries
    # Known variance (summary) against an estimated one (patient, t mapped to Z): they agree
    # when the residual degrees of freedom are many (here 2 * 50 - 3 at the first look).
    scenarios = [Scenario("null", 0.0, 4.0, 150, baseline_correlation=0.5),
                 Scenario("benefit", -alternative(b, 4.0 * math.sqrt(0.75), 150), 4.0, 150,
                          baseline_correlation=0.5)]
    summary = run(spec, scenarios, 5_000)
    patient = run(spec, scenarios, 5_000, engine="patient")
    for s in summary.scenarios:
        p = patient[s.scenario.name]
        for name in ("success", "stop_early_efficacy", "stop_early_futility",
                     "expected_completers_total", "mean_estimate"):
            se = math.hypot(getattr(s, f"{name}_se"), getattr(p, f"{name}_se"))
            assert_mc(getattr(p, name), se, getattr(s, name), (s.scenario.name, name))


def test_closed_form_ancova_equals_statsmodels_fit():
    # Source: analysis.ancova.fit_ancova (statsmodels OLS, itself checked against R lm)
    scenario = Scenario("s", 1.5, 3.0, 12, baseline_correlation=0.6)
    x, y = patient_data(scenario, 3, 12, np.random.default_rng(1))
    n = np.array([4, 8, 12])
    estimate, t, df = _closed_form_ancova(x, y, n)
    spec = AncovaSpec(estimand="e", analysis="a")
    for i in range(3):
        for k, nk in enumerate(n):
            arm = np.repeat([0, 1], nk)
            frame = {"y": np.r_[y[0, i, :nk], y[1, i, :nk]],
                     "baseline": np.r_[x[0, i, :nk], x[1, i, :nk]], "treated": arm,
                     "arm": np.where(arm == 1, "e", "c")}
            fit = fit_ancova(pd.DataFrame(frame), spec)
            assert estimate[i, k] == pytest.approx(fit.estimate, abs=1e-10)
            assert t[i, k] == pytest.approx(fit.estimate / fit.std_error, abs=1e-8)
            assert df[i, k] == fit.diagnostics["df_resid"]


def test_statsmodels_fitter_gives_the_same_decisions():
    spec = SimulationSpec(ASOF_BSOF)
    scenario = Scenario("s", 0.8, 1.0, 9, baseline_correlation=0.5)
    fast = run(spec, scenario, 12, engine="patient")["s"]
    slow = run(spec, scenario, 12, engine="patient", fitter="statsmodels")["s"]
    assert fast.stop_efficacy == slow.stop_efficacy
    assert fast.stop_futility == slow.stop_futility
    assert fast.mean_estimate == pytest.approx(slow.mean_estimate, abs=1e-10)


@pytest.fixture(scope="module")
def determinism_case():
    spec = SimulationSpec(ASOF_BSOF, direction="lower",
                          harm_events=HarmEventRule(z=2.0))
    scenarios = [Scenario("null", 0.0, 5.0, 45, dropout=0.15, accrual_rate=8.0, follow_up=3.0,
                          harm_rate=(0.1, 0.1)),
                 Scenario("benefit", -3.0, 5.0, 45, dropout=0.15, baseline_correlation=0.4,
                          harm_rate=(0.1, 0.2))]
    return spec, scenarios


def _json(results):
    return json.dumps(results.to_dict(), sort_keys=True)


@pytest.mark.parametrize("engine", ["summary", "patient"])
def test_identical_results_whatever_the_workers(determinism_case, engine):
    from distributed import Client, LocalCluster

    spec, scenarios = determinism_case
    common = {"engine": engine, "chunk_size": 250, "progress": False}
    synchronous = _json(run(spec, scenarios, 1_000, 7, **common))
    one = _json(run(spec, scenarios, 1_000, 7, scheduler=None, n_workers=1, processes=False,
                    **common))
    two = _json(run(spec, scenarios, 1_000, 7, scheduler=None, n_workers=2, processes=False,
                    **common))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        address = _json(run(spec, scenarios, 1_000, 7, scheduler=cluster.scheduler_address,
                            **common))
        with Client(cluster) as client:
            given = _json(run(spec, scenarios, 1_000, 7, scheduler=client, **common))
    assert synchronous == one == two == address == given
    assert synchronous != _json(run(spec, scenarios, 1_000, 8, **common))


def test_chunk_seeds_are_keyed_by_scenario_and_chunk():
    seeds = chunk_seeds(11, 2, [3, 1])
    assert [[s.spawn_key for s in row] for row in seeds] == [[(0, 0), (0, 1), (0, 2)], [(1, 0)]]
    assert seeds[1][0].entropy == 11


def test_harm_event_rule_stops_more_often_with_more_harm():
    spec = SimulationSpec(ASOF, harm_events=HarmEventRule(z=2.0))
    equal = Scenario("equal", 0.0, 1.0, N_MAX, harm_rate=(0.10, 0.10))
    harmful = dataclasses.replace(equal, name="harmful", harm_rate=(0.10, 0.25))
    results = run(spec, [equal, harmful], 5_000)
    assert results["harmful"].harm > results["equal"].harm + 10 * results["harmful"].harm_se
    # with equal rates, each look's test is one-sided at about 1 - Phi(2)
    assert results["equal"].harm < 3 * (1 - 0.97725)
    assert results["harmful"].success < results["equal"].success + 1e-12


def test_outcome_harm_boundary_crossing_matches_boundaries():
    # Source: Boundaries.harm_alpha_spent, the harm boundary's crossing probability under
    # theta = 0 on its own (an upper bound once efficacy stops are taken into account)
    design = dataclasses.replace(ASOF, harm=HarmBoundary(alpha=0.05, spending="asP"))
    spec = SimulationSpec(design)
    result = run(spec, Scenario("null", 0.0, 1.0, N_MAX))["null"]
    expected = spec.boundaries.harm_alpha_spent[-1]
    assert_mc(result.harm, p_se(expected, result.n_trials), expected)
    off = run(SimulationSpec(design, outcome_harm=False), Scenario("null", 0.0, 1.0, N_MAX),
              2_000)["null"]
    assert off.harm == 0.0


def test_fixed_design_estimate_is_unbiased_and_sizes_exact():
    # One look: theta_hat ~ N(theta, 2 sd^2 (1 - rho^2) / n); enrolled per arm n / (1 - dropout)
    spec = SimulationSpec(GroupSequentialDesign((1.0,)))
    scenario = Scenario("s", 0.5, 2.0, 50, dropout=0.2, accrual_rate=4.0, follow_up=1.5,
                        baseline_correlation=0.3)
    r = run(spec, scenario, 20_000)["s"]
    assert_mc(r.bias, r.bias_se, 0.0)
    assert_mc(r.rmse, r.rmse_se, 2.0 * math.sqrt(2 * (1 - 0.09) / 50))
    assert r.expected_completers_per_arm == 50 and r.expected_completers_total == 100
    assert_mc(r.expected_enrolled_control, r.expected_enrolled_control_se, 50 / 0.8)
    assert r.expected_duration > 2 * 50 / 0.8 / 4.0 + 1.5  # waits for the slower arm


def test_interim_enrolment_counts_participants_in_follow_up():
    # No dropout: a trial stopping at look 1 has randomised min(n_1 + rate * F / 2, n_max)
    design = GroupSequentialDesign((0.5, 1.0), efficacy="asOF", futility="bsOF")
    spec = SimulationSpec(design)
    scenario = Scenario("s", 0.0, 1.0, 40, accrual_rate=6.0, follow_up=2.0)
    r = run(spec, scenario, 4_000)["s"]
    p1 = r.stop_efficacy[0] + r.stop_futility[0]
    assert r.expected_enrolled_control == pytest.approx(p1 * (20 + 6.0) + (1 - p1) * 40)
    assert r.expected_completers_per_arm == pytest.approx(p1 * 20 + (1 - p1) * 40)
    assert r.expected_duration == pytest.approx(p1 * (40 / 6 + 2) + (1 - p1) * (80 / 6 + 2))


def test_design_recomputed_at_the_look_fractions():
    spec = SimulationSpec(ASOF, look_fractions=(0.3, 0.6, 1.0))
    assert spec.boundaries.information_rates == (0.3, 0.6, 1.0)
    assert spec.boundaries.observed_looks == 3
    given = SimulationSpec(ASOF.compute())
    assert given.look_fractions == pytest.approx(THREE_LOOKS)
    assert given.plan(Scenario("s", 0.0, 1.0, 60)).completers == (20, 40, 60)


@pytest.mark.parametrize(("make", "field"), [
    (lambda: Scenario("s", 0.0, -1.0, 10), "sd"),
    (lambda: Scenario("s", 0.0, 1.0, 10, dropout=1.0), "dropout"),
    (lambda: Scenario("s", 0.0, 1.0, 10, harm_rate=(0.1, 1.5)), "harm_rate"),
    (lambda: SimulationSpec(ASOF, direction="up"), "direction"),
    (lambda: SimulationSpec(ASOF, look_fractions=(0.5, 1.0)), "look_fractions"),
    (lambda: SimulationSpec(ASOF, harm_events=HarmEventRule(z=(2.0, 2.0))), "harm_events.z"),
    (lambda: SimulationSpec(ASOF).plan(Scenario("s", 0.0, 1.0, 4)), "look_fractions"),
    (lambda: run(SimulationSpec(ASOF), Scenario("s", 0.0, 1.0, 9), engine="mcmc"), "engine"),
    (lambda: run(SimulationSpec(ASOF), Scenario("s", 0.0, 1.0, 9), seed=-1), "seed"),
    (lambda: run(SimulationSpec(ASOF), [Scenario("s", 0.0, 1.0, 9)] * 2), "names"),
])
def test_invalid_input_names_the_field(make, field):
    with pytest.raises(SimulationError, match=field):
        make()


def test_progress_bar_can_be_switched_off(capsys):
    spec, scenario = SimulationSpec(ASOF), Scenario("s", 0.0, 1.0, 30)
    run_simulation(spec, scenario, 100, 1, scheduler="synchronous", chunk_size=50)
    assert "simulating" in capsys.readouterr().err
    run_simulation(spec, scenario, 100, 1, scheduler="synchronous", progress=False)
    assert capsys.readouterr().err == ""


def test_frames_and_dict(tmp_path):
    spec = SimulationSpec(ASOF_BSOF, harm_events=HarmEventRule(z=2.5))
    results = run(spec, [Scenario("null", 0.0, 1.0, N_MAX),
                         Scenario("benefit", 0.5, 1.0, N_MAX, harm_rate=(0.1, 0.3))], 2_000)
    frame = results.to_frame()
    assert list(frame.columns) == ["scenario", "effect", "quantity", "look", "value", "mc_se"]
    assert str(frame["look"].dtype) == "Int64"
    per_look = frame[frame["quantity"] == "stop_efficacy"]
    assert len(per_look) == 2 * 3
    for r in results.scenarios:  # every trial stops exactly once
        total = sum(r.stop_efficacy) + sum(r.stop_futility) + sum(r.stop_harm)
        assert total + r.final_no_success == pytest.approx(1.0, abs=1e-12)
        assert r.expected_duration is None
    assert len(results.summary()) == 2
    json.dumps(results.to_dict(), allow_nan=False)
    alt = plot_operating_characteristics(results, tmp_path / "oc" / "oc.png")
    assert (tmp_path / "oc" / "oc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "null" in alt and "benefit" in alt
    assert f"{results['benefit'].success:.3f}" in alt


def test_boundaries_recomputed_at_the_information_the_looks_have():
    # Source: designs.boundaries at the looks' fractions 17/50, 33/50, 1 (as a run recomputes
    # them at the observed information); observed_information=False keeps the planned ones
    scenario = Scenario("s", 0.0, 1.0, 50)
    plan = SimulationSpec(ASOF_BSOF).plan(scenario)
    assert plan.completers == (17, 33, 50)
    assert plan.information_fractions == pytest.approx((0.34, 0.66, 1.0), abs=1e-15)
    expected = ASOF_BSOF.compute((0.34, 0.66, 1.0))
    assert plan.efficacy_z == pytest.approx(expected.efficacy_z, abs=1e-12)
    assert plan.futility_z[:2] == pytest.approx(expected.futility_z[:2], abs=1e-12)
    planned = SimulationSpec(ASOF_BSOF, observed_information=False).plan(scenario)
    assert planned.efficacy_z == pytest.approx(ASOF_BSOF.compute().efficacy_z, abs=1e-12)
    assert planned.efficacy_z[0] != pytest.approx(plan.efficacy_z[0], abs=1e-6)
