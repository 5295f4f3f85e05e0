"""Sharp and fuzzy regression discontinuity by local-linear regression.

The point estimate is the conventional local-polynomial jump at the cut-off; the reported
interval is the robust bias-corrected one of Calonico, Cattaneo and Titiunik (2014,
*Econometrica* 82:2295-2326), as the ``rdrobust`` software computes it. Both the conventional and
the robust intervals are kept in ``details``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.estimate import Estimate
from analysis.rd_bandwidth import (
    KERNELS,
    VCE_TYPES,
    BandwidthChoice,
    Side,
    kernel_weights,
    meat,
    mserd_bandwidth,
    residuals,
    vander,
)
from trials.errors import AnalysisError


@dataclass(frozen=True)
class RdSpec:
    """A regression discontinuity analysis.

    ``bandwidth`` is a positive number (the same on both sides; the bias bandwidth then equals it
    unless ``bias_bandwidth`` is given) or ``"mserd"`` for the common MSE-optimal pair (h, b).
    ``vce`` is the variance estimator: ``"nn"`` (nearest-neighbour residuals with ``nnmatch``
    neighbours, the rdrobust default), ``"hc0"`` or ``"hc1"``. Observations exactly at the
    cut-off belong to the right (``running >= cutoff``) side. ``treated_above`` only sets the
    sign of a sharp effect; a fuzzy effect (outcome jump over the jump in ``fuzzy``, the
    treatment actually received) needs no sign. ``order`` is the local polynomial order ``p``
    (1: local linear); the bias correction uses ``p + 1``.
    """

    estimand: str
    analysis: str
    running: str = "score"
    cutoff: float = 0.0
    treated_above: bool = True
    fuzzy: str | None = None
    bandwidth: float | str = "mserd"
    kernel: str = "triangular"
    covariates: tuple[str, ...] = ()
    interval_level: float = 0.95
    outcome: str = "y"
    bias_bandwidth: float | None = None
    vce: str = "nn"
    nnmatch: int = 3
    order: int = 1


@dataclass(frozen=True)
class RdResult:
    """A fitted discontinuity: the primary estimate and the numbers behind it."""

    estimate: Estimate
    h: float
    b: float
    n_left: int
    n_right: int
    bandwidth: BandwidthChoice | None

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(), "h": self.h, "b": self.b,
                "n_left": self.n_left, "n_right": self.n_right,
                "bandwidth": None if self.bandwidth is None else self.bandwidth.to_dict()}


def _check_spec(frame: pd.DataFrame, spec: RdSpec) -> list[str]:
    cols = [spec.outcome, spec.running, *([spec.fuzzy] if spec.fuzzy else []), *spec.covariates]
    for c in cols:
        if c not in frame.columns:
            raise AnalysisError(f"{spec.analysis}: column {c!r} not in the data")
        if not pd.api.types.is_numeric_dtype(frame[c]):
            raise AnalysisError(f"{spec.analysis}: column {c!r} must be numeric")
    if spec.kernel not in KERNELS:
        raise AnalysisError(f"{spec.analysis}: kernel {spec.kernel!r} is not one of "
                            f"{', '.join(KERNELS)}")
    if spec.vce not in VCE_TYPES:
        raise AnalysisError(f"{spec.analysis}: vce {spec.vce!r} is not one of "
                            f"{', '.join(VCE_TYPES)}")
    if isinstance(spec.bandwidth, str):
        if spec.bandwidth != "mserd":
            raise AnalysisError(f"{spec.analysis}: bandwidth {spec.bandwidth!r} is not a number "
                                "or 'mserd'")
    elif not (math.isfinite(spec.bandwidth) and spec.bandwidth > 0):
        raise AnalysisError(f"{spec.analysis}: bandwidth must be positive")
    if not 0 < spec.interval_level < 1:
        raise AnalysisError(f"{spec.analysis}: interval_level must lie in (0, 1)")
    if spec.order < 0:
        raise AnalysisError(f"{spec.analysis}: order must be 0 or more")
    if spec.nnmatch < 1:
        raise AnalysisError(f"{spec.analysis}: nnmatch must be 1 or more")
    return cols


def split_sides(frame: pd.DataFrame, spec: RdSpec) -> tuple[Side, Side, int]:
    """Complete cases split at the cut-off, centred and sorted by the running variable.

    Returns the left and right :class:`~analysis.rd_bandwidth.Side` and the number of rows
    dropped for a missing value.
    """
    cols = _check_spec(frame, spec)
    data = frame[cols].astype(float)
    keep = data.notna().all(axis=1).to_numpy()
    data = data.loc[keep]
    x = data[spec.running].to_numpy() - spec.cutoff
    d_cols = [spec.outcome, *([spec.fuzzy] if spec.fuzzy else []), *spec.covariates]
    d = data[d_cols].to_numpy()
    order = np.argsort(x, kind="stable")
    x, d = x[order], d[order]
    n_out = 2 if spec.fuzzy else 1
    left, right = x < 0, x >= 0
    if left.sum() < spec.order + 3 or right.sum() < spec.order + 3:
        raise AnalysisError(f"{spec.analysis}: too few observations on one side of the cut-off "
                            f"{spec.cutoff:g} in {spec.running!r}")
    return (Side(x[left], d[left], n_out), Side(x[right], d[right], n_out), int((~keep).sum()))


@dataclass(frozen=True)
class _SideFit:
    beta_p: np.ndarray
    beta_bc: np.ndarray
    inv_g: np.ndarray
    rw_p: np.ndarray
    q_q: np.ndarray
    res_h: np.ndarray
    res_b: np.ndarray
    u_p: np.ndarray
    zwd: np.ndarray
    n_h: int


def _fit_side(side: Side, h: float, b: float, p: int, kernel: str, vce: str,
              nnmatch: int) -> _SideFit:
    q = p + 1
    w_h = kernel_weights(side.x, h, kernel)
    w_b = kernel_weights(side.x, b, kernel)
    keep = (w_h > 0) if h > b else (w_b > 0)
    x, d, w_h, w_b = side.x[keep], side.d[keep], w_h[keep], w_b[keep]
    if len(np.unique(x[w_h > 0])) < p + 1 or len(np.unique(x[w_b > 0])) < q + 1:
        raise AnalysisError("too few distinct running-variable values within the bandwidth")
    r_q = vander(x, q)
    r_p = r_q[:, : p + 1]
    rw_p = r_p * w_h[:, None]
    rw_q = r_q * w_b[:, None]
    inv_g_p = np.linalg.inv(r_p.T @ rw_p)
    inv_g_q = np.linalg.inv(r_q.T @ rw_q)
    # Bias-corrected score rows (CCT 2014, eq. for Q_q): subtract the estimated leading bias
    # term, which uses the order-q fit at the bias bandwidth.
    lead = rw_p.T @ (x / h) ** (p + 1)
    m = (r_q @ inv_g_q[p + 1, :]) * w_b
    q_q = rw_p - h ** (p + 1) * m[:, None] * lead[None, :]
    beta_p = inv_g_p @ (rw_p.T @ d)
    beta_q = inv_g_q @ (rw_q.T @ d)
    beta_bc = inv_g_p @ (q_q.T @ d)
    fitted_p = r_p @ beta_p if vce != "nn" else None
    fitted_q = r_q @ beta_q if vce != "nn" else None
    res_h = residuals(x, d, fitted_p, vce, nnmatch, p + 1)
    res_b = res_h if vce == "nn" else residuals(x, d, fitted_q, vce, nnmatch, q + 1)
    u_p = rw_p.T @ d
    zwd = (d * w_h[:, None]).T @ d
    return _SideFit(beta_p, beta_bc, inv_g_p, rw_p, q_q, res_h, res_b, u_p, zwd,
                    int((w_h > 0).sum()))


def _jump_and_weights(fl: _SideFit, fr: _SideFit, n_out: int,
                      ) -> tuple[float, float, np.ndarray, dict[str, float]]:
    """Conventional and bias-corrected jumps and the column combination s for the variance."""
    beta_p = fr.beta_p - fl.beta_p
    beta_bc = fr.beta_bc - fl.beta_bc
    ncol = beta_p.shape[1]
    cols_z = list(range(n_out, ncol))
    extra: dict[str, float] = {}
    if cols_z:
        # Covariates enter with a common coefficient on both sides (Calonico, Cattaneo, Farrell
        # and Titiunik 2019): gamma from the pooled partialled-out normal equations.
        zwz = np.zeros((len(cols_z), len(cols_z)))
        zwy = np.zeros((len(cols_z), n_out))
        for f in (fl, fr):
            uigu = f.u_p[:, cols_z].T @ f.inv_g @ f.u_p
            zwz += f.zwd[cols_z][:, cols_z] - uigu[:, cols_z]
            zwy += f.zwd[cols_z][:, :n_out] - uigu[:, :n_out]
        gamma = np.linalg.solve(zwz, zwy)
    else:
        gamma = np.zeros((0, n_out))
    s_y = np.concatenate([[1.0], -gamma[:, 0]])
    sel_y = [0, *cols_z]
    tau_y = float(s_y @ beta_p[0, sel_y])
    tau_y_bc = float(s_y @ beta_bc[0, sel_y])
    if n_out == 1:
        return tau_y, tau_y_bc, s_y, extra
    s_t = np.concatenate([[1.0], -gamma[:, 1]])
    sel_t = [1, *cols_z]
    tau_t = float(s_t @ beta_p[0, sel_t])
    tau_t_bc = float(s_t @ beta_bc[0, sel_t])
    if abs(tau_t) < 1e-12:
        raise AnalysisError("fuzzy: no jump in the treatment received at the cut-off")
    tau = tau_y / tau_t
    grad = np.array([1 / tau_t, -tau_y / tau_t**2])
    tau_bc = tau - float(grad @ [tau_y - tau_y_bc, tau_t - tau_t_bc])
    s = np.concatenate([grad, -(1 / tau_t) * gamma[:, 0] + (tau_y / tau_t**2) * gamma[:, 1]])
    extra = {"jump_outcome": tau_y, "jump_treatment": tau_t}
    return tau, tau_bc, s, extra


def fit_rd(frame: pd.DataFrame, spec: RdSpec) -> RdResult:
    """Fit a sharp (or, with ``spec.fuzzy``, fuzzy) regression discontinuity.

    Parameters
    ----------
    frame
        One row per unit with the outcome, the running variable, the treatment received (fuzzy)
        and any covariates; rows with a missing value in these are dropped.
    spec
        What to fit.

    Returns
    -------
    RdResult
        ``estimate`` (model ``rd_sharp`` or ``rd_fuzzy``) holds the conventional local-linear
        jump and its conventional standard error, with the robust bias-corrected interval and
        p-value; ``details`` keeps both intervals.

    Notes
    -----
    On each side :math:`s \\in \\{-, +\\}` the local polynomial of order :math:`p` (default 1)
    solves :math:`\\hat\\beta_s = \\arg\\min \\sum_i K(x_i/h)(y_i - r_p(x_i)^\\top\\beta)^2` over
    that side's observations; the sharp effect is
    :math:`\\hat\\tau = \\hat\\beta_{+,0} - \\hat\\beta_{-,0}` (sign reversed when treatment is
    below the cut-off). Fuzzy RD divides the outcome jump by the jump in treatment received
    (the Wald ratio; equal to two-stage least squares with the same kernel weights), with a
    delta-method variance. The conventional variance is the sandwich
    :math:`\\Gamma^{-1} (\\sum_i w_i^2 \\hat\\varepsilon_i^2 r_i r_i^\\top) \\Gamma^{-1}` summed
    over sides. The robust bias-corrected estimate subtracts the estimated leading bias (order
    :math:`p+1` fit at bandwidth :math:`b`) and its variance accounts for that extra estimation
    (CCT 2014, Theorem A.1); its interval is :math:`\\hat\\tau_{bc} \\pm z\\, \\hat\\sigma_{rb}`.
    With covariates, a common linear adjustment is estimated jointly (CCFT 2019).
    """
    left, right, n_dropped = split_sides(frame, spec)
    choice: BandwidthChoice | None = None
    if isinstance(spec.bandwidth, str):
        choice = mserd_bandwidth(left, right, spec.order, spec.kernel, spec.vce, spec.nnmatch)
        h, b = choice.h, choice.b
    else:
        h = float(spec.bandwidth)
        b = float(spec.bias_bandwidth) if spec.bias_bandwidth is not None else h
    try:
        args = (h, b, spec.order, spec.kernel, spec.vce, spec.nnmatch)
        fl, fr = _fit_side(left, *args), _fit_side(right, *args)
    except AnalysisError as exc:
        raise AnalysisError(f"{spec.analysis}: {exc} (h = {h:.4g})") from None
    except np.linalg.LinAlgError:
        raise AnalysisError(f"{spec.analysis}: local fit is singular within the bandwidth "
                            f"(h = {h:.4g})") from None
    n_out = left.n_outcome
    try:
        tau, tau_bc, s, extra = _jump_and_weights(fl, fr, n_out)
    except AnalysisError as exc:
        raise AnalysisError(f"{spec.analysis}: {exc}") from None
    except np.linalg.LinAlgError:
        raise AnalysisError(f"{spec.analysis}: covariates are collinear within the "
                            "bandwidth") from None
    var_cl = sum(float((f.inv_g @ meat(f.rw_p, f.res_h, s) @ f.inv_g)[0, 0]) for f in (fl, fr))
    var_rb = sum(float((f.inv_g @ meat(f.q_q, f.res_b, s) @ f.inv_g)[0, 0]) for f in (fl, fr))
    sign = 1.0 if (spec.treated_above or spec.fuzzy) else -1.0
    tau, tau_bc = sign * tau, sign * tau_bc
    se_cl, se_rb = math.sqrt(var_cl), math.sqrt(var_rb)
    z = float(stats.norm.ppf(0.5 + spec.interval_level / 2))
    p_cl = float(2 * stats.norm.sf(abs(tau / se_cl)))
    p_rb = float(2 * stats.norm.sf(abs(tau_bc / se_rb)))
    warnings = []
    if n_dropped:
        warnings.append(f"{n_dropped} row(s) with a missing outcome, running variable, treatment "
                        "or covariate were excluded")
    if min(fl.n_h, fr.n_h) < 20:
        warnings.append(f"only {min(fl.n_h, fr.n_h)} observations within the bandwidth on one "
                        "side of the cut-off")
    model = "rd_fuzzy" if spec.fuzzy else "rd_sharp"
    details = {
        "interval": "robust bias-corrected (Calonico, Cattaneo and Titiunik 2014)",
        "conventional_ci": [tau - z * se_cl, tau + z * se_cl],
        "conventional_p_value": p_cl,
        "robust_ci": [tau_bc - z * se_rb, tau_bc + z * se_rb],
        "robust_p_value": p_rb,
        "bias_corrected_estimate": tau_bc,
        "robust_std_error": se_rb,
        "h": h, "b": b,
        "bandwidth_method": "mserd" if choice else "fixed",
        "kernel": spec.kernel, "order": spec.order, "vce": spec.vce,
        "nnmatch": spec.nnmatch if spec.vce == "nn" else None,
        "cutoff": float(spec.cutoff), "running": spec.running,
        "treated_above": spec.treated_above,
        "covariates": list(spec.covariates),
        "n_left_in_bandwidth": fl.n_h, "n_right_in_bandwidth": fr.n_h,
        "n_left": int(len(left.x)), "n_right": int(len(right.x)),
        "n_excluded": n_dropped,
        **extra,
    }
    if choice is not None:
        details["pilot_bandwidth"] = choice.pilot
        details["pilot_bias_bandwidth"] = choice.pilot_bias
    estimate = Estimate(
        estimand=spec.estimand, analysis=spec.analysis, engine="frequentist", model=model,
        estimate=tau, std_error=se_cl,
        ci_lower=tau_bc - z * se_rb, ci_upper=tau_bc + z * se_rb,
        ci_level=spec.interval_level, p_value=p_rb,
        n_analysed=fl.n_h + fr.n_h,
        n_by_arm={"below_cutoff": fl.n_h, "at_or_above_cutoff": fr.n_h},
        diagnostics={"h": h, "b": b},
        warnings=tuple(warnings), details=details,
    )
    return RdResult(estimate=estimate, h=h, b=b, n_left=fl.n_h, n_right=fr.n_h, bandwidth=choice)


def with_bandwidth(spec: RdSpec, h: float, b: float | None = None) -> RdSpec:
    """The same specification at a fixed bandwidth (used by the sensitivity checks)."""
    return replace(spec, bandwidth=float(h), bias_bandwidth=None if b is None else float(b))
