"""MMRM against R nlme::gls (nlme 3.1.162) and emmeans (1.8.4.1) Satterthwaite, R 4.2.2.

Sources: tests/reference/mmrm_sim.R (simulated trial with dropout, 9 fits: unstructured REML and
ML, compound symmetry REML and ML, heterogeneous CS, AR(1), heterogeneous AR(1), Toeplitz and
heterogeneous Toeplitz as corARMA(p = T - 1)), tests/reference/mmrm_btheb.R (HSAUR3 Beat the Blues
trial, unstructured and heterogeneous AR(1) REML, and unstructured REML with drug and length) and
tests/reference/mmrm_bench.R (2,000 x 5 unstructured REML) and mmrm_satterthwaite.R (numDeriv
2016.8.1.1). Raw output in the ``.out`` files; full-precision values in
``mmrm_*_{info,coefs,cov,lsm,ctr}.csv`` and mmrm_satterthwaite.csv; see tests/reference/mmrm.md.

Satterthwaite df have two references. tests/reference/mmrm_satterthwaite.R computes
2 v^2 / (g' H^-1 g) directly: nlme's own REML/ML likelihood over (coef(modelStruct), log sigma),
Hessian and gradient by numDeriv (Richardson). Our df agree with it to 5e-5 relative (tolerance
1e-3) for every fit. emmeans' mode = "satterthwaite" for gls pairs a gradient taken with sigma
re-profiled (emmeans:::gls_grad) with nlme's finite-difference apVar over (theta, log sigma), so it
is an approximation of the same quantity: it differs from both by up to 3e-3 on the simulated REML
fits (tolerance 1e-2), 2.2e-2 on the small BtheB fits (tolerance 2.5e-2) and 3.3e-2 under ML
(tolerance 4e-2).

Other tolerances: estimates 1e-4 absolute and SEs 1e-3 relative (the issue's bar; achieved 4e-5
and 1e-5); log-likelihood, AIC, BIC 1e-5 absolute (achieved 2e-7); covariance matrix 1e-3
relative (achieved 4e-5). Under ML nlme's vcov is N/(N - p) times the ML covariance that SAS and
R mmrm report and fit_mmrm returns; the ML SE comparisons rescale R's SEs by sqrt((N - p)/N).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from analysis.mmrm import MmrmSpec, fit_mmrm
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

SIM_COVS = ("baseline", "age", "site")
# (stem, R fit label, structure, method, covariates, df relative tolerance)
FITS = [
    ("mmrm_sim", "us_reml", "unstructured", "reml", SIM_COVS, 1e-2),
    ("mmrm_sim", "us_ml", "unstructured", "ml", SIM_COVS, 4e-2),
    ("mmrm_sim", "cs_reml", "compound_symmetry", "reml", SIM_COVS, 1e-2),
    ("mmrm_sim", "cs_ml", "compound_symmetry", "ml", SIM_COVS, 4e-2),
    ("mmrm_sim", "csh_reml", "heterogeneous_compound_symmetry", "reml", SIM_COVS, 1e-2),
    ("mmrm_sim", "ar1_reml", "ar1", "reml", SIM_COVS, 1e-2),
    ("mmrm_sim", "ar1h_reml", "heterogeneous_ar1", "reml", SIM_COVS, 1e-2),
    ("mmrm_sim", "toep_reml", "toeplitz", "reml", SIM_COVS, 1e-2),
    ("mmrm_sim", "toeph_reml", "heterogeneous_toeplitz", "reml", SIM_COVS, 1e-2),
    ("mmrm_btheb", "us_reml", "unstructured", "reml", ("baseline",), 2.5e-2),
    ("mmrm_btheb", "ar1h_reml", "heterogeneous_ar1", "reml", ("baseline",), 2.5e-2),
    ("mmrm_btheb_cov", "us_reml_cov", "unstructured", "reml", ("baseline", "drug", "length"),
     2.5e-2),
]
IDS = [f"{f[0]}-{f[1]}" for f in FITS]
ARM = {"mmrm_sim": "ai_cbt", "mmrm_btheb": "BtheB", "mmrm_btheb_cov": "BtheB",
       "mmrm_bench": "ai_cbt"}
DATA = {"mmrm_sim": "mmrm_sim_data.csv", "mmrm_btheb": "mmrm_btheb_data.csv",
        "mmrm_btheb_cov": "mmrm_btheb_data.csv"}


@functools.cache
def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / name)


@functools.cache
def _r(stem: str, part: str, label: str) -> pd.DataFrame:
    tab = pd.read_csv(REFERENCE / f"{stem}_{part}.csv")
    return tab[tab["fit"] == label].reset_index(drop=True)


@functools.cache
def _fit(stem: str, label: str):
    case = next(f for f in FITS if f[0] == stem and f[1] == label)
    spec = MmrmSpec("primary", label, visit=_data(DATA[stem])["visit"].max(),
                    covariance=case[2], method=case[3], covariates=case[4])
    return fit_mmrm(_data(DATA[stem]), spec)


def _r_term(term: str, arm: str = "ai_cbt") -> str:
    """Our term name as R's model.matrix names it (arm levels comparator first)."""
    if term.startswith("visit["):
        return "visit" + term[6:-1]
    if term.startswith("treated:visit["):
        return "visit" + term[14:-1] + ":arm" + arm
    if term.startswith("baseline:visit["):
        return "visit" + term[15:-1] + ":baseline"
    if "[" in term:
        name, level = term[:-1].split("[")
        return name + level
    return term


