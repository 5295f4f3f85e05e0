"""Synthetic control (Abadie & Gardeazabal 2003; Abadie, Diamond & Hainmueller 2010).

The treated unit's untreated path is a convex combination of donor units whose weights make the
combination match the treated unit before the intervention; the effect is the post-period gap.
Inference is by placebos in space: every donor in turn is treated as if it had been treated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from analysis.estimate import Estimate
from trials.errors import AnalysisError

_V_METHODS = ("optimise", "equal")
_MIN_PRE = 2


@dataclass(frozen=True)
class SyntheticControlSpec:
    """Which unit was treated, from when, and how its synthetic control is built.

    Predictors are the pre-period outcomes (always) plus the pre-period means of the
    ``predictors`` columns; ``v`` chooses the predictor importance weights: ``"optimise"``
    (nested: the V whose weights best reproduce the pre-period outcomes) or ``"equal"``.
    """

    estimand: str
    analysis: str
    treated_unit: str
    intervention: int | str
    predictors: tuple[str, ...] = ()
    v: str = "optimise"
    interval_level: float = 0.95


@dataclass(frozen=True)
class DonorWeight:
    unit: str
    weight: float


@dataclass(frozen=True)
class PredictorBalance:
    """A predictor's value for the treated unit, its synthetic control and the donor mean."""

    predictor: str
    v: float
    treated: float
    synthetic: float
    donor_mean: float


@dataclass(frozen=True)
class PlaceboFit:
    """One placebo in space: the unit treated as if treated, and its fit and "effect"."""

    unit: str
    pre_rmspe: float
    post_rmspe: float
    rmspe_ratio: float
    effect: float


