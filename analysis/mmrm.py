"""Mixed model for repeated measures (MMRM): REML/ML generalised least squares, in house.

The model is the standard MMRM of a randomised trial with visits ``1..T``:
``y ~ visit + treated:visit + baseline:visit + other covariates`` with a within-participant
covariance structure (unstructured by default) and no random effects, as SAS ``PROC MIXED``
with ``REPEATED / TYPE=UN`` or R ``nlme::gls`` with ``corSymm`` and ``varIdent`` fit it.
Participants contribute the visits they attended (likelihood-based, valid under missing at
random). Pure numpy/scipy: the fixed effects are profiled out by GLS, the likelihood is
accumulated per missingness pattern from cross-product sums, and the covariance parameters are
found by BFGS with the analytic gradient, polished by Newton steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, stats

from analysis.estimate import Estimate
from analysis.mmrm_covariance import CovarianceStructure, Pattern, fit_covariance
from analysis.mmrm_df import residual_df, satterthwaite_df, variance_gradient
from trials.errors import AnalysisError

_DF_METHODS = ("satterthwaite", "residual")


@dataclass(frozen=True)
class MmrmSpec:
    """What to fit: the estimand, its target visit and the model options.

    ``covariates``: ``"baseline"`` enters with a by-visit interaction (a baseline slope per
    visit); every other covariate enters as a main effect, categorical (treatment coding, first
    level in sorted order as reference) when its dtype is not numeric.
    """

    estimand: str
    analysis: str
    visit: int | str
    covariance: str = "unstructured"
    method: str = "reml"
    df: str = "satterthwaite"
    covariates: tuple[str, ...] = ("baseline",)
    interval_level: float = 0.95


@dataclass(frozen=True)
class LsMean:
    """Least-squares mean of one arm at one visit."""

    visit: Any
    arm: str
    estimate: float
    se: float
    df: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class Contrast:
    """Experimental minus comparator at one visit."""

    visit: Any
    estimate: float
    se: float
    df: float
    t: float
    p: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class MmrmResult:
    """A fitted MMRM: the target-visit :class:`Estimate` plus tables by visit.

    ``beta`` and ``vcov_beta`` follow ``terms``; ``covariance`` is the estimated
    within-participant covariance over ``visits`` (read-only arrays).
    """

    estimate: Estimate
    lsmeans: tuple[LsMean, ...]
    contrasts: tuple[Contrast, ...]
    visits: tuple[Any, ...]
    terms: tuple[str, ...]
    beta: np.ndarray
    vcov_beta: np.ndarray
    covariance: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.to_dict(),
            "lsmeans": [_json_row(r) for r in self.lsmeans],
            "contrasts": [_json_row(r) for r in self.contrasts],
            "visits": list(self.visits),
            "terms": list(self.terms),
            "beta": self.beta.tolist(),
            "vcov_beta": self.vcov_beta.tolist(),
            "covariance": self.covariance.tolist(),
        }


def _json_row(row: LsMean | Contrast) -> dict[str, Any]:
    # an infinite Satterthwaite df (no information on the variance) is stored as None
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in vars(row).items()}


# ---------------------------------------------------------------------------- design
@dataclass(frozen=True)
class _Design:
    visits: tuple[Any, ...]
    arms: tuple[str, str]  # comparator, experimental
    terms: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    n_obs: int
    n_participants: int
    n_by_arm: dict[str, int]
    n_excluded: int
    warnings: tuple[str, ...]
    grid: np.ndarray  # LS-mean row without visit terms (covariate means, level weights)
    baseline: tuple[int, float] | None  # first baseline:visit column and the baseline mean
    start: np.ndarray  # rough covariance of OLS residuals, to start the optimiser

    def position(self, visit: Any, analysis: str) -> int:
        for j, v in enumerate(self.visits):
            if v == visit or str(v) == str(visit):
                return j
        raise AnalysisError(f"{analysis}: visit {visit!r} has no observed outcomes "
                            f"(visits: {list(self.visits)})")

    def lsmean_vector(self, j: int, treated: int) -> np.ndarray:
        t = len(self.visits)
        c = self.grid.copy()
        c[j] = 1.0
        c[t + j] = float(treated)
        if self.baseline is not None:
            c[self.baseline[0] + j] = self.baseline[1]
        return c


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _build_design(frame: pd.DataFrame, covariates: tuple[str, ...], analysis: str) -> _Design:
    needed = ["participant", "arm", "treated", "visit", "y", *covariates]
    for col in needed:
        if col not in frame.columns:
            raise AnalysisError(f"{analysis}: column {col!r} is missing")
    data = frame[list(dict.fromkeys(needed))].copy()
    warnings = []
    incomplete = data.loc[data[list(covariates)].isna().any(axis=1), "participant"].unique()
    if len(incomplete):
        data = data[~data["participant"].isin(incomplete)]
        warnings.append(f"{len(incomplete)} participant(s) with a missing covariate were "
                        "excluded")
    data = data[data["y"].notna()]
    if data.empty:
        raise AnalysisError(f"{analysis}: column 'y' has no observed outcomes")
    if not set(data["treated"].unique()) <= {0, 1}:
        raise AnalysisError(f"{analysis}: column 'treated' must be 0 or 1")
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{analysis}: needs participants with outcomes in both arms")
    if data.duplicated(["participant", "visit"]).any():
        raise AnalysisError(f"{analysis}: column 'visit' repeats within a participant")
    visits = tuple(_plain(v) for v in sorted(data["visit"].unique()))
    t = len(visits)
    if t < 2:
        raise AnalysisError(f"{analysis}: column 'visit' needs at least two visits with outcomes")
    arms = (str(data.loc[data["treated"] == 0, "arm"].iloc[0]),
            str(data.loc[data["treated"] == 1, "arm"].iloc[0]))
    for v in visits:
        at = data.loc[data["visit"] == v, "treated"]
        if at.nunique() < 2:
            missing = arms[1 - int(at.iloc[0])]
            raise AnalysisError(f"{analysis}: singular design: no outcomes in arm {missing!r} "
                                f"at visit {v!r}")
    data["_pos"] = data["visit"].map({v: j for j, v in enumerate(visits)}).astype(int)
    data = data.sort_values(["participant", "_pos"], kind="stable")
    onehot = np.eye(t)[data["_pos"].to_numpy()]
    cols = [onehot, onehot * data["treated"].to_numpy(float)[:, None]]
    terms = [f"visit[{v}]" for v in visits] + [f"treated:visit[{v}]" for v in visits]
    grid = [np.zeros(2 * t)]
    baseline = None
    for c in covariates:
        values = data[c]
        if c == "baseline":
            if not pd.api.types.is_numeric_dtype(values):
                raise AnalysisError(f"{analysis}: column 'baseline' must be numeric")
            cols.append(onehot * values.to_numpy(float)[:, None])
            baseline = (len(terms), float(values.mean()))
            terms += [f"baseline:visit[{v}]" for v in visits]
            grid.append(np.zeros(t))
        elif pd.api.types.is_numeric_dtype(values):
            cols.append(values.to_numpy(float)[:, None])
            terms.append(c)
            grid.append(np.array([values.mean()]))
        else:
            levels = sorted(values.astype(str).unique())
            dummies = np.column_stack([(values.astype(str) == lv).to_numpy(float)
                                       for lv in levels[1:]]) if len(levels) > 1 else None
            if dummies is not None:
                cols.append(dummies)
                terms += [f"{c}[{lv}]" for lv in levels[1:]]
                grid.append(np.full(len(levels) - 1, 1.0 / len(levels)))
    x = np.column_stack(cols)
    y = data["y"].to_numpy(float)
    xtx = x.T @ x
    _check_rank(xtx, terms, analysis)
    beta_ols = np.linalg.solve(xtx, x.T @ y)
    resid = y - x @ beta_ols

    codes, ids = pd.factorize(data["participant"], sort=False)
    pos = data["_pos"].to_numpy()
    masks = np.bincount(codes, weights=2.0 ** pos).astype(np.int64)
    row_mask = masks[codes]
    wide = np.full((len(ids), t), np.nan)
    wide[codes, pos] = resid
    start = pd.DataFrame(wide).cov(min_periods=2).to_numpy()
    start = np.where(np.isfinite(start), start, 0.0)
    start[np.diag_indices(t)] = np.where(np.diag(start) > 0, np.diag(start), resid.var())
    patterns = []
    for mask in np.unique(masks):
        idx = np.flatnonzero([(int(mask) >> j) & 1 for j in range(t)])
        rows = row_mask == mask
        n = int(rows.sum()) // idx.size
        patterns.append(Pattern.from_arrays(idx, x[rows].reshape(n, idx.size, -1),
                                            y[rows].reshape(n, idx.size)))
    per_arm = data.drop_duplicates("participant").groupby("arm", sort=True).size()
    return _Design(visits, arms, tuple(terms), tuple(patterns), int(y.size), int(len(ids)),
                   {str(k): int(v) for k, v in per_arm.items()}, int(len(incomplete)),
                   tuple(warnings), np.concatenate(grid), baseline, start)


def _check_rank(xtx: np.ndarray, terms: list[str], analysis: str) -> None:
    # pivoted QR of the column-scaled cross-product matrix: p x p however many rows X has
    scale = np.sqrt(np.diag(xtx))
    if np.any(scale == 0):
        dropped = [t for t, s in zip(terms, scale, strict=True) if s == 0]
        raise AnalysisError(f"{analysis}: singular design: {', '.join(dropped)} is all zero")
    _, r, piv = linalg.qr(xtx / np.outer(scale, scale), pivoting=True)
    rank = int(np.sum(np.abs(np.diag(r)) > 1e-10))
    if rank < xtx.shape[0]:
        dropped = [terms[i] for i in piv[rank:]]
        raise AnalysisError(f"{analysis}: singular design: {', '.join(dropped)} not estimable "
                            "(constant or collinear with other terms)")


# ---------------------------------------------------------------------------- fit
def fit_mmrm(frame: pd.DataFrame, spec: MmrmSpec) -> MmrmResult:
    """Fit the MMRM and return the treatment contrast at ``spec.visit`` with tables by visit.

    Parameters
    ----------
    frame
        Long data, one row per participant and post-baseline visit: ``participant``, ``arm``,
        ``treated`` (1 experimental, 0 comparator), ``visit`` (ordered, numeric), ``y`` (NaN
        when missing), ``baseline`` and the other covariate columns. Not modified.
    spec
        What to fit.

    Returns
    -------
    MmrmResult
        ``estimate`` is experimental minus comparator at ``spec.visit``. LS means are at the
        mean of each numeric covariate over the analysed observations (rows, as emmeans'
        reference grid takes them) with equal weight on each level of a categorical covariate.

    Notes
    -----
    :math:`y_{ij} = \\mu_j + \\tau_j T_i + \\gamma_j b_i + \\delta^\\top x_i + e_{ij}`,
    :math:`e_i \\sim N(0, \\Sigma_{[i]})` where :math:`\\Sigma_{[i]}` is the sub-matrix of the
    visits participant i attended. Standard errors are model based,
    :math:`(X^\\top \\hat V^{-1} X)^{-1}`; intervals and p-values use t with Satterthwaite
    (default) or residual (N - p) degrees of freedom. The log-likelihood (REML without
    a :math:`\\log|X^\\top X|` term, as nlme reports it), AIC and BIC match ``logLik``, ``AIC``
    and ``BIC`` of ``nlme::gls``: AIC = -2 logL + 2k, BIC = -2 logL + k log(N - p·REML), with
    k the number of fixed effects plus covariance parameters. Under ML the covariance of the
    fixed effects is :math:`(X^\\top \\hat V^{-1} X)^{-1}` at the ML estimate (as SAS and R
    mmrm); nlme's ``vcov`` is larger by N/(N - p) because it rescales by a residual variance
    on N - p degrees of freedom. Non-convergence gives ``reliable=False`` and a warning rather
    than an exception.
    """
    if spec.method not in ("reml", "ml"):
        raise AnalysisError(f"method: {spec.method!r} is not 'reml' or 'ml'")
    if spec.df == "kenward_roger":
        raise AnalysisError("df: Kenward-Roger is not implemented; use 'satterthwaite' or "
                            "'residual'")
    if spec.df not in _DF_METHODS:
        raise AnalysisError(f"df: {spec.df!r} is not one of {list(_DF_METHODS)}")
    if not 0 < spec.interval_level < 1:
        raise AnalysisError(f"interval_level: {spec.interval_level} is not in (0, 1)")
    design = _build_design(frame, tuple(spec.covariates), spec.analysis)
    target = design.position(spec.visit, spec.analysis)
    struct = CovarianceStructure(spec.covariance, len(design.visits))
    reml = spec.method == "reml"
    fit = fit_covariance(struct, design.patterns, design.n_obs, design.start, reml)
    prof = fit.profile
    sigma = struct.matrix(fit.theta)
    n_beta = len(design.terms)
    jac = struct.jacobian(fit.theta)

    def dof(c: np.ndarray, variance: float) -> float:
        if spec.df == "residual":
            return residual_df(design.n_obs, n_beta)
        g = variance_gradient(c, prof.vcov, design.patterns, prof.precisions, jac)
        return satterthwaite_df(variance, g, fit.hessian)

    q = 1 - (1 - spec.interval_level) / 2
    lsmeans, contrasts = [], []
    for j, visit in enumerate(design.visits):
        for arm_label, treated in ((design.arms[0], 0), (design.arms[1], 1)):
            c = design.lsmean_vector(j, treated)
            est, var = float(c @ prof.beta), float(c @ prof.vcov @ c)
            df = dof(c, var)
            se = float(np.sqrt(var))
            half = float(stats.t.ppf(q, df)) * se
            lsmeans.append(LsMean(visit, arm_label, est, se, df, est - half, est + half))
        c = design.lsmean_vector(j, 1) - design.lsmean_vector(j, 0)
        est, var = float(c @ prof.beta), float(c @ prof.vcov @ c)
        df = dof(c, var)
        se = float(np.sqrt(var))
        half = float(stats.t.ppf(q, df)) * se
        contrasts.append(Contrast(visit, est, se, df, est / se,
                                  float(2 * stats.t.sf(abs(est / se), df)), est - half,
                                  est + half))

    m2ll = prof.m2ll
    k = n_beta + struct.n_params
    n_eff = design.n_obs - (n_beta if reml else 0)
    loglik = -m2ll / 2
    main = contrasts[target]
    warnings = list(design.warnings)
    if not fit.converged:
        warnings.append(fit.message)
    if not np.isfinite(main.df):
        warnings.append("Satterthwaite degrees of freedom are not finite; the interval is normal")
    estimate = Estimate(
        estimand=spec.estimand,
        analysis=spec.analysis,
        engine="frequentist",
        model="mmrm",
        estimate=main.estimate,
        std_error=main.se,
        ci_lower=main.ci_lower,
        ci_upper=main.ci_upper,
        ci_level=spec.interval_level,
        p_value=main.p,
        n_analysed=design.n_participants,
        n_by_arm=design.n_by_arm,
        diagnostics={"converged": fit.converged, "iterations": fit.iterations,
                     "log_likelihood": float(loglik), "aic": float(m2ll + 2 * k),
                     "bic": float(m2ll + k * np.log(n_eff)),
                     "df": float(main.df) if np.isfinite(main.df) else None},
        reliable=fit.converged,
        warnings=tuple(warnings),
        details={"covariance_structure": spec.covariance, "method": spec.method,
                 "df_method": spec.df, "visits": list(design.visits),
                 "covariance": sigma.tolist(), "n_observations": design.n_obs,
                 "n_covariance_parameters": struct.n_params, "terms": list(design.terms),
                 "n_excluded": design.n_excluded},
    )
    return MmrmResult(estimate, tuple(lsmeans), tuple(contrasts), tuple(design.visits),
                      tuple(design.terms), _frozen(prof.beta), _frozen(prof.vcov),
                      _frozen(sigma))


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a
