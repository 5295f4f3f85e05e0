"""Interrupted time series by segmented regression: Newey–West or AR(1) (REML GLS) errors.

One series (or a treated and a comparison series, "controlled ITS") observed at equally spaced
periods; the change is modelled as a step (level) and a change of slope at the interruption.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import optimize, stats

from analysis.estimate import Estimate
from trials.errors import AnalysisError

_EFFECTS = ("level", "slope", "at_horizon")
_ERRORS = ("newey_west", "ar1")
_AR1_DF = ("satterthwaite", "residual")
_RHO_MAX = 0.999  # REML for rho is searched on (-_RHO_MAX, _RHO_MAX)
_MIN_SIDE = 3  # fewest periods either side of the interruption that we fit a segment to


@dataclass(frozen=True)
class ItsSpec:
    """Segmented regression of ``y`` on time, a step and a slope change at ``interruption``.

    ``interruption`` is the first period after the change (an integer period or an ISO date);
    ``effect`` names the estimand: the step (``"level"``), the slope change (``"slope"``) or the
    change ``horizon`` periods after the interruption (``"at_horizon"``: level + slope·horizon).
    ``seasonality`` is None, ``"month"`` (11 month dummies: calendar months, January the
    reference, for date periods; position mod 12, the first period the reference, for integer
    periods) or ``"fourier:K"`` (K sine/cosine pairs of period 12 in the period position;
    ``"fourier:K:P"`` for period P). ``hac_lags`` None uses
    :math:`\\lfloor 4 (T/100)^{2/9} \\rfloor`. ``comparison`` names a 0/1 column flagging the
    comparison series (controlled ITS). ``errors`` is ``"newey_west"`` (least squares with
    Newey–West / Driscoll–Kraay standard errors) or ``"ar1"`` (generalised least squares with
    AR(1) errors, :math:`\\rho` by REML; single series only, ``hac_lags`` must be None).
    ``ar1_df`` is the t reference's degrees of freedom with ``"ar1"``: ``"satterthwaite"``
    (per contrast, allowing for the estimated :math:`\\rho` and :math:`\\sigma`) or
    ``"residual"`` (:math:`n - p`, as ``summary.gls``).
    """

    estimand: str
    analysis: str
    interruption: int | str
    effect: str = "level"
    horizon: int | None = None
    seasonality: str | None = None
    hac_lags: int | None = None
    comparison: str | None = None
    covariates: tuple[str, ...] = ()
    interval_level: float = 0.95
    errors: str = "newey_west"
    ar1_df: str = "satterthwaite"


@dataclass(frozen=True)
class ItsCoefficient:
    """One reported change: ``level``, ``slope``, ``pre_trend`` or ``at_horizon``."""

    term: str
    estimate: float
    std_error: float
    t_value: float
    p_value: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class ItsResult:
    """The fitted ITS: the primary estimate, the change coefficients and plotting series.

    ``periods``, ``observed``, ``fitted`` and ``counterfactual`` are for the treated series, in
    period order; the counterfactual is the fit with the interruption's changes removed.
    """

    estimate: Estimate
    coefficients: tuple[ItsCoefficient, ...]
    periods: tuple[Any, ...]
    observed: tuple[float, ...]
    fitted: tuple[float, ...]
    counterfactual: tuple[float, ...]

    def coefficient(self, term: str) -> ItsCoefficient:
        for c in self.coefficients:
            if c.term == term:
                return c
        raise KeyError(term)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.to_dict(),
            "coefficients": [asdict(c) for c in self.coefficients],
            "periods": list(self.periods),
            "observed": list(self.observed),
            "fitted": list(self.fitted),
            "counterfactual": list(self.counterfactual),
        }


@dataclass(frozen=True)
class TimeIndex:
    """Each row's period position (0 = first period) and the interruption's position ``t0``."""

    time: np.ndarray
    t0: int
    labels: pd.Series  # the period label of each row, as given


def default_hac_lags(n_periods: int) -> int:
    """Newey–West (1994) rule of thumb :math:`\\lfloor 4 (T/100)^{2/9} \\rfloor`."""
    return int(math.floor(4 * (n_periods / 100) ** (2 / 9)))


def its_time_index(frame: pd.DataFrame, spec: Any) -> TimeIndex:
    """Period positions: integer periods count from the smallest; dates by their sorted order.

    Dates are assumed equally spaced (e.g. monthly), so a period with no observation must still
    be present as a row (with ``y`` missing) to keep the positions right.
    """
    if "period" not in frame.columns:
        raise AnalysisError(f"{spec.analysis}: column 'period' is missing")
    raw = frame["period"]
    as_dates = not pd.api.types.is_numeric_dtype(raw)
    if as_dates != isinstance(spec.interruption, str):
        raise AnalysisError(f"{spec.analysis}: column 'period' and interruption "
                            f"{spec.interruption!r} must both be ISO dates or both integers")
    if as_dates:
        try:
            dates = pd.to_datetime(raw)
            cut = pd.Timestamp(spec.interruption)
        except (ValueError, TypeError):
            raise AnalysisError(f"{spec.analysis}: column 'period' or interruption "
                                f"{spec.interruption!r} is not an ISO date") from None
        uniq = np.sort(dates.dropna().unique())
        time = np.searchsorted(uniq, dates.to_numpy())
        t0 = int(np.searchsorted(uniq, cut.to_datetime64()))
    else:
        if raw.isna().any() or not np.all(np.mod(raw, 1) == 0):
            raise AnalysisError(f"{spec.analysis}: column 'period' must hold whole numbers")
        start = int(raw.min())
        time = raw.to_numpy(dtype=int) - start
        t0 = int(spec.interruption) - start
    return TimeIndex(np.asarray(time, dtype=int), t0, raw)


def _seasonal_terms(season: str | None, time: np.ndarray, labels: pd.Series,
                    analysis: str) -> dict[str, np.ndarray]:
    if season is None:
        return {}
    if season == "month":
        if pd.api.types.is_numeric_dtype(labels):
            # Integer periods: the first observed period is the reference season.
            month = np.mod(time, 12) + 1
        else:
            month = pd.to_datetime(labels).dt.month.to_numpy()
        return {f"month_{m}": (month == m).astype(float) for m in range(2, 13)}
    match = re.fullmatch(r"fourier:(\d+)(?::(\d+(?:\.\d+)?))?", season)
    if not match or int(match.group(1)) < 1:
        raise AnalysisError(f"{analysis}: seasonality {season!r} is not None, 'month' or "
                            "'fourier:K'")
    k_max, period = int(match.group(1)), float(match.group(2) or 12)
    out = {}
    for k in range(1, k_max + 1):
        out[f"sin_{k}"] = np.sin(2 * np.pi * k * time / period)
        out[f"cos_{k}"] = np.cos(2 * np.pi * k * time / period)
    return out


@dataclass(frozen=True)
class ItsDesign:
    """The design matrix (rows in series then period order) and what the fit needs to know."""

    X: pd.DataFrame
    y: np.ndarray
    weight: np.ndarray | None
    time: np.ndarray
    labels: pd.Series
    treated: np.ndarray  # True on rows of the series whose change is the estimand
    t0: int
    n_excluded: int
    prefix: str  # "" for one series, "treated:" for the controlled ITS's difference terms


def its_design(frame: pd.DataFrame, spec: Any) -> ItsDesign:
    """Build the segmented-regression design of ``spec`` (an ItsSpec or BayesItsSpec).

    Columns: ``intercept``, ``time`` (pre-trend), ``level`` (1 from the interruption on),
    ``slope`` (periods since the interruption, 0 before), seasonal terms and covariates. With a
    comparison series every term except the covariates is repeated as ``treated:<term>`` times
    the treated-series indicator, so those terms are treated-minus-comparison differences.
    """
    if spec.effect not in _EFFECTS:
        raise AnalysisError(f"{spec.analysis}: effect {spec.effect!r} is not one of {_EFFECTS}")
    if spec.effect == "at_horizon" and (spec.horizon is None or spec.horizon < 0):
        raise AnalysisError(f"{spec.analysis}: effect 'at_horizon' needs horizon >= 0")
    needed = ["y", *spec.covariates] + ([spec.comparison] if spec.comparison else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{spec.analysis}: column(s) missing: {', '.join(missing)}")
    index = its_time_index(frame, spec)
    data = frame.assign(_time=index.time, _label=index.labels)
    data["_treated"] = 1 if not spec.comparison else 1 - data[spec.comparison]
    if not data["_treated"].isin([0, 1]).all():
        raise AnalysisError(f"{spec.analysis}: column {spec.comparison!r} must be 0 or 1")
    if data.duplicated(["_treated", "_time"]).any():
        raise AnalysisError(f"{spec.analysis}: column 'period' repeats within a series")
    keep = data[["y", *spec.covariates]].notna().all(axis=1)
    if "weight" in data.columns:
        keep &= data["weight"].notna()
    n_excluded = int((~keep).sum())
    data = data.loc[keep].sort_values(["_treated", "_time"], ascending=[False, True])
    time = data["_time"].to_numpy(dtype=float)
    post = (time >= index.t0).astype(float)
    for flag in ([1, 0] if spec.comparison else [1]):
        on = data["_treated"].to_numpy() == flag
        if min((post[on] == 0).sum(), (post[on] == 1).sum()) < _MIN_SIDE:
            raise AnalysisError(f"{spec.analysis}: interruption {spec.interruption!r} leaves "
                                f"fewer than {_MIN_SIDE} periods on one side in a series")
    base = {"intercept": np.ones_like(time), "time": time, "level": post,
            "slope": post * (time - index.t0)}
    base.update(_seasonal_terms(spec.seasonality, data["_time"].to_numpy(),
                                data["_label"], spec.analysis))
    columns = dict(base)
    treated = data["_treated"].to_numpy(dtype=float)
    if spec.comparison:
        if treated.min() == treated.max():
            raise AnalysisError(f"{spec.analysis}: column {spec.comparison!r} flags no "
                                "comparison series (or only one)")
        columns.update({f"treated:{k}": v * treated for k, v in base.items()})
    for c in spec.covariates:
        if not pd.api.types.is_numeric_dtype(data[c]):
            raise AnalysisError(f"{spec.analysis}: covariate {c!r} must be numeric")
        columns[c] = data[c].to_numpy(dtype=float)
    X = pd.DataFrame(columns, index=data.index)
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1]:
        raise AnalysisError(f"{spec.analysis}: design is rank-deficient (check seasonality "
                            "and covariates)")
    weight = data["weight"].to_numpy(dtype=float) if "weight" in data.columns else None
    return ItsDesign(X, data["y"].to_numpy(dtype=float), weight, data["_time"].to_numpy(),
                     data["_label"], treated == 1, index.t0, n_excluded,
                     "treated:" if spec.comparison else "")


def effect_vector(design: ItsDesign, spec: Any) -> np.ndarray:
    """Contrast c such that c·β is the estimand (level, slope or level + slope·horizon)."""
    c = np.zeros(design.X.shape[1])
    cols = list(design.X.columns)
    p = design.prefix
    if spec.effect in ("level", "at_horizon"):
        c[cols.index(p + "level")] = 1.0
    if spec.effect == "slope":
        c[cols.index(p + "slope")] = 1.0
    if spec.effect == "at_horizon":
        c[cols.index(p + "slope")] = float(spec.horizon)
    return c


def counterfactual_design(design: ItsDesign) -> np.ndarray:
    """Treated rows of X with the treated series' own changes at the interruption removed."""
    cf = design.X.loc[design.treated].copy()
    cf[design.prefix + "level"] = 0.0
    cf[design.prefix + "slope"] = 0.0
    return cf.to_numpy()


