"""Recursive numerical integration for group-sequential tests.

The joint distribution of the standardised statistics Z_1, ..., Z_K at information fractions
t_1 < ... < t_K follows the canonical form (Jennison & Turnbull 2000, sec. 3.1): with the drift
eta = theta * sqrt(I_max), the score S_k = Z_k sqrt(t_k) has independent increments

    S_k - S_{k-1} ~ N(eta (t_k - t_{k-1}), t_k - t_{k-1}),    S_0 = 0, t_0 = 0.

Probabilities of crossing a lower boundary a_k or an upper boundary b_k at look k, having stayed
inside (a_j, b_j) at every earlier look, follow from the recursion for the sub-density of Z_k on
the continuation region (Armitage, McPherson & Rowe 1969; Jennison & Turnbull 2000, ch. 19),
evaluated with Simpson's rule on Jennison & Turnbull's grid. Everything here is vectorised numpy;
:mod:`designs.boundaries` builds designs on top of the solvers at the end of this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

#: Grid-size parameter r of Jennison & Turnbull (sec. 19.2.1): about 12 r grid points per look.
#: With r = 32 crossing probabilities move by about 1e-10 and boundaries by about 2e-8 when r is
#: tripled, far inside the 1e-4 agreement the references ask for; r = 16 is good to about 1e-6.
DEFAULT_GRID = 32

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
BIG = 40.0  #: |z| beyond which every probability here is zero in double precision


@dataclass(frozen=True)
class SubDensity:
    """The sub-density of Z_k on the continuation region after look k.

    ``h`` holds Simpson weight x sub-density at the points ``z``, so that an integral over the
    continuation region is ``h @ f(z)``; ``h.sum()`` is the probability of continuing past look k.
    Before the first look it is the point mass at Z_0 = 0 with t_0 = 0 (:func:`start`).
    """

    t: float
    z: np.ndarray
    h: np.ndarray

    @property
    def mass(self) -> float:
        """Probability of having continued past this look."""
        return float(self.h.sum())


def start() -> SubDensity:
    """The state before the first look: all mass at S_0 = 0, t_0 = 0."""
    return SubDensity(0.0, np.zeros(1), np.ones(1))


def grid(mean: float, lower: float, upper: float, r: int = DEFAULT_GRID) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """Points and Simpson weights on the continuation region (lower, upper) of one look.

    Parameters
    ----------
    mean
        Mean of Z_k under the drift considered; the grid is centred on it.
    lower, upper
        Boundaries of the continuation region (may be infinite).
    r
        Grid-size parameter.

    Returns
    -------
    points, weights
        ``2m - 1`` points (``m`` grid points plus the midpoints) and their Simpson weights; both
        empty when the region holds no probability worth integrating.

    Notes
    -----
    Jennison & Turnbull (2000, sec. 19.2.1): for i = 1, ..., 6r - 1,

    .. math::

        x_i = \\mu + \\begin{cases}
            -3 - 4 \\log(r / i) & i < r \\\\
            -3 + 3 (i - r) / (2r) & r \\le i \\le 5r \\\\
            3 + 4 \\log(r / (6r - i)) & i > 5r,
        \\end{cases}

    dense within 3 of the mean and sparse in the tails out to about mean +/- (3 + 4 log r).
    Points outside (lower, upper) are dropped and the finite ends added; each interval
    [z_j, z_{j+1}] of width d gets its midpoint and Simpson weights d/6, 4d/6, d/6.
    """
    i = np.arange(1, 6 * r, dtype=float)
    x = np.where(
        i < r,
        -3.0 - 4.0 * np.log(r / i),
        np.where(i <= 5 * r, -3.0 + 3.0 * (i - r) / (2.0 * r),
                 3.0 + 4.0 * np.log(r / np.maximum(6 * r - i, 1e-300))),
    ) + mean
    lo, hi = max(lower, x[0]), min(upper, x[-1])
    if not lo < hi:
        return np.empty(0), np.empty(0)
    knots = np.concatenate(([lo], x[(x > lo) & (x < hi)], [hi]))
    d = np.diff(knots)
    points = np.empty(2 * knots.size - 1)
    points[0::2] = knots
    points[1::2] = knots[:-1] + d / 2.0
    weights = np.zeros_like(points)
    weights[0:-1:2] += d / 6.0
    weights[2::2] += d / 6.0
    weights[1::2] = 4.0 * d / 6.0
    return points, weights


def _standardised(prev: SubDensity, t: float, drift: float, z: np.ndarray | float) -> np.ndarray:
    """(z sqrt(t) - Z_{k-1} sqrt(t_{k-1}) - eta dt) / sqrt(dt), one row per grid point of prev."""
    dt = t - prev.t
    if dt <= 0.0:
        raise ValueError(f"information fractions must increase (got {prev.t} then {t})")
    shift = prev.z * math.sqrt(prev.t) + drift * dt
    return (np.multiply.outer(np.asarray(z, dtype=float) * math.sqrt(t), np.ones_like(shift))
            - shift) / math.sqrt(dt)


def prob_above(prev: SubDensity, t: float, drift: float, c: float) -> float:
    """P(continue to look k, Z_k >= c) given the sub-density ``prev`` after look k - 1."""
    if c == math.inf or prev.h.size == 0:
        return 0.0
    if c == -math.inf:
        return prev.mass
    return float(prev.h @ ndtr(-_standardised(prev, t, drift, c)))


def prob_below(prev: SubDensity, t: float, drift: float, f: float) -> float:
    """P(continue to look k, Z_k <= f) given the sub-density ``prev`` after look k - 1."""
    if f == -math.inf or prev.h.size == 0:
        return 0.0
    if f == math.inf:
        return prev.mass
    return float(prev.h @ ndtr(_standardised(prev, t, drift, f)))


def advance(prev: SubDensity, t: float, drift: float, lower: float, upper: float,
            r: int = DEFAULT_GRID) -> SubDensity:
    """The sub-density after look k on (lower, upper), from the one after look k - 1.

    Notes
    -----
    .. math::

        g_k(z) = \\int g_{k-1}(x) \\frac{\\sqrt{t_k}}{\\sqrt{\\Delta_k}}
                 \\phi\\left(\\frac{z \\sqrt{t_k} - x \\sqrt{t_{k-1}} - \\eta \\Delta_k}
                 {\\sqrt{\\Delta_k}}\\right) dx,\\qquad \\Delta_k = t_k - t_{k-1},

    with the integral replaced by the Simpson sum over the previous grid (one matrix-vector
    product per look).
    """
    z, w = grid(drift * math.sqrt(t), lower, upper, r)
    if z.size == 0 or prev.h.size == 0:
        return SubDensity(t, np.empty(0), np.empty(0))
    u = _standardised(prev, t, drift, z)
    kernel = np.exp(-0.5 * u * u) * (_INV_SQRT_2PI * math.sqrt(t / (t - prev.t)))
    return SubDensity(t, z, w * (kernel @ prev.h))


def crossing_probabilities(
    rates: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    drift: float = 0.0,
    r: int = DEFAULT_GRID,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-look probabilities of first crossing the upper and the lower boundary.

    Parameters
    ----------
    rates
        Information fractions t_1 < ... < t_K (t_K may differ from 1).
    lower, upper
        Boundaries a_k < b_k on the Z scale; ``-inf`` / ``inf`` where there is none.
    drift
        eta = theta sqrt(I_max): E[Z_k] = eta sqrt(t_k).
    r
        Grid-size parameter of :func:`grid`.

    Returns
    -------
    above, below
        ``above[k] = P(a_j < Z_j < b_j for j < k, Z_k >= b_k)`` and
        ``below[k] = P(a_j < Z_j < b_j for j < k, Z_k <= a_k)``.
    """
    k_max = len(rates)
    above, below = np.zeros(k_max), np.zeros(k_max)
    state = start()
    for k in range(k_max):
        t = float(rates[k])
        above[k] = prob_above(state, t, drift, float(upper[k]))
        below[k] = prob_below(state, t, drift, float(lower[k]))
        if k + 1 < k_max:
            state = advance(state, t, drift, float(lower[k]), float(upper[k]), r)
    return above, below


