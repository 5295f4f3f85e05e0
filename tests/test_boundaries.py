"""Group-sequential boundaries (designs.boundaries) against rpact, published tables and simulation.

Reference values: tests/reference/rpact_boundaries.{R,out,csv,json}, made with rpact 3.3.4 from
Debian (r-cran-rpact) on R 4.2.2; compared at 1e-4, the bar of issue 5.
"""

from __future__ import annotations

import dataclasses
import json
import math
from functools import cache

import numpy as np
import pytest
from scipy.stats import norm

from designs import gs_integration as gi
from designs.boundaries import Boundaries, BoundaryError, GroupSequentialDesign, HarmBoundary
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

TOL = 1e-4
RPACT = json.loads((REFERENCE / "rpact_boundaries.json").read_text())
DESIGNS = {d["id"]: d for d in RPACT["designs"]}

# rpact statistic -> how to read it from a Boundaries record
STATISTICS = {
    "criticalValues": lambda b: b.efficacy_z,
    "stageLevels": lambda b: b.efficacy_p,
    "alphaSpent": lambda b: b.alpha_spent,
    "shift": lambda b: [b.drift**2],
    "inflationFactor": lambda b: [b.inflation_factor],
    "powerH1": lambda b: b.power,
    "rejectionProbabilitiesH1": lambda b: b.stop_efficacy_h1,
    "averageSampleNumber0": lambda b: [b.expected_ratio_h0],
    "averageSampleNumber01": lambda b: [b.expected_ratio_half],
    "averageSampleNumber1": lambda b: [b.expected_ratio_h1],
    "futilityBounds": lambda b: b.futility_z[:-1],
    "betaSpent": lambda b: b.beta_spent,
    "futilityProbabilitiesH1": lambda b: b.stop_futility_h1[:-1],
}
CASES = [(d["id"], s) for d in RPACT["designs"] for s in STATISTICS if s in d["values"]]


def _spec(ref: dict) -> GroupSequentialDesign:
    return GroupSequentialDesign(
        tuple(ref["informationRates"]), alpha=0.025, beta=0.2, efficacy=ref["typeOfDesign"],
        gamma_a=ref["gammaA"], futility=ref["typeBetaSpending"], gamma_b=ref["gammaB"],
        binding_futility=ref["bindingFutility"])


@cache
def _computed(design_id: str) -> Boundaries:
    return _spec(DESIGNS[design_id]).compute()


@pytest.mark.parametrize(("design_id", "statistic"), CASES, ids=[f"{d}-{s}" for d, s in CASES])
def test_matches_rpact(design_id: str, statistic: str) -> None:
    # Source: rpact 3.3.4 getDesignGroupSequential / getDesignCharacteristics (rpact_boundaries.R)
    expected = np.asarray(DESIGNS[design_id]["values"][statistic], dtype=float)
    actual = np.asarray(STATISTICS[statistic](_computed(design_id)), dtype=float)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("statistic", ["criticalValues", "stageLevels", "alphaSpent"])
def test_recomputed_at_observed_information_matches_rpact(statistic: str) -> None:
    # Source: rpact 3.3.4, design d19 = d05 (asOF, 3 equal looks) at observed fractions 0.28, 0.61
    planned = _spec(DESIGNS["d05_asOF_K3"])
    observed = planned.compute(observed_rates=(0.28, 0.61))
    expected = np.asarray(DESIGNS["d19_asOF_K3_observed"]["values"][statistic], dtype=float)
    np.testing.assert_allclose(STATISTICS[statistic](observed), expected, rtol=0, atol=TOL)
    assert observed.observed_looks == 2
    assert observed.information_rates == (0.28, 0.61, 1.0)


