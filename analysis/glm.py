"""Generalised linear models for binary responders and event counts (statsmodels GLM).

Binary outcomes are summarised by marginal standardisation (g-computation) on the risk
difference and risk ratio scales, and by the conditional odds ratio; counts by the rate ratio
from a Poisson or negative binomial (NB2) log-linear model with an exposure offset.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import statsmodels.api as sm
from patsy import dmatrices
from scipy import optimize, stats
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    DomainWarning,
    HessianInversionWarning,
    IterationLimitWarning,
    PerfectSeparationWarning,
)

from analysis.ancova import model_formula
from analysis.estimate import Estimate
from analysis.proportions import risk_difference
from trials.errors import AnalysisError

T = TypeVar("T")

# Warnings that describe the fit (not a bug): turned into Estimate.warnings and reliable=False.
FIT_WARNINGS: tuple[type[Warning], ...] = (
    ConvergenceWarning, PerfectSeparationWarning, HessianInversionWarning, IterationLimitWarning,
    DomainWarning,
)
SUMMARIES = ("risk_difference", "risk_ratio", "odds_ratio")
COUNT_FAMILIES = ("poisson", "negative_binomial")


# ---------------------------------------------------------------------------- shared helpers
def capture_fit_warnings(fn: Callable[[], T]) -> tuple[T, list[str]]:
    """Run ``fn`` and return its value with the messages of the fit warnings it raised.

    Only the statsmodels fit-quality categories in :data:`FIT_WARNINGS` are captured; any other
    warning is re-issued unchanged so that it is not silently lost.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn()
    messages: list[str] = []
    for w in caught:
        if issubclass(w.category, FIT_WARNINGS):
            messages.append(f"{w.category.__name__}: {str(w.message).splitlines()[0]}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value, list(dict.fromkeys(messages))


def require_columns(frame: pd.DataFrame, columns: Sequence[str], analysis: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{analysis}: column {missing[0]!r} is missing from the data")


def complete(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, int]:
    keep = frame[list(columns)].notna().all(axis=1)
    return frame.loc[keep].copy(), int((~keep).sum())


def arm_counts(data: pd.DataFrame) -> dict[str, int]:
    if "arm" not in data.columns:
        return {str(k): int(v) for k, v in data.groupby("treated", sort=True).size().items()}
    return {str(k): int(v) for k, v in data.groupby("arm", sort=True).size().items()}


def z_value(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def check_level(level: float, analysis: str) -> None:
    if not 0 < level < 1:
        raise AnalysisError(f"{analysis}: interval_level must lie in (0, 1), got {level}")


def design(formula: str, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    y, x = dmatrices(formula, data, return_type="dataframe", NA_action="raise")
    return np.asarray(y).ravel(), np.asarray(x), list(x.columns)


def excluded_warning(n: int, what: str = "participant(s)") -> list[str]:
    if not n:
        return []
    return [f"{n} {what} without the outcome or a covariate were excluded (complete-case "
            "analysis)"]


# ---------------------------------------------------------------------------- binary
@dataclass(frozen=True)
class BinarySpec:
    """Logistic regression of a 0/1 responder outcome ``y`` on ``treated`` and covariates."""

    estimand: str
    analysis: str
    covariates: tuple[str, ...] = ()
    summary: str = "risk_difference"
    interval_level: float = 0.95


@dataclass(frozen=True)
class BinaryResult:
    """``estimate`` on the spec's summary scale; ``summaries`` holds all three scales."""

    estimate: Estimate
    summaries: dict[str, Estimate] = field(default_factory=dict)
    exact: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(),
                "summaries": {k: v.to_dict() for k, v in self.summaries.items()},
                "exact": self.exact}


def fit_binary(frame: pd.DataFrame, spec: BinarySpec) -> BinaryResult:
    """Logistic regression with marginal risk difference, risk ratio and odds ratio.

    Parameters
    ----------
    frame
        One row per participant: ``y`` (1 responder, 0 not), ``treated`` (1/0), ``arm`` and
        the covariates.
    spec
        What to fit; ``spec.summary`` picks the scale of ``result.estimate``.

    Notes
    -----
    :math:`\\operatorname{logit} P(Y_i = 1) = \\alpha + \\tau T_i + \\beta^\\top x_i`, fitted by
    maximum likelihood (IRLS). Marginal standardisation (g-computation) sets everyone's
    treatment to 1 and to 0: :math:`\\hat P_t = n^{-1}\\sum_i \\operatorname{expit}(\\hat\\eta_i
    (t))`, RD :math:`= \\hat P_1 - \\hat P_0`, RR :math:`= \\hat P_1 / \\hat P_0`. Standard
    errors by the delta method with the analytic gradient
    :math:`\\partial \\hat P_t / \\partial\\beta = n^{-1}\\sum_i \\hat p_i(t)(1-\\hat p_i(t))
    x_i(t)` and the model covariance of :math:`\\hat\\beta` (covariates treated as fixed, as
    ``emmeans::regrid`` and ``margins`` do). The RR interval is Wald on the log scale; the OR is
    :math:`e^{\\hat\\tau}` with a Wald interval. Ratio estimates and intervals are on the ratio
    scale and their ``std_error`` is on the log scale. With no covariates the result also
    carries Newcombe's hybrid score interval and Fisher's exact p for the crude difference.
    """
    check_level(spec.interval_level, spec.analysis)
    if spec.summary not in SUMMARIES:
        raise AnalysisError(f"{spec.analysis}: summary must be one of {SUMMARIES}, "
                            f"got {spec.summary!r}")
    require_columns(frame, ["y", "treated", *spec.covariates], spec.analysis)
    data, n_dropped = complete(frame, ["y", "treated", *spec.covariates])
    if not data["y"].isin([0, 1]).all():
        raise AnalysisError(f"{spec.analysis}: column 'y' must be 0/1 for a binary analysis")
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: needs participants with the outcome in both arms")
    formula = model_formula(data, spec.covariates)
    y, x, names = design(formula, data)
    try:
        fit, fit_warnings = capture_fit_warnings(
            lambda: sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-12, maxiter=100))
    except Exception as exc:
        raise AnalysisError(f"{spec.analysis}: logistic model failed ({exc})") from None
    j = names.index("treated")
    beta, cov = np.asarray(fit.params), np.asarray(fit.cov_params())
    x1, x0 = x.copy(), x.copy()
    x1[:, j], x0[:, j] = 1.0, 0.0
    p1, p0 = 1 / (1 + np.exp(-x1 @ beta)), 1 / (1 + np.exp(-x0 @ beta))
    m1, m0 = float(p1.mean()), float(p0.mean())
    g1 = (p1 * (1 - p1)) @ x1 / len(y)
    g0 = (p0 * (1 - p0)) @ x0 / len(y)
    z = z_value(spec.interval_level)
    warns = excluded_warning(n_dropped) + fit_warnings
    reliable = not fit_warnings and bool(fit.converged)
    common = dict(n_analysed=len(y), n_by_arm=arm_counts(data),
                  diagnostics={"converged": bool(fit.converged),
                               "iterations": int(fit.fit_history["iteration"]),
                               "deviance": float(fit.deviance)},
                  reliable=reliable, warnings=tuple(warns))
    base_details = {"formula": formula, "n_excluded": n_dropped,
                    "marginal_risk": {"treated": m1, "control": m0},
                    "standardisation": "g-computation over the analysed sample, delta-method SE"}

    def make(summary: str, est: float, se: float, lo: float, hi: float, p: float,
             extra: dict[str, Any]) -> Estimate:
        return Estimate(estimand=spec.estimand, analysis=spec.analysis, engine="frequentist",
                        model=f"logistic_glm_{summary}", estimate=est, std_error=se,
                        ci_lower=lo, ci_upper=hi, ci_level=spec.interval_level, p_value=p,
                        details={**base_details, "scale": summary, **extra}, **common)

    rd = m1 - m0
    se_rd = float(math.sqrt((g1 - g0) @ cov @ (g1 - g0)))
    m1, m0 = max(m1, 1e-300), max(m0, 1e-300)  # keep logs finite under separation
    log_rr = math.log(m1) - math.log(m0)
    grr = g1 / m1 - g0 / m0
    se_lrr = float(math.sqrt(grr @ cov @ grr))
    tau, se_tau = float(beta[j]), float(math.sqrt(cov[j, j]))
    ratio_note = {"std_error_scale": "log", "interval": "Wald on the log scale, exponentiated"}
    summaries = {
        "risk_difference": make("risk_difference", rd, se_rd, rd - z * se_rd, rd + z * se_rd,
                                _two_sided(rd / se_rd), {"std_error_scale": "risk_difference"}),
        "risk_ratio": make("risk_ratio", safe_exp(log_rr), se_lrr, safe_exp(log_rr - z * se_lrr),
                           safe_exp(log_rr + z * se_lrr), _two_sided(log_rr / se_lrr),
                           {**ratio_note, "log_estimate": log_rr}),
        "odds_ratio": make("odds_ratio", safe_exp(tau), se_tau, safe_exp(tau - z * se_tau),
                           safe_exp(tau + z * se_tau), _two_sided(tau / se_tau),
                           {**ratio_note, "log_estimate": tau}),
    }
    exact = None
    if not spec.covariates:
        x1n, n1 = int(data.loc[data["treated"] == 1, "y"].sum()), int((data["treated"] == 1).sum())
        x0n, n0 = int(data.loc[data["treated"] == 0, "y"].sum()), int((data["treated"] == 0).sum())
        nc = risk_difference(x1n, n1, x0n, n0, level=spec.interval_level,
                             estimand=spec.estimand, analysis=spec.analysis)
        exact = {"events": {"treated": x1n, "control": x0n}, "n": {"treated": n1, "control": n0},
                 "risk_difference": nc.estimate, "newcombe_lower": nc.ci_lower,
                 "newcombe_upper": nc.ci_upper, "fisher_p": nc.p_value}
    return BinaryResult(estimate=summaries[spec.summary], summaries=summaries, exact=exact)


def safe_exp(x: float) -> float:
    """exp that returns inf instead of raising (separated or degenerate fits)."""
    return math.exp(x) if x < 709 else math.inf


def _two_sided(z: float) -> float:
    return float(2 * stats.norm.sf(abs(z)))


# ---------------------------------------------------------------------------- counts
@dataclass(frozen=True)
class CountSpec:
    """Log-linear model of an event count ``y`` with an offset log(exposure)."""

    estimand: str
    analysis: str
    family: str = "poisson"
    covariates: tuple[str, ...] = ()
    exposure: str | None = "exposure"
    interval_level: float = 0.95


@dataclass(frozen=True)
class CountResult:
    """``estimate`` is the rate ratio; ``coefficients`` the log-scale table."""

    estimate: Estimate
    coefficients: tuple[dict[str, float], ...] = ()
    alpha: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(),
                "coefficients": [dict(c) for c in self.coefficients], "alpha": self.alpha}


def fit_count(frame: pd.DataFrame, spec: CountSpec) -> CountResult:
    """Poisson or negative binomial (NB2) regression; the treatment effect as a rate ratio.

    Parameters
    ----------
    frame
        One row per participant: ``y`` (count >= 0), ``treated``, ``arm``, covariates and the
        exposure column (time at risk, > 0) unless ``spec.exposure`` is None.
    spec
        What to fit.

    Notes
    -----
    :math:`\\log E(Y_i) = \\log t_i + \\alpha + \\tau T_i + \\beta^\\top x_i`. Poisson:
    :math:`\\operatorname{Var} Y = \\mu`; NB2: :math:`\\operatorname{Var} Y = \\mu +
    a\\mu^2` with :math:`a` (R's ``1/theta``) estimated by maximising the profile likelihood
    (the joint maximum likelihood ``MASS::glm.nb`` converges to). Standard errors are the GLM
    ones at the estimated :math:`a`, as ``glm.nb`` reports. The rate ratio :math:`e^{\\hat\\tau}`
    and its Wald interval are on the ratio scale; ``std_error`` is the SE of
    :math:`\\hat\\tau` (log scale).
    """
    check_level(spec.interval_level, spec.analysis)
    if spec.family not in COUNT_FAMILIES:
        raise AnalysisError(f"{spec.analysis}: family must be one of {COUNT_FAMILIES}, "
                            f"got {spec.family!r}")
    cols = ["y", "treated", *spec.covariates, *([spec.exposure] if spec.exposure else [])]
    require_columns(frame, cols, spec.analysis)
    data, n_dropped = complete(frame, cols)
    yv = data["y"].to_numpy(dtype=float)
    if (yv < 0).any() or not np.allclose(yv, np.round(yv)):
        raise AnalysisError(f"{spec.analysis}: column 'y' must hold non-negative whole counts")
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: needs participants with the outcome in both arms")
    offset = None
    if spec.exposure:
        t = data[spec.exposure].to_numpy(dtype=float)
        if (t <= 0).any():
            raise AnalysisError(f"{spec.analysis}: column {spec.exposure!r} must be > 0")
        offset = np.log(t)
    formula = model_formula(data, spec.covariates)
    y, x, names = design(formula, data)

    def glm(alpha: float | None):
        family = (sm.families.Poisson() if alpha is None
                  else sm.families.NegativeBinomial(alpha=alpha))
        return sm.GLM(y, x, family=family, offset=offset).fit(tol=1e-12, maxiter=100)

    def run():
        if spec.family == "poisson":
            return glm(None), None
        # Profile likelihood over log(a): beta is the IRLS fit at each a.
        res = optimize.minimize_scalar(lambda la: -glm(math.exp(la)).llf, bounds=(-12.0, 5.0),
                                       method="bounded", options={"xatol": 1e-10})
        return glm(math.exp(res.x)), math.exp(res.x)

    try:
        (fit, alpha), fit_warnings = capture_fit_warnings(run)
    except Exception as exc:
        raise AnalysisError(f"{spec.analysis}: count model failed ({exc})") from None
    warns = excluded_warning(n_dropped) + fit_warnings
    if alpha is not None and (alpha < 1e-5 or alpha > 100):
        warns.append(f"negative binomial dispersion at the edge of its range (a = {alpha:.3g})")
    j = names.index("treated")
    tau, se = float(fit.params[j]), float(fit.bse[j])
    z = z_value(spec.interval_level)
    pearson = float(fit.pearson_chi2 / fit.df_resid)
    coefs = tuple({"term": n, "estimate": float(b), "std_error": float(s), "z": float(b / s)}
                  for n, b, s in zip(names, fit.params, fit.bse, strict=True))
    est = Estimate(
        estimand=spec.estimand, analysis=spec.analysis, engine="frequentist",
        model=f"{spec.family}_glm", estimate=math.exp(tau), std_error=se,
        ci_lower=math.exp(tau - z * se), ci_upper=math.exp(tau + z * se),
        ci_level=spec.interval_level, p_value=_two_sided(tau / se), n_analysed=len(y),
        n_by_arm=arm_counts(data),
        diagnostics={"converged": bool(fit.converged), "deviance": float(fit.deviance),
                     "pearson_dispersion": pearson},
        reliable=not fit_warnings and bool(fit.converged), warnings=tuple(warns),
        details={"formula": formula, "n_excluded": n_dropped, "scale": "rate_ratio",
                 "std_error_scale": "log", "log_estimate": tau,
                 "offset": f"log({spec.exposure})" if spec.exposure else None,
                 "nb_alpha": alpha, "nb_theta": None if alpha is None else 1 / alpha,
                 "log_likelihood": float(fit.llf)},
    )
    return CountResult(estimate=est, coefficients=coefs, alpha=alpha)
