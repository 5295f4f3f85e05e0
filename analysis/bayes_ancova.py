"""Bayesian ANCOVA (PyMC) with a diagnostics gate.

The same model as :mod:`analysis.ancova`, with stated priors on the outcome's scale. Covariates
are centred before sampling (the treatment coefficient is unchanged by centring) so that NUTS
sees a well-conditioned posterior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import arviz as az
import pandas as pd
import patsy

from analysis.ancova import complete_cases, model_formula
from analysis.bayes_gate import (
    DiagnosticsGate,
    SamplerSettings,
    apply_gate,
    chain_draws,
    run_sampler,
    summarise_draws,
)
from analysis.estimate import Estimate
from trials.errors import AnalysisError

# Defined in analysis.bayes_gate with the rest of the shared machinery; imported from here too.
__all__ = ["BayesAncovaResult", "BayesAncovaSpec", "DiagnosticsGate", "Prior", "SamplerSettings",
           "fit_bayes_ancova"]


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


def fit_bayes_ancova(frame: pd.DataFrame, spec: BayesAncovaSpec) -> BayesAncovaResult:
    """Sample the posterior of the ANCOVA and summarise the treatment effect.

    Notes
    -----
    :math:`y_i \\sim N(\\alpha + \\tau T_i + \\beta^\\top (x_i - \\bar x), \\sigma)`,
    :math:`\\tau \\sim N(m_\\tau, s_\\tau)`, :math:`\\beta_j \\sim N(m_\\beta, s_\\beta)`,
    :math:`\\alpha \\sim N(m_\\alpha, s_\\alpha)`, :math:`\\sigma \\sim HalfNormal(s_\\sigma)`.
    The gate (:func:`analysis.bayes_gate.apply_gate`) marks the estimate unreliable when any
    parameter has R-hat above ``max_rhat``, bulk or tail ESS below the minimum, or the sampler
    reports more divergences than allowed.
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
    p = spec.prior
    with pm.Model() as model:
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
    idata = run_sampler(model, spec.sampler)
    names = [v for v in ("intercept", "effect", "beta_scaled", "sigma") if v in idata.posterior]
    warn = []
    if n_dropped:
        warn.append(f"{n_dropped} participant(s) without the outcome or a covariate were "
                    "excluded (complete-case analysis)")
    if constant:
        warn.append(f"covariate column(s) without variation left out: {', '.join(constant)}")
    estimate = summarise_draws(
        chain_draws(idata, "effect"), estimand=spec.estimand, analysis=spec.analysis,
        model="ancova", interval_level=spec.interval_level, probabilities=spec.probabilities,
        gate_result=apply_gate(idata, names, spec.gate), data=data, warnings_=warn,
        details={
            "prior": f"effect ~ Normal({p.effect_mean:g}, {p.effect_sd:g}); "
                     f"coefficients ~ Normal({p.coef_mean:g}, {p.coef_sd:g}); "
                     f"intercept ~ Normal({p.intercept_mean:g}, {p.intercept_sd:g}); "
                     f"residual SD ~ HalfNormal({p.sigma_sd:g})",
            "n_excluded": n_dropped,
            "seed": spec.sampler.seed,
        },
    )
    return BayesAncovaResult(estimate, idata)
