"""Degrees of freedom for MMRM contrasts: Satterthwaite and residual.

Kenward-Roger is not implemented (its bias-corrected covariance needs second derivatives of the
covariance structure and was not verified against an independent reference); asking for it
raises :class:`trials.errors.AnalysisError` in :func:`analysis.mmrm.fit_mmrm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class _Pattern(Protocol):
    idx: np.ndarray  # observed visit positions
    cross: np.ndarray  # (m, m, p, p): sum_i X_ia^T X_ib


def variance_gradient(
    contrast: np.ndarray,
    vcov_beta: np.ndarray,
    patterns: Sequence[_Pattern],
    precisions: Sequence[np.ndarray],
    jacobian: np.ndarray,
) -> np.ndarray:
    """Gradient of :math:`c^\\top \\Phi(\\theta) c` with respect to the covariance parameters.

    Notes
    -----
    :math:`\\Phi = A^{-1}`, :math:`A = \\sum_i X_i^\\top \\Sigma_i^{-1} X_i`. With
    :math:`u = \\Phi c`, :math:`\\partial (c^\\top\\Phi c)/\\partial\\theta_k =
    \\sum_i u^\\top X_i^\\top W_i (\\partial\\Sigma_i/\\partial\\theta_k) W_i X_i u`,
    :math:`W_i = \\Sigma_i^{-1}`, accumulated over missingness patterns from their
    cross-product sums, so the cost does not grow with the number of participants.
    """
    t = jacobian.shape[1]
    u = vcov_beta @ contrast
    acc = np.zeros((t, t))
    for pat, w in zip(patterns, precisions, strict=True):
        q = np.einsum("k,abkl,l->ab", u, pat.cross, u)
        acc[np.ix_(pat.idx, pat.idx)] += w @ q @ w
    return np.einsum("kij,ij->k", jacobian, acc)


def satterthwaite_df(variance: float, gradient: np.ndarray, hessian: np.ndarray) -> float:
    """Satterthwaite degrees of freedom of a linear contrast of the fixed effects.

    Parameters
    ----------
    variance
        :math:`v = c^\\top \\Phi(\\hat\\theta) c`.
    gradient
        :math:`g = \\partial v / \\partial \\theta` at :math:`\\hat\\theta`.
    hessian
        Hessian of :math:`-2 \\log L` (REML or ML, fixed effects profiled out) at
        :math:`\\hat\\theta`.

    Notes
    -----
    :math:`\\nu = 2 v^2 / (g^\\top \\widehat{\\mathrm{Var}}(\\hat\\theta) g)` with
    :math:`\\widehat{\\mathrm{Var}}(\\hat\\theta) = 2 H^{-1}`; the value does not depend on how
    :math:`\\theta` is parametrised, which is why it can be compared with emmeans' computation on
    nlme's parametrisation.
    """
    quad = float(gradient @ np.linalg.solve(hessian, gradient))
    if not np.isfinite(quad) or quad <= 0:
        return float("inf")
    return float(variance**2 / quad)


def residual_df(n_obs: int, n_beta: int) -> float:
    """Residual degrees of freedom: observations minus fixed-effect parameters."""
    return float(n_obs - n_beta)