def _ml_se_factor(stem: str, label: str, method: str) -> float:
    # nlme's ML vcov is sigma^2 (X'Lambda^-1 X)^-1 with sigma^2 on N - p df: N/(N - p) times the
    # ML covariance (X' V^-1 X)^-1 that SAS and R mmrm report and fit_mmrm returns
    if method != "ml":
        return 1.0
    info = _r(stem, "info", label).iloc[0]
    p = len(_fit(stem, label).terms)
    return float(np.sqrt((info["n_obs"] - p) / info["n_obs"]))


@pytest.fixture(params=FITS, ids=IDS)
def case(request):
    stem, label, structure, method, _, df_tol = request.param
    return stem, label, method, df_tol, _fit(stem, label)


REML_FITS = [f for f in FITS if f[3] == "reml"]


@pytest.fixture(params=REML_FITS, ids=[f"{f[0]}-{f[1]}" for f in REML_FITS])
def reml_case(request):
    # p-values and intervals combine SE and df, and nlme's ML SEs differ by sqrt(N/(N - p)) by
    # construction (see _ml_se_factor), so these are compared for REML fits only
    stem, label = request.param[:2]
    return stem, label, _fit(stem, label)


def test_fixed_effects_match_r(case):
    stem, label, _, _, res = case
    r = _r(stem, "coefs", label).set_index("term")
    expected = r.loc[[_r_term(t, ARM[stem]) for t in res.terms], "estimate"].to_numpy()
    # source: nlme::gls coefficients (summary(fit)$tTable)
    assert res.beta == pytest.approx(expected, abs=1e-4)


def test_fixed_effect_ses_match_r(case):
    stem, label, method, _, res = case
    r = _r(stem, "coefs", label).set_index("term")
    expected = r.loc[[_r_term(t, ARM[stem]) for t in res.terms], "std_error"].to_numpy()
    expected = expected * _ml_se_factor(stem, label, method)
    # source: nlme::gls standard errors (ML rescaled, see _ml_se_factor)
    assert np.sqrt(np.diag(res.vcov_beta)) == pytest.approx(expected, rel=1e-3)


def test_log_likelihood_matches_r(case):
    stem, label, _, _, res = case
    # source: logLik(gls)
    assert res.estimate.diagnostics["log_likelihood"] == pytest.approx(
        _r(stem, "info", label)["log_likelihood"].iloc[0], abs=1e-5)


def test_aic_matches_r(case):
    stem, label, _, _, res = case
    # source: AIC(gls)
    assert res.estimate.diagnostics["aic"] == pytest.approx(
        _r(stem, "info", label)["aic"].iloc[0], abs=1e-5)


def test_bic_matches_r(case):
    stem, label, _, _, res = case
    # source: BIC(gls)
    assert res.estimate.diagnostics["bic"] == pytest.approx(
        _r(stem, "info", label)["bic"].iloc[0], abs=1e-5)


def test_covariance_matrix_matches_r(case):
    stem, label, _, _, res = case
    t = len(res.visits)
    expected = _r(stem, "cov", label)["value"].to_numpy().reshape(t, t, order="F")
    # source: getVarCov(gls) for a participant with every visit
    assert res.covariance == pytest.approx(expected, rel=1e-3)


def test_contrast_estimates_match_emmeans(case):
    stem, label, _, _, res = case
    # source: emmeans contrast(method = "revpairwise") by visit
    assert [c.estimate for c in res.contrasts] == pytest.approx(
        _r(stem, "ctr", label)["estimate"].to_list(), abs=1e-4)


def test_contrast_ses_match_emmeans(case):
    stem, label, method, _, res = case
    expected = _r(stem, "ctr", label)["se"].to_numpy() * _ml_se_factor(stem, label, method)
    # source: emmeans contrast SE (ML rescaled)
    assert [c.se for c in res.contrasts] == pytest.approx(expected, rel=1e-3)


def test_contrast_df_match_emmeans_satterthwaite(case):
    stem, label, _, df_tol, res = case
    # source: emmeans mode = "satterthwaite" on the gls fit
    assert [c.df for c in res.contrasts] == pytest.approx(
        _r(stem, "ctr", label)["df"].to_list(), rel=df_tol)


