"""Within-participant covariance structures for the MMRM and their unconstrained parametrisations.

Every structure maps an unconstrained real vector ``theta`` to a positive definite ``T x T``
matrix over the visit positions ``0..T-1``; the optimiser works on ``theta`` without bounds.
The maps are written with operations that accept complex input, so that the Jacobian
``d Sigma / d theta`` is exact to rounding by the complex-step method.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from trials.errors import AnalysisError

_LOG_2PI = float(np.log(2 * np.pi))

STRUCTURES = (
    "unstructured",
    "compound_symmetry",
    "heterogeneous_compound_symmetry",
    "ar1",
    "heterogeneous_ar1",
    "toeplitz",
    "heterogeneous_toeplitz",
)

_STEP = 1e-30  # complex step: no subtractive cancellation, so any tiny step is exact


def _logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def _lags(t: int) -> np.ndarray:
    idx = np.arange(t)
    return np.abs(idx[:, None] - idx[None, :])


def _scale(sd, corr):
    return corr * (sd[:, None] * sd[None, :])


def _cs_rho(z, t: int):
    # rho in (-1/(T-1), 1): the range where the exchangeable matrix is positive definite
    lower = -1.0 / (t - 1)
    return lower + (1.0 - lower) * _logistic(z)


def _cs_corr(rho, t: int):
    lags = _lags(t)
    return np.where(lags == 0, 1.0 + 0.0 * rho, rho)


def _ar1_corr(rho, t: int):
    lags = _lags(t)
    return np.stack([np.stack([rho ** int(k) for k in row]) for row in lags])


def _toeplitz_corr(z, t: int):
    """Autocorrelations at lags 0..T-1 from partial autocorrelations tanh(z) (Durbin-Levinson).

    Every vector of partial autocorrelations in (-1, 1) gives a positive definite Toeplitz
    correlation matrix and every such matrix arises once, so the map is a bijection.
    """
    pacf = np.tanh(z)
    r = [1.0 + 0.0 * pacf[0]]
    a: list = []
    for k in range(1, t):
        phi = pacf[k - 1]
        a = [a[j] - phi * a[k - 2 - j] for j in range(k - 1)] + [phi]
        r.append(sum(a[j] * r[k - 1 - j] for j in range(k)))
    lags = _lags(t)
    return np.stack([np.stack([r[int(k)] for k in row]) for row in lags])


def _unstructured(theta, t: int, diag: tuple, lower: tuple):
    chol = np.zeros((t, t), dtype=theta.dtype)
    chol[diag] = np.exp(theta[:t])
    chol[lower] = theta[t:]
    return chol @ chol.T


@functools.lru_cache(maxsize=64)
def _builder(name: str, t: int) -> tuple[int, Callable]:
    if name == "unstructured":
        diag, lower = np.diag_indices(t), np.tril_indices(t, -1)
        return t * (t + 1) // 2, lambda th: _unstructured(th, t, diag, lower)
    if name == "compound_symmetry":
        return 2, lambda th: np.exp(2 * th[0]) * _cs_corr(_cs_rho(th[1], t), t)
    if name == "heterogeneous_compound_symmetry":
        return t + 1, lambda th: _scale(np.exp(th[:t]), _cs_corr(_cs_rho(th[t], t), t))
    if name == "ar1":
        return 2, lambda th: np.exp(2 * th[0]) * _ar1_corr(np.tanh(th[1]), t)
    if name == "heterogeneous_ar1":
        return t + 1, lambda th: _scale(np.exp(th[:t]), _ar1_corr(np.tanh(th[t]), t))
    if name == "toeplitz":
        return t, lambda th: np.exp(2 * th[0]) * _toeplitz_corr(th[1:], t)
    if name == "heterogeneous_toeplitz":
        return 2 * t - 1, lambda th: _scale(np.exp(th[:t]), _toeplitz_corr(th[t:], t))
    raise AnalysisError(f"covariance: unknown structure {name!r}; use one of {list(STRUCTURES)}")


@dataclass(frozen=True)
class CovarianceStructure:
    """A named covariance structure over ``n_visits`` ordered visit positions.

    Notes
    -----
    Parametrisations (``sd`` standard deviations, ``R`` correlation matrix,
    :math:`\\Sigma = D R D`, :math:`D = \\mathrm{diag}(sd)`):

    - unstructured: log-Cholesky, :math:`\\Sigma = L L^\\top` with ``log diag(L)`` and the
      strictly lower triangle of ``L`` (row-major) free;
    - compound symmetry: ``log sd`` (one or per visit) and
      :math:`\\rho = -1/(T-1) + (1 + 1/(T-1))\\,\\mathrm{logistic}(z)`;
    - AR(1): ``log sd`` (one or per visit) and :math:`\\rho = \\tanh z`,
      :math:`R_{jk} = \\rho^{|j-k|}` over visit positions (not visit times);
    - Toeplitz: ``log sd`` (one or per visit) and partial autocorrelations
      :math:`\\tanh z_1, \\dots, \\tanh z_{T-1}` mapped to autocorrelations by Durbin-Levinson.
    """

    name: str
    n_visits: int

    def __post_init__(self) -> None:
        if self.n_visits < 2:
            raise AnalysisError("visit: an MMRM needs at least two visits with outcomes")
        _builder(self.name, self.n_visits)

    @property
    def n_params(self) -> int:
        return _builder(self.name, self.n_visits)[0]

    def matrix(self, theta: np.ndarray) -> np.ndarray:
        """The covariance matrix at ``theta`` (real or complex)."""
        return _builder(self.name, self.n_visits)[1](np.asarray(theta))

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """``d Sigma / d theta_k`` for every k, shape ``(n_params, T, T)`` (complex step)."""
        build = _builder(self.name, self.n_visits)[1]
        theta = np.asarray(theta, dtype=float)
        out = np.empty((theta.size, self.n_visits, self.n_visits))
        for k in range(theta.size):
            step = theta.astype(complex)
            step[k] += 1j * _STEP
            out[k] = build(step).imag / _STEP
        return out

    def start(self, cov: np.ndarray) -> np.ndarray:
        """Starting ``theta`` from a (possibly rough) empirical covariance matrix."""
        t = self.n_visits
        sd = np.sqrt(np.clip(np.diag(cov), 1e-8, None))
        corr = cov / np.outer(sd, sd)
        lag1 = float(np.clip(np.mean(np.diag(corr, 1)), -0.5, 0.9))
        off = float(np.clip(np.mean(corr[np.triu_indices(t, 1)]), -0.5 / (t - 1), 0.9))
        log_sd = np.log(sd)
        pooled = np.array([0.5 * np.log(np.mean(sd**2))])
        if self.name == "unstructured":
            try:
                chol = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                chol = np.diag(sd)
            return np.concatenate([np.log(np.diag(chol)), chol[np.tril_indices(t, -1)]])
        lower = -1.0 / (t - 1)
        z_cs = np.log((off - lower) / (1.0 - off))
        if self.name == "compound_symmetry":
            return np.concatenate([pooled, [z_cs]])
        if self.name == "heterogeneous_compound_symmetry":
            return np.concatenate([log_sd, [z_cs]])
        if self.name == "ar1":
            return np.concatenate([pooled, [np.arctanh(lag1)]])
        if self.name == "heterogeneous_ar1":
            return np.concatenate([log_sd, [np.arctanh(lag1)]])
        pacf = np.zeros(t - 1)
        pacf[0] = np.arctanh(lag1)
        if self.name == "toeplitz":
            return np.concatenate([pooled, pacf])
        return np.concatenate([log_sd, pacf])


# ---------------------------------------------------------------------------- likelihood
@dataclass(frozen=True)
class Pattern:
    """Participants sharing one set of attended visits, reduced to cross-product sums.

    ``cross[a, b] = sum_i X_ia^T X_ib``, ``xy[a, b] = sum_i X_ia^T y_ib`` and
    ``yy[a, b] = sum_i y_ia y_ib`` over the pattern's ``n`` participants, where ``X_ia`` is the
    design row of participant i at the pattern's a-th visit (position ``idx[a]``).
    """

    idx: np.ndarray
    n: int
    cross: np.ndarray
    xy: np.ndarray
    yy: np.ndarray

    @property
    def cross_flat(self) -> np.ndarray:
        """``cross`` as an (m*m, p*p) matrix, so contractions with it run as BLAS products."""
        m, p = self.idx.size, self.cross.shape[-1]
        return self.cross.reshape(m * m, p * p)

    @classmethod
    def from_arrays(cls, idx: np.ndarray, x: np.ndarray, y: np.ndarray) -> Pattern:
        """``x`` has shape (n, m, p) and ``y`` (n, m) for m attended visits."""
        return cls(idx, int(x.shape[0]), np.einsum("iak,ibl->abkl", x, x),
                   np.einsum("iak,ib->abk", x, y), y.T @ y)


@dataclass(frozen=True)
class Profile:
    m2ll: float  # -2 log-likelihood, fixed effects profiled out
    beta: np.ndarray
    vcov: np.ndarray
    precisions: tuple[np.ndarray, ...]
    grad_sigma: np.ndarray | None  # d(-2 log L)/d Sigma, T x T


def profile_likelihood(sigma: np.ndarray, patterns: tuple[Pattern, ...], n_obs: int,
                       reml: bool, gradient: bool) -> Profile | None:
    """Profiled -2 log-likelihood at ``sigma``; None when ``sigma`` is not positive definite.

    Notes
    -----
    :math:`-2\\ell_{ML} = \\sum_i \\log|\\Sigma_i| + r^\\top V^{-1} r + N\\log 2\\pi`,
    :math:`-2\\ell_{REML} = -2\\ell_{ML} + \\log|X^\\top V^{-1} X| - p\\log 2\\pi`, with
    :math:`r = y - X\\hat\\beta`, :math:`\\hat\\beta = (X^\\top V^{-1}X)^{-1}X^\\top V^{-1}y`
    (Harville 1977; the value nlme, SAS PROC MIXED and R mmrm report). The gradient with respect to
    :math:`\\Sigma` is :math:`\\sum_P W_P(n_P\\Sigma_P - S_P - G_P)W_P`, with residual
    cross-products :math:`S_P` and, for REML, :math:`(G_P)_{ab} = \\mathrm{tr}(A^{-1}C_{ab})`.
    """
    p = patterns[0].cross.shape[-1]
    a = np.zeros((p, p))
    b = np.zeros(p)
    yvy = logdet = 0.0
    precisions = []
    for pat in patterns:
        try:
            chol = np.linalg.cholesky(sigma[np.ix_(pat.idx, pat.idx)])
        except np.linalg.LinAlgError:
            return None
        inv_chol = np.linalg.inv(chol)
        w = inv_chol.T @ inv_chol
        logdet += pat.n * 2.0 * float(np.sum(np.log(np.diag(chol))))
        a += (w.ravel() @ pat.cross_flat).reshape(p, p)
        b += w.ravel() @ pat.xy.reshape(-1, p)
        yvy += float(np.sum(w * pat.yy))
        precisions.append(w)
    try:
        chol_a = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        return None
    inv_a = np.linalg.inv(chol_a)
    vcov = inv_a.T @ inv_a
    beta = vcov @ b
    m2ll = logdet + yvy - float(beta @ b) + (n_obs - p * reml) * _LOG_2PI
    if reml:
        m2ll += 2.0 * float(np.sum(np.log(np.diag(chol_a))))
    grad = None
    if gradient:
        grad = np.zeros_like(sigma)
        for pat, w in zip(patterns, precisions, strict=True):
            xyb = pat.xy @ beta
            m = pat.idx.size
            s = pat.yy - xyb - xyb.T + (pat.cross_flat @ np.outer(beta, beta).ravel()
                                        ).reshape(m, m)
            inner = pat.n * sigma[np.ix_(pat.idx, pat.idx)] - s
            if reml:
                # vcov is symmetric, so tr(A^-1 C_ab) is a flat dot product
                inner -= (pat.cross_flat @ vcov.ravel()).reshape(m, m)
            grad[np.ix_(pat.idx, pat.idx)] += w @ inner @ w
    return Profile(m2ll, beta, vcov, tuple(precisions), grad)


@dataclass(frozen=True)
class CovarianceFit:
    theta: np.ndarray
    profile: Profile
    hessian: np.ndarray
    converged: bool
    iterations: int
    message: str


def fit_covariance(struct: CovarianceStructure, patterns: tuple[Pattern, ...], n_obs: int,
                   start: np.ndarray, reml: bool) -> CovarianceFit:
    """Maximise the profiled (RE)ML likelihood over the structure's parameters.

    BFGS with the analytic gradient from a start derived from ``start`` (a rough covariance),
    then Newton steps on a finite-difference Hessian of the analytic gradient. Converged means
    a small gradient and a positive definite Hessian; failing that is reported, not raised.
    """

    best: list = [np.inf, None]  # lowest finite value seen, and where

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        prof = profile_likelihood(struct.matrix(theta), patterns, n_obs, reml, gradient=True)
        if prof is None or not np.isfinite(prof.m2ll):
            return np.inf, np.zeros_like(theta)
        if prof.m2ll < best[0]:
            best[:] = [prof.m2ll, theta.copy()]
        return prof.m2ll, np.einsum("kij,ij->k", struct.jacobian(theta), prof.grad_sigma)

    def hessian(theta: np.ndarray) -> np.ndarray:
        h = 1e-5 * np.maximum(1.0, np.abs(theta))
        cols = [(objective(theta + h[k] * e)[1] - objective(theta - h[k] * e)[1]) / (2 * h[k])
                for k, e in enumerate(np.eye(theta.size))]
        mat = np.column_stack(cols)
        return (mat + mat.T) / 2

    theta = struct.start(start)
    res = optimize.minimize(objective, theta, jac=True, method="BFGS",
                            options={"gtol": 1e-6, "maxiter": 1000})
    theta, iterations = res.x, int(res.nit)
    value, grad = objective(theta)
    if not np.isfinite(value) and best[1] is not None:
        # the search ended on the edge of the positive definite region: keep the best point
        theta = best[1]
        value, grad = objective(theta)
    hess = hessian(theta)
    # Newton polish: BFGS stops on a loose gradient; a few exact steps reach machine precision
    for _ in range(20):
        if not np.isfinite(value) or np.max(np.abs(grad)) < 1e-9 * max(1.0, abs(value)):
            break
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        for shrink in (1.0, 0.5, 0.25, 0.125, 0.0625):
            trial = theta - shrink * step
            tv, tg = objective(trial)
            if tv <= value + 1e-10 * abs(value):
                break
        else:
            break
        theta, value, grad = trial, tv, tg
        iterations += 1
        hess = hessian(theta)
    prof = profile_likelihood(struct.matrix(theta), patterns, n_obs, reml, gradient=False)
    if prof is None and best[1] is not None:
        theta, value = best[1], np.inf  # on the edge of the region: not converged
        prof = profile_likelihood(struct.matrix(theta), patterns, n_obs, reml, gradient=False)
    if prof is None:
        raise AnalysisError(f"covariance: {struct.name} found no positive definite matrix")
    eig = np.linalg.eigvalsh(hess)
    small_grad = np.max(np.abs(grad)) < 1e-4 * max(1.0, abs(value) ** 0.5)
    converged = bool(np.isfinite(value) and small_grad and eig.min() > 0)
    message = "" if converged else (
        f"covariance ({struct.name}) did not converge: max |gradient| "
        f"{np.max(np.abs(grad)):.2g}, smallest Hessian eigenvalue {eig.min():.2g}")
    return CovarianceFit(theta, prof, hess, converged, iterations, message)