@dataclass(frozen=True)
class SyntheticControlResult:
    estimate: Estimate
    weights: tuple[DonorWeight, ...]
    balance: tuple[PredictorBalance, ...]
    periods: tuple[Any, ...]
    treated: tuple[float, ...]
    synthetic: tuple[float, ...]
    gap: tuple[float, ...]
    pre_rmspe: float
    post_rmspe: float
    rmspe_ratio: float
    placebos: tuple[PlaceboFit, ...]

    def weight(self, unit: str) -> float:
        return next(w.weight for w in self.weights if w.unit == unit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.to_dict(),
            "weights": [asdict(w) for w in self.weights],
            "balance": [asdict(b) for b in self.balance],
            "periods": list(self.periods),
            "treated": list(self.treated),
            "synthetic": list(self.synthetic),
            "gap": list(self.gap),
            "pre_rmspe": self.pre_rmspe,
            "post_rmspe": self.post_rmspe,
            "rmspe_ratio": _finite(self.rmspe_ratio),
            "placebos": [{**asdict(p), "rmspe_ratio": _finite(p.rmspe_ratio)}
                         for p in self.placebos],
        }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _label(x: Any) -> Any:
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    if isinstance(x, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(x).date().isoformat()
    return x


def sc_periods(frame: pd.DataFrame, intervention: int | str,
               analysis: str) -> tuple[pd.Series, int]:
    """The sorted periods (position -> label) and the position of the first treated period."""
    if "period" not in frame.columns:
        raise AnalysisError(f"{analysis}: column 'period' is missing")
    labels = pd.Series(np.sort(frame["period"].dropna().unique()))
    as_dates = not pd.api.types.is_numeric_dtype(labels)
    if as_dates != isinstance(intervention, str):
        raise AnalysisError(f"{analysis}: column 'period' and intervention {intervention!r} "
                            "must both be ISO dates or both numbers")
    if as_dates:
        try:
            keys, cut = pd.to_datetime(labels), pd.Timestamp(intervention)
        except (ValueError, TypeError):
            raise AnalysisError(f"{analysis}: column 'period' or intervention "
                                f"{intervention!r} is not an ISO date") from None
        order = np.argsort(keys.to_numpy(), kind="stable")
        labels = labels.iloc[order].reset_index(drop=True)
        first = int((keys.iloc[order] < cut).sum())
    else:
        first = int((labels < intervention).sum())
    return labels, first


def simplex_qp(X1: np.ndarray, X0: np.ndarray, v: np.ndarray) -> np.ndarray:
    r"""Weights w >= 0, sum 1, minimising :math:`(X_1 - X_0 w)^\top V (X_1 - X_0 w)`.

    Notes
    -----
    On the simplex :math:`A w - b = M w` with :math:`A = V^{1/2} X_0`, :math:`b = V^{1/2} X_1`
    and :math:`M = A - b 1^\top`. Writing :math:`u = t w` (:math:`t \ge 0`), the
    non-negative least squares problem :math:`\min_{u \ge 0} \|M u\|^2 + (1^\top u - 1)^2`
    equals :math:`\min_w \|Mw\|^2 / (1 + \|Mw\|^2)`, increasing in :math:`\|Mw\|^2`, so
    :math:`w = u / 1^\top u` solves the QP exactly (Lawson & Hanson's active-set NNLS).
    """
    sv = np.sqrt(v)
    M = sv[:, None] * (X0 - X1[:, None])
    E = np.vstack([M, np.ones((1, X0.shape[1]))])
    f = np.zeros(E.shape[0])
    f[-1] = 1.0
    u, _ = optimize.nnls(E, f, maxiter=50 * E.shape[1])
    return u / u.sum()


def _outcome_loss(Z1: np.ndarray, Z0: np.ndarray, w: np.ndarray) -> float:
    r = Z1 - Z0 @ w
    return float(r @ r / r.size)


def _solve(X1: np.ndarray, X0: np.ndarray, Z1: np.ndarray, Z0: np.ndarray,
           method: str) -> tuple[np.ndarray, np.ndarray]:
    """(w, v): donor weights and predictor weights, with V equal or optimised (nested)."""
    K = X1.size
    v_equal = np.full(K, 1.0 / K)
    if method == "equal":
        return simplex_qp(X1, X0, v_equal), v_equal

    def v_of(p: np.ndarray) -> np.ndarray:
        a = np.abs(p)
        return a / a.sum() if a.sum() > 0 else v_equal

    def outer(p: np.ndarray) -> float:
        return _outcome_loss(Z1, Z0, simplex_qp(X1, X0, v_of(p)))

    # Nelder–Mead on |p| / sum |p| as Synth's optim() does, from equal weights; the equal-V
    # solution is kept if the search does not improve on it.
    res = optimize.minimize(outer, v_equal, method="Nelder-Mead",
                            options={"xatol": 1e-6, "fatol": 1e-12, "maxfev": 200 * K})
    v = v_of(res.x)
    w = simplex_qp(X1, X0, v)
    w_eq = simplex_qp(X1, X0, v_equal)
    if _outcome_loss(Z1, Z0, w_eq) < _outcome_loss(Z1, Z0, w):
        return w_eq, v_equal
    return w, v


@dataclass(frozen=True)
class _Panel:
    Y: pd.DataFrame  # period position x unit
    P: pd.DataFrame  # predictor name x unit (unscaled)
    labels: pd.Series
    first_post: int


def _panel(frame: pd.DataFrame, spec: SyntheticControlSpec) -> _Panel:
    missing = [c for c in ("unit", "y", *spec.predictors) if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{spec.analysis}: column(s) missing: {', '.join(missing)}")
    if spec.v not in _V_METHODS:
        raise AnalysisError(f"{spec.analysis}: v {spec.v!r} is not one of {_V_METHODS}")
    labels, first_post = sc_periods(frame, spec.intervention, spec.analysis)
    if first_post < _MIN_PRE or first_post >= len(labels):
        raise AnalysisError(f"{spec.analysis}: intervention {spec.intervention!r} leaves fewer "
                            f"than {_MIN_PRE} pre-periods or no post-period")
    data = frame.assign(unit=frame["unit"].astype(str))
    data["_pos"] = data["period"].map({v: i for i, v in labels.items()})
    if data.duplicated(["unit", "_pos"]).any():
        raise AnalysisError(f"{spec.analysis}: column 'period' repeats within a unit")
    Y = data.pivot(index="_pos", columns="unit", values="y").reindex(range(len(labels)))
    if spec.treated_unit not in Y.columns:
        raise AnalysisError(f"{spec.analysis}: treated_unit {spec.treated_unit!r} is not in "
                            "column 'unit'")
    gaps = [u for u in Y.columns if Y[u].isna().any()]
    if gaps:
        raise AnalysisError(f"{spec.analysis}: column 'y' is missing for unit(s) "
                            f"{', '.join(gaps[:5])} in some period")
    pre = data[data["_pos"] < first_post]
    means = pre.groupby("unit")[list(spec.predictors)].mean().T.reindex(columns=Y.columns)
    if means.isna().any().any():
        raise AnalysisError(f"{spec.analysis}: a predictor has no pre-period value for some "
                            "unit")
    outcomes = Y.iloc[:first_post].copy()
    outcomes.index = [f"y[{_label(labels[i])}]" for i in outcomes.index]
    return _Panel(Y, pd.concat([outcomes, means]), labels, first_post)


@dataclass(frozen=True)
class _Fit:
    w: np.ndarray
    v: np.ndarray
    gap: np.ndarray
    synthetic: np.ndarray
    keep: np.ndarray  # predictor rows used (those varying across units)


def _fit_unit(panel: _Panel, treated: str, donors: list[str], method: str) -> _Fit:
    P = panel.P[[treated, *donors]].to_numpy(dtype=float)
    # Synth's scaling: every predictor divided by its SD across the treated unit and donors.
    sd = P.std(axis=1, ddof=1)
    keep = sd > 0
    Ps = P[keep] / sd[keep, None]
    Y = panel.Y[[treated, *donors]].to_numpy(dtype=float)
    pre = slice(0, panel.first_post)
    w, v = _solve(Ps[:, 0], Ps[:, 1:], Y[pre, 0], Y[pre, 1:], method)
    synthetic = Y[:, 1:] @ w
    return _Fit(w, v, Y[:, 0] - synthetic, synthetic, keep)


def _rmspe(gap: np.ndarray, first_post: int) -> tuple[float, float, float]:
    pre = float(np.sqrt(np.mean(gap[:first_post] ** 2)))
    post = float(np.sqrt(np.mean(gap[first_post:] ** 2)))
    return pre, post, (post / pre if pre > 0 else math.inf)


def fit_synthetic_control(frame: pd.DataFrame,
                          spec: SyntheticControlSpec) -> SyntheticControlResult:
    """Build the synthetic control, its gap series and placebo-in-space inference.

    Parameters
    ----------
    frame
        Long panel: ``unit``, ``period`` (numbers or ISO dates), ``y`` and the predictor
        columns; every unit observed in every period. Units other than the treated one are the
        donor pool.
    spec
        What to fit.

    Notes
    -----
    With :math:`X_1` (treated) and :math:`X_0` (donors) the predictors (pre-period outcomes and
    pre-period means of ``predictors``), each divided by its SD across units,
    :math:`w = \\arg\\min_{w \\ge 0, 1^\\top w = 1} (X_1 - X_0 w)^\\top V (X_1 - X_0 w)` with
    :math:`V` diagonal: equal weights, or (``"optimise"``) the :math:`V` minimising the
    pre-period outcome MSPE of the resulting synthetic control (nested optimisation, Abadie et
    al. 2010). The estimate is the mean post-period gap (treated minus synthetic). The p-value
    is the treated unit's rank among all units of :math:`\\mathrm{RMSPE}_{post} /
    \\mathrm{RMSPE}_{pre}` when each donor in turn is treated as the treated unit (donor pool:
    the other donors): :math:`p = (1 + \\#\\{j: r_j \\ge r_1\\}) / (J + 1)`. There is no sampling
    standard error: ``std_error`` is the SD of the placebo effects and the interval is
    :math:`[\\hat\\tau - q_{1-a/2}, \\hat\\tau - q_{a/2}]` with :math:`q` the empirical
    quantiles of the placebo effects (inverting the placebo test of a constant effect); both
    are NaN with fewer than two donors.
    """
    panel = _panel(frame, spec)
    donors = [u for u in panel.Y.columns if u != spec.treated_unit]
    if not donors:
        raise AnalysisError(f"{spec.analysis}: column 'unit' has no donor units")
    main = _fit_unit(panel, spec.treated_unit, donors, spec.v)
    pre, post, ratio = _rmspe(main.gap, panel.first_post)
    effect = float(np.mean(main.gap[panel.first_post:]))
    placebos = []
    for unit in donors:
        others = [u for u in donors if u != unit]
        if not others:
            continue
        fit = _fit_unit(panel, unit, others, spec.v)
        p_pre, p_post, p_ratio = _rmspe(fit.gap, panel.first_post)
        placebos.append(PlaceboFit(unit, p_pre, p_post, p_ratio,
                                   float(np.mean(fit.gap[panel.first_post:]))))
    warnings: list[str] = []
    alpha = 1 - spec.interval_level
    n_units = len(placebos) + 1
    p_value = (1 + sum(p.rmspe_ratio >= ratio for p in placebos)) / n_units
    effects = np.array([p.effect for p in placebos])
    if effects.size >= 2:
        sd = float(effects.std(ddof=1))
        q_lo, q_hi = np.quantile(effects, [alpha / 2, 1 - alpha / 2])
        ci = (effect - float(q_hi), effect - float(q_lo))
    else:
        sd, ci = math.nan, (math.nan, math.nan)
        warnings.append("fewer than two placebo units: no spread or interval")
    if 1 / n_units > alpha:
        warnings.append(f"with {n_units} units the smallest attainable placebo p-value is "
                        f"{1 / n_units:.3g}, above {alpha:g}")
    balance_names = list(panel.P.index[main.keep])
    Pk = panel.P.loc[balance_names]
    balance = tuple(
        PredictorBalance(name, float(vk), float(Pk.loc[name, spec.treated_unit]),
                         float(Pk.loc[name, donors].to_numpy(dtype=float) @ main.w),
                         float(Pk.loc[name, donors].mean()))
        for name, vk in zip(balance_names, main.v, strict=True))
    estimate = Estimate(
        estimand=spec.estimand,
        analysis=spec.analysis,
        engine="frequentist",
        model="synthetic_control",
        estimate=effect,
        std_error=sd,
        ci_lower=ci[0],
        ci_upper=ci[1],
        ci_level=spec.interval_level,
        p_value=float(p_value),
        n_analysed=int(panel.Y.size),
        n_by_arm={"treated": 1, "donors": len(donors)},
        diagnostics={"pre_rmspe": pre, "post_rmspe": post, "rmspe_ratio": _finite(ratio),
                     "n_pre_periods": panel.first_post,
                     "n_post_periods": len(panel.labels) - panel.first_post},
        warnings=tuple(warnings),
        details={
            "treated_unit": spec.treated_unit,
            "intervention": _label(spec.intervention),
            "v": spec.v,
            "predictors": list(spec.predictors),
            "weights": {u: float(x) for u, x in zip(donors, main.w, strict=True)},
            "inference": "placebo in space: p = rank of the post/pre RMSPE ratio among all "
                         "units (Abadie et al. 2010)",
            "std_error": "SD of the placebo units' mean post-period gaps (no sampling SE)",
            "interval": "estimate minus the placebo effects' empirical quantiles",
        },
    )
    return SyntheticControlResult(
        estimate=estimate,
        weights=tuple(DonorWeight(u, float(x)) for u, x in zip(donors, main.w, strict=True)),
        balance=balance,
        periods=tuple(_label(x) for x in panel.labels),
        treated=tuple(float(x) for x in panel.Y[spec.treated_unit]),
        synthetic=tuple(float(x) for x in main.synthetic),
        gap=tuple(float(x) for x in main.gap),
        pre_rmspe=pre,
        post_rmspe=post,
        rmspe_ratio=ratio,
        placebos=tuple(placebos),
    )


def sc_placebo_in_time(frame: pd.DataFrame, spec: SyntheticControlSpec,
                       fake_intervention: int | str, alpha: float = 0.05):
    """Fake intervention date; see :func:`analysis.falsification.sc_placebo_in_time`."""
    from analysis.falsification import sc_placebo_in_time as _placebo

    return _placebo(frame, spec, fake_intervention, alpha)
