"""Bayesian ANCOVA (PyMC) with a diagnostics gate.

The same model as :mod:`analysis.ancova`, with stated priors on the outcome's scale. Covariates
are centred before sampling (the treatment coefficient is unchanged by centring) so that NUTS
sees a well-conditioned posterior.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field, replace

import arviz as az
import numpy as np
import pandas as pd
import patsy

from analysis.ancova import complete_cases, model_formula
from analysis.estimate import Estimate, PosteriorProbability
from trials.errors import AnalysisError


@dataclass(frozen=True)
class Prior:
    """Normal(mean, sd) priors for the effect, other coefficients and intercept; HalfNormal(sd)
    for the residual SD."""

    effect_mean: float = 0.0
    effect_sd: float = 10.0
    coef_mean: float = 0.0
    coef_sd: float = 10.0
    intercept_mean: float = 0.0
    intercept_sd: float = 30.0
    sigma_sd: float = 10.0


@dataclass(frozen=True)
class SamplerSettings:
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    seed: int = 20261127


@dataclass(frozen=True)
class DiagnosticsGate:
    max_rhat: float = 1.01
    min_ess_bulk: float = 400
    min_ess_tail: float = 400
    max_divergences: int = 0


@dataclass(frozen=True)
class BayesAncovaSpec:
    estimand: str
    analysis: str
    covariates: tuple[str, ...] = ("baseline",)
    interval_level: float = 0.95
    prior: Prior = Prior()
    sampler: SamplerSettings = SamplerSettings()
    gate: DiagnosticsGate = DiagnosticsGate()
    # (comparator, threshold) pairs whose posterior probabilities the criteria need
    probabilities: tuple[tuple[str, float], ...] = field(default=())


@dataclass(frozen=True)
class BayesAncovaResult:
    estimate: Estimate
    idata: az.InferenceData


def _prob(draws: np.ndarray, comparator: str, threshold: float) -> float:
    ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
    return float(np.mean(ops[comparator](draws, threshold)))


def fit_bayes_ancova(frame: pd.DataFrame, spec: BayesAncovaSpec) -> BayesAncovaResult:
    """Sample the posterior of the ANCOVA and summarise the treatment effect.

    Notes
    -----
    :math:`y_i \\sim N(\\alpha + \\tau T_i + \\beta^\\top (x_i - \\bar x), \\sigma)`,
    :math:`\\tau \\sim N(m_\\tau, s_\\tau)`, :math:`\\beta_j \\sim N(m_\\beta, s_\\beta)`,
    :math:`\\alpha \\sim N(m_\\alpha, s_\\alpha)`, :math:`\\sigma \\sim HalfNormal(s_\\sigma)`.
    The gate marks the estimate unreliable when any parameter has R-hat above ``max_rhat``,
    bulk or tail ESS below the minimum, or the sampler reports more divergences than allowed.
    """
    import pymc as pm

    data, n_dropped = complete_cases(frame, spec.covariates)
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: needs participants with the outcome in both arms")
    # Same terms and reference coding as the frequentist ANCOVA, without the intercept column.
    rhs = model_formula(data, spec.covariates).split("~", 1)[1]
    rhs = rhs.replace("treated +", "").replace("treated", "1")
    X = patsy.dmatrix(rhs, data, return_type="dataframe").drop(columns="Intercept")
    constant = [c for c in X.columns if X[c].std(ddof=0) == 0]
    X = X.drop(columns=constant)
    # Centre and scale the covariates; the coefficient priors are rescaled to match, so the
    # model is exactly the one stated on the outcome's scale, only easier for NUTS.
    scale = X.std(ddof=0).to_numpy(dtype=float)
    Z = ((X - X.mean()) / scale).to_numpy(dtype=float)
    y = data["y"].to_numpy(dtype=float)
    t = data["treated"].to_numpy(dtype=float)
    p, s = spec.prior, spec.sampler
    with pm.Model():
        alpha = pm.Normal("intercept", p.intercept_mean, p.intercept_sd)
        tau = pm.Normal("effect", p.effect_mean, p.effect_sd)
        mu = alpha + tau * t
        if Z.shape[1]:
            gamma = pm.Normal("beta_scaled", p.coef_mean * scale, p.coef_sd * scale,
                              shape=Z.shape[1])
            pm.Deterministic("beta", gamma / scale)
            mu = mu + pm.math.dot(Z, gamma)
        sigma = pm.HalfNormal("sigma", p.sigma_sd)
        pm.Normal("y", mu, sigma, observed=y)
        logging.getLogger("pymc").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Chains run in parallel up to the cores available; each chain has its own seed, so
            # the draws are the same whatever the number of cores.
            idata = pm.sample(
                draws=s.draws, tune=s.tune, chains=s.chains,
                cores=max(1, min(s.chains, os.cpu_count() or 1)),
                target_accept=s.target_accept, random_seed=s.seed, progressbar=False,
                compute_convergence_checks=False,
            )
    estimate = _summarise(idata, data, spec, n_dropped)
    if constant:
        estimate = replace(estimate, warnings=estimate.warnings + (
            f"covariate column(s) without variation left out: {', '.join(constant)}",))
    return BayesAncovaResult(estimate, idata)


def _summarise(idata: az.InferenceData, data: pd.DataFrame, spec: BayesAncovaSpec,
               n_dropped: int) -> Estimate:
    draws = idata.posterior["effect"].to_numpy().ravel()
    names = [v for v in ("intercept", "effect", "beta_scaled", "sigma") if v in idata.posterior]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = float(az.rhat(idata, var_names=names).to_array().max())
        ess_bulk = float(az.ess(idata, var_names=names, method="bulk").to_array().min())
        ess_tail = float(az.ess(idata, var_names=names, method="tail").to_array().min())
        mcse = float(az.mcse(idata, var_names=["effect"])["effect"])
    divergences = int(idata.sample_stats["diverging"].sum())
    gate = spec.gate
    failures = []
    if not rhat <= gate.max_rhat:
        failures.append(f"R-hat {rhat:.3f} > {gate.max_rhat}")
    if not ess_bulk >= gate.min_ess_bulk:
        failures.append(f"bulk ESS {ess_bulk:.0f} < {gate.min_ess_bulk:g}")
    if not ess_tail >= gate.min_ess_tail:
        failures.append(f"tail ESS {ess_tail:.0f} < {gate.min_ess_tail:g}")
    if divergences > gate.max_divergences:
        failures.append(f"{divergences} divergent transitions")
    warn = [f"diagnostics gate failed: {f}" for f in failures]
    if n_dropped:
        warn.append(f"{n_dropped} participant(s) without the outcome or a covariate were "
                    "excluded (complete-case analysis)")
    tail = (1 - spec.interval_level) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail])
    probs = tuple(PosteriorProbability(c, float(th), _prob(draws, c, th))
                  for c, th in spec.probabilities)
    n_by_arm = {str(k): int(v) for k, v in data.groupby("arm", sort=True).size().items()}
    pr = spec.prior
    return Estimate(
        estimand=spec.estimand,
        analysis=spec.analysis,
        engine="bayesian",
        model="ancova",
        estimate=float(draws.mean()),
        std_error=float(draws.std(ddof=1)),
        ci_lower=float(lo),
        ci_upper=float(hi),
        ci_level=spec.interval_level,
        posterior_probabilities=probs,
        n_analysed=int(len(data)),
        n_by_arm=n_by_arm,
        diagnostics={"max_rhat": rhat, "min_ess_bulk": ess_bulk, "min_ess_tail": ess_tail,
                     "divergences": divergences, "mcse_effect": mcse,
                     "draws": int(draws.size), "chains": spec.sampler.chains},
        reliable=not failures,
        warnings=tuple(warn),
        details={
            "prior": f"effect ~ Normal({pr.effect_mean:g}, {pr.effect_sd:g}); "
                     f"coefficients ~ Normal({pr.coef_mean:g}, {pr.coef_sd:g}); "
                     f"intercept ~ Normal({pr.intercept_mean:g}, {pr.intercept_sd:g}); "
                     f"residual SD ~ HalfNormal({pr.sigma_sd:g})",
            "n_excluded": n_dropped,
            "seed": spec.sampler.seed,
        },
    )