@pytest.mark.parametrize("limit", ["lower", "upper"])
def test_repeated_confidence_intervals_match_rpact(limit: str) -> None:
    # Source: rpact 3.3.4 getRepeatedConfidenceIntervals, one-sample means, normal approximation,
    # design d12 (asOF + non-binding bsOF); z and information from rpact's stage results
    ref = RPACT["rci"]
    info = np.asarray(ref["overallSampleSizes"]) / np.asarray(ref["overallStDevs"]) ** 2
    rci = _computed("d12_asOF_bsOF_nonbinding_K3").repeated_confidence_intervals(
        ref["overallTestStatistics"], info)
    np.testing.assert_allclose(rci[limit], ref[limit], rtol=0, atol=TOL)
    np.testing.assert_allclose(rci["estimate"], ref["overallMeans"], rtol=0, atol=1e-12)
    assert rci.attrs["level"] == pytest.approx(0.95)


def test_repeated_confidence_intervals_of_binding_design_ignore_futility() -> None:
    # Source: rpact 3.3.4 d12 critical values (the same spending without futility): binding
    # futility bounds would lower c_k, and RCIs must hold for every theta, futility obeyed or not
    binding = _computed("d13_asOF_bsOF_binding_K3")
    rci = binding.repeated_confidence_intervals([1.0, 2.0], [10.0, 20.0])
    expected = DESIGNS["d12_asOF_bsOF_nonbinding_K3"]["values"]["criticalValues"][:2]
    np.testing.assert_allclose(rci["critical_z"], expected, rtol=0, atol=TOL)


# Jennison & Turnbull (2000), Group Sequential Methods, Table 2.1 (Pocock, C_P(K, alpha)) and
# Table 2.3 (O'Brien & Fleming, C_B(K, alpha)): two-sided alpha = 0.05, equal group sizes;
# bounds +/- C_P and +/- C_B sqrt(K / k). Printed to 3 decimals, hence the tolerance.
JT_POCOCK = {2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413}
JT_OBF = {2: 1.977, 3: 2.004, 4: 2.024, 5: 2.040}


@pytest.mark.parametrize(("family", "looks"),
                         [(f, k) for f in ("pocock", "obf") for k in range(2, 6)])
def test_two_sided_constants_match_jennison_turnbull(family: str, looks: int) -> None:
    rates = np.arange(1, looks + 1) / looks
    shape = np.ones(looks) if family == "pocock" else np.sqrt(looks / np.arange(1, looks + 1))

    def size(const: float) -> float:
        up, down = gi.crossing_probabilities(rates, -const * shape, const * shape)
        return float(up.sum() + down.sum()) - 0.05

    expected = (JT_POCOCK if family == "pocock" else JT_OBF)[looks]
    assert gi.solve(size, 1.5, 4.0) == pytest.approx(expected, abs=5e-4 + 1e-9)


