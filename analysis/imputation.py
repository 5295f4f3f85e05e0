"""Multiple imputation by chained equations (MICE) and the pooled ANCOVA on the imputed data.

The samplers follow ``mice`` (van Buuren & Groothuis-Oudshoorn 2011): ``norm`` is the Bayesian
linear-regression draw of Rubin (1987, p. 167) and ``pmm`` is predictive mean matching with the
same draw, type-1 matching and five donors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimate import Estimate
from analysis.pooling import Pooled, pool
from trials.errors import AnalysisError

_METHODS = ("pmm", "norm")
_DONORS = 5
_RIDGE = 1e-5  # mice's default ridge, used only when the predictors are (nearly) collinear


@dataclass(frozen=True)
class ImputationSpec:
    """How to impute and which ANCOVA to fit on each completed data set.

    ``auxiliary`` columns enter the imputation models only (for example intermediate-visit
    scores that predict both the outcome and dropout); ``covariates`` enter both the imputation
    and the analysis model. With ``by_arm`` the imputation models are fitted within each arm, so
    that every treatment-by-covariate interaction is kept.
    """

    estimand: str
    analysis: str
    m: int = 20
    iterations: int = 10
    method: str = "pmm"
    auxiliary: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ("baseline",)
    by_arm: bool = True
    seed: int = 0
    interval_level: float = 0.95


@dataclass(frozen=True)
class MiResult:
    """The pooled treatment effect and the per-imputation fits behind it."""

    estimate: Estimate
    pooled: Pooled
    per_imputation: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.to_dict(),
            "pooled": self.pooled.to_dict(),
            "per_imputation": [{"estimate": e, "std_error": s} for e, s in self.per_imputation],
        }


# ---------------------------------------------------------------------------- validation
def _check(frame: pd.DataFrame, spec: ImputationSpec) -> list[str]:
    if spec.method not in _METHODS:
        raise AnalysisError(f"{spec.analysis}: imputation method must be one of {_METHODS}, "
                            f"got {spec.method!r}")
    if spec.m < 2:
        raise AnalysisError(f"{spec.analysis}: m (imputations) must be >= 2, got {spec.m}")
    if spec.iterations < 1:
        raise AnalysisError(f"{spec.analysis}: iterations must be >= 1, got {spec.iterations}")
    if not 0 < spec.interval_level < 1:
        raise AnalysisError(f"{spec.analysis}: interval_level must be in (0, 1)")
    columns = list(dict.fromkeys(["y", *spec.covariates, *spec.auxiliary]))
    for c in ["treated", *columns]:
        if c not in frame.columns:
            raise AnalysisError(f"{spec.analysis}: column {c!r} is missing from the data")
    if frame["treated"].isna().any() or not frame["treated"].isin([0, 1]).all():
        raise AnalysisError(f"{spec.analysis}: column 'treated' must be 0/1 with no missing value")
    if frame["treated"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: column 'treated' needs both arms")
    for c in columns:
        numeric = pd.api.types.is_numeric_dtype(frame[c])
        if not numeric and frame[c].isna().any():
            raise AnalysisError(f"{spec.analysis}: categorical column {c!r} has missing values; "
                                "only numeric columns are imputed")
    return columns


def _numeric_block(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Numeric columns as they are, categorical ones as treatment-coded dummies."""
    blocks, names = [], []
    for c in columns:
        if pd.api.types.is_numeric_dtype(frame[c]):
            blocks.append(frame[c].to_numpy(dtype=float)[:, None])
            names.append(c)
        else:
            levels = sorted(frame[c].astype(str).unique())
            values = frame[c].astype(str).to_numpy()
            for lev in levels[1:]:
                blocks.append((values == lev).astype(float)[:, None])
                names.append(f"{c}[{lev}]")
    if not blocks:
        return np.empty((len(frame), 0)), names
    return np.hstack(blocks), names


