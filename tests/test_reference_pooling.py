"""Rubin's rules and multiple imputation against R's mice 3.15.0 (R 4.2.2).

Source: ``mice::pool.scalar`` on fixed inputs and ``mice::pool`` on a fitted
``with(imp, lm(y ~ treated + baseline + drug + length))`` (tests/reference/mi_pool.R, inputs in
mi_pool_inputs.csv, results in mi_pool.csv, raw output mi_pool.out); and ``mice::mice`` (pmm and
norm, m = 100, maxit = 10, imputed within arm) followed by ``lm`` and ``mice::pool`` on
HSAUR3::BtheB and on a simulated MAR trial (tests/reference/mi_mice.R -> mi_mice.csv,
mi_mice.out).

Rubin's rules are deterministic and are compared at 1e-10. MICE is stochastic, so the pooled
effect of analysis.imputation (its own seed, m = 100) is compared with mice's within a Monte Carlo
tolerance: each pooled estimate is the mean of m draws with variance B, so the difference of two
independent runs has standard deviation sqrt(B_R / m + B_py / m) and we allow 4 of them (a
false alarm has probability about 6e-5 if the two samplers draw from the same distribution). The
total variance T = Ubar + (1 + 1/m) B carries the Monte Carlo error of B (relative SD about
sqrt(2 / (m - 1))), scaled by lambda = (1 + 1/m) B / T; the standard error, sqrt(T), has half
that relative SD, and we again allow 4 SDs of the difference.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.imputation import ImputationSpec, fit_mi_ancova
from analysis.pooling import pool
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

TOL = 1e-10
M = 100

POOL = pd.read_csv(REFERENCE / "mi_pool.csv").set_index("case")
POOL_INPUTS = pd.read_csv(REFERENCE / "mi_pool_inputs.csv")
CASES = list(POOL.index)


@pytest.fixture(scope="module", params=CASES)
def case(request):
    name = request.param
    inputs = POOL_INPUTS[POOL_INPUTS["case"] == name].sort_values("j")
    r = POOL.loc[name]
    dfcom = None if math.isinf(r["dfcom"]) else float(r["dfcom"])
    return pool(inputs["q"], inputs["u"], df_complete=dfcom), r


def test_pooled_estimate(case):
    p, r = case
    assert p.estimate == pytest.approx(r["estimate"], abs=TOL)  # mice pool(.scalar) qbar


def test_within_variance(case):
    p, r = case
    assert p.within == pytest.approx(r["ubar"], abs=TOL)  # mice ubar


def test_between_variance(case):
    p, r = case
    assert p.between == pytest.approx(r["b"], abs=TOL)  # mice b


def test_total_variance(case):
    p, r = case
    assert p.total == pytest.approx(r["t"], abs=TOL)  # mice t


def test_barnard_rubin_df(case):
    p, r = case
    assert p.df == pytest.approx(r["df"], rel=TOL)  # mice:::barnard.rubin via pool(.scalar)


def test_riv(case):
    p, r = case
    assert p.riv == pytest.approx(r["riv"], abs=TOL)  # mice r / riv


def test_lambda(case):
    p, r = case
    assert p.lambda_ == pytest.approx(r["lambda"], abs=TOL)  # mice lambda


def test_fmi(case):
    p, r = case
    assert p.fmi == pytest.approx(r["fmi"], abs=TOL)  # mice fmi


def test_m(case):
    p, r = case
    assert p.m == r["m"]


# ------------------------------------------------------------------------- MICE vs mice
MICE = pd.read_csv(REFERENCE / "mi_mice.csv")
RUNS = [(row.data, row.method, bool(row.by_arm)) for row in MICE.itertuples()]


def _spec(data: str, method: str, by_arm: bool) -> tuple[pd.DataFrame, ImputationSpec]:
    if data == "btheb":
        frame = pd.read_csv(REFERENCE / "mi_btheb_data.csv")
        spec = ImputationSpec("bdi_8m", "mi", m=M, iterations=10, method=method,
                              auxiliary=("bdi_2m", "bdi_3m", "bdi_5m"),
                              covariates=("baseline", "drug", "length"), by_arm=by_arm,
                              seed=20261127)
    else:
        frame = pd.read_csv(REFERENCE / "mi_sim_data.csv")
        spec = ImputationSpec("week12", "mi", m=M, iterations=10, method=method,
                              auxiliary=("week4",), covariates=("baseline",), by_arm=by_arm,
                              seed=20261127)
    return frame, spec


@pytest.fixture(scope="module", params=RUNS, ids=lambda r: f"{r[0]}-{r[1]}-byarm{r[2]}")
def mice_run(request):
    data, method, by_arm = request.param
    frame, spec = _spec(data, method, by_arm)
    r = MICE[(MICE["data"] == data) & (MICE["method"] == method)
             & (MICE["by_arm"] == by_arm)].iloc[0]
    return fit_mi_ancova(frame, spec), r


def test_mi_estimate_matches_mice(mice_run):
    res, r = mice_run
    mc_sd = math.sqrt(r["b"] / r["m"] + res.pooled.between / M)
    # mice::pool estimate, m = 100 (mi_mice.csv); 4 Monte Carlo SDs
    assert res.estimate.estimate == pytest.approx(r["estimate"], abs=4 * mc_sd)


def test_mi_standard_error_matches_mice(mice_run):
    res, r = mice_run
    lam = (1 + 1 / r["m"]) * r["b"] / r["t"]
    rel_sd = lam / 2 * math.sqrt(2 / (r["m"] - 1))
    # sqrt(mice::pool t), m = 100 (mi_mice.csv); 4 Monte Carlo SDs of the difference
    assert res.estimate.std_error == pytest.approx(r["se"], rel=4 * math.sqrt(2) * rel_sd)


def test_mi_within_variance_matches_mice(mice_run):
    res, r = mice_run
    # mice::pool ubar (mi_mice.csv): an average of 100 complete-data variances, which differ
    # little between imputations; 10% covers the Monte Carlo error at up to 50% missing info
    assert res.pooled.within == pytest.approx(r["ubar"], rel=0.10)


def test_mi_fmi_matches_mice(mice_run):
    res, r = mice_run
    lam = (1 + 1 / r["m"]) * r["b"] / r["t"]
    sd = lam * (1 - lam) * math.sqrt(2 / (r["m"] - 1))
    # mice::pool fmi (mi_mice.csv); 4 Monte Carlo SDs of the difference of two estimates
    assert res.pooled.fmi == pytest.approx(r["fmi"], abs=4 * math.sqrt(2) * sd)


def test_mi_complete_data_df_matches_lm(mice_run):
    res, r = mice_run
    assert res.estimate.details["df_complete"] == r["dfcom"]  # lm df.residual, via mice dfcom


def test_mi_differs_from_complete_case(mice_run):
    # Not a reference value: the MI effect must not simply be the complete-case one that
    # mi_mice.R also prints (the auxiliaries carry information the complete cases lack).
    res, r = mice_run
    assert not np.isclose(res.estimate.estimate, r["cc_estimate"], atol=1e-6)