def _first_exits(z: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-look fractions of simulated paths that first leave above ``upper`` / below ``lower``."""
    running = np.ones(z.shape[0], dtype=bool)
    above, below = [], []
    for k in range(z.shape[1]):
        up = running & (z[:, k] >= upper[k])
        down = running & ~up & (z[:, k] <= lower[k])
        running &= ~(up | down)
        above.append(up.mean())
        below.append(down.mean())
    return np.array(above), np.array(below)


def _paths(rates: tuple[float, ...], drift: float, n: int, seed: int) -> np.ndarray:
    """Z_1..Z_K in the canonical form: independent score increments N(drift dt, dt)."""
    t = np.asarray(rates)
    dt = np.diff(t, prepend=0.0)
    rng = np.random.default_rng(seed)
    score = np.cumsum(drift * dt + rng.standard_normal((n, t.size)) * np.sqrt(dt), axis=1)
    return score / np.sqrt(t)


def _within_mc_error(simulated: np.ndarray, exact: np.ndarray, n: int) -> None:
    se = np.sqrt(np.maximum(exact * (1 - exact), 1e-12) / n)
    assert np.all(np.abs(simulated - exact) <= 4 * se + 1e-12), (simulated, exact, se)


def test_type_one_error_of_lan_demets_design_matches_simulation() -> None:
    n = 100_000
    design = GroupSequentialDesign((1 / 3, 2 / 3, 1.0), efficacy="asOF",
                                   harm=HarmBoundary(alpha=0.025, spending="asP"))
    b = design.compute()
    z = _paths(design.information_rates, 0.0, n, seed=20240605)
    none = np.full(3, -np.inf)
    rejected, _ = _first_exits(z, none, np.asarray(b.efficacy_z))
    _within_mc_error(np.cumsum(rejected), np.asarray(b.alpha_spent), n)
    assert b.alpha_spent[-1] == pytest.approx(0.025, abs=1e-9)
    _, harmed = _first_exits(z, np.asarray(b.harm_z), np.full(3, np.inf))
    _within_mc_error(np.cumsum(harmed), np.asarray(b.harm_alpha_spent), n)


def test_power_and_futility_stops_match_simulation_under_h1() -> None:
    n = 100_000
    b = _computed("d13_asOF_bsOF_binding_K3")
    z = _paths(b.information_rates, b.drift, n, seed=20240606)
    rejected, futile = _first_exits(z, np.asarray(b.futility_z), np.asarray(b.efficacy_z))
    _within_mc_error(rejected, np.asarray(b.stop_efficacy_h1), n)
    _within_mc_error(futile, np.asarray(b.stop_futility_h1), n)
    assert b.power[-1] == pytest.approx(0.8, abs=1e-7)


def test_harm_boundary_by_spending_mirrors_the_efficacy_boundary() -> None:
    # Source: rpact 3.3.4 d05 (asOF at 0.025, 3 equal looks): harm is the mirrored one-sided test
    b = GroupSequentialDesign((1 / 3, 2 / 3, 1.0), harm=HarmBoundary(alpha=0.025)).compute()
    expected = -np.asarray(DESIGNS["d05_asOF_K3"]["values"]["criticalValues"])
    np.testing.assert_allclose(b.harm_z, expected, rtol=0, atol=TOL)
    assert b.harm_alpha_spent[-1] == pytest.approx(0.025, abs=1e-9)
    assert max(b.harm_crossing_h1) < 1e-4


def test_constant_harm_boundary() -> None:
    b = GroupSequentialDesign((0.5, 1.0), harm=HarmBoundary(z=3.0)).compute()
    assert b.harm_z == (-3.0, -3.0)
    # Phi(-3) = 0.00134989803163009 (Abramowitz & Stegun, Table 26.1)
    np.testing.assert_allclose(b.harm_p, 0.00134989803163009, rtol=0, atol=1e-12)
    assert 0.00135 < b.harm_alpha_spent[-1] < 2 * 0.00135


def test_overrunning_final_look_spends_all_alpha() -> None:
    design = GroupSequentialDesign((1 / 3, 2 / 3, 1.0), efficacy="asHSD", gamma_a=-4)
    b = design.compute(observed_rates=(0.3, 0.7, 1.12))
    # asHSD(-4) at t = 0.3: 0.025 (1 - e^{1.2}) / (1 - e^4)
    assert b.alpha_spent[0] == pytest.approx(0.025 * math.expm1(1.2) / math.expm1(4.0), abs=1e-10)
    assert b.alpha_spent[-1] == pytest.approx(0.025, abs=1e-9)
    assert b.max_information is None


def test_observed_futility_keeps_the_planned_drift() -> None:
    design = _spec(DESIGNS["d12_asOF_bsOF_nonbinding_K3"])
    b = design.compute(observed_rates=(0.4,))
    assert b.drift == pytest.approx(_computed("d12_asOF_bsOF_nonbinding_K3").drift, abs=1e-10)
    assert b.futility_z[-1] == -math.inf


def test_sizes_from_effect_and_fixed_sample_size() -> None:
    # Source: rpact 3.3.4 d05 inflation factor and ASN ratios; z_0.975 + z_0.8 = 2.80158521...
    ref = DESIGNS["d05_asOF_K3"]["values"]
    b = dataclasses.replace(_spec(DESIGNS["d05_asOF_K3"]), effect=0.5, n_fixed=126.0).compute()
    assert b.max_sample_size == pytest.approx(126.0 * ref["inflationFactor"][0], abs=1e-2)
    assert b.expected_sample_size_h1 == pytest.approx(126.0 * ref["averageSampleNumber1"][0],
                                                      abs=1e-2)
    fixed_information = (2.80158521 / 0.5) ** 2
    assert b.max_information == pytest.approx(fixed_information * ref["inflationFactor"][0],
                                              abs=1e-3)
    assert b.expected_information_h0 == pytest.approx(
        fixed_information * ref["averageSampleNumber0"][0], abs=1e-3)


def test_default_grid_is_converged() -> None:
    spec = _spec(DESIGNS["d15_asHSDm4_bsHSDm2_binding_K4"])
    coarse = spec.compute()  # r = 32
    fine = dataclasses.replace(spec, grid=96).compute()
    np.testing.assert_allclose(coarse.efficacy_z, fine.efficacy_z, rtol=0, atol=1e-7)
    np.testing.assert_allclose(coarse.futility_z[:-1], fine.futility_z[:-1], rtol=0, atol=1e-7)


def test_record_is_frozen_and_serialisable() -> None:
    b = dataclasses.replace(_spec(DESIGNS["d14_asHSDm4_bsHSDm2_nonbinding_K4"]),
                            harm=HarmBoundary(z=2.5)).compute()
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.drift = 1.0  # type: ignore[misc]
    out = json.loads(json.dumps(b.to_dict(), allow_nan=False))
    assert out["futility_z"][-1] is None  # no futility stop at the final look
    assert out["design"]["harm"] == {"z": 2.5, "alpha": None, "spending": "asOF", "gamma": None}
    frame = b.to_frame()
    assert list(frame["look"]) == [1, 2, 3, 4]
    assert {"efficacy_z", "futility_z", "harm_z", "stop_efficacy_h0", "power"} <= set(frame)
    np.testing.assert_allclose(frame["efficacy_p"], norm.sf(frame["efficacy_z"]), atol=1e-15)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"information_rates": (0.5, 0.9)}, "information_rates"),
    ({"information_rates": (0.6, 0.4, 1.0)}, "information_rates"),
    ({"efficacy": "asHSD"}, "efficacy"),
    ({"efficacy": "WT"}, "efficacy"),
    ({"binding_futility": True}, "binding_futility"),
    ({"futility": "bsOF", "binding_futility": True, "efficacy": "OF"}, "binding_futility"),
    ({"alpha": 0.6}, "alpha"),
    ({"futility": "asOF"}, "futility"),
])
def test_invalid_design_names_the_field(kwargs: dict, field: str) -> None:
    kwargs = {"information_rates": (0.5, 1.0), **kwargs}
    with pytest.raises(BoundaryError, match=rf"^{field}:"):
        GroupSequentialDesign(**kwargs)


def test_invalid_harm_and_observed_path() -> None:
    with pytest.raises(BoundaryError, match=r"^harm:"):
        HarmBoundary(z=2.0, alpha=0.01)
    design = GroupSequentialDesign((0.5, 1.0))
    with pytest.raises(BoundaryError, match=r"^observed_rates:"):
        design.compute(observed_rates=(0.5, 0.4))
    with pytest.raises(BoundaryError, match=r"^z, information:"):
        design.compute().repeated_confidence_intervals([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_cli_prints_boundaries_as_json():
    import json

    from typer.testing import CliRunner

    from trials.cli import app

    result = CliRunner().invoke(app, ["design", "boundaries", "--looks", "0.5,1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # rpact 3.3.4 getDesignGroupSequential(kMax = 2, typeOfDesign = "asOF"): 2.962588, 1.968596
    assert data["efficacy_z"] == pytest.approx([2.962588, 1.968596], abs=1e-4)


def test_cli_bad_looks_is_one_line():
    from typer.testing import CliRunner

    from trials.cli import app

    result = CliRunner().invoke(app, ["design", "boundaries", "--looks", "0.5,x"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: --looks: '0.5,x' is not a comma-separated list of "
                                     "numbers")
