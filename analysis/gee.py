"""Generalised estimating equations (Liang & Zeger) with small-sample sandwich corrections.

The estimating equations and the moment estimators of the scale and working correlation are
those of ``geepack::geeglm`` (Yan & Fine 2004), so results match it; the bias-reduced
(Mancl-DeRouen) and Kauermann-Carroll sandwiches are implemented here because statsmodels
offers only the former and neither matches geepack's working-correlation estimators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from analysis.ancova import model_formula
from analysis.estimate import Estimate
from analysis.glm import (
    arm_counts,
    check_level,
    complete,
    design,
    excluded_warning,
    require_columns,
)
from trials.errors import AnalysisError

FAMILIES = ("gaussian", "binomial", "poisson")
CORRELATIONS = ("independence", "exchangeable", "ar1", "unstructured")
SE_TYPES = ("robust", "mancl_derouen", "kauermann_carroll", "model")
_SCALE = {"gaussian": "difference", "binomial": "odds_ratio", "poisson": "rate_ratio"}


@dataclass(frozen=True)
class GeeSpec:
    """Marginal model for repeated or clustered outcomes ``y``."""

    estimand: str
    analysis: str
    family: str = "gaussian"
    correlation: str = "exchangeable"
    groups: str = "participant"
    time: str | None = "visit"
    covariates: tuple[str, ...] = ()
    se: str = "robust"
    interval_level: float = 0.95


@dataclass(frozen=True)
class GeeResult:
    """``estimate``: the treatment effect; ``coefficients`` on the linear-predictor scale."""

    estimate: Estimate
    coefficients: tuple[dict[str, float], ...]
    working_correlation: dict[str, Any] = field(default_factory=dict)
    std_errors: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(),
                "coefficients": [dict(c) for c in self.coefficients],
                "working_correlation": self.working_correlation,
                "std_errors": dict(self.std_errors)}


@dataclass(frozen=True)
class _Fit:
    beta: np.ndarray
    phi: float
    alpha: np.ndarray
    covs: dict[str, np.ndarray]
    converged: bool
    iterations: int
    n_levels: int


def _mean(family: str, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mu, dmu/deta and variance function at eta."""
    if family == "gaussian":
        return eta, np.ones_like(eta), np.ones_like(eta)
    if family == "binomial":
        mu = special.expit(eta)
        return mu, mu * (1 - mu), mu * (1 - mu)
    mu = np.exp(eta)
    return mu, mu, mu