# ---------------------------------------------------------------------------- samplers
def _regression_draw(x: np.ndarray, y: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares coefficients and one posterior draw ``(beta_hat, beta_star, sigma_star)``.

    The draw is Rubin's (1987, p. 167), as ``mice``'s ``.norm.draw``.
    """
    n, p = x.shape
    df = max(n - p, 1)
    q, r_mat = np.linalg.qr(x)
    diag = np.abs(np.diag(r_mat))
    if n >= p and diag.min() > 1e-8 * max(diag.max(), 1.0):
        # p is small, so the explicit inverse of R is cheaper than triangular solves.
        r_inv = np.linalg.inv(r_mat)
        coef = r_inv @ (q.T @ y)
        resid = y - x @ coef
        sigma = float(np.sqrt(resid @ resid / rng.chisquare(df)))
        # R^{-1} z has covariance R^{-1} R^{-T} = (X'X)^{-1}.
        beta = coef + r_inv @ rng.standard_normal(p) * sigma
        return coef, beta, sigma
    # Collinear predictors: mice's ridge fallback (estimice with ls.meth = "ridge").
    xtx = x.T @ x
    v = np.linalg.inv(xtx + np.diag(_RIDGE * np.diag(xtx)))
    coef = v @ (x.T @ y)
    resid = y - x @ coef
    sigma = float(np.sqrt(resid @ resid / rng.chisquare(df)))
    chol = np.linalg.cholesky((v + v.T) / 2)
    beta = coef + chol @ rng.standard_normal(p) * sigma
    return coef, beta, sigma


def _draw(method: str, x_obs: np.ndarray, y_obs: np.ndarray, x_mis: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    coef, beta, sigma = _regression_draw(x_obs, y_obs, rng)
    if method == "norm":
        return x_mis @ beta + rng.standard_normal(x_mis.shape[0]) * sigma
    # Type-1 matching: observed cases predicted with beta_hat, missing ones with the draw.
    yhat_obs = x_obs @ coef
    yhat_mis = x_mis @ beta
    k = min(_DONORS, y_obs.size)
    # A random order of donors breaks ties between equal predictions at random.
    order = rng.permutation(y_obs.size)
    dist = np.abs(yhat_mis[:, None] - yhat_obs[order][None, :])
    nearest = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < y_obs.size else \
        np.tile(np.arange(y_obs.size), (yhat_mis.size, 1))
    pick = nearest[np.arange(yhat_mis.size), rng.integers(0, k, size=yhat_mis.size)]
    return y_obs[order][pick]


def _chained(data: np.ndarray, fixed: np.ndarray, incomplete: list[int], method: str,
             iterations: int, rng: np.random.Generator, label: str) -> np.ndarray:
    """One run of the chained equations on one group; returns the completed ``data``."""
    data = data.copy()
    miss = np.isnan(data)
    for j in incomplete:
        obs = data[~miss[:, j], j]
        if obs.size < 2:
            raise AnalysisError(f"{label}: column has fewer than 2 observed values to impute from")
        data[miss[:, j], j] = rng.choice(obs, size=int(miss[:, j].sum()), replace=True)
    # With one incomplete column its model has only complete predictors: one sweep is exact.
    sweeps = iterations if len(incomplete) > 1 else 1
    n = data.shape[0]
    for _ in range(sweeps):
        for j in incomplete:
            others = np.delete(data, j, axis=1)
            x = np.hstack([np.ones((n, 1)), fixed, others])
            mj = miss[:, j]
            x_obs = x[~mj]
            # Predictors constant among the observed rows carry no information and make the
            # least-squares problem singular; mice removes them too.
            keep = np.ones(x.shape[1], dtype=bool)
            keep[1:] = np.ptp(x_obs[:, 1:], axis=0) > 0
            data[mj, j] = _draw(method, x_obs[:, keep], data[~mj, j], x[mj][:, keep], rng)
    return data


# ---------------------------------------------------------------------------- public API
def impute(frame: pd.DataFrame, spec: ImputationSpec) -> list[pd.DataFrame]:
    """Return ``spec.m`` completed copies of ``frame`` (the caller's frame is not modified).

    Parameters
    ----------
    frame
        One row per participant: ``treated`` (1/0), ``y`` (NaN if missing), the covariates and
        the auxiliary columns. Numeric columns among ``y``, covariates and auxiliaries are
        imputed; categorical ones must be complete and enter the models as dummies.
    spec
        Imputation settings; the same ``seed`` gives identical copies, and copy ``j`` does not
        depend on ``m``.

    Notes
    -----
    Each incomplete column :math:`Y_c` is in turn regressed on all other imputation columns
    (and on ``treated`` unless ``by_arm``), cycling ``iterations`` times after filling the holes
    with random observed values. ``norm`` draws :math:`\\sigma_*^2 = \\hat e^\\top\\hat e /
    \\chi^2_{n_{obs}-p}` and :math:`\\beta_* \\sim N(\\hat\\beta, \\sigma_*^2 (X^\\top X)^{-1})`
    and imputes :math:`x^\\top\\beta_* + \\sigma_* z`; ``pmm`` matches
    :math:`x_{mis}^\\top\\beta_*` to the observed :math:`x_{obs}^\\top\\hat\\beta` and takes the
    observed value of one of the 5 nearest donors at random.
    """
    columns = _check(frame, spec)
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in columns if c not in numeric]
    incomplete = [i for i, c in enumerate(numeric) if frame[c].isna().any()]
    if "participant" in frame.columns:
        order = np.argsort(frame["participant"].to_numpy(), kind="stable")
    else:
        order = np.arange(len(frame))
    work = frame.iloc[order]
    values = work[numeric].to_numpy(dtype=float)
    fixed_all, _ = _numeric_block(work, categorical)
    treated = work["treated"].to_numpy(dtype=int)
    if spec.by_arm:
        groups = [np.flatnonzero(treated == t) for t in (0, 1)]
    else:
        groups = [np.arange(len(work))]
        fixed_all = np.hstack([treated[:, None].astype(float), fixed_all])
    completed = []
    for child in np.random.SeedSequence(spec.seed).spawn(spec.m):
        rng = np.random.default_rng(child)
        filled = values.copy()
        for g in groups:
            block = values[g]
            cols = [j for j in incomplete if np.isnan(block[:, j]).any()]
            if cols:
                filled[g] = _chained(block, fixed_all[g], cols, spec.method, spec.iterations,
                                     rng, f"{spec.analysis}: imputing within an arm")
        copy = frame.copy()
        out = np.empty_like(filled)
        out[order] = filled
        for j in incomplete:
            copy[numeric[j]] = out[:, j]
        completed.append(copy)
    return completed


def ancova_design(frame: pd.DataFrame, covariates: Sequence[str]) -> np.ndarray:
    """Design matrix ``[1, treated, covariates]`` (categorical covariates treatment-coded)."""
    block, _ = _numeric_block(frame, covariates)
    n = len(frame)
    return np.hstack([np.ones((n, 1)), frame["treated"].to_numpy(dtype=float)[:, None], block])


def ols_treatment(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """OLS coefficient of column 1 (treated), its standard error and the residual df."""
    n, p = x.shape
    q, r = np.linalg.qr(x)
    df = n - p
    if df < 1:
        raise AnalysisError("ancova_mi: no residual degrees of freedom")
    r_inv = np.linalg.inv(r)
    coef = r_inv @ (q.T @ y)
    resid = y - x @ coef
    var_tt = float(r_inv[1] @ r_inv[1]) * float(resid @ resid) / df
    return float(coef[1]), float(np.sqrt(var_tt)), df


def fit_completed(copies: Sequence[pd.DataFrame], spec: ImputationSpec
                  ) -> tuple[list[tuple[float, float]], int]:
    """ANCOVA on each completed copy: ``[(estimate, se), ...]`` and the complete-data df."""
    fits, df = [], 0
    for c in copies:
        x = ancova_design(c, spec.covariates)
        est, se, df = ols_treatment(x, c["y"].to_numpy(dtype=float))
        fits.append((est, se))
    return fits, df


def pooled_estimate(frame: pd.DataFrame, spec: ImputationSpec,
                    fits: Sequence[tuple[float, float]], df_complete: int,
                    extra: dict[str, Any] | None = None) -> tuple[Estimate, Pooled]:
    """Pool per-imputation fits by Rubin's rules and fill the :class:`Estimate`."""
    pooled = pool([f[0] for f in fits], [f[1] ** 2 for f in fits], df_complete=df_complete)
    lo, hi = pooled.ci(spec.interval_level)
    n_missing = {c: int(frame[c].isna().sum())
                 for c in dict.fromkeys(["y", *spec.covariates, *spec.auxiliary])}
    warnings = []
    if n_missing["y"]:
        warnings.append(f"{n_missing['y']} missing outcome(s) multiply imputed (m = {spec.m}, "
                        f"{spec.method}); valid under missing at random given the imputation "
                        "model")
    if pooled.fmi > 0.5:
        warnings.append(f"fraction of missing information is {pooled.fmi:.2f}")
    arm = frame["arm"] if "arm" in frame.columns else frame["treated"].astype(str)
    n_by_arm = {str(k): int(v) for k, v in arm.groupby(arm, sort=True).size().items()}
    details: dict[str, Any] = {
        "m": spec.m, "iterations": spec.iterations, "method": spec.method,
        "by_arm": spec.by_arm, "seed": spec.seed, "covariates": list(spec.covariates),
        "auxiliary": list(spec.auxiliary), "n_missing": n_missing,
        "within_variance": pooled.within, "between_variance": pooled.between,
        "total_variance": pooled.total, "riv": pooled.riv, "lambda": pooled.lambda_,
        "fmi": pooled.fmi, "df": pooled.df, "df_complete": float(df_complete),
    }
    details.update(extra or {})
    est = Estimate(
        estimand=spec.estimand, analysis=spec.analysis, engine="frequentist",
        model="ancova_mi", estimate=pooled.estimate, std_error=pooled.se,
        ci_lower=float(lo), ci_upper=float(hi), ci_level=spec.interval_level,
        p_value=pooled.p_value, n_analysed=len(frame), n_by_arm=n_by_arm,
        diagnostics={"fmi": pooled.fmi, "df": pooled.df, "m": spec.m},
        warnings=tuple(warnings), details=details,
    )
    return est, pooled


def fit_mi_ancova(frame: pd.DataFrame, spec: ImputationSpec) -> MiResult:
    """Multiply impute, fit the ANCOVA on each completed copy and pool by Rubin's rules.

    Parameters
    ----------
    frame
        One row per participant (see :func:`impute`).
    spec
        Imputation and analysis settings.

    Returns
    -------
    MiResult
        ``.estimate`` (model ``ancova_mi``; details hold m, the within, between and total
        variance, riv, lambda, fmi and df), ``.pooled`` and ``.per_imputation``.

    Notes
    -----
    On copy :math:`j`, :math:`y = \\alpha + \\tau T + \\beta^\\top x + \\varepsilon` by OLS gives
    :math:`(\\hat\\tau_j, U_j)`; they are pooled with :func:`analysis.pooling.pool` using the
    complete-data residual df :math:`n - p` for Barnard & Rubin's (1999) degrees of freedom.
    Every participant is analysed (n_analysed = all rows).
    """
    copies = impute(frame, spec)
    fits, df = fit_completed(copies, spec)
    est, pooled = pooled_estimate(frame, spec, fits, df)
    return MiResult(estimate=est, pooled=pooled, per_imputation=tuple(fits))
