"""Bayesian MMRM-like model (PyMC): unstructured covariance over visits, no imputation.

The mean model is the standard MMRM's (visit-specific intercepts, treatment effects and
baseline slopes; other covariates as main effects). The residual covariance over visits is
unstructured: per-visit SDs and an LKJ prior on the correlation, sampled through its Cholesky
factor. A participant with missing visits contributes the marginal multivariate normal density
of the visits observed (the likelihood is valid under missing at random); participants are
grouped by their pattern of observed visits so each pattern costs one multivariate normal term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings
from analysis.bayes_gate import (
    BayesResult,
    apply_gate,
    brief,
    chain_draws,
    covariate_matrix,
    run_sampler,
    summarise_draws,
)
from analysis.bayes_priors import PriorSet
from trials.errors import AnalysisError


@dataclass(frozen=True)
class LongitudinalSpec:
    """Bayesian MMRM-like model for the treatment effect at ``visit``.

    ``prior.effect_*`` is the prior of the effect at ``visit``; effects at other visits, the
    by-visit baseline slopes and the other coefficients get Normal(0, ``prior.coef_sd``), the
    visit means (of the average participant: treatment and covariates are centred)
    Normal(0, ``prior.intercept_sd``), the per-visit SDs
    HalfNormal(``prior.sigma_sd``) and the correlation matrix LKJ(``lkj_eta``).
    """

    estimand: str
    analysis: str
    visit: int
    prior: PriorSet
    covariates: tuple[str, ...] = ("baseline",)
    lkj_eta: float = 2.0
    interval_level: float = 0.95
    sampler: SamplerSettings = SamplerSettings()
    gate: DiagnosticsGate = DiagnosticsGate()
    probabilities: tuple[tuple[str, float], ...] = field(default=())


def _wide(frame: pd.DataFrame, spec: LongitudinalSpec) -> tuple[pd.DataFrame, np.ndarray,
                                                                 list[Any], list[str]]:
    """One row per participant (arm, treated, covariates) and the n x K outcome matrix."""
    need = ["participant", "arm", "treated", "visit", "y", *spec.covariates]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{spec.analysis}: column(s) {', '.join(missing)} missing from the "
                            "data")
    if frame.duplicated(["participant", "visit"]).any():
        raise AnalysisError(f"{spec.analysis}: more than one row for a participant and visit")
    visits = sorted(frame["visit"].dropna().unique().tolist())
    if len(visits) < 2:
        raise AnalysisError(f"{spec.analysis}: column 'visit' needs at least two visits")
    if spec.visit not in visits:
        raise AnalysisError(f"{spec.analysis}: visit {spec.visit!r} is not in column 'visit' "
                            f"({visits})")
    people = frame.groupby("participant", sort=True)[
        ["arm", "treated", *spec.covariates]].first()
    Y = (frame.pivot(index="participant", columns="visit", values="y")
         .reindex(index=people.index, columns=visits).to_numpy(dtype=float))
    notes = []
    keep = people[["treated", *spec.covariates]].notna().all(axis=1).to_numpy().copy()
    if (~keep).any():
        notes.append(f"{int((~keep).sum())} participant(s) with a missing covariate were "
                     "excluded")
    none = ~np.isfinite(Y).any(axis=1) & keep
    if none.any():
        notes.append(f"{int(none.sum())} participant(s) without any observed outcome contribute "
                     "nothing to the likelihood")
    keep &= ~none
    people, Y = people.loc[keep].copy(), Y[keep]
    if people["treated"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: needs participants with the outcome in both arms")
    return people.reset_index(), Y, visits, notes


def fit_bayes_longitudinal(frame: pd.DataFrame, spec: LongitudinalSpec) -> BayesResult:
    """Sample the MMRM-like model and report the treatment effect at ``spec.visit``.

    Parameters
    ----------
    frame
        Long: one row per participant and post-baseline visit with ``participant``, ``arm``,
        ``treated`` (1/0), ``visit``, ``y`` (NaN when missing), ``baseline`` and the other
        covariates (constant within participant).
    spec
        What to fit.

    Notes
    -----
    :math:`y_i \\sim MVN_K(\\mu_i, \\Sigma)` over the visits, restricted to the visits
    observed for participant :math:`i`, with
    :math:`\\mu_{iv} = \\alpha_v + \\tau_v (T_i - \\bar T) + \\beta_v (b_i - \\bar b) +
    \\gamma^\\top z_i`,
    :math:`\\Sigma = \\mathrm{diag}(s) \\, L L^\\top \\mathrm{diag}(s)`,
    :math:`L L^\\top \\sim LKJ(\\eta)`, :math:`s_v \\sim HalfNormal(s_\\sigma)`. The estimate is
    the posterior mean of :math:`\\tau_v` at the target visit. ``tables`` holds the effect at
    every visit and the posterior mean covariance matrix.
    """
    import pymc as pm

    if not spec.lkj_eta > 0:
        raise AnalysisError(f"{spec.analysis}: lkj_eta must be positive")
    people, Y, visits, notes = _wide(frame, spec)
    n, k = Y.shape
    target = visits.index(spec.visit)
    # The treatment indicator is centred too: the visit means are then those of the average
    # participant rather than of the comparator arm, nearly uncorrelated with the effects, which
    # NUTS samples much better. The effects are unchanged by centring.
    t = people["treated"].to_numpy(dtype=float)
    t = t - t.mean()
    by_visit = "baseline" in spec.covariates
    others = tuple(c for c in spec.covariates if c != "baseline")
    Z, scale, names = covariate_matrix(people, others)
    if by_visit:
        b = people["baseline"].to_numpy(dtype=float)
        b_scale = float(b.std()) or 1.0
        bz = (b - b.mean()) / b_scale
    observed = np.isfinite(Y)
    patterns, which = np.unique(observed, axis=0, return_inverse=True)
    which = np.asarray(which).ravel()
    p = spec.prior
    effect_mean = np.zeros(k)
    effect_mean[target] = p.effect_mean
    effect_sd = np.full(k, p.coef_sd)
    effect_sd[target] = p.effect_sd
    with pm.Model() as model:
        alpha = pm.Normal("intercept", 0.0, p.intercept_sd, shape=k)
        tau = pm.Normal("effect", effect_mean, effect_sd, shape=k)
        mu = alpha[None, :] + t[:, None] * tau[None, :]
        if by_visit:
            slope = pm.Normal("beta_baseline_scaled", 0.0, p.coef_sd * b_scale, shape=k)
            pm.Deterministic("beta_baseline", slope / b_scale)
            mu = mu + bz[:, None] * slope[None, :]
        if Z.shape[1]:
            gamma = pm.Normal("beta_scaled", 0.0, p.coef_sd * scale, shape=Z.shape[1])
            pm.Deterministic("beta", gamma / scale)
            mu = mu + pm.math.dot(Z, gamma)[:, None]
        chol, _, _ = pm.LKJCholeskyCov(
            "chol", n=k, eta=spec.lkj_eta,
            sd_dist=pm.HalfNormal.dist(p.sigma_sd, shape=k), compute_corr=True)
        cov = pm.Deterministic("cov", chol @ chol.T)
        for j, pattern in enumerate(patterns):
            rows = np.flatnonzero(which == j)
            idx = np.flatnonzero(pattern)
            m = len(idx)
            if np.array_equal(idx, np.arange(m)):
                # Visits 1..m observed (monotone dropout): the Cholesky factor of the leading
                # m x m block of Sigma is the leading block of Sigma's, so no factorisation.
                chol_p = [[chol[v, w] for w in range(v + 1)] for v in range(m)]
            else:
                chol_p = _small_cholesky(cov[idx][:, idx], m)
            pm.Potential(f"loglik_pattern_{j}",
                         _mvn_logp(Y[np.ix_(rows, idx)], mu[rows][:, idx], chol_p, m))
    idata = run_sampler(model, spec.sampler)
    sampled = ["intercept", "effect", "chol", *(["beta_baseline_scaled"] if by_visit else []),
               *(["beta_scaled"] if Z.shape[1] else [])]
    gate = apply_gate(idata, sampled, spec.gate)
    effects = chain_draws(idata, "effect")
    by_visit_rows = [{"visit": _plain(v), **brief(effects[..., j], spec.interval_level)}
                     for j, v in enumerate(visits)]
    cov_mean = idata.posterior["cov"].mean(("chain", "draw")).to_numpy()
    tables = {"effects_by_visit": by_visit_rows,
              "covariance": [[float(x) for x in row] for row in cov_mean],
              "visits": [_plain(v) for v in visits]}
    n_obs = observed.sum(axis=0)
    details = {"prior": p.describe(), "lkj_eta": spec.lkj_eta, "visits": tables["visits"],
               "target_visit": _plain(spec.visit), "covariance": tables["covariance"],
               "n_observed_by_visit": [int(x) for x in n_obs],
               "missingness_patterns": int(len(patterns)), "covariate_columns": names,
               "seed": spec.sampler.seed}
    estimate = summarise_draws(
        effects[..., target], estimand=spec.estimand, analysis=spec.analysis, model="mmrm",
        interval_level=spec.interval_level, probabilities=spec.probabilities, gate_result=gate,
        data=people, warnings_=notes, details=details,
    )
    return BayesResult(estimate, idata, tables)


def _small_cholesky(a: Any, m: int) -> list[list[Any]]:
    """Lower Cholesky factor of a small m x m symbolic matrix, as nested scalar expressions.

    Written out (Cholesky-Banachiewicz) so that the graph has only elementwise ops; PyTensor's
    ``Cholesky`` gradient solves triangular systems in Python and dominates the sampling time.
    """
    import pytensor.tensor as pt

    low: list[list[Any]] = []
    for v in range(m):
        row: list[Any] = []
        for w in range(v + 1):
            other = row if w == v else low[w]
            acc = a[v, w] - sum((row[k] * other[k] for k in range(w)), start=0.0)
            row.append(pt.sqrt(acc) if v == w else acc / low[w][w])
        low.append(row)
    return low


def _mvn_logp(obs: np.ndarray, mu: Any, chol_p: list[list[Any]], m: int) -> Any:
    """Sum over rows of the MVN log density with covariance L L' (L given as nested scalars).

    The residuals are whitened by forward substitution written out over the (few) visits, so
    every op is elementwise: PyMC's batched ``MvNormal`` and PyTensor's triangular solve run as
    Python-level ops, about a hundred times slower on these small matrices.
    """
    import pytensor.tensor as pt

    r = obs - mu
    total = 0.0
    z: list[Any] = []
    for v in range(m):
        acc = r[:, v]
        for w in range(v):
            acc = acc - chol_p[v][w] * z[w]
        z.append(acc / chol_p[v][v])
        total = total + pt.sum(z[v] ** 2)
    n = obs.shape[0]
    log_det = sum(pt.log(chol_p[v][v]) for v in range(m))
    return -0.5 * total - n * log_det - 0.5 * n * m * np.log(2 * np.pi)


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
