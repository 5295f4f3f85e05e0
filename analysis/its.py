"""Interrupted time series by segmented regression with Newey–West standard errors.

One series (or a treated and a comparison series, "controlled ITS") observed at equally spaced
periods; the change is modelled as a step (level) and a change of slope at the interruption.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from analysis.estimate import Estimate
from trials.errors import AnalysisError

_EFFECTS = ("level", "slope", "at_horizon")
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
    comparison series (controlled ITS).
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
    Standard errors are Newey–West HAC (Bartlett kernel, no prewhitening) with the small-sample
    factor :math:`n/(n-k)`, i.e. R ``sandwich::NeweyWest(fit, lag, prewhite = FALSE,
    adjust = TRUE)``; tests and intervals use the t distribution on the residual degrees of
    freedom, as ``lmtest::coeftest`` does. With a comparison series the errors of both series
    at a period are summed before the Bartlett weighting (Driscoll–Kraay; R
    ``sandwich::vcovPL(fit, cluster = ~series, order.by = ~period, lag, adjust = TRUE)``).
    Rows with a missing outcome, covariate or weight are dropped (reported as a warning).
    """
    design = its_design(frame, spec)
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
    # t on the residual degrees of freedom for both covariances, as lmtest::coeftest does for
    # lm (statsmodels would use the number of groups minus one for the grouped one).
    df = float(fit.df_resid)
    q = float(stats.t.ppf(1 - alpha / 2, df))
    beta, vcov = fit.params.to_numpy(), np.asarray(fit.cov_params())
    rows = []
    for term, c in contrasts:
        est, se = float(c @ beta), float(np.sqrt(c @ vcov @ c))
        t = est / se
        rows.append(ItsCoefficient(term, est, se, t, float(2 * stats.t.sf(abs(t), df)),
                                   est - q * se, est + q * se))
    primary = next(r for r in rows if r.term == spec.effect)
    on = design.treated
    fitted = design.X.to_numpy()[on] @ beta
    counterfactual = counterfactual_design(design) @ beta
    warnings: list[str] = []
    if design.n_excluded:
        warnings.append(f"{design.n_excluded} period(s) without the outcome, a covariate or "
                        "the weight were excluded")
    if fit.df_resid < 10:
        warnings.append(f"only {fit.df_resid:.0f} residual degrees of freedom")
    resid = np.asarray(fit.resid)[on]
    ac1 = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if resid.size > 2 else None
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
        n_analysed=int(fit.nobs),
        n_by_arm={"pre": int((~post).sum()), "post": int(post.sum())},
        diagnostics={"df_resid": float(fit.df_resid), "residual_sd": float(np.sqrt(fit.scale)),
                     "r_squared": float(fit.rsquared), "hac_lags": lags,
                     "residual_lag1_autocorrelation": ac1},
        warnings=tuple(warnings),
        details={
            "effect": spec.effect,
            "horizon": spec.horizon,
            "interruption": period_label(spec.interruption),
            "seasonality": spec.seasonality,
            "covariates": list(spec.covariates),
            "controlled": bool(spec.comparison),
            "terms": cols,
            "covariance": ("Driscoll-Kraay (Bartlett, series summed per period)"
                           if spec.comparison else "Newey-West (Bartlett, no prewhitening)")
                          + f", {lags} lag(s), small-sample factor n/(n-k)",
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
