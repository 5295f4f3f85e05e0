"""Bayesian interrupted time series (PyMC): the segmented regression of :mod:`analysis.its`.

The design matrix is the frequentist one (same terms, seasonality, comparison series and
covariates); the errors are Normal with an optional AR(1) correlation between consecutive
periods, which plays the part the Newey–West correction plays for least squares.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd

from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings
from analysis.estimate import Estimate, PosteriorProbability
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


def _prob(draws: np.ndarray, comparator: str, threshold: float) -> float:
    ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
    return float(np.mean(ops[comparator](draws, threshold)))


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
    s = spec.sampler
    with pm.Model():
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
        logging.getLogger("pymc").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = pm.sample(
                draws=s.draws, tune=s.tune, chains=s.chains,
                cores=max(1, min(s.chains, os.cpu_count() or 1)),
                target_accept=s.target_accept, random_seed=s.seed, progressbar=False,
                compute_convergence_checks=False,
            )
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
    draws = idata.posterior["effect"].to_numpy().ravel()
    names = ["intercept_centred", "beta_scaled", "sigma"] + (["rho"] if spec.ar1 else [])
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
    if design.n_excluded:
        warn.append(f"{design.n_excluded} period(s) without the outcome or a covariate were "
                    "excluded")
    tail = (1 - spec.interval_level) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail])
    probs = tuple(PosteriorProbability(c, float(th), _prob(draws, c, th))
                  for c, th in spec.probabilities)
    post = design.time >= design.t0
    coef_sd, intercept_sd, sigma_sd = priors
    diagnostics = {"max_rhat": rhat, "min_ess_bulk": ess_bulk, "min_ess_tail": ess_tail,
                   "divergences": divergences, "mcse_effect": mcse,
                   "draws": int(draws.size), "chains": spec.sampler.chains}
    if spec.ar1:
        diagnostics["rho_mean"] = float(idata.posterior["rho"].mean())
    return Estimate(
        estimand=spec.estimand,
        analysis=spec.analysis,
        engine="bayesian",
        model="its_segmented",
        estimate=float(draws.mean()),
        std_error=float(draws.std(ddof=1)),
        ci_lower=float(lo),
        ci_upper=float(hi),
        ci_level=spec.interval_level,
        posterior_probabilities=probs,
        n_analysed=int(design.y.size),
        n_by_arm={"pre": int((~post).sum()), "post": int(post.sum())},
        diagnostics=diagnostics,
        reliable=not failures,
        warnings=tuple(warn),
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
