"""Bayesian interrupted time series (PyMC): the segmented regression of :mod:`analysis.its`.

The design matrix is the frequentist one (same terms, seasonality, comparison series and
covariates); the errors are Normal with an optional AR(1) correlation between consecutive
periods, which plays the part the Newey–West correction plays for least squares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd

from analysis.bayes_gate import (
    DiagnosticsGate,
    SamplerSettings,
    apply_gate,
    chain_draws,
    run_sampler,
    summarise_draws,
)
from analysis.estimate import Estimate
from analysis.its import counterfactual_design, effect_vector, its_design, period_label
from trials.errors import AnalysisError


@dataclass(frozen=True)
class BayesItsPrior:
    """Normal(0, ``coef_sd``) for every regression coefficient, Normal(mean(y),
    ``intercept_sd``) for the intercept of the centred design and HalfNormal(``sigma_sd``) for
    the residual SD, all on the outcome's scale. None means 10 × the SD of the outcome (weak).
    """

    coef_sd: float | None = None
    intercept_sd: float | None = None
    sigma_sd: float | None = None


@dataclass(frozen=True)
class BayesItsSpec:
    """As :class:`analysis.its.ItsSpec`, with priors, sampler settings and a diagnostics gate.

    ``ar1`` adds AR(1) errors, :math:`\\varepsilon_t = \\rho\\varepsilon_{t-1} + u_t`,
    :math:`\\rho \\sim U(-1, 1)` (single series only).
    """

    estimand: str
    analysis: str
    interruption: int | str
    effect: str = "level"
    horizon: int | None = None
    seasonality: str | None = None
    comparison: str | None = None
    covariates: tuple[str, ...] = ()
    interval_level: float = 0.95
    ar1: bool = False
    prior: BayesItsPrior = BayesItsPrior()
    sampler: SamplerSettings = SamplerSettings()
    gate: DiagnosticsGate = DiagnosticsGate()
    probabilities: tuple[tuple[str, float], ...] = field(default=())


@dataclass(frozen=True)
class BayesItsResult:
    estimate: Estimate
    idata: az.InferenceData
    periods: tuple
    observed: tuple[float, ...]
    counterfactual_mean: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"estimate": self.estimate.to_dict(), "periods": list(self.periods),
                "observed": list(self.observed),
                "counterfactual_mean": list(self.counterfactual_mean)}


def fit_bayes_its(frame: pd.DataFrame, spec: BayesItsSpec) -> BayesItsResult:
    """Sample the posterior of the segmented regression and summarise the spec's change.

    Notes
    -----
    :math:`y_t \\sim N(x_t^\\top\\beta, \\sigma)` with the design of
    :func:`analysis.its.fit_its`; non-intercept columns are centred and scaled before sampling
    and the priors rescaled to match, so the priors hold on the outcome's scale:
    :math:`\\beta_j \\sim N(0, s_\\beta)`, :math:`\\sigma \\sim HalfNormal(s_\\sigma)`. The
    estimand is :math:`c^\\top\\beta` (level, slope or level + horizon·slope). With ``ar1`` the
    likelihood is conditional on the first period:
    :math:`y_t - \\mu_t \\mid y_{t-1} \\sim N(\\rho (y_{t-1} - \\mu_{t-1}), \\sigma)`.
    """
    import pymc as pm

    design = its_design(frame, spec)
    if design.weight is not None:
        raise AnalysisError(f"{spec.analysis}: column 'weight' is not supported by the "
                            "Bayesian ITS")
    if spec.ar1 and spec.comparison:
        raise AnalysisError(f"{spec.analysis}: ar1 is for a single series (comparison is set)")
    if spec.ar1 and np.any(np.diff(design.time) != 1):
        raise AnalysisError(f"{spec.analysis}: ar1 needs consecutive periods without a missing "
                            "outcome")
    X = design.X.drop(columns="intercept")
    center = X.mean().to_numpy(dtype=float)
    scale = X.std(ddof=0).to_numpy(dtype=float)
    Z = (X.to_numpy(dtype=float) - center) / scale
    y = design.y
    sd_y = float(np.std(y, ddof=1)) or 1.0
    pr = spec.prior
    coef_sd = pr.coef_sd if pr.coef_sd is not None else 10 * sd_y
    intercept_sd = pr.intercept_sd if pr.intercept_sd is not None else 10 * sd_y
    sigma_sd = pr.sigma_sd if pr.sigma_sd is not None else 10 * sd_y
    contrast = effect_vector(design, spec)[1:]  # the intercept never enters the contrast
    with pm.Model() as model:
        alpha = pm.Normal("intercept_centred", float(np.mean(y)), intercept_sd)
        gamma = pm.Normal("beta_scaled", 0.0, coef_sd * scale, shape=Z.shape[1])
        beta = pm.Deterministic("beta", gamma / scale)
        pm.Deterministic("effect", pm.math.dot(beta, contrast))
        sigma = pm.HalfNormal("sigma", sigma_sd)
        mu = alpha + pm.math.dot(Z, gamma)
        if spec.ar1:
            rho = pm.Uniform("rho", -1.0, 1.0)
            resid = y - mu
            pm.Normal("y", mu[1:] + rho * resid[:-1], sigma, observed=y[1:])
        else:
            pm.Normal("y", mu, sigma, observed=y)
    idata = run_sampler(model, spec.sampler)
    beta_draws = idata.posterior["beta"].stack(sample=("chain", "draw")).to_numpy()
    alpha_draws = idata.posterior["intercept_centred"].to_numpy().ravel()
    # Back on the original design: intercept = centred intercept - centre · beta.
    full_beta = np.vstack([alpha_draws - center @ beta_draws, beta_draws])
    counterfactual = counterfactual_design(design) @ full_beta
    estimate = _summarise(idata, design, spec, (coef_sd, intercept_sd, sigma_sd))
    on = design.treated
    return BayesItsResult(
        estimate=estimate,
        idata=idata,
        periods=tuple(period_label(x) for x in design.labels.to_numpy()[on]),
        observed=tuple(float(v) for v in y[on]),
        counterfactual_mean=tuple(float(v) for v in counterfactual.mean(axis=1)),
    )


def _summarise(idata: az.InferenceData, design, spec: BayesItsSpec,
               priors: tuple[float, float, float]) -> Estimate:
    names = ["intercept_centred", "beta_scaled", "sigma"] + (["rho"] if spec.ar1 else [])
    warn = []
    if design.n_excluded:
        warn.append(f"{design.n_excluded} period(s) without the outcome or a covariate were "
                    "excluded")
    post = design.time >= design.t0
    coef_sd, intercept_sd, sigma_sd = priors
    return summarise_draws(
        chain_draws(idata, "effect"), estimand=spec.estimand, analysis=spec.analysis,
        model="its_segmented", interval_level=spec.interval_level,
        probabilities=spec.probabilities, gate_result=apply_gate(idata, names, spec.gate),
        counts=({"pre": int((~post).sum()), "post": int(post.sum())}, int(design.y.size)),
        warnings_=warn,
        extra_diagnostics={"rho_mean": float(idata.posterior["rho"].mean())} if spec.ar1 else None,
        details={
            "effect": spec.effect,
            "horizon": spec.horizon,
            "seasonality": spec.seasonality,
            "covariates": list(spec.covariates),
            "controlled": bool(spec.comparison),
            "terms": list(design.X.columns),
            "ar1": spec.ar1,
            "prior": f"coefficients ~ Normal(0, {coef_sd:.4g}); centred intercept ~ "
                     f"Normal(mean(y), {intercept_sd:.4g}); residual SD ~ "
                     f"HalfNormal({sigma_sd:.4g})" + ("; rho ~ Uniform(-1, 1)"
                                                       if spec.ar1 else ""),
            "n_excluded": design.n_excluded,
            "seed": spec.sampler.seed,
        },
    )
