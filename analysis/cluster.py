"""Cluster-randomised and stepped-wedge trials: linear mixed model with a random cluster
intercept (REML) and small-sample degrees of freedom, or GEE with a bias-reduced sandwich.

The random-intercept REML fit is written here (closed-form cluster inverses, one-dimensional
profile likelihood) rather than taken from statsmodels ``MixedLM`` because the Satterthwaite
degrees of freedom and the profile-likelihood interval for the ICC need the REML criterion as
an explicit function of the variance components, and the coverage simulation needs speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from analysis.estimate import Estimate
from analysis.gee import GeeSpec, fit_gee
from analysis.glm import (
    arm_counts,
    check_level,
    complete,
    design,
    excluded_warning,
    require_columns,
)
from trials.errors import AnalysisError

DF_METHODS = ("between_within", "satterthwaite", "kenward_roger", "residual")
_GAMMA_MAX = 900.0  # search limit for sigma_b^2 / sigma^2 (ICC 0.9989)


@dataclass(frozen=True)
class ClusterSpec:
    """Cluster-randomised trial with an individual-level continuous outcome ``y``."""

    estimand: str
    analysis: str
    method: str = "mixed"
    covariates: tuple[str, ...] = ("baseline",)
    df: str = "between_within"
    interval_level: float = 0.95


@dataclass(frozen=True)
class SteppedWedgeSpec:
    """Hussey & Hughes (2007): ``y ~ treated + period (fixed) + covariates + (1 | cluster)``."""

    estimand: str
    analysis: str
    covariates: tuple[str, ...] = ()
    df: str = "between_within"
    interval_level: float = 0.95


@dataclass(frozen=True)
class ClusterResult:
    """``estimate``: treatment effect; ``icc``: intra-cluster correlation with its interval."""

    estimate: Estimate
    icc: dict[str, Any] = field(default_factory=dict)
    variance_components: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(), "icc": dict(self.icc),
                "variance_components": dict(self.variance_components)}


@dataclass(frozen=True)
class SteppedWedgeResult:
    """As :class:`ClusterResult`, plus the fixed period effects (versus the first period)."""

    estimate: Estimate
    icc: dict[str, Any] = field(default_factory=dict)
    variance_components: dict[str, float] = field(default_factory=dict)
    period_effects: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(), "icc": dict(self.icc),
                "variance_components": dict(self.variance_components),
                "period_effects": [dict(p) for p in self.period_effects]}


# ---------------------------------------------------------------------------- REML engine
class _RandomIntercept:
    """Sufficient statistics of y = X b + u_cluster + e for REML in gamma = s2_b / s2_e."""

    def __init__(self, y: np.ndarray, x: np.ndarray, cluster: np.ndarray) -> None:
        codes, inv = np.unique(cluster, return_inverse=True)
        self.n_i = np.bincount(inv).astype(float)
        self.m, (self.n, self.p) = len(codes), x.shape
        self.sx = np.zeros((self.m, self.p))
        np.add.at(self.sx, inv, x)
        self.sy = np.bincount(inv, weights=y)
        self.xtx, self.xty, self.yty = x.T @ x, x.T @ y, float(y @ y)
        self.x, self.inv = x, inv

    def gls(self, gamma: float) -> tuple[np.ndarray, np.ndarray, float]:
        """(K, beta, rss) with K = X'V^-1X * s2_e and rss = r'V^-1r * s2_e."""
        c = gamma / (1 + self.n_i * gamma)
        k = self.xtx - self.sx.T @ (c[:, None] * self.sx)
        xvy = self.xty - self.sx.T @ (c * self.sy)
        beta = np.linalg.solve(k, xvy)
        rss = self.yty - float((c * self.sy) @ self.sy) - float(beta @ xvy)
        return k, beta, rss

    def profiled(self, gamma: float) -> float:
        """REML deviance (-2 log restricted likelihood) with s2_e profiled out."""
        k, _, rss = self.gls(gamma)
        dof = self.n - self.p
        return (float(np.log1p(self.n_i * gamma).sum()) + float(np.linalg.slogdet(k)[1])
                + dof * (1 + math.log(2 * math.pi * rss / dof)))

    def fit(self) -> tuple[float, float]:
        """(gamma_hat, minimum profiled deviance); gamma searched on sqrt scale."""
        res = optimize.minimize_scalar(lambda s: self.profiled(s * s),
                                       bounds=(0.0, math.sqrt(_GAMMA_MAX)), method="bounded",
                                       options={"xatol": 1e-12})
        s, dev = float(res.x), float(res.fun)
        at_zero = self.profiled(0.0)
        if at_zero <= dev:
            return 0.0, at_zero
        return s * s, dev

    def cov_beta(self, s2b: float, s2e: float) -> np.ndarray:
        k, _, _ = self.gls(s2b / s2e)
        return s2e * np.linalg.inv(k)


def _icc_interval(model: _RandomIntercept, gamma: float, dev: float,
                  level: float) -> tuple[float, float | None]:
    """Profile REML likelihood interval for gamma, returned on the ICC scale."""
    crit = float(stats.chi2.ppf(level, 1))

    def excess(g: float) -> float:
        return model.profiled(g) - dev - crit

    lower = 0.0
    if gamma > 0 and excess(0.0) > 0:
        lower = optimize.brentq(excess, 0.0, gamma, xtol=1e-14, rtol=1e-12)
    hi, upper = max(gamma, 1e-3) * 2, None
    for _ in range(60):
        if excess(hi) > 0:
            upper = optimize.brentq(excess, gamma, hi, xtol=1e-14, rtol=1e-12)
            break
        hi *= 2
    return lower / (1 + lower), None if upper is None else upper / (1 + upper)


@dataclass(frozen=True)
class _SmallSample:
    satterthwaite_df: float
    kenward_roger_df: float
    kenward_roger_var: float


def _small_sample(model: _RandomIntercept, y: np.ndarray, s2b: float, s2e: float,
                  j: int) -> _SmallSample | None:
    """Satterthwaite (lmerTest) and Kenward-Roger (pbkrtest) quantities for coefficient j.

    Every matrix here is block diagonal with blocks :math:`a_k I + b_k J` (cluster k), so the
    traces and quadratic forms are computed without forming N x N matrices. With
    :math:`V_1 = ZZ^\\top`, :math:`V_2 = I`, :math:`\\Phi = (X^\\top V^{-1}X)^{-1}`,
    :math:`P_u = -X^\\top V^{-1}V_uV^{-1}X`, :math:`Q_{uv} = X^\\top V^{-1}V_uV^{-1}V_v
    V^{-1}X` and the REML projection :math:`P`: Satterthwaite uses the observed REML Hessian
    :math:`H_{uv} = -\\operatorname{tr}(PV_uPV_v) + 2y^\\top PV_uPV_vPy` and
    :math:`\\nu = 2\\Phi_{jj}^2/(g^\\top (2H^{-1}) g)`, :math:`g_u = -(\\Phi P_u\\Phi)_{jj}`;
    Kenward-Roger uses the expected information,
    :math:`W = 2[\\operatorname{tr}(PV_uPV_v)]^{-1}`,
    :math:`\\Phi_A = \\Phi + 2\\Phi\\{\\sum_{uv} W_{uv}(Q_{uv} - P_u\\Phi P_v)\\}\\Phi` and, for
    one coefficient, :math:`\\nu = 2\\Phi_{jj}^2 / (g^\\top W g)` (Kenward & Roger 1997 with
    q = 1, as ``pbkrtest::Lb_ddf``).
    """
    if s2b <= 0:
        return None
    n_i, inv, x = model.n_i, model.inv, model.x
    d = s2b / (s2e + n_i * s2b)
    w = (np.full(model.m, 1 / s2e), -d / s2e)           # V^-1
    vs = [(np.zeros(model.m), np.ones(model.m)), (np.ones(model.m), np.zeros(model.m))]

    def mul(*fs):
        a, b = fs[0]
        for f in fs[1:]:
            a, b = a * f[0], a * f[1] + b * f[0] + n_i * b * f[1]
        return a, b

    def tr(f):
        return float((n_i * (f[0] + f[1])).sum())

    def apply(f, v):
        return f[0][inv] * v + f[1][inv] * np.bincount(inv, weights=v, minlength=model.m)[inv]

    def xfx(f):
        return (x * f[0][inv][:, None]).T @ x + model.sx.T @ (f[1][:, None] * model.sx)

    phi = np.linalg.inv(xfx(w))
    g_mat = np.column_stack([apply(w, x[:, c]) for c in range(model.p)])   # V^-1 X
    py = apply(w, y) - g_mat @ (phi @ (g_mat.T @ y))                      # P y

    def p_apply(v):
        return apply(w, v) - g_mat @ (phi @ (g_mat.T @ v))

    pu = [-xfx(mul(w, vs[a], w)) for a in range(2)]
    grad = np.array([-(phi @ pu[a] @ phi)[j, j] for a in range(2)])
    trpp, hess, adj = np.zeros((2, 2)), np.zeros((2, 2)), []
    for a in range(2):
        for b in range(2):
            trpp[a, b] = (tr(mul(w, vs[a], w, vs[b])) - 2 * float(np.trace(
                phi @ xfx(mul(w, vs[a], w, vs[b], w)))) + float(np.trace(phi @ pu[a] @ phi
                                                                         @ pu[b])))
            quad = float(apply(vs[a], py) @ p_apply(apply(vs[b], py)))
            hess[a, b] = -trpp[a, b] + 2 * quad
            adj.append(((a, b), xfx(mul(w, vs[a], w, vs[b], w)) - pu[a] @ phi @ pu[b]))
    w_kr = 2 * np.linalg.inv(trpp)
    u = sum(w_kr[a, b] * m for (a, b), m in adj)
    var_adj = float((phi + 2 * phi @ u @ phi)[j, j])
    sat = float(2 * phi[j, j] ** 2 / (grad @ (2 * np.linalg.inv(hess)) @ grad))
    kr = float(2 * phi[j, j] ** 2 / (grad @ w_kr @ grad))
    return _SmallSample(sat, kr, var_adj)


def _between_within_df(x: np.ndarray, names: list[str], inv: np.ndarray, m: int) -> list[float]:
    """nlme's rule: cluster-level columns get m - (their number + intercept), others
    n - m - (number of within-cluster columns)."""
    n = len(inv)
    within = []
    for c in range(x.shape[1]):
        col = x[:, c]
        means = np.bincount(inv, weights=col) / np.bincount(inv)
        within.append(bool(np.any(np.abs(col - means[inv]) > 1e-12)))
    n_between = sum(1 for c, w in enumerate(within) if not w and names[c] != "Intercept")
    n_within = sum(within)
    return [float(n - m - n_within) if w else float(m - n_between - 1) for w in within]


def _mixed(data: pd.DataFrame, formula: str, spec, model_name: str, n_dropped: int):
    y, x, names = design(formula, data)
    model = _RandomIntercept(y, x, data["cluster"].to_numpy())
    if model.m < 3:
        raise AnalysisError(f"{spec.analysis}: needs at least 3 clusters, got {model.m}")
    gamma, dev = model.fit()
    _, beta, rss = model.gls(gamma)
    s2e = rss / (model.n - model.p)
    s2b = gamma * s2e
    cov = model.cov_beta(s2b, s2e)
    j = names.index("treated")
    warns = excluded_warning(n_dropped, "observation(s)")
    reliable = True
    if gamma == 0:
        warns.append("between-cluster variance estimated as zero (boundary fit)")
    elif gamma > 0.99 * _GAMMA_MAX:
        warns.append("between-cluster variance ratio at the search limit; fit not reliable")
        reliable = False
    if spec.df == "residual":
        dfs = [float(model.n - model.p)] * model.p
    elif spec.df == "between_within":
        dfs = _between_within_df(x, names, model.inv, model.m)
    else:
        small = _small_sample(model, y, s2b, s2e, j)
        dfs = _between_within_df(x, names, model.inv, model.m)
        if small is None:
            warns.append(f"{spec.df} df undefined at a zero cluster variance; between-within "
                         "df used")
        elif spec.df == "satterthwaite":
            dfs[j] = small.satterthwaite_df
        else:
            dfs[j] = small.kenward_roger_df
            cov = cov.copy()
            cov[j, j] = small.kenward_roger_var
    df = dfs[j]
    if df < 1:
        raise AnalysisError(f"{spec.analysis}: {df:g} degrees of freedom for the treatment "
                            "effect; too few clusters for this model")
    q = float(stats.t.ppf(0.5 + spec.interval_level / 2, df))
    se = float(math.sqrt(cov[j, j]))
    tau = float(beta[j])
    lo, hi = _icc_interval(model, gamma, dev, spec.interval_level)
    icc = {"estimate": gamma / (1 + gamma), "ci_lower": lo, "ci_upper": hi,
           "ci_level": spec.interval_level, "method": "profile REML likelihood"}
    vc = {"cluster_variance": float(s2b), "residual_variance": float(s2e),
          "reml_deviance": float(dev)}
    clusters_by_arm = None
    if data.groupby("cluster")["treated"].nunique().max() == 1:
        clusters_by_arm = {str(k): int(v) for k, v in
                           data.drop_duplicates("cluster").groupby("treated").size().items()}
    est = Estimate(
        estimand=spec.estimand, analysis=spec.analysis, engine="frequentist", model=model_name,
        estimate=tau, std_error=se, ci_lower=tau - q * se, ci_upper=tau + q * se,
        ci_level=spec.interval_level, p_value=float(2 * stats.t.sf(abs(tau / se), df)),
        n_analysed=model.n, n_by_arm=arm_counts(data),
        diagnostics={"df": float(df), "n_clusters": model.m, "icc": icc["estimate"],
                     "boundary": gamma == 0},
        reliable=reliable, warnings=tuple(warns),
        details={"formula": formula + " + (1 | cluster)", "n_excluded": n_dropped,
                 "df_method": spec.df, "estimation": "REML", "clusters_by_treated":
                 clusters_by_arm, "variance_components": vc},
    )
    # Other rows keep the model SE and between-within df (only the treatment row is adjusted).
    table = [{"term": n, "estimate": float(b), "std_error": float(math.sqrt(cov[i, i])),
              "df": float(dfs[i])} for i, (n, b) in enumerate(zip(names, beta, strict=True))]
    return est, icc, vc, table


def _terms(frame: pd.DataFrame, covariates: tuple[str, ...]) -> list[str]:
    out = []
    for c in covariates:
        out.append(f"Q('{c}')" if pd.api.types.is_numeric_dtype(frame[c]) else f"C(Q('{c}'))")
    return out


def _check(spec, frame: pd.DataFrame, extra: list[str]) -> tuple[pd.DataFrame, int]:
    check_level(spec.interval_level, spec.analysis)
    if spec.df not in DF_METHODS:
        raise AnalysisError(f"{spec.analysis}: df must be one of {DF_METHODS}, got {spec.df!r}")
    cols = ["y", "treated", "cluster", *extra, *spec.covariates]
    require_columns(frame, cols, spec.analysis)
    data, n_dropped = complete(frame, cols)
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: needs observations in both conditions")
    return data.sort_values("cluster", kind="mergesort"), n_dropped


def fit_cluster(frame: pd.DataFrame, spec: ClusterSpec) -> ClusterResult:
    """Treatment effect in a cluster-randomised trial.

    Parameters
    ----------
    frame
        One row per participant: ``y``, ``treated``, ``arm``, ``cluster`` and covariates.
    spec
        ``method='mixed'``: LMM :math:`y_{ik} = x_{ik}^\\top\\beta + \\tau T_k + u_k +
        \\varepsilon_{ik}`, :math:`u_k \\sim N(0,\\sigma_b^2)`, :math:`\\varepsilon \\sim
        N(0,\\sigma^2)`, by REML. ``method='gee'``: Gaussian GEE, exchangeable working
        correlation, Mancl-DeRouen bias-reduced sandwich with :math:`t_{K-p}` intervals.

    Notes
    -----
    Degrees of freedom for the t interval: ``between_within`` follows ``nlme::lme`` (a
    cluster-level term gets :math:`K - p_{between} - 1`, a term varying within clusters
    :math:`N - K - p_{within}`); ``satterthwaite`` follows ``lmerTest`` (:math:`2 V^2 /
    (g^\\top A g)`, :math:`g` the gradient of :math:`\\operatorname{Var}\\hat\\tau` in
    :math:`(\\sigma_b^2,\\sigma^2)`, :math:`A` twice the inverse observed REML Hessian);
    ``kenward_roger`` follows ``pbkrtest`` (adjusted variance :math:`\\Phi_A` for the SE, and
    the one-coefficient KR df with :math:`A` from the expected information); ``residual``
    is :math:`N - p`. ICC :math:`=\\sigma_b^2/(\\sigma_b^2+\\sigma^2)` with a profile REML
    likelihood interval (the likelihood-ratio set for :math:`\\gamma=\\sigma_b^2/\\sigma^2`,
    mapped by :math:`\\gamma/(1+\\gamma)`; lower limit 0 when the set reaches the boundary).
    """
    if spec.method not in ("mixed", "gee"):
        raise AnalysisError(f"{spec.analysis}: method must be 'mixed' or 'gee', "
                            f"got {spec.method!r}")
    data, n_dropped = _check(spec, frame, [])
    if spec.method == "gee":
        res = fit_gee(frame, GeeSpec(spec.estimand, spec.analysis, "gaussian", "exchangeable",
                                     "cluster", None, spec.covariates, "mancl_derouen",
                                     spec.interval_level))
        icc = {"estimate": res.working_correlation["alpha"][0], "ci_lower": None,
               "ci_upper": None, "ci_level": spec.interval_level,
               "method": "GEE exchangeable working correlation (moment estimator)"}
        return ClusterResult(res.estimate, icc, {"scale": res.working_correlation["scale"]})
    formula = "y ~ " + " + ".join(["treated", *_terms(data, spec.covariates)])
    est, icc, vc, _ = _mixed(data, formula, spec, "lmm_random_cluster_intercept", n_dropped)
    return ClusterResult(est, icc, vc)


def fit_stepped_wedge(frame: pd.DataFrame, spec: SteppedWedgeSpec) -> SteppedWedgeResult:
    """Hussey & Hughes model for a (cross-sectional) stepped-wedge trial.

    Parameters
    ----------
    frame
        One row per observation: ``y``, ``treated`` (1 when the cluster is in its intervention
        period), ``arm``, ``cluster``, ``period`` and covariates.
    spec
        What to fit.

    Notes
    -----
    :math:`y_{ijk} = \\mu + \\beta_j + \\theta X_{ij} + x^\\top\\delta + u_i +
    \\varepsilon_{ijk}` with fixed period effects :math:`\\beta_j` (first period the
    reference), a random cluster intercept and REML; degrees of freedom and ICC as in
    :func:`fit_cluster` (with ``between_within`` the treatment effect varies within clusters
    and gets :math:`N - K - p_{within}`).
    """
    data, n_dropped = _check(spec, frame, ["period"])
    if data["period"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: column 'period' needs at least 2 periods")
    terms = ["treated", "C(period)", *_terms(data, spec.covariates)]
    est, icc, vc, table = _mixed(data, "y ~ " + " + ".join(terms), spec,
                                 "stepped_wedge_hussey_hughes", n_dropped)
    q = {row["term"]: row for row in table}
    periods = []
    for name, row in q.items():
        if name.startswith("C(period)[T."):
            t = float(stats.t.ppf(0.5 + spec.interval_level / 2, row["df"]))
            periods.append({"period": name[len("C(period)[T."):-1], **row,
                            "ci_lower": row["estimate"] - t * row["std_error"],
                            "ci_upper": row["estimate"] + t * row["std_error"]})
    return SteppedWedgeResult(est, icc, vc, tuple(periods))