def _corr(structure: str, alpha: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    n = len(t)
    if structure == "independence" or n == 1:
        return np.eye(n)
    if structure == "exchangeable":
        return (1 - alpha[0]) * np.eye(n) + alpha[0]
    if structure == "ar1":
        return alpha[0] ** np.abs(t[:, None] - t[None, :])
    full = np.eye(k)
    full[np.triu_indices(k, 1)] = alpha
    full = np.triu(full) + np.triu(full, 1).T
    return full[np.ix_(t, t)]


def _update_alpha(structure: str, r: list[np.ndarray], t: list[np.ndarray], phi: float, k: int,
                  alpha: np.ndarray) -> np.ndarray:
    """geepack's moment equations: mean pairwise products of standardised residuals."""
    if structure == "independence":
        return alpha
    if structure == "exchangeable":
        num = sum((ri.sum() ** 2 - (ri ** 2).sum()) / 2 for ri in r)
        pairs = sum(len(ri) * (len(ri) - 1) / 2 for ri in r)
        return np.array([num / pairs / phi])
    if structure == "unstructured":
        num, cnt = np.zeros((k, k)), np.zeros((k, k))
        for ri, ti in zip(r, t, strict=True):
            num[np.ix_(ti, ti)] += np.outer(ri, ri)
            cnt[np.ix_(ti, ti)] += 1
        iu = np.triu_indices(k, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = num[iu] / cnt[iu] / phi
        return np.where(cnt[iu] > 0, out, 0.0)
    # ar1: least squares of pairwise products on alpha^lag over all within-cluster pairs,
    # the fixed point of geepack's Gauss-Newton step for the correlation parameter.
    zs, lags = [], []
    for ri, ti in zip(r, t, strict=True):
        iu = np.triu_indices(len(ri), 1)
        zs.append(np.outer(ri, ri)[iu] / phi)
        lags.append(np.abs(ti[:, None] - ti[None, :])[iu])
    z, lag = np.concatenate(zs), np.concatenate(lags).astype(float)
    res = optimize.minimize_scalar(lambda a: float(((z - a ** lag) ** 2).sum()),
                                   bounds=(-0.999999, 0.999999), method="bounded",
                                   options={"xatol": 1e-13})
    return np.array([res.x])


def _solve(y: np.ndarray, x: np.ndarray, groups: np.ndarray, t: np.ndarray, family: str,
           structure: str, n_levels: int, tol: float = 1e-10, max_iter: int = 200) -> _Fit:
    idx = [np.flatnonzero(groups == g) for g in pd.unique(groups)]
    ys, xs, ts = [y[i] for i in idx], [x[i] for i in idx], [t[i] for i in idx]
    p = x.shape[1]
    n_alpha = {"independence": 0, "exchangeable": 1, "ar1": 1,
               "unstructured": n_levels * (n_levels - 1) // 2}[structure]
    alpha = np.zeros(n_alpha)
    beta = np.zeros(p)
    if family == "binomial":
        beta[0] = math.log((y.mean() + 1e-3) / (1 - y.mean() + 1e-3))
    elif family == "poisson":
        beta[0] = math.log(y.mean() + 1e-3)
    phi, converged, iterations = 1.0, False, 0

    def pieces(b):
        out = []
        for yi, xi in zip(ys, xs, strict=True):
            mu, dmu, v = _mean(family, xi @ b)
            sv = np.sqrt(v)
            out.append((dmu[:, None] * xi / sv[:, None], (yi - mu) / sv))
        return out

    for it in range(1, max_iter + 1):
        pc = pieces(beta)
        h, g = np.zeros((p, p)), np.zeros(p)
        for (d, e), ti in zip(pc, ts, strict=True):
            rinv = np.linalg.inv(_corr(structure, alpha, ti, n_levels))
            h += d.T @ rinv @ d
            g += d.T @ rinv @ e
        step = np.linalg.solve(h, g)
        beta = beta + step
        res = [e for _, e in pieces(beta)]
        phi = float((np.concatenate(res) ** 2).mean())
        new_alpha = _update_alpha(structure, res, ts, phi, n_levels, alpha)
        delta = max(float(np.abs(step).max()), float(np.abs(new_alpha - alpha).max(initial=0)))
        alpha = new_alpha
        iterations = it
        if delta < tol:
            converged = True
            break
    covs = _sandwiches(pieces(beta), ts, structure, alpha, n_levels, phi)
    return _Fit(beta, phi, alpha, covs, converged, iterations, n_levels)


def _inv_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v / np.sqrt(w)) @ v.T


def _sandwiches(pc, ts, structure, alpha, n_levels, phi) -> dict[str, np.ndarray]:
    p = pc[0][0].shape[1]
    rinvs = [np.linalg.inv(_corr(structure, alpha, ti, n_levels)) for ti in ts]
    b = sum(d.T @ ri @ d for (d, _), ri in zip(pc, rinvs, strict=True))
    binv = np.linalg.inv(b)
    meats = {k: np.zeros((p, p)) for k in ("robust", "mancl_derouen", "kauermann_carroll")}
    for (d, e), ti, rinv in zip(pc, ts, rinvs, strict=True):
        r = _corr(structure, alpha, ti, n_levels)
        u = d.T @ rinv @ e
        meats["robust"] += np.outer(u, u)
        lev = d @ binv @ d.T
        u = d.T @ np.linalg.solve(r - lev, e)
        meats["mancl_derouen"] += np.outer(u, u)
        rh = _inv_sqrt(r)
        hs = rh @ lev @ rh
        u = d.T @ rh @ _inv_sqrt(np.eye(len(e)) - hs) @ rh @ e
        meats["kauermann_carroll"] += np.outer(u, u)
    covs = {k: binv @ m @ binv for k, m in meats.items()}
    covs["model"] = phi * binv
    return covs


def fit_gee(frame: pd.DataFrame, spec: GeeSpec) -> GeeResult:
    """Fit a GEE and return the coefficient of ``treated`` as an :class:`Estimate`.

    Parameters
    ----------
    frame
        Long data: one row per observation with ``y``, ``treated``, ``arm``, the ``groups``
        column, the ``time`` column (needed for ``ar1`` and ``unstructured``) and covariates.
    spec
        What to fit.

    Notes
    -----
    Mean model :math:`g(\\mu_{ij}) = x_{ij}^\\top\\beta` (identity, logit, log links); working
    covariance :math:`V_i = \\phi A_i^{1/2} R_i(\\alpha) A_i^{1/2}`. With standardised
    :math:`\\tilde D_i = A_i^{-1/2} \\partial\\mu_i/\\partial\\beta` and residuals
    :math:`e_i = A_i^{-1/2}(y_i - \\mu_i)`, :math:`\\beta` solves
    :math:`\\sum_i \\tilde D_i^\\top R_i^{-1} e_i = 0` (Fisher scoring), alternating with
    geepack's moment estimators :math:`\\hat\\phi = N^{-1}\\sum e_{ij}^2` and, for the
    correlation, the mean of :math:`e_{ij}e_{ik}/\\hat\\phi` over all pairs (exchangeable), over
    clusters with both times (unstructured) or the least-squares fit of
    :math:`\\alpha^{|j-k|}` (ar1; lags count positions in the sorted time levels).

    With :math:`B = \\sum \\tilde D_i^\\top R_i^{-1}\\tilde D_i` the covariance is
    :math:`B^{-1} (\\sum u_i u_i^\\top) B^{-1}` with :math:`u_i = \\tilde D_i^\\top R_i^{-1}e_i`
    (robust), :math:`\\tilde D_i^\\top (R_i - \\tilde D_i B^{-1}\\tilde D_i^\\top)^{-1} e_i`
    (Mancl & DeRouen 2001), or :math:`\\tilde D_i^\\top R_i^{-1/2}(I - H_i)^{-1/2}R_i^{-1/2}e_i`
    with :math:`H_i = R_i^{-1/2}\\tilde D_i B^{-1}\\tilde D_i^\\top R_i^{-1/2}` (Kauermann &
    Carroll 2001; symmetric square roots); ``model`` is :math:`\\hat\\phi B^{-1}`. Intervals
    use the normal distribution for ``robust`` and ``model`` (as geepack) and
    :math:`t_{K-p}` (K clusters, p coefficients) for the two small-sample corrections. For
    the binomial and Poisson families the estimate and interval are exponentiated (odds ratio,
    rate ratio) and ``std_error`` stays on the log scale.
    """
    check_level(spec.interval_level, spec.analysis)
    for name, value, allowed in (("family", spec.family, FAMILIES),
                                 ("correlation", spec.correlation, CORRELATIONS),
                                 ("se", spec.se, SE_TYPES)):
        if value not in allowed:
            raise AnalysisError(f"{spec.analysis}: {name} must be one of {allowed}, got {value!r}")
    if spec.time is None and spec.correlation in ("ar1", "unstructured"):
        raise AnalysisError(f"{spec.analysis}: correlation {spec.correlation!r} needs a time "
                            "column (spec.time)")
    time_cols = [spec.time] if spec.time else []
    cols = ["y", "treated", spec.groups, *time_cols, *spec.covariates]
    require_columns(frame, cols, spec.analysis)
    data, n_dropped = complete(frame, cols)
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: needs observations in both arms")
    sort_cols = [spec.groups, *time_cols]
    data = data.sort_values(sort_cols, kind="mergesort")
    # Only ar1 and unstructured place observations in time; exchangeable and independence
    # accept repeated times in a group (e.g. several participants of a cluster per visit).
    if spec.correlation in ("ar1", "unstructured") and data.duplicated(sort_cols).any():
        raise AnalysisError(f"{spec.analysis}: column {spec.time!r} repeats within a "
                            f"{spec.groups!r} group")
    if spec.time:
        levels = np.sort(data[spec.time].unique())
        t = np.searchsorted(levels, data[spec.time].to_numpy())
    else:
        levels = np.array([0])
        t = data.groupby(spec.groups, sort=False).cumcount().to_numpy()
    formula = model_formula(data, spec.covariates)
    y, x, names = design(formula, data)
    if spec.family == "binomial" and not np.isin(y, (0, 1)).all():
        raise AnalysisError(f"{spec.analysis}: column 'y' must be 0/1 for the binomial family")
    if spec.family == "poisson" and (y < 0).any():
        raise AnalysisError(f"{spec.analysis}: column 'y' must be >= 0 for the poisson family")
    groups = data[spec.groups].to_numpy()
    try:
        with np.errstate(over="raise", invalid="raise"):
            fit = _solve(y, x, groups, t, spec.family, spec.correlation, len(levels))
    except (np.linalg.LinAlgError, FloatingPointError) as exc:
        raise AnalysisError(f"{spec.analysis}: GEE failed ({exc})") from None
    return _result(spec, fit, data, names, formula, n_dropped, levels)


def _result(spec, fit: _Fit, data, names, formula, n_dropped, levels) -> GeeResult:
    j = names.index("treated")
    k = int(data[spec.groups].nunique())
    p = len(names)
    ses = {key: float(math.sqrt(c[j, j])) for key, c in fit.covs.items()}
    se = ses[spec.se]
    small = spec.se in ("mancl_derouen", "kauermann_carroll")
    df = k - p if small else None
    if small and k - p < 1:
        raise AnalysisError(f"{spec.analysis}: {k} groups are too few for {p} coefficients")
    q = (stats.t.ppf(0.5 + spec.interval_level / 2, df) if small
         else stats.norm.ppf(0.5 + spec.interval_level / 2))
    tau = float(fit.beta[j])
    stat = tau / se
    p_value = float(2 * (stats.t.sf(abs(stat), df) if small else stats.norm.sf(abs(stat))))
    lo, hi = tau - q * se, tau + q * se
    ratio = spec.family != "gaussian"
    est, lo, hi = (math.exp(tau), math.exp(lo), math.exp(hi)) if ratio else (tau, lo, hi)
    warns = excluded_warning(n_dropped, "observation(s)")
    if not fit.converged:
        warns.append(f"GEE did not converge in {fit.iterations} iterations")
    if k < 40 and spec.se in ("robust", "model"):
        warns.append(f"only {k} groups: the robust sandwich is biased downwards; consider "
                     "se='mancl_derouen' or 'kauermann_carroll'")
    if spec.correlation != "independence" and np.any(np.abs(fit.alpha) >= 1):
        warns.append("working correlation estimate outside (-1, 1)")
    cov = fit.covs[spec.se]
    # Arms are counted in participants when the data identify them, else in groups.
    unit = "participant" if "participant" in data.columns else spec.groups
    coefs = tuple({"term": n, "estimate": float(b), "std_error": float(math.sqrt(cov[i, i]))}
                  for i, (n, b) in enumerate(zip(names, fit.beta, strict=True)))
    wc = {"structure": spec.correlation, "alpha": [float(a) for a in fit.alpha],
          "scale": fit.phi,
          "times": [v.item() if hasattr(v, "item") else v for v in levels] if spec.time else None}
    estimate = Estimate(
        estimand=spec.estimand, analysis=spec.analysis, engine="frequentist",
        model=f"gee_{spec.family}_{spec.correlation}", estimate=est, std_error=se,
        ci_lower=lo, ci_upper=hi, ci_level=spec.interval_level, p_value=p_value,
        n_analysed=len(data), n_by_arm=arm_counts(data.drop_duplicates(unit)),
        diagnostics={"converged": fit.converged, "iterations": fit.iterations, "n_groups": k},
        reliable=fit.converged, warnings=tuple(warns),
        details={"formula": formula, "n_excluded": n_dropped, "scale": _SCALE[spec.family],
                 "std_error_scale": "log" if ratio else "difference",
                 "log_estimate": tau if ratio else None, "se_type": spec.se,
                 "reference_distribution": f"t({df})" if small else "normal",
                 "std_errors_all": ses, "groups": spec.groups,
                 "n_by_arm_unit": unit},
    )
    return GeeResult(estimate=estimate, coefficients=coefs, working_correlation=wc,
                     std_errors=ses)
