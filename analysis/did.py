"""Difference-in-differences: the 2x2 comparison and two-way fixed effects (TWFE).

The fit is a weighted least-squares regression with unit and period effects absorbed by an exact
within transformation (weighted alternating projections), and cluster-robust standard errors.
It accepts patient-level rows (many rows per unit x period) or aggregated cell means with the
cell size as ``weight``; both give the same point estimate and, with the default small-sample
factor, the same standard error (see :func:`fit_did`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.estimate import Estimate
from trials.errors import AnalysisError

METHODS = ("two_by_two", "twfe")
SMALL_SAMPLE = ("cluster", "none", "hc1")


@dataclass(frozen=True)
class DidSpec:
    """Difference-in-differences of ``y`` on the unit-by-period treatment indicator ``treated``.

    ``small_sample`` is the factor applied to the cluster-robust covariance: ``"cluster"``
    G/(G-1) (the default; invariant to aggregating rows into cells), ``"none"`` 1, ``"hc1"``
    G/(G-1) x (N-1)/(N-K) with K counting every fixed-effect parameter.
    """

    estimand: str
    analysis: str
    method: str = "twfe"
    covariates: tuple[str, ...] = ()
    cluster: str = "unit"
    interval_level: float = 0.95
    small_sample: str = "cluster"


@dataclass(frozen=True)
class Coefficient:
    term: str
    estimate: float
    std_error: float
    ci_lower: float
    ci_upper: float
    p_value: float


@dataclass(frozen=True)
class DidResult:
    estimate: Estimate
    coefficients: tuple[Coefficient, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(),
                "coefficients": [vars(c).copy() for c in self.coefficients]}


@dataclass(frozen=True)
class WithinFit:
    """A weighted least-squares fit with absorbed factors and its cluster-robust covariance."""

    terms: tuple[str, ...]
    params: np.ndarray
    vcov: np.ndarray
    n_obs: int
    n_clusters: int
    n_params_total: int
    factor: float
    df: int  # degrees of freedom of the t reference distribution: clusters - 1
    iterations: int

    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    def combination(self, weights: np.ndarray) -> tuple[float, float]:
        """Estimate and standard error of ``weights @ params``."""
        return float(weights @ self.params), float(np.sqrt(weights @ self.vcov @ weights))


# ---------------------------------------------------------------------------- core
def demean(matrix: np.ndarray, factors: Sequence[np.ndarray], weights: np.ndarray,
           *, tol: float = 1e-13, max_iter: int = 10_000) -> tuple[np.ndarray, int]:
    """Weighted residuals of ``matrix`` on the dummies of all ``factors`` (alternating projections).

    Notes
    -----
    Each sweep subtracts the weighted mean within every level of each factor in turn; the limit
    is the projection off the span of all factor dummies (Frisch-Waugh-Lovell). A balanced
    two-way panel converges in one sweep; unbalanced ones in a few.
    """
    out = np.array(matrix, dtype=float, copy=True)
    if not factors:
        return out, 0
    sizes = [np.bincount(f, weights=weights) for f in factors]
    scale = max(float(np.abs(out).max(initial=0.0)), 1.0)
    for iteration in range(1, max_iter + 1):
        change = 0.0
        for codes, size in zip(factors, sizes, strict=True):
            for j in range(out.shape[1]):
                means = np.bincount(codes, weights=weights * out[:, j]) / size
                out[:, j] -= means[codes]
                change = max(change, float(np.abs(means).max(initial=0.0)))
        if len(factors) == 1 or change <= tol * scale:
            return out, iteration
    raise AnalysisError(f"fixed effects did not converge in {max_iter} sweeps")


def within_fit(y: np.ndarray, X: np.ndarray, terms: Sequence[str], *,
               factors: Sequence[np.ndarray], weights: np.ndarray, clusters: np.ndarray,
               n_absorbed: int, small_sample: str, name: str) -> WithinFit:
    """Weighted least squares after absorbing ``factors``, with cluster-robust covariance.

    Notes
    -----
    :math:`\\hat\\beta = (\\tilde X^\\top W \\tilde X)^{-1} \\tilde X^\\top W \\tilde y` with
    :math:`\\tilde{\\cdot}` the within transform. Covariance
    :math:`c\\,B^{-1}\\left(\\sum_g s_g s_g^\\top\\right)B^{-1}`,
    :math:`B = \\tilde X^\\top W \\tilde X`, :math:`s_g = \\sum_{i \\in g} w_i \\tilde x_i e_i`,
    and :math:`c` the small-sample factor. Because cell means weighted by cell counts give the
    same :math:`B` and :math:`s_g` as the rows they summarise, the fit with ``c = G/(G-1)`` is
    identical on patient-level rows and on unit x period cells.
    """
    if small_sample not in SMALL_SAMPLE:
        raise AnalysisError(f"{name}: small_sample must be one of {', '.join(SMALL_SAMPLE)}")
    data, iterations = demean(np.column_stack([y, X]), factors, weights)
    yt, Xt = data[:, 0], data[:, 1:]
    norms = np.sqrt((weights[:, None] * Xt**2).sum(axis=0))
    raw = np.sqrt((weights[:, None] * np.asarray(X, float) ** 2).sum(axis=0))
    absorbed = [t for t, a, b in zip(terms, norms, raw, strict=True) if a <= 1e-9 * max(b, 1.0)]
    if absorbed:
        raise AnalysisError(f"{name}: term(s) collinear with the fixed effects: "
                            f"{', '.join(absorbed)}")
    Xw = Xt * weights[:, None]
    bread = Xw.T @ Xt
    if np.linalg.matrix_rank(bread) < bread.shape[0]:
        raise AnalysisError(f"{name}: regressors are collinear ({', '.join(terms)})")
    inv = np.linalg.inv(bread)
    params = inv @ (Xw.T @ yt)
    resid = yt - Xt @ params
    _, cluster_codes = np.unique(clusters, return_inverse=True)
    n_clusters = int(cluster_codes.max()) + 1
    if n_clusters < 2:
        raise AnalysisError(f"{name}: needs at least two clusters")
    scores = np.zeros((n_clusters, Xt.shape[1]))
    np.add.at(scores, cluster_codes, Xw * resid[:, None])
    n_obs = len(y)
    k_total = Xt.shape[1] + n_absorbed
    factor = {"cluster": n_clusters / (n_clusters - 1), "none": 1.0,
              "hc1": n_clusters / (n_clusters - 1) * (n_obs - 1) / (n_obs - k_total)}[small_sample]
    vcov = factor * inv @ (scores.T @ scores) @ inv
    return WithinFit(tuple(terms), params, vcov, n_obs, n_clusters, k_total, float(factor),
                     n_clusters - 1, iterations)


def codes(values: pd.Series) -> np.ndarray:
    return pd.factorize(values, sort=True)[0].astype(np.int64)


def check_frame(frame: pd.DataFrame, columns: Sequence[str], name: str,
                binary: bool = True) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{name}: panel has no column {missing[0]!r}")
    data = frame.loc[frame[list(columns)].notna().all(axis=1)].copy()
    if data.empty:
        raise AnalysisError(f"{name}: no complete rows in columns {', '.join(columns)}")
    if binary and not set(np.unique(data["treated"])) <= {0, 1}:
        raise AnalysisError(f"{name}: column 'treated' must be 0/1")
    if "weight" in data and (data["weight"] <= 0).any():
        raise AnalysisError(f"{name}: column 'weight' must be positive")
    return data


def covariate_matrix(data: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Numeric covariates linearly; others as treatment-coded dummies (first sorted level)."""
    parts = []
    for c in covariates:
        if pd.api.types.is_numeric_dtype(data[c]):
            parts.append(data[[c]].astype(float))
        else:
            dummies = pd.get_dummies(data[c].astype(str), prefix=c, drop_first=True, dtype=float)
            parts.append(dummies)
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=data.index)


