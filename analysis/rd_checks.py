"""Falsification checks for a regression discontinuity design.

Each check returns the shared :class:`analysis.falsification.FalsificationResult`: a
manipulation (density) test at the cut-off, covariate balance at the cut-off, sensitivity of the
estimate to the bandwidth, and placebo cut-offs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats

from analysis.falsification import FalsificationResult
from analysis.rd import RdSpec, fit_rd, with_bandwidth
from analysis.rd_bandwidth import KERNELS, PILOT_CONSTANT, kernel_weights, quantile_type2
from trials.errors import AnalysisError


def _density_design(x: np.ndarray, h: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Separate polynomials in x/h on each side (columns alternate left, right)."""
    left = x < 0
    cols = []
    for j in range(order + 1):
        u = (x / h) ** j
        cols += [np.where(left, u, 0.0), np.where(left, 0.0, u)]
    scale = np.repeat(h ** np.arange(order + 1, dtype=float), 2)
    return np.column_stack(cols), scale


def density_test(frame: pd.DataFrame, spec: RdSpec, bandwidth: float | None = None,
                 order: int = 2, alpha: float = 0.05) -> FalsificationResult:
    """Cattaneo–Jansson–Ma (2020) manipulation test: is the running variable's density
    continuous at the cut-off?

    Parameters
    ----------
    frame, spec
        The data and the RD specification (``running``, ``cutoff`` and ``kernel`` are used).
    bandwidth
        Half-width of the window on each side of the cut-off. Default: the rule of thumb
        ``C_K min(sd, IQR/1.349) n^{-1/5}`` (``C_K`` = 2.576 triangular, 1.843 uniform, 2.34
        Epanechnikov), capped at the range of the data. This is NOT rddensity's data-driven
        bandwidth; pass a bandwidth to reproduce a published test.
    order
        Order ``p`` of the local polynomial density estimator; the test uses order ``p + 1``
        (robust bias correction, rddensity's default ``q = p + 1``).
    alpha
        The check passes when the p-value is at least ``alpha``.

    Notes
    -----
    With the units sorted by the running variable and :math:`\\hat F(x_{(i)}) = (i-1)/(n-1)`
    (tied values share the smallest rank), a kernel-weighted polynomial of order :math:`q` in
    :math:`(x-c)/h` is fitted to :math:`\\hat F` separately on each side within :math:`h`; the
    density on each side is the slope coefficient divided by :math:`h`. The variance is the
    jackknife sandwich :math:`H^{-1} S^{-1} L^\\top L S^{-1} H^{-1}` with
    :math:`L_{ij} = \\sum_{k \\ge i} w_k r_{kj} / (n-1)`, and
    :math:`T = (\\hat f_+ - \\hat f_-)/\\widehat{se}` is compared with N(0, 1) (Cattaneo,
    Jansson and Ma 2020, *JASA* 115:1449-1455; as ``rddensity``'s unrestricted, jackknife
    test).
    """
    if spec.running not in frame.columns:
        raise AnalysisError(f"{spec.analysis}: column {spec.running!r} not in the data")
    if spec.kernel not in KERNELS:
        raise AnalysisError(f"{spec.analysis}: kernel {spec.kernel!r} is not one of "
                            f"{', '.join(KERNELS)}")
    x = np.sort(pd.to_numeric(frame[spec.running], errors="coerce").dropna().to_numpy(float))
    x = x - spec.cutoff
    n = len(x)
    q = order + 1
    if (x < 0).sum() < q + 2 or (x >= 0).sum() < q + 2:
        raise AnalysisError(f"{spec.analysis}: too few observations of {spec.running!r} on one "
                            "side of the cut-off for the density test")
    if bandwidth is None:
        iqr = quantile_type2(x, 0.75) - quantile_type2(x, 0.25)
        spread = min(float(np.std(x, ddof=1)), iqr / 1.349)
        h = PILOT_CONSTANT[spec.kernel] * spread * n ** (-1 / 5)
        h = min(h, max(-x[0], x[-1]))
        rule = "rule-of-thumb bandwidth"
    else:
        h = float(bandwidth)
        rule = "given bandwidth"
        if not (math.isfinite(h) and h > 0):
            raise AnalysisError(f"{spec.analysis}: density bandwidth must be positive")
    _, first, counts = np.unique(x, return_index=True, return_counts=True)
    ranks = np.repeat(first, counts) / (n - 1)
    inside = np.abs(x) <= h
    xh, fh = x[inside], ranks[inside]
    n_left, n_right = int((xh < 0).sum()), int((xh >= 0).sum())
    if n_left < q + 1 or n_right < q + 1:
        raise AnalysisError(f"{spec.analysis}: too few observations within the density "
                            f"bandwidth {h:.4g}")
    w = kernel_weights(xh, h, spec.kernel)
    design, scale = _density_design(xh, h, q)
    dw = design * w[:, None]
    s_inv = np.linalg.inv(dw.T @ design)
    coef = (s_inv @ (dw.T @ fh)) / scale
    f_left, f_right = float(coef[2]), float(coef[3])
    # Tail sums in sample order; tied values take the tail sum of their first member.
    tails = np.cumsum(dw[::-1], axis=0)[::-1] / (n - 1)
    _, first_h, counts_h = np.unique(xh, return_index=True, return_counts=True)
    tails = tails[np.repeat(first_h, counts_h)]
    cov = (s_inv @ (tails.T @ tails) @ s_inv) / np.outer(scale, scale)
    var_diff = float(cov[2, 2] + cov[3, 3] - 2 * cov[2, 3])
    t = (f_right - f_left) / math.sqrt(var_diff)
    p = float(2 * stats.norm.sf(abs(t)))
    return FalsificationResult(
        check="rd_density",
        passed=p >= alpha,
        statistic=float(t),
        p_value=p,
        threshold=alpha,
        detail=(f"Cattaneo-Jansson-Ma density test of {spec.running!r} at {spec.cutoff:g}: "
                f"density {f_left:.4g} below vs {f_right:.4g} above ({n_left}/{n_right} units "
                f"within the {rule} {h:.4g}, local polynomial order {q}); pass when "
                f"p >= {alpha:g}."),
    )


