"""Local-polynomial building blocks for regression discontinuity and the MSE-optimal bandwidth.

The bandwidth selector is the common MSE-optimal choice ("mserd") of Calonico, Cattaneo and
Titiunik (2014, *Econometrica* 82:2295-2326) with the regularisation and pilot steps described in
Calonico, Cattaneo and Farrell (2020, *Econometrics Journal* 23:192-210) and implemented in the
``rdrobust`` software (Calonico, Cattaneo, Farrell and Titiunik 2017, *Stata Journal* 17:372-404).
The variance of every local fit is a sandwich whose "meat" uses either nearest-neighbour
residuals (``vce="nn"``, the rdrobust default) or plain residuals (``"hc0"``, ``"hc1"``).

Throughout, the running variable is centred at the cut-off; the left side holds ``x < 0`` and the
right side ``x >= 0``; each side is sorted by ``x``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trials.errors import AnalysisError

KERNELS = ("triangular", "uniform", "epanechnikov")
VCE_TYPES = ("nn", "hc0", "hc1")
# Rule-of-thumb constants for the pilot bandwidth, one per kernel (rdrobust's C_c).
PILOT_CONSTANT = {"triangular": 2.576, "uniform": 1.843, "epanechnikov": 2.34}
_EPS = math.sqrt(np.finfo(float).eps)


def kernel_weights(x: np.ndarray, h: float, kernel: str) -> np.ndarray:
    """K(x / h) / h for centred ``x``; zero outside ``|x| <= h``."""
    u = np.abs(x / h)
    inside = u <= 1
    if kernel == "triangular":
        k = (1 - u) * inside
    elif kernel == "uniform":
        k = 0.5 * inside
    elif kernel == "epanechnikov":
        k = 0.75 * (1 - u**2) * inside
    else:
        raise AnalysisError(f"kernel: unknown kernel {kernel!r}; use one of {', '.join(KERNELS)}")
    return k / h


def vander(x: np.ndarray, order: int) -> np.ndarray:
    """Columns 1, x, ..., x^order."""
    return np.column_stack([x**j for j in range(order + 1)])


def nn_residuals(x: np.ndarray, d: np.ndarray, matches: int = 3) -> np.ndarray:
    """Nearest-neighbour residuals of each column of ``d`` (rows sorted by ``x``).

    Notes
    -----
    For observation :math:`i` the neighbour set :math:`J_i` holds the other observations at the
    same ``x`` and is widened, one distinct ``x`` value at a time and always towards the nearer
    side (both sides when equidistant), until it has at least ``matches`` members. The residual
    is :math:`\\sqrt{|J_i|/(|J_i|+1)}\\,(d_i - \\bar d_{J_i})` (Abadie and Imbens 2006;
    Calonico, Cattaneo and Titiunik 2014, section 3.4).
    """
    n = len(x)
    values, first, counts = np.unique(x, return_index=True, return_counts=True)
    k = len(values)
    cap = min(matches, n - 1)
    lo_obs = np.empty(k, dtype=np.int64)
    hi_obs = np.empty(k, dtype=np.int64)
    for g in range(k):
        lo, hi = g, g  # window of distinct values [lo, hi]
        size = counts[g] - 1
        while size < cap:
            if lo == 0:
                hi += 1
                size += counts[hi]
                continue
            if hi == k - 1:
                lo -= 1
                size += counts[lo]
                continue
            dleft = values[g] - values[lo - 1]
            dright = values[hi + 1] - values[g]
            tol = max(dleft, dright) * _EPS
            if dleft - dright > tol:
                hi += 1
                size += counts[hi]
            elif dright - dleft > tol:
                lo -= 1
                size += counts[lo]
            else:
                hi += 1
                lo -= 1
                size += counts[hi] + counts[lo]
        lo_obs[g] = first[lo]
        hi_obs[g] = first[hi] + counts[hi]
    group = np.repeat(np.arange(k), counts)
    lo_i, hi_i = lo_obs[group], hi_obs[group]
    csum = np.vstack([np.zeros((1, d.shape[1])), np.cumsum(d, axis=0)])
    size_i = (hi_i - lo_i - 1).astype(float)
    others = (csum[hi_i] - csum[lo_i] - d) / size_i[:, None]
    return np.sqrt(size_i / (size_i + 1))[:, None] * (d - others)


def residuals(x: np.ndarray, d: np.ndarray, fitted: np.ndarray | None, vce: str, nnmatch: int,
              n_coef: int) -> np.ndarray:
    """Residual columns for the sandwich meat (NN, HC0 or HC1 with its n/(n-k) factor)."""
    if vce == "nn":
        return nn_residuals(x, d, nnmatch)
    if fitted is None:
        raise ValueError("residuals: fitted values are needed for HC residuals")
    factor = 1.0 if vce == "hc0" else math.sqrt(len(x) / (len(x) - n_coef))
    return factor * (d - fitted)


def meat(scores: np.ndarray, res: np.ndarray, s: np.ndarray) -> np.ndarray:
    """sum_i (s' r_i)^2 q_i q_i' for score rows q_i (kernel-weighted design rows)."""
    combined = res @ s
    sq = scores * combined[:, None]
    return sq.T @ sq


@dataclass(frozen=True)
class Side:
    """The observations on one side of the cut-off: centred running variable and outcome columns
    ``d`` = [y, treatment received (fuzzy), covariates...]."""

    x: np.ndarray
    d: np.ndarray
    n_outcome: int  # 1 for sharp, 2 for fuzzy (the columns before the covariates)


def _side_coefficient_weights(side: Side, beta: np.ndarray, nu: int,
                              gamma: np.ndarray | None) -> np.ndarray:
    """Linear combination s of the ``d`` columns whose nu-th coefficient is the target."""
    dt = side.n_outcome - 1
    if gamma is None:
        if dt == 0:
            return np.array([1.0])
        tau_y = math.factorial(nu) * beta[nu, 0]
        tau_t = math.factorial(nu) * beta[nu, 1]
        return np.array([1 / tau_t, -tau_y / tau_t**2])
    s_y = np.concatenate([[1.0], -gamma[:, 0]])
    if dt == 0:
        return s_y
    cols_z = list(range(2, side.d.shape[1]))
    s_t = np.concatenate([[1.0], -gamma[:, 1]])
    tau_y = math.factorial(nu) * s_y @ np.concatenate([[beta[nu, 0]], beta[nu, cols_z]])
    tau_t = math.factorial(nu) * s_t @ np.concatenate([[beta[nu, 1]], beta[nu, cols_z]])
    return np.concatenate([[1 / tau_t, -tau_y / tau_t**2],
                           -(1 / tau_t) * gamma[:, 0] + (tau_y / tau_t**2) * gamma[:, 1]])


def _pilot_variance(side: Side, order: int, nu: int, h: float, kernel: str, vce: str,
                    nnmatch: int) -> tuple[float, float, np.ndarray]:
    """Variance constant V, bias constant B and combination s from the pilot fit at ``h``."""
    w = kernel_weights(side.x, h, kernel)
    keep = w > 0
    x, d, w = side.x[keep], side.d[keep], w[keep]
    if len(np.unique(x)) < order + 1:
        raise AnalysisError("bandwidth: too few distinct running-variable values within the pilot "
                            "bandwidth")
    r = vander(x, order)
    rw = r * w[:, None]
    inv_g = np.linalg.inv(r.T @ rw)
    beta = inv_g @ (rw.T @ d)
    gamma = None
    nz = d.shape[1] - side.n_outcome
    if nz:
        # Partial the covariates out of the outcome columns within this side (as rdrobust does in
        # its bandwidth step).
        u = rw.T @ d
        zwd = (d[:, side.n_outcome:] * w[:, None]).T @ d - u[:, side.n_outcome:].T @ inv_g @ u
        zwz = zwd[:, side.n_outcome:]
        gamma = np.linalg.solve(zwz, zwd[:, :side.n_outcome])
    s = _side_coefficient_weights(side, beta, nu, gamma)
    fitted = r @ beta if vce != "nn" else None
    res = residuals(x, d, fitted, vce, nnmatch, order + 1)
    v = (inv_g @ meat(rw, res, s) @ inv_g)[nu, nu]
    lead = rw.T @ (x / h) ** (order + 1)
    b_const = (h ** np.arange(order + 1) * (inv_g @ lead))[nu]
    return float(v), float(b_const), s


def _bandwidth_terms(side: Side, order: int, nu: int, order_b: int, h_pilot: float,
                     h_bias: float, regularise: bool, kernel: str, vce: str,
                     nnmatch: int) -> tuple[float, float, float, float]:
    """(V, B, R, rate) for one side: the ingredients of h = (V / (B^2 + R))^rate."""
    v_v, b_const, s = _pilot_variance(side, order, nu, h_pilot, kernel, vce, nnmatch)
    w = kernel_weights(side.x, h_bias, kernel)
    keep = w > 0
    x, d, w = side.x[keep], side.d[keep], w[keep]
    if len(np.unique(x)) < order_b + 1:
        raise AnalysisError("bandwidth: too few distinct running-variable values within the bias "
                            "bandwidth")
    r = vander(x, order_b)
    rw = r * w[:, None]
    inv_g = np.linalg.inv(r.T @ rw)
    beta = inv_g @ (rw.T @ d)
    reg = 0.0
    if regularise:
        fitted = r @ beta if vce != "nn" else None
        res = residuals(x, d, fitted, vce, nnmatch, order_b + 1)
        v_b = (inv_g @ meat(rw, res, s) @ inv_g)[-1, -1]
        reg = 2 * (order + 1 - nu) * 3 * b_const**2 * float(v_b)
    bias = math.sqrt(2 * (order + 1 - nu)) * b_const * float(s @ beta[-1, :])
    variance = (2 * nu + 1) * h_pilot ** (2 * nu + 1) * v_v
    return variance, bias, reg, 1 / (2 * order + 3)


@dataclass(frozen=True)
class BandwidthChoice:
    """Selected main (h) and bias (b) bandwidths with the pilot bandwidths that led to them."""

    h: float
    b: float
    pilot: float
    pilot_bias: float
    method: str

    def to_dict(self) -> dict[str, float | str]:
        return {"h": self.h, "b": self.b, "pilot": self.pilot, "pilot_bias": self.pilot_bias,
                "method": self.method}


def quantile_type2(x: np.ndarray, prob: float) -> float:
    """R's quantile type 2 (averaging at discontinuities), as rdrobust uses for the IQR."""
    xs = np.sort(x)
    n = len(xs)
    j = math.floor(n * prob)
    if abs(n * prob - j) < 1e-12 and 0 < j < n:
        return float((xs[j - 1] + xs[j]) / 2)
    return float(xs[min(max(int(math.ceil(n * prob)) - 1, 0), n - 1)])


def mserd_bandwidth(left: Side, right: Side, p: int = 1, kernel: str = "triangular",
                    vce: str = "nn", nnmatch: int = 3) -> BandwidthChoice:
    """Common MSE-optimal bandwidth h and bias bandwidth b for the jump at the cut-off.

    Parameters
    ----------
    left, right
        Observations below and at-or-above the cut-off (running variable centred, sorted).
    p
        Order of the local polynomial for the point estimate (bias correction uses p + 1).

    Notes
    -----
    Three steps, each with ``h_k = ((V_- + V_+) / ((B_+ - B_-)^2 + R_- + R_+))^{1/(2o+3)}``
    for the local polynomial of order ``o`` and the target derivative ``nu``:

    1. pilot ``c = C_K min(sd(x), IQR(x)/1.349) M^{-1/5}`` (``M`` distinct values of ``x``,
       ``C_K`` = 2.576 triangular, 1.843 uniform, 2.34 Epanechnikov), capped at the range;
    2. ``d`` for the (q+1)-th derivative (o = q + 1, unregularised), then the bias bandwidth
       ``b`` for the (p+1)-th derivative (o = q);
    3. ``h`` for the level (o = p, nu = 0) with the bias estimated at ``b``.

    V is the sandwich variance of the pilot fit at ``c``, B the leading bias constant times the
    estimated higher derivative, R the regularisation term 2(o+1-nu) 3 B_const^2 Var(beta_hat)
    (Calonico, Cattaneo and Titiunik 2014, section 3.3). Every bandwidth is capped at the larger
    distance from the cut-off to the end of the data (rdrobust's ``bwrestrict``). When 20% or more
    of a side's observations share values (mass points), the pilot and ``d`` are widened to
    include at least 10 distinct values per side (rdrobust's ``masspoints="adjust"``).
    """
    q = p + 1
    x_all = np.concatenate([left.x, right.x])
    n_unique_l, n_unique_r = len(np.unique(left.x)), len(np.unique(right.x))
    if min(n_unique_l, n_unique_r) < q + 3:
        raise AnalysisError("bandwidth: too few distinct running-variable values on one side of "
                            "the cut-off for the data-driven bandwidth")
    iqr = quantile_type2(x_all, 0.75) - quantile_type2(x_all, 0.25)
    spread = min(float(np.std(x_all, ddof=1)), iqr / 1.349)
    pilot = PILOT_CONSTANT[kernel] * spread * (n_unique_l + n_unique_r) ** (-1 / 5)
    bw_max = max(abs(float(left.x.min())), abs(float(right.x.max())))
    pilot = min(pilot, bw_max)
    bw_min = 0.0
    mass = max(1 - n_unique_l / len(left.x), 1 - n_unique_r / len(right.x))
    if mass >= 0.2:
        check_l = min(10, n_unique_l)
        check_r = min(10, n_unique_r)
        bw_min = max(np.sort(np.abs(np.unique(left.x)))[check_l - 1],
                     np.sort(np.unique(right.x))[check_r - 1]) * (1 + _EPS)
        pilot = max(pilot, bw_min)

    def combine(terms_l: tuple[float, ...], terms_r: tuple[float, ...], regularise: bool) -> float:
        v = terms_l[0] + terms_r[0]
        denom = (terms_r[1] - terms_l[1]) ** 2 + (terms_l[2] + terms_r[2] if regularise else 0.0)
        return min((v / denom) ** terms_l[3], bw_max)

    args = (kernel, vce, nnmatch)
    range_l = abs(float(left.x.min())) * (1 + _EPS)
    range_r = abs(float(right.x.max())) * (1 + _EPS)
    d_l = _bandwidth_terms(left, q + 1, q + 1, q + 2, pilot, range_l, False, *args)
    d_r = _bandwidth_terms(right, q + 1, q + 1, q + 2, pilot, range_r, False, *args)
    d_bw = max(combine(d_l, d_r, False), bw_min)
    b_l = _bandwidth_terms(left, q, p + 1, q + 1, pilot, d_bw, True, *args)
    b_r = _bandwidth_terms(right, q, p + 1, q + 1, pilot, d_bw, True, *args)
    b_bw = combine(b_l, b_r, True)
    h_l = _bandwidth_terms(left, p, 0, q, pilot, b_bw, True, *args)
    h_r = _bandwidth_terms(right, p, 0, q, pilot, b_bw, True, *args)
    h_bw = combine(h_l, h_r, True)
    return BandwidthChoice(h=float(h_bw), b=float(b_bw), pilot=float(pilot),
                           pilot_bias=float(d_bw), method="mserd")