def t_interval(estimate: float, se: float, df: int, level: float) -> tuple[float, float, float]:
    q = stats.t.ppf(0.5 + level / 2, df)
    p = 2 * stats.t.sf(abs(estimate / se), df) if se > 0 else float("nan")
    return float(estimate - q * se), float(estimate + q * se), float(p)


def arm_counts(data: pd.DataFrame) -> tuple[dict[str, int], int]:
    w = data["weight"] if "weight" in data else pd.Series(1.0, index=data.index)
    if not set(np.unique(data["treated"])) <= {0, 1}:
        return {}, int(round(float(w.sum())))
    by = w.groupby(data["treated"].astype(int)).sum()
    counts = {"control": int(round(by.get(0, 0.0))), "treated": int(round(by.get(1, 0.0)))}
    return counts, int(round(float(w.sum())))


# ---------------------------------------------------------------------------- public
def fit_did(frame: pd.DataFrame, spec: DidSpec) -> DidResult:
    """Fit a difference-in-differences and return the treatment effect.

    Parameters
    ----------
    frame
        One row per observation with ``unit``, ``period``, ``y``, ``treated`` (1 when the unit
        is treated in that period; for ``twfe`` it may also be a continuous dose, as the beer
        tax in Stock & Watson's fatality regressions), optional ``weight`` (cell size for
        aggregated cells), the ``spec.cluster`` column and the covariates. Rows with a
        missing value are dropped.
    spec
        What to fit.

    Notes
    -----
    ``twfe``: :math:`y_{it} = \\alpha_i + \\gamma_t + \\tau D_{it} + \\beta^\\top x_{it} +
    \\varepsilon_{it}`, by weighted least squares with unit and period effects absorbed.
    ``two_by_two``: exactly two periods; :math:`y = \\mu + a\\,G + b\\,P + \\tau\\,G P +
    \\beta^\\top x + \\varepsilon`, with :math:`G` = the unit is treated in the second period
    and :math:`P` = second period; nobody may be treated in the first. It needs no unit effects,
    so it also suits repeated cross-sections.

    Standard errors are cluster-robust by ``spec.cluster`` (default the unit), times
    ``spec.small_sample``'s factor: ``cluster`` = G/(G-1) equals R's
    ``sandwich::vcovCL(type = "HC0", cadjust = TRUE)`` on ``lm`` with unit and period dummies;
    ``hc1`` equals ``vcovCL(type = "HC1")``; ``none`` equals ``plm::vcovHC(method =
    "arellano", type = "HC0")``. Intervals and p-values use Student t on G - 1 degrees of
    freedom. TWFE is biased when effects differ across adoption cohorts or over time since
    adoption (Goodman-Bacon 2021); use :func:`analysis.staggered.fit_staggered` there.
    """
    name = spec.analysis
    if spec.method not in METHODS:
        raise AnalysisError(f"{name}: method must be one of {', '.join(METHODS)}")
    columns = ["unit", "period", "y", "treated", spec.cluster, *spec.covariates]
    if "weight" in frame:
        columns.append("weight")
    data = check_frame(frame, list(dict.fromkeys(columns)), name,
                       binary=spec.method == "two_by_two")
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{name}: needs treated and untreated observations")
    weights = (data["weight"].to_numpy(float) if "weight" in data
               else np.ones(len(data)))
    cov = covariate_matrix(data, spec.covariates)
    y = data["y"].to_numpy(float)
    if spec.method == "twfe":
        unit, period = codes(data["unit"]), codes(data["period"])
        X = np.column_stack([data["treated"].to_numpy(float), cov.to_numpy(float)])
        terms = ["treated", *cov.columns]
        factors = [unit, period]
        n_absorbed = int(unit.max() + 1 + period.max())
        model = "did_twfe"
    else:
        periods = np.sort(data["period"].unique())
        if len(periods) != 2:
            raise AnalysisError(f"{name}: two_by_two needs exactly two periods in 'period'")
        post = (data["period"] == periods[1]).to_numpy(float)
        if data.loc[post == 0, "treated"].any():
            raise AnalysisError(f"{name}: 'treated' is 1 in the first period")
        group = data.groupby("unit")["treated"].transform("max").to_numpy(float)
        X = np.column_stack([np.ones(len(data)), group, post, group * post,
                             cov.to_numpy(float)])
        terms = ["intercept", "group", "post", "treated", *cov.columns]
        factors, n_absorbed, model = [], 0, "did_2x2"
    fit = within_fit(y, X, terms, factors=factors, weights=weights,
                     clusters=data[spec.cluster].to_numpy(), n_absorbed=n_absorbed,
                     small_sample=spec.small_sample, name=name)
    coefs = []
    for term, b, s in zip(fit.terms, fit.params, fit.se(), strict=True):
        lo, hi, p = t_interval(float(b), float(s), fit.df, spec.interval_level)
        coefs.append(Coefficient(term, float(b), float(s), lo, hi, p))
    main = next(c for c in coefs if c.term == "treated")
    n_by_arm, n_total = arm_counts(data)
    warnings = []
    n_dropped = len(frame) - len(data)
    if n_dropped:
        warnings.append(f"{n_dropped} row(s) with a missing value were excluded")
    if fit.n_clusters < 30:
        warnings.append(f"only {fit.n_clusters} clusters: cluster-robust SEs may be too small")
    estimate = Estimate(
        estimand=spec.estimand, analysis=name, engine="frequentist", model=model,
        estimate=main.estimate, std_error=main.std_error, ci_lower=main.ci_lower,
        ci_upper=main.ci_upper, ci_level=spec.interval_level, p_value=main.p_value,
        n_analysed=n_total, n_by_arm=n_by_arm,
        diagnostics={"n_clusters": fit.n_clusters, "df": fit.df,
                     "small_sample_factor": fit.factor, "fe_sweeps": fit.iterations},
        warnings=tuple(warnings),
        details={"method": spec.method, "cluster": spec.cluster,
                 "small_sample": spec.small_sample, "n_rows": fit.n_obs,
                 "n_units": int(data["unit"].nunique()),
                 "n_periods": int(data["period"].nunique()),
                 "n_params_with_fixed_effects": fit.n_params_total,
                 "covariates": list(cov.columns), "n_excluded": n_dropped},
    )
    return DidResult(estimate, tuple(coefs))
