"""Event study: TWFE with leads and lags of adoption and a joint pre-trend test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.did import (
    SMALL_SAMPLE,
    arm_counts,
    check_frame,
    codes,
    t_interval,
    within_fit,
)
from analysis.estimate import Estimate
from trials.errors import AnalysisError


@dataclass(frozen=True)
class EventStudySpec:
    """Leads ``-leads..-1`` and lags ``0..lags`` of adoption, ``reference`` omitted.

    Event times beyond the window are binned into the end points (``-leads`` and ``lags``).
    ``small_sample`` as in :class:`analysis.did.DidSpec`.
    """

    estimand: str
    analysis: str
    leads: int = 4
    lags: int = 4
    reference: int = -1
    cluster: str = "unit"
    interval_level: float = 0.95
    small_sample: str = "cluster"


@dataclass(frozen=True)
class EventCoefficient:
    event_time: int
    estimate: float
    std_error: float
    ci_lower: float
    ci_upper: float
    p_value: float


@dataclass(frozen=True)
class PretrendTest:
    """Joint Wald test that every lead coefficient is zero."""

    chi2: float
    df: int
    p_value: float
    f_stat: float
    f_df_denominator: int
    f_p_value: float


@dataclass(frozen=True)
class EventStudyResult:
    estimate: Estimate
    coefficients: tuple[EventCoefficient, ...]
    pretrend: PretrendTest | None

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(),
                "coefficients": [vars(c).copy() for c in self.coefficients],
                "pretrend": None if self.pretrend is None else vars(self.pretrend).copy()}


def adoption_period(data: pd.DataFrame) -> pd.Series:
    """Each row's unit adoption period: ``first_treated`` if given, else the first treated one."""
    if "first_treated" in data:
        return data["first_treated"]
    first = data.loc[data["treated"] == 1].groupby("unit")["period"].min()
    return data["unit"].map(first)


def event_time(data: pd.DataFrame) -> pd.Series:
    """Periods since adoption (NaN for never-treated units).

    Integer periods are differenced directly; other periods (dates) by their rank among the
    sorted distinct periods, which assumes equally spaced periods.
    """
    first = adoption_period(data)
    if pd.api.types.is_numeric_dtype(data["period"]):
        return data["period"].astype(float) - pd.to_numeric(first, errors="coerce").astype(float)
    order = {p: i for i, p in enumerate(np.sort(data["period"].unique()))}
    start = first.map(order)
    if (first.notna() & start.isna()).any():
        raise AnalysisError("event study: 'first_treated' holds a period not in 'period'")
    return data["period"].map(order).astype(float) - start.astype(float)