def period_label(x: Any) -> Any:
    """A period as JSON-safe plain data: int, ISO date string or str."""
    if isinstance(x, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(x).date().isoformat()
    if isinstance(x, (np.integer, int)):
        return int(x)
    return str(x)


@dataclass(frozen=True)
class _Fitted:
    """What either error model hands to the common reporting: coefficients, their covariance,
    the t reference's degrees of freedom and the model-specific diagnostics and labels."""

    beta: np.ndarray
    vcov: np.ndarray
    df_resid: float
    nobs: int
    diagnostics: dict[str, Any]
    covariance: str
    warnings: tuple[str, ...] = ()
    contrast_df: Callable[[np.ndarray], float] | None = None  # None: df_resid for every one


def _fit_newey_west(design: ItsDesign, spec: ItsSpec) -> _Fitted:
    n_periods = int(np.unique(design.time).size)
    lags = default_hac_lags(n_periods) if spec.hac_lags is None else int(spec.hac_lags)
    if lags < 0:
        raise AnalysisError(f"{spec.analysis}: hac_lags must be >= 0")
    model = (sm.OLS(design.y, design.X) if design.weight is None
             else sm.WLS(design.y, design.X, weights=design.weight))
    if spec.comparison:
        cov = {"cov_type": "hac-groupsum",
               "cov_kwds": {"time": design.time, "maxlags": lags, "use_correction": "hac"}}
    else:
        cov = {"cov_type": "HAC", "cov_kwds": {"maxlags": lags, "use_correction": True}}
    fit = model.fit(**cov)
    resid = np.asarray(fit.resid)[design.treated]
    ac1 = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if resid.size > 2 else None
    return _Fitted(
        beta=fit.params.to_numpy(), vcov=np.asarray(fit.cov_params()),
        # t on the residual degrees of freedom for both covariances, as lmtest::coeftest does
        # for lm (statsmodels would use the number of groups minus one for the grouped one).
        df_resid=float(fit.df_resid), nobs=int(fit.nobs),
        diagnostics={"df_resid": float(fit.df_resid), "residual_sd": float(np.sqrt(fit.scale)),
                     "r_squared": float(fit.rsquared), "hac_lags": lags,
                     "residual_lag1_autocorrelation": ac1},
        covariance=("Driscoll-Kraay (Bartlett, series summed per period)" if spec.comparison
                    else "Newey-West (Bartlett, no prewhitening)")
                   + f", {lags} lag(s), small-sample factor n/(n-k)")


def _ar1_whiten(v: np.ndarray, gaps: np.ndarray, rho: float) -> tuple[np.ndarray, float]:
    """Prais–Winsten transform for corr :math:`\\rho^{|s-t|}` and :math:`\\log|R|`.

    Row i becomes :math:`(v_i - \\rho^{d_i} v_{i-1}) / \\sqrt{1 - \\rho^{2 d_i}}` (the first row is
    kept), which makes the errors independent with equal variance for any gaps :math:`d_i`.
    """
    phi = rho ** gaps
    scale = np.sqrt(1 - phi**2)
    out = v.copy()
    out[1:] = (v[1:] - phi[:, None] * v[:-1]) / scale[:, None]
    return out, float(2 * np.log(scale).sum())


def _ar1_gls(Z: np.ndarray, gaps: np.ndarray, p: int, rho: float):
    """GLS at a fixed ``rho`` (``Z`` = [X, y]): beta, :math:`(X^\\top R^{-1} X)^{-1}`, RSS,
    :math:`\\log|R|` and the whitened residuals."""
    W, logdet_r = _ar1_whiten(Z, gaps, rho)
    Xw, yw = W[:, :p], W[:, p]
    xtx_inv = np.linalg.inv(Xw.T @ Xw)
    beta = xtx_inv @ Xw.T @ yw
    white = yw - Xw @ beta
    return beta, xtx_inv, float(white @ white), logdet_r, white


def _ar1_reml(Z: np.ndarray, gaps: np.ndarray, p: int, rho: float) -> float:
    """Minus twice the profiled REML log-likelihood at ``rho``, up to a constant."""
    _, xtx_inv, rss, logdet_r, _ = _ar1_gls(Z, gaps, p, rho)
    return (Z.shape[0] - p) * np.log(rss) + logdet_r - np.linalg.slogdet(xtx_inv)[1]


def _satterthwaite_parts(Z: np.ndarray, gaps: np.ndarray, p: int, rho: float, sigma2: float):
    """Covariance of the variance parameters and the derivatives of cov(beta), as emmeans.

    The parameters are :math:`\\theta = \\log\\{(1+\\rho)/(1-\\rho)\\}` and :math:`\\log\\sigma`
    (nlme's unconstrained scale); ``A`` is the inverse of minus the Hessian of the REML
    log-likelihood there (nlme ``apVar``); ``G`` holds the partial derivatives of
    :math:`\\mathrm{cov}(\\hat\\beta) = \\sigma^2 (X^\\top R^{-1} X)^{-1}`: in theta at fixed
    :math:`\\sigma` (emmeans ``gls_grad``) and in :math:`\\log\\sigma`, :math:`2\\,\\mathrm{cov}`.
    None when minus the Hessian is not positive definite.
    """
    n = Z.shape[0]

    def loglik(x):
        _, xtx_inv, rss, logdet_r, _ = _ar1_gls(Z, gaps, p, np.tanh(x[0] / 2))
        return (-(n - p) * x[1] - 0.5 * logdet_r - 0.5 * rss * np.exp(-2 * x[1])
                + 0.5 * np.linalg.slogdet(xtx_inv)[1])

    def vbeta(theta):
        return sigma2 * _ar1_gls(Z, gaps, p, np.tanh(theta / 2))[1]

    x0 = np.array([2 * np.arctanh(rho), 0.5 * np.log(sigma2)])
    h = 1e-4
    H = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
            H[i, j] = (loglik(x0 + ei + ej) - loglik(x0 + ei - ej) - loglik(x0 - ei + ej)
                       + loglik(x0 - ei - ej)) / (4 * h * h)
    if not np.all(np.linalg.eigvalsh(-H) > 0):
        return None  # not a maximum in (rho, sigma) numerically, e.g. rho at its bound
    A = np.linalg.inv(-H)
    d_theta = (vbeta(x0[0] + h) - vbeta(x0[0] - h)) / (2 * h)
    return A, (d_theta, 2 * vbeta(x0[0]))


def _check_errors(spec: ItsSpec) -> None:
    if spec.errors not in _ERRORS:
        raise AnalysisError(f"{spec.analysis}: errors {spec.errors!r} is not one of {_ERRORS}")
    if spec.errors != "ar1":
        return
    if spec.comparison:
        raise AnalysisError(f"{spec.analysis}: errors 'ar1' is for a single series "
                            "(comparison is set)")
    if spec.hac_lags is not None:
        raise AnalysisError(f"{spec.analysis}: hac_lags applies only to errors 'newey_west'")
    if spec.ar1_df not in _AR1_DF:
        raise AnalysisError(f"{spec.analysis}: ar1_df {spec.ar1_df!r} is not one of {_AR1_DF}")


def _fit_ar1(design: ItsDesign, spec: ItsSpec) -> _Fitted:
    n, p = design.X.shape
    if n - p < 3:
        raise AnalysisError(f"{spec.analysis}: errors 'ar1' needs at least 3 residual degrees "
                            "of freedom")
    # Weights as in weighted least squares (variance proportional to 1/weight): scale rows by
    # sqrt(weight) first, then the AR(1) correlation acts on the scaled errors.
    root_w = np.ones(n) if design.weight is None else np.sqrt(design.weight)
    Z = np.column_stack([design.X.to_numpy(dtype=float), design.y]) * root_w[:, None]
    gaps = np.diff(design.time).astype(float)
    # Coarse grid, then Brent on the best bracket: the profile can have more than one mode.
    grid = np.linspace(-_RHO_MAX, _RHO_MAX, 81)
    values = [_ar1_reml(Z, gaps, p, r) for r in grid]
    k = int(np.argmin(values))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    opt = optimize.minimize_scalar(lambda r: _ar1_reml(Z, gaps, p, r), bounds=(lo, hi),
                                   method="bounded", options={"xatol": 1e-10})
    rho = float(opt.x) if opt.fun <= values[k] else float(grid[k])
    beta, xtx_inv, rss, logdet_r, white = _ar1_gls(Z, gaps, p, rho)
    sigma2 = rss / (n - p)  # white: normalised residuals, independent N(0, sigma^2) if right
    # nlme's REML log-likelihood (logLik.gls): the profiled criterion plus its constants.
    loglik = float(-0.5 * ((n - p) * (np.log(2 * np.pi * sigma2) + 1) + logdet_r)
                   + np.log(root_w).sum() + 0.5 * np.linalg.slogdet(xtx_inv)[1])
    contrast_df = None
    warnings = []
    parts = _satterthwaite_parts(Z, gaps, p, rho, sigma2) if spec.ar1_df == "satterthwaite" \
        else None
    if parts is not None:
        A, G = parts

        def contrast_df(c: np.ndarray) -> float:
            g = np.array([c @ m @ c for m in G])
            return float(2 * (c @ (sigma2 * xtx_inv) @ c) ** 2 / (g @ A @ g))
    elif spec.ar1_df == "satterthwaite":
        warnings.append("Satterthwaite degrees of freedom unavailable (the REML information "
                        "for rho and sigma is not positive definite); residual df used")
    if abs(rho) > _RHO_MAX - 1e-3:
        warnings.append(f"AR(1) correlation at the edge of its range (rho {rho:.3f}); the "
                        "series may be non-stationary around the segmented trend")
    return _Fitted(
        beta=beta, vcov=sigma2 * xtx_inv, df_resid=float(n - p), nobs=n,
        diagnostics={"df_resid": float(n - p), "residual_sd": float(np.sqrt(sigma2)),
                     "rho": rho, "reml_log_likelihood": loglik,
                     "residual_lag1_autocorrelation": float(
                         np.corrcoef(white[:-1], white[1:])[0, 1])},
        covariance="AR(1) errors, generalised least squares, rho by REML (nlme::gls corAR1)",
        warnings=tuple(warnings), contrast_df=contrast_df)


def fit_its(frame: pd.DataFrame, spec: ItsSpec) -> ItsResult:
    """Fit the segmented regression and return the spec's change as an :class:`Estimate`.

    Parameters
    ----------
    frame
        One row per period (per series with a comparison): ``period`` (integers or ISO dates),
        ``y``, optional ``weight`` (weighted least squares), the comparison flag and covariates.
    spec
        What to fit.

    Notes
    -----
    :math:`y_t = \\beta_0 + \\beta_1 t + \\beta_2 D_t + \\beta_3 (t - t_0) D_t + s_t +
    \\gamma^\\top x_t + \\varepsilon_t`, with :math:`D_t = 1[t \\ge t_0]`; ``level`` is
    :math:`\\beta_2`, ``slope`` :math:`\\beta_3`, ``at_horizon`` :math:`\\beta_2 + h\\beta_3`.

    ``errors="newey_west"``: least squares with Newey–West HAC standard errors (Bartlett kernel,
    no prewhitening) with the small-sample factor :math:`n/(n-k)`, i.e. R
    ``sandwich::NeweyWest(fit, lag, prewhite = FALSE, adjust = TRUE)``. With a comparison series
    the errors of both series at a period are summed before the Bartlett weighting
    (Driscoll–Kraay; R ``sandwich::vcovPL(fit, cluster = ~series, order.by = ~period, lag,
    adjust = TRUE)``).

    ``errors="ar1"``: :math:`\\mathrm{cov}(\\varepsilon_s, \\varepsilon_t) = \\sigma^2
    \\rho^{|s-t|} / \\sqrt{w_s w_t}` (positions, so a missing period is a gap; :math:`w` the
    weights, 1 without). :math:`\\rho` maximises the profiled restricted likelihood
    :math:`-\\tfrac12[(n-p)\\log \\mathrm{RSS}_\\rho + \\log|R_\\rho| + \\log|X^\\top
    V_\\rho^{-1} X|]`; then :math:`\\hat\\beta` is exact GLS (Prais–Winsten, first period kept),
    :math:`\\hat\\sigma^2 = \\mathrm{RSS}/(n-p)` and :math:`\\mathrm{cov}(\\hat\\beta) =
    \\hat\\sigma^2 (X^\\top V^{-1} X)^{-1}`, i.e. R ``nlme::gls(..., correlation =
    corAR1(form = ~ time), weights = varFixed(~ 1 / w), method = "REML")``.

    Tests and intervals use the t distribution on the residual degrees of freedom :math:`n-p`
    (``lmtest::coeftest`` for lm, ``summary.gls``). Rows with a missing outcome, covariate or
    weight are dropped (reported as a warning).
    """
    _check_errors(spec)
    design = its_design(frame, spec)
    fit = _fit_ar1(design, spec) if spec.errors == "ar1" else _fit_newey_west(design, spec)
    alpha = 1 - spec.interval_level
    contrasts: list[tuple[str, np.ndarray]] = []
    cols = list(design.X.columns)
    p = design.prefix
    for term, col in (("level", "level"), ("slope", "slope"), ("pre_trend", "time")):
        c = np.zeros(len(cols))
        c[cols.index(p + col)] = 1.0
        contrasts.append((term, c))
    if spec.horizon is not None:
        c = np.zeros(len(cols))
        c[cols.index(p + "level")] = 1.0
        c[cols.index(p + "slope")] = float(spec.horizon)
        contrasts.append(("at_horizon", c))
    beta, vcov = fit.beta, fit.vcov
    rows, dfs = [], {}
    for term, c in contrasts:
        df = fit.df_resid if fit.contrast_df is None else fit.contrast_df(c)
        q = float(stats.t.ppf(1 - alpha / 2, df))
        est, se = float(c @ beta), float(np.sqrt(c @ vcov @ c))
        t = est / se
        rows.append(ItsCoefficient(term, est, se, t, float(2 * stats.t.sf(abs(t), df)),
                                   est - q * se, est + q * se))
        dfs[term] = float(df)
    primary = next(r for r in rows if r.term == spec.effect)
    df = fit.df_resid
    on = design.treated
    fitted = design.X.to_numpy()[on] @ beta
    counterfactual = counterfactual_design(design) @ beta
    warnings: list[str] = []
    if design.n_excluded:
        warnings.append(f"{design.n_excluded} period(s) without the outcome, a covariate or "
                        "the weight were excluded")
    if df < 10:
        warnings.append(f"only {df:.0f} residual degrees of freedom")
    warnings.extend(fit.warnings)
    diagnostics = dict(fit.diagnostics)
    if fit.contrast_df is not None:
        diagnostics["satterthwaite_df"] = dfs
        if dfs[spec.effect] < 3:
            warnings.append(f"Satterthwaite degrees of freedom {dfs[spec.effect]:.2g} for the "
                            f"{spec.effect} change: rho is poorly determined, so the interval "
                            "is wide")
    post = design.time >= design.t0
    estimate = Estimate(
        estimand=spec.estimand,
        analysis=spec.analysis,
        engine="frequentist",
        model="its_segmented",
        estimate=primary.estimate,
        std_error=primary.std_error,
        ci_lower=primary.ci_lower,
        ci_upper=primary.ci_upper,
        ci_level=spec.interval_level,
        p_value=primary.p_value,
        n_analysed=fit.nobs,
        n_by_arm={"pre": int((~post).sum()), "post": int(post.sum())},
        diagnostics=diagnostics,
        warnings=tuple(warnings),
        details={
            "effect": spec.effect,
            "horizon": spec.horizon,
            "interruption": period_label(spec.interruption),
            "seasonality": spec.seasonality,
            "covariates": list(spec.covariates),
            "controlled": bool(spec.comparison),
            "terms": cols,
            "errors": spec.errors,
            "t_df": ("Satterthwaite" if fit.contrast_df is not None else "residual"),
            "covariance": fit.covariance,
            "weighted": design.weight is not None,
            "n_excluded": design.n_excluded,
        },
    )
    return ItsResult(
        estimate=estimate,
        coefficients=tuple(rows),
        periods=tuple(period_label(x) for x in design.labels.to_numpy()[on]),
        observed=tuple(float(v) for v in design.y[on]),
        fitted=tuple(float(v) for v in fitted),
        counterfactual=tuple(float(v) for v in counterfactual),
    )


def its_placebo(frame: pd.DataFrame, spec: ItsSpec, placebo_interruptions,
                alpha: float = 0.05):
    """Placebo interruptions in the pre-period; see :func:`analysis.falsification.its_placebo`."""
    from analysis.falsification import its_placebo as _its_placebo

    return _its_placebo(frame, spec, placebo_interruptions, alpha)
