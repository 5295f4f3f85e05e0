"""Bayesian success criteria for a single analysis: the probability that a posterior-probability
criterion is met for a true effect, its exact threshold under the normal model, and calibration
of the threshold to a stated type-I error by simulation.

Part of the Bayesian rules of :mod:`designs.bayes_rules` (same conventions, re-exported there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from designs.bayes_rules import (
    CalibratedThreshold,
    _check_open_unit,
    _cutoff,
    _out,
    _positive,
    _sign,
    normal_update,
    posterior_probability,
)


# ---------------------------------------------------------------------------- single criterion
def success_probability(
    theta: ArrayLike,
    std_error: ArrayLike,
    threshold: ArrayLike = 0.0,
    probability: ArrayLike = 0.975,
    *,
    prior_mean: ArrayLike = 0.0,
    prior_sd: ArrayLike = np.inf,
    direction: str = "higher",
) -> Any:
    r"""Probability that a posterior-probability criterion is met when the true effect is theta.

    The operating characteristic of the rule "success when P(theta beyond ``threshold`` | y) >=
    ``probability``": type-I error at the null, power elsewhere. Parameters as in
    :func:`predictive_probability`, with ``theta`` the true effect and ``std_error`` the
    standard error at the analysis.

    Notes
    -----
    With :math:`w = s_1^2 / SE^2` the weight of the data in the posterior mean and
    :math:`u = s y`, the criterion :math:`s(m_1 - \delta)/s_1 \ge z_\gamma` is

    .. math::

        u \ge b = \frac{s\delta + z_\gamma s_1 - (1 - w)\, s m_0}{w},

    and :math:`u \sim N(s\theta, SE^2)`, so :math:`P = \Phi\{(s\theta - b)/SE\}`. Under a
    flat prior (:math:`w = 1`, :math:`s_1 = SE`) at :math:`\theta = \delta` this is
    :math:`1 - \gamma`.
    """
    sign = _sign(direction)
    se = _positive(std_error, "std_error")
    cut = _cutoff(se, threshold, probability, prior_mean, prior_sd, sign)
    return _out(stats.norm.cdf((sign * np.asarray(theta, float) - cut) / se))


def analytic_probability_threshold(
    alpha: ArrayLike,
    std_error: ArrayLike,
    threshold: ArrayLike = 0.0,
    *,
    null_effect: ArrayLike = 0.0,
    prior_mean: ArrayLike = 0.0,
    prior_sd: ArrayLike = np.inf,
    direction: str = "higher",
) -> Any:
    r"""Posterior-probability threshold with one-sided type-I error ``alpha`` (exact, normal).

    Parameters
    ----------
    alpha
        One-sided type-I error at ``null_effect``.
    std_error
        Standard error of the estimate at the analysis.
    threshold
        Effect threshold delta of the criterion.
    null_effect
        True effect under the null (0 by default).
    prior_mean, prior_sd, direction
        Analysis prior and direction of benefit.

    Returns
    -------
    The probability gamma such that P(P(theta beyond delta | y) >= gamma | theta_0) = alpha.

    Notes
    -----
    The posterior probability increases with :math:`u = s y`, so gamma is its value at the
    :math:`1-\alpha` quantile of y under the null, :math:`y^* = \theta_0 + s z_{1-\alpha} SE`:
    :math:`\gamma = \Phi\{s(m_1(y^*) - \delta)/s_1\}`. With a flat prior and
    :math:`\delta = \theta_0` this is exactly :math:`1 - \alpha`.
    """
    sign = _sign(direction)
    a = _check_open_unit(alpha, "alpha")
    se = _positive(std_error, "std_error")
    y_star = np.asarray(null_effect, float) + sign * stats.norm.ppf(1.0 - a) * se
    post = normal_update(y_star, se, prior_mean, prior_sd)
    return posterior_probability(post.mean, post.sd, threshold, direction)


def calibrate_probability_threshold(
    alpha: float,
    std_error: ArrayLike,
    threshold: ArrayLike = 0.0,
    *,
    null_effect: ArrayLike = 0.0,
    prior_mean: ArrayLike = 0.0,
    prior_sd: ArrayLike = np.inf,
    direction: str = "higher",
    n_sim: int = 200_000,
    seed: int = 0,
) -> CalibratedThreshold:
    r"""Calibrate a posterior-probability threshold to a one-sided type-I error by simulation.

    Simulates ``n_sim`` trials under ``theta = null_effect`` at the information given by
    ``std_error``, computes each trial's P(theta beyond ``threshold`` | y), and returns the
    ``1 - alpha`` quantile of those probabilities: the smallest gamma whose rule has simulated
    type-I error ``alpha``. Parameters as in :func:`analytic_probability_threshold`.

    Returns
    -------
    CalibratedThreshold
        ``probability`` (gamma), its Monte Carlo SE and ``n_sim``.

    Notes
    -----
    The Monte Carlo SE is distribution-free: the number of simulated probabilities below the
    true quantile is Binomial(n, 1 - alpha), with SD :math:`j = \sqrt{n \alpha (1 - \alpha)}`,
    so :math:`SE \approx (p_{(k + j)} - p_{(k - j)}) / 2` with :math:`k = n(1 - \alpha)` and
    :math:`p_{(i)}` the order statistics. Under a flat prior with :math:`\delta = \theta_0`
    the probabilities are Uniform(0, 1), gamma is :math:`1 - \alpha` and the SE is
    :math:`\sqrt{\alpha(1 - \alpha)/n}`. Draws are shared across ``std_error`` values
    (common random numbers), so a grid of sample sizes is calibrated consistently.
    """
    a = float(_check_open_unit(alpha, "alpha"))
    se = _positive(std_error, "std_error")
    if n_sim < 100:
        raise ValueError(f"n_sim must be at least 100, got {n_sim}")
    shape = np.broadcast_shapes(np.shape(se), np.shape(threshold), np.shape(null_effect),
                                np.shape(prior_mean), np.shape(prior_sd))
    z = np.random.default_rng(seed).standard_normal(n_sim).reshape((n_sim,) + (1,) * len(shape))
    y = np.asarray(null_effect, float) + z * se
    post = normal_update(y, se, prior_mean, prior_sd)
    p = np.sort(np.broadcast_to(posterior_probability(post.mean, post.sd, threshold, direction),
                                (n_sim, *shape)), axis=0)
    k = n_sim * (1.0 - a)
    j = np.sqrt(n_sim * a * (1.0 - a))
    lo = int(np.clip(np.floor(k - j), 0, n_sim - 1))
    hi = int(np.clip(np.ceil(k + j), 0, n_sim - 1))
    gamma = np.quantile(p, 1.0 - a, axis=0)
    return CalibratedThreshold(_out(gamma), _out((p[hi] - p[lo]) / 2.0), n_sim)