def test_contrast_p_values_match_emmeans(reml_case):
    stem, label, res = reml_case
    # source: emmeans contrast p.value
    assert [c.p for c in res.contrasts] == pytest.approx(
        _r(stem, "ctr", label)["p"].to_list(), abs=2e-4)


def test_contrast_intervals_match_emmeans(reml_case):
    stem, label, res = reml_case
    r = _r(stem, "ctr", label)
    # source: emmeans contrast lower.CL / upper.CL (95%)
    ours = [x for c in res.contrasts for x in (c.ci_lower, c.ci_upper)]
    theirs = [x for pair in zip(r["ci_lower"], r["ci_upper"], strict=True) for x in pair]
    assert ours == pytest.approx(theirs, abs=2e-3)


def test_lsmeans_match_emmeans(case):
    stem, label, _, _, res = case
    # source: emmeans(~ arm | visit) emmean, covariates at their means, factors equally weighted
    assert [m.estimate for m in res.lsmeans] == pytest.approx(
        _r(stem, "lsm", label)["estimate"].to_list(), abs=1e-4)


def test_lsmean_ses_match_emmeans(case):
    stem, label, method, _, res = case
    expected = _r(stem, "lsm", label)["se"].to_numpy() * _ml_se_factor(stem, label, method)
    # source: emmeans emmean SE (ML rescaled)
    assert [m.se for m in res.lsmeans] == pytest.approx(expected, rel=1e-3)


def test_lsmean_df_match_emmeans(case):
    stem, label, _, df_tol, res = case
    # source: emmeans Satterthwaite df of each LS mean
    assert [m.df for m in res.lsmeans] == pytest.approx(
        _r(stem, "lsm", label)["df"].to_list(), rel=df_tol)


def test_primary_estimate_is_last_visit_contrast(case):
    stem, label, _, _, res = case
    r = _r(stem, "ctr", label).iloc[-1]
    # source: emmeans contrast at the last visit
    assert res.estimate.estimate == pytest.approx(r["estimate"], abs=1e-4)


def test_participants_analysed_match_r(case):
    stem, label, _, _, res = case
    info = _r(stem, "info", label).iloc[0]
    assert res.estimate.n_analysed == info["n_participants"]
    assert res.estimate.details["n_observations"] == info["n_obs"]


@functools.cache
def _numderiv(stem: str, label: str) -> pd.DataFrame:
    tab = pd.read_csv(REFERENCE / "mmrm_satterthwaite.csv", dtype={"visit": str})
    return tab[(tab["stem"] == stem) & (tab["fit"] == label)]


def _ours_for(res, rows: pd.DataFrame, attr: str) -> list[float]:
    lsm = {(str(m.visit), m.arm): m for m in res.lsmeans}
    ctr = {str(c.visit): c for c in res.contrasts}
    out = []
    for row in rows.itertuples():
        obj = lsm[(row.visit, row.term)] if row.kind == "lsm" else ctr[row.visit]
        out.append(obj.se ** 2 if attr == "variance" else getattr(obj, attr))
    return out


def test_satterthwaite_df_match_direct_numderiv_computation(case):
    stem, label, _, _, res = case
    rows = _numderiv(stem, label)
    # source: mmrm_satterthwaite.R, 2 v^2 / (g' H^-1 g) with numDeriv on nlme's likelihood
    assert _ours_for(res, rows, "df") == pytest.approx(rows["df"].to_list(), rel=1e-3)


def test_variances_match_direct_numderiv_computation(case):
    stem, label, _, _, res = case
    rows = _numderiv(stem, label)
    # source: mmrm_satterthwaite.R, L V L' with V = sigma^2 (X' Lambda^-1 X)^-1 from nlme
    assert _ours_for(res, rows, "variance") == pytest.approx(rows["variance"].to_list(),
                                                              rel=2e-3)


def test_benchmark_data_matches_r():
    frame = _data("mmrm_bench_data.csv")
    res = fit_mmrm(frame, MmrmSpec("primary", "bench", visit=12))
    r = _r("mmrm_bench", "coefs", "us_reml").set_index("term")
    expected = r.loc[[_r_term(t) for t in res.terms], "estimate"].to_numpy()
    # source: mmrm_bench.R, nlme::gls unstructured REML on 2,000 x 5
    assert res.beta == pytest.approx(expected, abs=1e-4)


def test_benchmark_log_likelihood_matches_r():
    frame = _data("mmrm_bench_data.csv")
    res = fit_mmrm(frame, MmrmSpec("primary", "bench", visit=12))
    # source: mmrm_bench.R logLik(gls)
    assert res.estimate.diagnostics["log_likelihood"] == pytest.approx(
        _r("mmrm_bench", "info", "us_reml")["log_likelihood"].iloc[0], abs=1e-5)