def covariate_balance(frame: pd.DataFrame, spec: RdSpec, covariates: Sequence[str],
                      alpha: float = 0.05) -> tuple[FalsificationResult, ...]:
    """Test for a jump at the cut-off in each pre-treatment covariate.

    Notes
    -----
    Each covariate is taken as the outcome of a sharp RD with the spec's kernel, order and
    bandwidth rule (with ``"mserd"``, each covariate gets its own MSE-optimal bandwidth) and no
    covariate adjustment; for a fuzzy design this is the intention-to-treat jump. A covariate
    passes when its robust bias-corrected p-value is at least ``alpha`` (no multiplicity
    adjustment: with many covariates, expect about ``alpha`` of them to fail by chance).
    """
    if not covariates:
        raise AnalysisError(f"{spec.analysis}: covariate_balance needs at least one covariate")
    out = []
    for cov in covariates:
        sub = replace(spec, outcome=cov, fuzzy=None, covariates=(),
                      analysis=f"{spec.analysis}_balance_{cov}")
        est = fit_rd(frame, sub).estimate
        p = float(est.p_value) if est.p_value is not None else 1.0
        out.append(FalsificationResult(
            check=f"rd_covariate_balance:{cov}",
            passed=p >= alpha,
            statistic=est.estimate,
            p_value=p,
            threshold=alpha,
            detail=(f"Jump in {cov!r} at the cut-off {est.estimate:.4g} (robust 95% CI "
                    f"{est.ci_lower:.4g} to {est.ci_upper:.4g}, h = {est.details['h']:.4g}); "
                    f"pass when p >= {alpha:g}."),
        ))
    return tuple(out)