# --- boundary solvers: one look at a time, as J&T ch. 19 builds them --------------------------

def solve(fn: Callable[[float], float], lo: float, hi: float) -> float:
    """Root of ``fn`` on [lo, hi] by Brent's method, to 1e-12 on the argument."""
    return float(brentq(fn, lo, hi, xtol=1e-12, rtol=4 * np.finfo(float).eps, maxiter=200))


def efficacy_bound(state: SubDensity, t: float, target: float) -> float:
    """Upper bound c at fraction t with P0(continue to this look, Z >= c) = target.

    Returns ``inf`` when there is nothing to spend and ``-inf`` when the target exceeds the
    probability still in play (only met while searching extreme drifts with binding futility).
    """
    if target <= 1e-15:
        return math.inf
    if target >= state.mass:
        return -math.inf
    return solve(lambda c: prob_above(state, t, 0.0, c) - target, -BIG, BIG)


def futility_bound(state: SubDensity, t: float, drift: float, target: float,
                   cap: float) -> float:
    """Lower bound f with P_drift(continue to this look, Z <= f) = target, at most ``cap``.

    ``cap`` is the efficacy bound of the look: a futility bound that would cross it is set
    equal to it (nothing continues), and the beta left unspent is carried to later looks.
    """
    if target <= 1e-15:
        return -math.inf
    top = min(cap, BIG)
    if prob_below(state, t, drift, top) <= target:
        return cap
    return solve(lambda f: prob_below(state, t, drift, f) - target, -BIG, top)