def fit_event_study(frame: pd.DataFrame, spec: EventStudySpec) -> EventStudyResult:
    """Fit a TWFE event study and test the pre-trends.

    Parameters
    ----------
    frame
        Panel rows as for :func:`analysis.did.fit_did`, with ``first_treated`` (adoption
        period, missing for never treated) or, failing that, ``treated`` switching on once.
    spec
        Window, reference period, clustering.

    Notes
    -----
    :math:`y_{it} = \\alpha_i + \\gamma_t + \\sum_{k \\ne r} \\beta_k 1\\{E_{it} = k\\} +
    \\varepsilon_{it}`, with :math:`E_{it}` the event time binned to
    ``[-leads, lags]`` and :math:`r` the reference. Never-treated units have every indicator 0.
    Cluster-robust covariance :math:`V` as in :func:`analysis.did.within_fit`.

    Pre-trend test: :math:`W = \\hat\\beta_L^\\top V_L^{-1} \\hat\\beta_L` over the leads
    :math:`L`, referred to :math:`\\chi^2_{|L|}`; also :math:`F = W/|L|` on
    :math:`(|L|, G-1)` degrees of freedom. The reported ``estimate`` is the simple average of
    the lag coefficients :math:`k = 0..\\text{lags}` (equal weight per event time, the last
    bin included) with SE :math:`\\sqrt{a^\\top V a}`. With heterogeneous effects across cohorts,
    leads and lags from TWFE can be contaminated (Sun & Abraham 2021); compare with
    :func:`analysis.staggered.fit_staggered`.
    """
    name = spec.analysis
    if spec.leads < 0 or spec.lags < 0:
        raise AnalysisError(f"{name}: leads and lags must be non-negative")
    if not -spec.leads <= spec.reference <= spec.lags:
        raise AnalysisError(f"{name}: reference {spec.reference} outside the event window")
    if spec.small_sample not in SMALL_SAMPLE:
        raise AnalysisError(f"{name}: small_sample must be one of {', '.join(SMALL_SAMPLE)}")
    columns = ["unit", "period", "y", "treated", spec.cluster]
    if "weight" in frame:
        columns.append("weight")
    data = check_frame(frame, list(dict.fromkeys(columns)), name)
    et = event_time(data).clip(-spec.leads, spec.lags)
    ks = [k for k in range(-spec.leads, spec.lags + 1) if k != spec.reference]
    if not ks:
        raise AnalysisError(f"{name}: the event window holds only the reference period")
    X = np.column_stack([(et == k).to_numpy(float) for k in ks])
    terms = [f"event_{k}" for k in ks]
    unit, period = codes(data["unit"]), codes(data["period"])
    weights = data["weight"].to_numpy(float) if "weight" in data else np.ones(len(data))
    fit = within_fit(data["y"].to_numpy(float), X, terms, factors=[unit, period],
                     weights=weights, clusters=data[spec.cluster].to_numpy(),
                     n_absorbed=int(unit.max() + 1 + period.max()),
                     small_sample=spec.small_sample, name=name)
    coefs = []
    for k, b, s in zip(ks, fit.params, fit.se(), strict=True):
        lo, hi, p = t_interval(float(b), float(s), fit.df, spec.interval_level)
        coefs.append(EventCoefficient(k, float(b), float(s), lo, hi, p))
    pre = [i for i, k in enumerate(ks) if k < 0]
    pretrend = None
    if pre:
        b, V = fit.params[pre], fit.vcov[np.ix_(pre, pre)]
        chi2 = float(b @ np.linalg.solve(V, b))
        q = len(pre)
        pretrend = PretrendTest(chi2, q, float(stats.chi2.sf(chi2, q)), chi2 / q, fit.df,
                                float(stats.f.sf(chi2 / q, q, fit.df)))
    post = np.array([k >= 0 for k in ks], float)
    if not post.any():
        raise AnalysisError(f"{name}: no post-adoption event times in the window")
    avg, se = fit.combination(post / post.sum())
    lo, hi, p = t_interval(avg, se, fit.df, spec.interval_level)
    n_by_arm, n_total = arm_counts(data)
    warnings = []
    if pretrend is not None and pretrend.p_value < 0.05:
        warnings.append(f"pre-trend test rejects parallel trends (p = {pretrend.p_value:.3g})")
    if fit.n_clusters < 30:
        warnings.append(f"only {fit.n_clusters} clusters: cluster-robust SEs may be too small")
    estimate = Estimate(
        estimand=spec.estimand, analysis=name, engine="frequentist", model="event_study",
        estimate=avg, std_error=se, ci_lower=lo, ci_upper=hi, ci_level=spec.interval_level,
        p_value=p, n_analysed=n_total, n_by_arm=n_by_arm,
        diagnostics={"n_clusters": fit.n_clusters, "df": fit.df,
                     "small_sample_factor": fit.factor,
                     "pretrend_p_value": None if pretrend is None else pretrend.p_value},
        warnings=tuple(warnings),
        details={"leads": spec.leads, "lags": spec.lags, "reference": spec.reference,
                 "binned_endpoints": True, "cluster": spec.cluster,
                 "small_sample": spec.small_sample,
                 "estimate_is": "mean of the lag coefficients 0..lags",
                 "n_units": int(data["unit"].nunique()),
                 "n_periods": int(data["period"].nunique())},
    )
    return EventStudyResult(estimate, tuple(coefs), pretrend)