def bandwidth_sensitivity(frame: pd.DataFrame, spec: RdSpec,
                          multipliers: Sequence[float] = (0.5, 0.75, 1.25, 1.5, 2.0),
                          ) -> FalsificationResult:
    """Refit at multiples of the main bandwidth.

    Notes
    -----
    The main fit gives :math:`\\hat\\tau`, bandwidths (h, b) and the robust interval. Each
    multiplier :math:`m` refits with the fixed bandwidths (m h, m b). The check passes when
    every refitted conventional estimate has the sign of :math:`\\hat\\tau` and lies inside the
    main robust interval. ``statistic`` is the number of refits breaking that rule and
    ``threshold`` is 0. Refits that cannot be computed (too few observations in a narrow
    window) are reported in ``detail`` and count as failures.
    """
    if not multipliers:
        raise AnalysisError(f"{spec.analysis}: multipliers is empty")
    main = fit_rd(frame, spec)
    tau, lo, hi = main.estimate.estimate, main.estimate.ci_lower, main.estimate.ci_upper
    parts, failures = [], 0
    for m in multipliers:
        if not m > 0:
            raise AnalysisError(f"{spec.analysis}: bandwidth multiplier {m!r} is not positive")
        try:
            est = fit_rd(frame, with_bandwidth(spec, m * main.h, m * main.b)).estimate.estimate
        except AnalysisError:
            failures += 1
            parts.append(f"x{m:g}: not estimable")
            continue
        ok = np.sign(est) == np.sign(tau) and lo <= est <= hi
        failures += not ok
        parts.append(f"x{m:g}: {est:.4g}{'' if ok else ' (outside)'}")
    return FalsificationResult(
        check="rd_bandwidth_sensitivity",
        passed=failures == 0,
        statistic=float(failures),
        p_value=None,
        threshold=0.0,
        detail=(f"Main estimate {tau:.4g} (h = {main.h:.4g}, robust CI {lo:.4g} to {hi:.4g}); "
                f"at other bandwidths {'; '.join(parts)}. Pass when every estimate keeps the "
                "sign and lies in the main robust CI."),
    )


def placebo_cutoffs(frame: pd.DataFrame, spec: RdSpec, cutoffs: Sequence[float],
                    alpha: float = 0.05) -> FalsificationResult:
    """Look for jumps in the outcome at fake cut-offs.

    Notes
    -----
    A placebo cut-off below the real one uses only the units below the real cut-off (and one
    above uses only those at or above it), so the real jump cannot leak into a placebo fit. Each
    placebo is a sharp RD of the outcome (the spec's kernel, order and bandwidth rule; no
    covariates). With :math:`m` placebos one counts as significant when its robust p-value is
    below :math:`\\alpha/m` (Bonferroni); the check passes when none is. ``statistic`` is the
    number of significant placebos and ``p_value`` the adjusted smallest p-value
    :math:`\\min(1, m\\,p_{(1)})`.
    """
    if not cutoffs:
        raise AnalysisError(f"{spec.analysis}: placebo cutoffs is empty")
    if spec.running not in frame.columns:
        raise AnalysisError(f"{spec.analysis}: column {spec.running!r} not in the data")
    running = pd.to_numeric(frame[spec.running], errors="coerce")
    m = len(cutoffs)
    p_values, parts = [], []
    for c in cutoffs:
        if c == spec.cutoff:
            raise AnalysisError(f"{spec.analysis}: placebo cut-off {c:g} equals the real one")
        side = (running < spec.cutoff) if c < spec.cutoff else (running >= spec.cutoff)
        sub = replace(spec, cutoff=float(c), fuzzy=None, covariates=(), treated_above=True,
                      analysis=f"{spec.analysis}_placebo_{c:g}")
        est = fit_rd(frame.loc[side.to_numpy()], sub).estimate
        p = float(est.p_value) if est.p_value is not None else 1.0
        p_values.append(p)
        parts.append(f"{c:g}: {est.estimate:.4g} (p {p:.3g})")
    n_sig = sum(p < alpha / m for p in p_values)
    return FalsificationResult(
        check="rd_placebo_cutoffs",
        passed=n_sig == 0,
        statistic=float(n_sig),
        p_value=min(1.0, m * min(p_values)),
        threshold=alpha,
        detail=(f"{n_sig} of {m} placebo cut-off(s) showed a significant jump at Bonferroni "
                f"level {alpha:g}/{m}: {'; '.join(parts)}."),
    )