def spending_bounds(rates: np.ndarray, cum_alpha: np.ndarray, lower: np.ndarray | None = None,
                    r: int = DEFAULT_GRID) -> np.ndarray:
    """Alpha-spending efficacy bounds under H0, honouring binding lower bounds if given.

    Notes
    -----
    For k = 1, ..., K, with alpha*(t) the cumulative spending values ``cum_alpha``,

    .. math:: P_0(a_j < Z_j < c_j,\\ j < k,\\ Z_k \\ge c_k) = \\alpha^*(t_k) - \\alpha^*(t_{k-1}),

    solved for c_k given c_1..c_{k-1} (Lan & DeMets 1983), with a_j = -inf unless binding.
    """
    c = np.empty(rates.size)
    state, spent = start(), 0.0
    for k, t in enumerate(rates):
        c[k] = efficacy_bound(state, t, cum_alpha[k] - spent)
        spent += prob_above(state, t, 0.0, c[k])
        if k + 1 < rates.size:
            lo = -math.inf if lower is None else lower[k]
            state = advance(state, t, 0.0, lo, c[k], r)
    return c


def classic_bounds(kind: str, rates: np.ndarray, alpha: float,
                   r: int = DEFAULT_GRID) -> np.ndarray:
    """O'Brien & Fleming (``"OF"``) or Pocock (``"P"``) bounds with overall one-sided level alpha.

    Notes
    -----
    c_k = C / sqrt(t_k / t_K) (OF) or c_k = C (P), with C the root of
    :math:`\\sum_k P_0(Z_j < c_j,\\ j < k,\\ Z_k \\ge c_k) = \\alpha`.
    """
    shape = 1.0 / np.sqrt(rates / rates[-1]) if kind == "OF" else np.ones(rates.size)
    none = np.full(rates.size, -math.inf)

    def excess(const: float) -> float:
        return float(crossing_probabilities(rates, none, const * shape, 0.0, r)[0].sum()) - alpha

    return solve(excess, 0.5, 12.0) * shape


def beta_spending_pass(rates: np.ndarray, cum_alpha: np.ndarray | None,
                       fixed_c: np.ndarray | None, cum_beta: np.ndarray, drift: float,
                       r: int = DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the looks for beta-spending futility at a given drift.

    Parameters
    ----------
    rates, cum_alpha, cum_beta
        Information fractions and cumulative alpha and beta spending values.
    fixed_c
        Efficacy bounds computed beforehand (non-binding futility), or ``None`` to solve them
        look by look under H0 with the futility bounds binding (``cum_alpha`` then needed).
    drift
        eta = theta_1 sqrt(I_max) of the alternative.

    Returns
    -------
    c, f
        Efficacy and futility bounds. f_k <= c_k at interims; f_K is left free so that the
        caller can solve f_K(eta) = c_K(eta) for the drift.

    Notes
    -----
    f_k solves :math:`P_\\eta(f_j < Z_j < c_j,\\ j < k,\\ Z_k \\le f_k) =
    \\beta^*(t_k) - \\beta^*(t_{k-1})` (Pampallona, Tsiatis & Kim 2001; rpact's one-sided
    algorithm).
    """
    k_max = rates.size
    c, f = np.empty(k_max), np.empty(k_max)
    h0, h1 = start(), start()
    alpha_spent = beta_spent = 0.0
    for k, t in enumerate(rates):
        if fixed_c is None:
            c[k] = efficacy_bound(h0, t, cum_alpha[k] - alpha_spent)  # type: ignore[index]
            alpha_spent += prob_above(h0, t, 0.0, c[k])
        else:
            c[k] = fixed_c[k]
        cap = c[k] if k + 1 < k_max else math.inf
        f[k] = futility_bound(h1, t, drift, cum_beta[k] - beta_spent, cap)
        beta_spent += prob_below(h1, t, drift, f[k])
        if k + 1 < k_max:
            h1 = advance(h1, t, drift, f[k], c[k], r)
            if fixed_c is None:
                h0 = advance(h0, t, 0.0, f[k], c[k], r)
    return c, f


def power_drift(rates: np.ndarray, c: np.ndarray, power: float, r: int = DEFAULT_GRID) -> float:
    """Drift eta at which efficacy bounds c (no futility) reject with the given probability."""
    none = np.full(rates.size, -math.inf)
    return solve(lambda d: crossing_probabilities(rates, none, c, d, r)[0].sum() - power,
                 0.0, 20.0)
