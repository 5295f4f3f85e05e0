"""Bayesian logistic and count regression (PyMC) for a single-visit estimand.

Covariates are centred and scaled before sampling, with their priors rescaled to match, so the
model is exactly the one stated on the linear predictor's scale. The treatment indicator is
centred as well (the intercept is then the linear predictor of the average participant, nearly
uncorrelated with the effect, which NUTS samples better); the effect is unchanged by centring.
Summaries that are not model parameters (risk difference, risk ratio) come from posterior
g-computation: for every draw, the average predicted risk of all analysed participants as if all
were treated, and as if none were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

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

_SUMMARIES = ("risk_difference", "odds_ratio", "risk_ratio")
_FAMILIES = ("poisson", "negative_binomial")


@dataclass(frozen=True)
class BayesBinarySpec:
    """Logistic regression of a 0/1 ``y`` on ``treated`` and covariates.

    ``prior`` is on the log-odds scale (the effect prior is on the conditional log odds ratio).
    ``summary`` picks the reported scale; posterior ``probabilities`` are on that scale (for
    example ``(">", 0.0)`` for a risk difference, ``(">", 1.0)`` for a ratio).
    """

    estimand: str
    analysis: str
    prior: PriorSet
    covariates: tuple[str, ...] = ()
    summary: str = "risk_difference"
    interval_level: float = 0.95
    sampler: SamplerSettings = SamplerSettings()
    gate: DiagnosticsGate = DiagnosticsGate()
    probabilities: tuple[tuple[str, float], ...] = field(default=())


@dataclass(frozen=True)
class BayesCountSpec:
    """Poisson or negative binomial (NB2) regression of a count ``y`` with a log-exposure offset.

    ``prior`` is on the log-rate scale (the effect prior is on the log rate ratio); the reported
    estimate and ``probabilities`` are on the rate-ratio scale. ``dispersion_sd`` is the
    HalfNormal scale of the NB2 overdispersion :math:`\\phi` (variance :math:`\\mu + \\phi\\mu^2`,
    statsmodels' ``alpha``). ``exposure=None`` fits without an offset.
    """

    estimand: str
    analysis: str
    prior: PriorSet
    family: str = "poisson"
    exposure: str | None = "exposure"
    covariates: tuple[str, ...] = ()
    dispersion_sd: float = 2.0
    interval_level: float = 0.95
    sampler: SamplerSettings = SamplerSettings()
    gate: DiagnosticsGate = DiagnosticsGate()
    probabilities: tuple[tuple[str, float], ...] = field(default=())


def _complete(frame: pd.DataFrame, cols: list[str], analysis: str) -> tuple[pd.DataFrame, int]:
    for c in ["arm", *cols]:
        if c not in frame.columns:
            raise AnalysisError(f"{analysis}: column {c!r} is missing from the data")
    keep = frame[cols].notna().all(axis=1)
    data = frame.loc[keep].copy()
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{analysis}: needs participants with the outcome in both arms")
    return data, int((~keep).sum())


def _excluded(n: int) -> list[str]:
    return [f"{n} participant(s) without the outcome or a covariate were excluded "
            "(complete-case analysis)"] if n else []


def _linear_predictor(pm: Any, prior: PriorSet, t: np.ndarray, Z: np.ndarray,
                      scale: np.ndarray) -> Any:
    alpha = pm.Normal("intercept", 0.0, prior.intercept_sd)
    tau = pm.Normal("effect", prior.effect_mean, prior.effect_sd)
    eta = alpha + tau * t
    if Z.shape[1]:
        gamma = pm.Normal("beta_scaled", 0.0, prior.coef_sd * scale, shape=Z.shape[1])
        pm.Deterministic("beta", gamma / scale)
        eta = eta + pm.math.dot(Z, gamma)
    return eta


def _sampled(Z: np.ndarray, *extra: str) -> list[str]:
    return ["intercept", "effect", *(["beta_scaled"] if Z.shape[1] else []), *extra]


def fit_bayes_binary(frame: pd.DataFrame, spec: BayesBinarySpec) -> BayesResult:
    """Sample the logistic model and report the chosen summary of the treatment effect.

    Notes
    -----
    :math:`\\mathrm{logit}\\,P(y_i = 1) = \\alpha + \\tau (T_i - \\bar T) + \\gamma^\\top z_i`
    with centred, scaled covariates :math:`z_i`. For each draw :math:`s`,
    :math:`p_1^{(s)} = n^{-1}\\sum_i \\mathrm{expit}(\\alpha^{(s)} + \\tau^{(s)}(1 - \\bar T) +
    \\gamma^{(s)\\top} z_i)` and :math:`p_0^{(s)}` likewise with :math:`-\\tau^{(s)}\\bar T`; risk
    difference :math:`p_1 - p_0`, risk ratio :math:`p_1 / p_0` (marginal, by g-computation),
    odds ratio :math:`e^{\\tau}` (conditional on the covariates). ``tables["summaries"]`` holds
    all three.
    """
    import pymc as pm

    if spec.summary not in _SUMMARIES:
        raise AnalysisError(f"{spec.analysis}: summary must be one of {_SUMMARIES}, "
                            f"got {spec.summary!r}")
    data, n_dropped = _complete(frame, ["y", "treated", *spec.covariates], spec.analysis)
    y = data["y"].to_numpy(dtype=float)
    if not np.isin(y, (0.0, 1.0)).all():
        raise AnalysisError(f"{spec.analysis}: column 'y' must be 0/1 for a logistic model")
    t_bar = float(data["treated"].mean())
    t = data["treated"].to_numpy(dtype=float) - t_bar  # centred: see the module docstring
    Z, scale, names = covariate_matrix(data, spec.covariates)
    with pm.Model() as model:
        eta = _linear_predictor(pm, spec.prior, t, Z, scale)
        pm.Bernoulli("y", logit_p=eta, observed=y.astype(int))
    idata = run_sampler(model, spec.sampler)
    gate = apply_gate(idata, _sampled(Z), spec.gate)
    a = chain_draws(idata, "intercept")
    tau = chain_draws(idata, "effect")
    base = a[..., None] + (chain_draws(idata, "beta_scaled") @ Z.T if Z.shape[1] else 0.0)
    p1 = expit(base + (tau * (1 - t_bar))[..., None]).mean(axis=-1)
    p0 = expit(base - (tau * t_bar)[..., None]).mean(axis=-1)
    draws = {"risk_difference": p1 - p0, "odds_ratio": np.exp(tau), "risk_ratio": p1 / p0}
    tables = {"summaries": {k: brief(v, spec.interval_level) for k, v in draws.items()},
              "risk_comparator": brief(p0, spec.interval_level),
              "risk_experimental": brief(p1, spec.interval_level)}
    estimate = summarise_draws(
        draws[spec.summary], estimand=spec.estimand, analysis=spec.analysis, model="logistic",
        interval_level=spec.interval_level, probabilities=spec.probabilities, gate_result=gate,
        data=data, warnings_=_excluded(n_dropped),
        details={"summary": spec.summary, "scale": spec.summary, "prior": spec.prior.describe(),
                 "prior_scale": "log odds", "covariate_columns": names,
                 "n_excluded": n_dropped, "seed": spec.sampler.seed},
    )
    return BayesResult(estimate, idata, tables)


def fit_bayes_count(frame: pd.DataFrame, spec: BayesCountSpec) -> BayesResult:
    """Sample the Poisson or negative binomial model and report the rate ratio.

    Notes
    -----
    :math:`\\log \\mu_i = \\log E_i + \\alpha + \\tau (T_i - \\bar T) + \\gamma^\\top z_i`, with
    :math:`y_i \\sim \\mathrm{Poisson}(\\mu_i)` or NB2 with variance :math:`\\mu_i + \\phi\\mu_i^2`
    and :math:`\\phi \\sim HalfNormal(s_\\phi)`. The estimate is the posterior mean of
    :math:`e^{\\tau}`, the interval the equal-tailed quantiles of :math:`e^{\\tau}` (equal to the
    exponentiated quantiles of :math:`\\tau`).
    """
    import pymc as pm

    if spec.family not in _FAMILIES:
        raise AnalysisError(f"{spec.analysis}: family must be one of {_FAMILIES}, "
                            f"got {spec.family!r}")
    if not spec.dispersion_sd > 0:
        raise AnalysisError(f"{spec.analysis}: dispersion_sd must be positive")
    cols = ["y", "treated", *spec.covariates, *([spec.exposure] if spec.exposure else [])]
    data, n_dropped = _complete(frame, cols, spec.analysis)
    y = data["y"].to_numpy(dtype=float)
    if (y < 0).any() or not np.allclose(y, np.round(y)):
        raise AnalysisError(f"{spec.analysis}: column 'y' must hold non-negative whole counts")
    offset = np.zeros(len(data))
    if spec.exposure:
        exposure = data[spec.exposure].to_numpy(dtype=float)
        if not (exposure > 0).all():
            raise AnalysisError(f"{spec.analysis}: column {spec.exposure!r} must be positive")
        offset = np.log(exposure)
    t_bar = float(data["treated"].mean())
    t = data["treated"].to_numpy(dtype=float) - t_bar  # centred: see the module docstring
    Z, scale, names = covariate_matrix(data, spec.covariates)
    with pm.Model() as model:
        mu = pm.math.exp(offset + _linear_predictor(pm, spec.prior, t, Z, scale))
        if spec.family == "poisson":
            pm.Poisson("y", mu, observed=y.astype(int))
        else:
            phi = pm.HalfNormal("dispersion", spec.dispersion_sd)
            pm.NegativeBinomial("y", mu=mu, alpha=1.0 / phi, observed=y.astype(int))
    idata = run_sampler(model, spec.sampler)
    extra = ("dispersion",) if spec.family == "negative_binomial" else ()
    gate = apply_gate(idata, _sampled(Z, *extra), spec.gate)
    details: dict[str, Any] = {
        "family": spec.family, "scale": "rate_ratio", "prior": spec.prior.describe(),
        "prior_scale": "log rate ratio", "exposure": spec.exposure,
        "covariate_columns": names, "n_excluded": n_dropped, "seed": spec.sampler.seed}
    if extra:
        details["dispersion_posterior_mean"] = float(chain_draws(idata, "dispersion").mean())
        details["dispersion_prior"] = f"HalfNormal({spec.dispersion_sd:g})"
    estimate = summarise_draws(
        np.exp(chain_draws(idata, "effect")), estimand=spec.estimand, analysis=spec.analysis,
        model=spec.family, interval_level=spec.interval_level, probabilities=spec.probabilities,
        gate_result=gate, data=data, warnings_=_excluded(n_dropped), details=details,
    )
    log_rr = brief(chain_draws(idata, "effect"), spec.interval_level)
    return BayesResult(estimate, idata, {"log_rate_ratio": log_rr})

