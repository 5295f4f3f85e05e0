"""Bayesian difference-in-differences (2x2 or TWFE) in PyMC, with the shared diagnostics gate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
from analysis.did import METHODS, arm_counts, check_frame, codes, covariate_matrix
from analysis.estimate import Estimate
from trials.errors import AnalysisError


@dataclass(frozen=True)
class DidPrior:
    """Normal priors on the outcome's scale; HalfNormal(sigma_sd) for the residual SD.

    ``fixed_effect_sd`` is the prior SD of each unit and period effect (zero-sum, so the
    intercept stays identified) and of the 2x2 group and period terms.
    """

    effect_mean: float = 0.0
    effect_sd: float = 10.0
    intercept_mean: float = 0.0
    intercept_sd: float = 30.0
    fixed_effect_sd: float = 10.0
    coef_sd: float = 10.0
    sigma_sd: float = 10.0


@dataclass(frozen=True)
class BayesDidSpec:
    estimand: str
    analysis: str
    method: str = "twfe"
    covariates: tuple[str, ...] = ()
    interval_level: float = 0.95
    prior: DidPrior = DidPrior()
    sampler: SamplerSettings = SamplerSettings()
    gate: DiagnosticsGate = DiagnosticsGate()
    probabilities: tuple[tuple[str, float], ...] = field(default=())


@dataclass(frozen=True)
class BayesDidResult:
    estimate: Estimate
    idata: az.InferenceData

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict()}


def fit_bayes_did(frame: pd.DataFrame, spec: BayesDidSpec) -> BayesDidResult:
    """Sample the posterior of a DiD regression and summarise the treatment effect.

    Parameters
    ----------
    frame
        Panel rows as for :func:`analysis.did.fit_did`; with ``weight`` (cell size) the rows are
        cell means.
    spec
        Model, priors, sampler settings and diagnostics gate.

    Notes
    -----
    ``twfe``: :math:`y_{it} \\sim N(\\mu + \\alpha_i + \\gamma_t + \\tau D_{it} + \\beta^\\top
    x_{it}, \\sigma / \\sqrt{w_{it}})` with zero-sum :math:`\\alpha, \\gamma \\sim N(0, s_{fe})`;
    ``two_by_two``: :math:`\\mu + a G_c + b P_c + \\tau G_c P_c + \\beta^\\top x` with
    :math:`G_c, P_c` the group and post indicators centred at their (weighted) means. A cell mean of
    :math:`w` patients has SD :math:`\\sigma/\\sqrt{w}`, so weighted cells give the same
    likelihood for :math:`\\tau` as the patients would. The errors are independent given the
    effects: unlike the cluster-robust frequentist fit, serial correlation within a unit is not
    modelled, so intervals can be too narrow when it is strong. Gate:
    :func:`analysis.bayes_gate.apply_gate`.
    """
    import pymc as pm

    name = spec.analysis
    if spec.method not in METHODS:
        raise AnalysisError(f"{name}: method must be one of {', '.join(METHODS)}")
    columns = ["unit", "period", "y", "treated", *spec.covariates]
    if "weight" in frame:
        columns.append("weight")
    data = check_frame(frame, list(dict.fromkeys(columns)), name)
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{name}: needs treated and untreated observations")
    y = data["y"].to_numpy(float)
    d = data["treated"].to_numpy(float)
    w = data["weight"].to_numpy(float) if "weight" in data else np.ones(len(data))
    cov = covariate_matrix(data, spec.covariates)
    Z = ((cov - cov.mean()) / cov.std(ddof=0).replace(0, 1.0)).to_numpy(float)
    scale = cov.std(ddof=0).replace(0, 1.0).to_numpy(float)
    p = spec.prior
    with pm.Model() as model:
        mu = pm.Normal("intercept", p.intercept_mean, p.intercept_sd)
        tau = pm.Normal("effect", p.effect_mean, p.effect_sd)
        if spec.method == "twfe":
            unit, period = codes(data["unit"]), codes(data["period"])
            a = pm.ZeroSumNormal("unit_effect", sigma=p.fixed_effect_sd, shape=int(unit.max()) + 1)
            g = pm.ZeroSumNormal("period_effect", sigma=p.fixed_effect_sd,
                                 shape=int(period.max()) + 1)
            mean = mu + a[unit] + g[period] + tau * d
        else:
            periods = np.sort(data["period"].unique())
            if len(periods) != 2:
                raise AnalysisError(f"{name}: two_by_two needs exactly two periods in 'period'")
            post = (data["period"] == periods[1]).to_numpy(float)
            group = data.groupby("unit")["treated"].transform("max").to_numpy(float)
            # Centred indicators decorrelate the intercept from the main effects; the
            # interaction coefficient is unchanged by centring.
            gc, pc = group - np.average(group, weights=w), post - np.average(post, weights=w)
            ab = pm.Normal("group_period", 0.0, p.fixed_effect_sd, shape=2)
            mean = mu + ab[0] * gc + ab[1] * pc + tau * gc * pc
        if Z.shape[1]:
            gamma = pm.Normal("beta_scaled", 0.0, p.coef_sd * scale, shape=Z.shape[1])
            pm.Deterministic("beta", gamma / scale)
            mean = mean + pm.math.dot(Z, gamma)
        sigma = pm.HalfNormal("sigma", p.sigma_sd)
        pm.Normal("y", mean, sigma / np.sqrt(w), observed=y)
    idata = run_sampler(model, spec.sampler)
    names = [v for v in ("intercept", "effect", "unit_effect", "period_effect", "group_period",
                         "beta_scaled", "sigma") if v in idata.posterior]
    n_dropped = len(frame) - len(data)
    warn = [f"{n_dropped} row(s) with a missing value were excluded"] if n_dropped else []
    estimate = summarise_draws(
        chain_draws(idata, "effect"), estimand=spec.estimand, analysis=spec.analysis,
        model="did_twfe" if spec.method == "twfe" else "did_2x2",
        interval_level=spec.interval_level, probabilities=spec.probabilities,
        gate_result=apply_gate(idata, names, spec.gate), counts=arm_counts(data),
        warnings_=warn,
        details={
            "method": spec.method,
            "prior": f"effect ~ Normal({p.effect_mean:g}, {p.effect_sd:g}); intercept ~ "
                     f"Normal({p.intercept_mean:g}, {p.intercept_sd:g}); fixed effects ~ "
                     f"ZeroSumNormal(0, {p.fixed_effect_sd:g}); coefficients ~ "
                     f"Normal(0, {p.coef_sd:g}); residual SD ~ HalfNormal({p.sigma_sd:g})",
            "n_excluded": n_dropped, "seed": spec.sampler.seed,
            "n_units": int(data["unit"].nunique()), "n_periods": int(data["period"].nunique()),
        },
    )
    return BayesDidResult(estimate, idata)
