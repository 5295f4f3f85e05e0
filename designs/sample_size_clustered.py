"""Sample size and power for clustered designs: cluster randomisation (design effect with
unequal cluster sizes) and the stepped-wedge design of Hussey & Hughes (2007).

They build on the individually randomised calculations of :mod:`designs.sample_size`, whose
record, rounding rule and power dispatcher they re-use; the conventions are those stated there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from designs.sample_size import (
    _ROUND_TOL,
    _WORDS,
    SampleSize,
    _check_positive,
    _check_test,
    _family,
    _pct,
    _test_words,
    _z_power,
    power_at,
)

# --------------------------------------------------------------------------- clusters


def design_effect(cluster_size: float, icc: float, cv: float = 0.0) -> float:
    """Design effect of a parallel cluster randomised trial.

    Parameters
    ----------
    cluster_size
        Mean number of analysed individuals per cluster, m̄ (≥ 1).
    icc
        Intracluster correlation ρ, in [0, 1].
    cv
        Coefficient of variation of the cluster sizes (SD / mean); 0 for equal clusters.

    Notes
    -----
    :math:`DE = 1 + ((cv^2 + 1)\\bar m - 1)\\rho` (Eldridge SM, Ashby D, Kerry S 2006, Int J
    Epidemiol 35:1292-1300), which reduces to :math:`1 + (m - 1)\\rho` for equal sizes
    (Donner, Birkett & Buck 1981).
    """
    m = float(cluster_size)
    if not (m >= 1.0 and math.isfinite(m)):
        raise ValueError(f"cluster_size must be >= 1, got {cluster_size!r}")
    if not 0.0 <= float(icc) <= 1.0:
        raise ValueError(f"icc must lie in [0, 1], got {icc!r}")
    if not (float(cv) >= 0.0 and math.isfinite(float(cv))):
        raise ValueError(f"cv must be >= 0, got {cv!r}")
    return 1.0 + ((cv * cv + 1.0) * m - 1.0) * float(icc)


def _check_cluster_base(base: SampleSize) -> None:
    _family(base)
    if "cluster_size" in base.inputs or "dropout" in base.inputs:
        raise ValueError("base must be an individually randomised result without dropout or "
                         "cluster adjustment (apply dropout through the cluster size)")


def _cluster_record(base: SampleSize, k: tuple[int, int], m: float, icc: float, cv: float,
                    de: float, target: float | None) -> SampleSize:
    eff = (k[0] * m / de, k[1] * m / de)
    pw = power_at(base, *eff)
    n = (math.ceil(k[0] * m - _ROUND_TOL), math.ceil(k[1] * m - _ROUND_TOL))
    inp = dict(base.inputs) | {"cluster_size": float(m), "icc": float(icc), "cv": float(cv)}
    if target is None:
        inp.pop("power", None)
    size = f"{m:g} (" + (f"CV {cv:g}; " if cv else "") + f"{sum(n)} participants in total)"
    aim = f" (target {_pct(target)})" if target is not None else ""
    kw = (f"{k[0]} clusters per arm" if k[0] == k[1]
          else f"{k[0]} control and {k[1]} treatment clusters")
    return SampleSize(
        method=base.method, n_per_arm=n, n_total=sum(n), power=pw, inputs=inp,
        clusters_per_arm=k, clusters=sum(k), n_unrounded=None,
        details={"design_effect": de, "effective_n_per_arm": eff},
        rationale=(f"{kw} of mean size {size}, ICC {icc:g}, design effect "
                   f"{de:.4g}, give {_pct(pw)} power{aim} to detect "
                   f"{_WORDS[_family(base)](base.inputs)}."),
    )


def n_clusters(base: SampleSize, cluster_size: float, icc: float, cv: float = 0.0) -> SampleSize:
    """Clusters per arm for a parallel cluster randomised trial.

    Parameters
    ----------
    base
        The individually randomised calculation (``n_means``, ``n_proportions`` or ``n_rates``)
        for the same effect, test and allocation; its unrounded n is inflated.
    cluster_size, icc, cv
        As in :func:`design_effect`; ``cluster_size`` is the expected number analysed per
        cluster (after dropout).

    Returns
    -------
    SampleSize
        ``clusters_per_arm``, ``n_per_arm`` = clusters × m̄, and the power at the effective
        sample size per arm, k m̄ / DE.

    Notes
    -----
    :math:`k_c = \\lceil n_c DE / \\bar m \\rceil`, :math:`k_t = \\lceil r k_c \\rceil`.
    Power re-uses the base test at the effective sample size, so a t-based base takes its
    degrees of freedom from the effective n, not from the number of clusters; with few
    clusters (say under 15 per arm) check the power by simulation of the planned analysis.
    """
    _check_cluster_base(base)
    if base.n_unrounded is None or "power" not in base.inputs:
        raise ValueError("base must be a sample size result (n_means, n_proportions, n_rates)")
    de = design_effect(cluster_size, icc, cv)
    m = float(cluster_size)
    k_c = max(1, math.ceil(base.n_unrounded[0] * de / m - _ROUND_TOL))
    alloc = base.inputs["allocation"]
    k = (k_c, max(1, math.ceil(alloc * k_c - _ROUND_TOL)))
    target = base.inputs["power"]
    while power_at(base, k[0] * m / de, k[1] * m / de) < target - 1e-12:
        k = (k[0] + 1, max(1, math.ceil(alloc * (k[0] + 1) - _ROUND_TOL)))
    return _cluster_record(base, k, m, icc, cv, de, target)


def power_clusters(
    base: SampleSize,
    clusters_per_arm: tuple[int, int] | int,
    cluster_size: float,
    icc: float,
    cv: float = 0.0,
) -> SampleSize:
    """Power of a parallel cluster randomised trial with given clusters per arm.

    Parameters
    ----------
    base
        Any individually randomised record for the effect and test (its n is ignored).
    clusters_per_arm
        (control, treatment) clusters, or one number for both arms.
    cluster_size, icc, cv
        As in :func:`design_effect`.

    Notes
    -----
    Power of the base test at the effective sample size :math:`k \\bar m / DE` per arm; see
    :func:`n_clusters`.
    """
    _check_cluster_base(base)
    k = (clusters_per_arm, clusters_per_arm) if isinstance(clusters_per_arm, int) \
        else tuple(clusters_per_arm)
    if len(k) != 2 or any(int(x) != x or x < 1 for x in k):
        raise ValueError(f"clusters_per_arm must be positive integers, got {clusters_per_arm!r}")
    return _cluster_record(base, (int(k[0]), int(k[1])), float(cluster_size), icc, cv,
                           design_effect(cluster_size, icc, cv), None)


# --------------------------------------------------------------------------- stepped wedge


def stepped_wedge_design(clusters: int, steps: int) -> np.ndarray:
    """Treatment indicator X (clusters × periods) of a standard complete stepped wedge.

    ``steps + 1`` periods: all clusters start in control (period 1), and at each step an equal
    group of ``clusters / steps`` clusters crosses to treatment and stays there.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if int(clusters) != clusters or clusters < steps or clusters % steps:
        raise ValueError(f"clusters ({clusters!r}) must be a positive multiple of steps ({steps})")
    per_step = clusters // steps
    crossing = np.repeat(np.arange(1, steps + 1), per_step)  # period index at which each starts
    return (np.arange(steps + 1)[None, :] >= crossing[:, None]).astype(float)


def stepped_wedge_variance(
    design: np.ndarray,
    cluster_period_size: float,
    icc: float,
    total_variance: float = 1.0,
) -> float:
    """Variance of the treatment effect estimate in the Hussey & Hughes (2007) model.

    Parameters
    ----------
    design
        Treatment indicator X, clusters (I) × periods (T), e.g. from
        :func:`stepped_wedge_design`.
    cluster_period_size
        Individuals measured per cluster per period, m (cross-sectional).
    icc
        Intracluster correlation ρ = τ² / (τ² + σ_e²).
    total_variance
        Total variance of an individual outcome, τ² + σ_e².

    Notes
    -----
    Hussey MA, Hughes JP (2007). Design and analysis of stepped wedge cluster randomized
    trials. Contemp Clin Trials 28:182-191, eq. (8). Model
    :math:`Y_{ijk} = \\mu + \\alpha_i + \\beta_j + X_{ij}\\theta + e_{ijk}` with random cluster
    effects :math:`\\alpha_i \\sim N(0, \\tau^2)`, fixed period effects, and cluster-period mean
    variance :math:`\\sigma^2 = \\sigma_e^2 / m`. With :math:`U = \\sum_{ij} X_{ij}`,
    :math:`W = \\sum_j (\\sum_i X_{ij})^2`, :math:`V = \\sum_i (\\sum_j X_{ij})^2`:

    .. math:: \\operatorname{Var}(\\hat\\theta) = \\frac{I\\sigma^2(\\sigma^2 + T\\tau^2)}
              {(IU - W)\\sigma^2 + (U^2 + ITU - TW - IV)\\tau^2}

    This equals the GLS variance from the full matrix formula (checked in
    ``tests/reference/sample_size.R``).
    """
    x = np.asarray(design, dtype=float)
    if x.ndim != 2 or x.size == 0 or not np.isin(x, (0.0, 1.0)).all():
        raise ValueError("design must be a non-empty clusters × periods matrix of 0/1")
    _check_positive("cluster_period_size", cluster_period_size)
    if not 0.0 <= float(icc) < 1.0:
        raise ValueError(f"icc must lie in [0, 1), got {icc!r}")
    _check_positive("total_variance", total_variance)
    n_i, n_t = x.shape
    tau2 = float(icc) * total_variance
    sigma2 = (1.0 - float(icc)) * total_variance / float(cluster_period_size)
    u = x.sum()
    w = (x.sum(axis=0) ** 2).sum()
    v = (x.sum(axis=1) ** 2).sum()
    denom = (n_i * u - w) * sigma2 + (u * u + n_i * n_t * u - n_t * w - n_i * v) * tau2
    if denom <= 0:
        raise ValueError("the design does not identify the treatment effect (every cluster "
                         "is in the same condition in every period, or no contrast)")
    return float(n_i * sigma2 * (sigma2 + n_t * tau2) / denom)


def _sw_inputs(delta, steps, cluster_period_size, icc, total_variance, alpha, sides,
               strict) -> dict[str, Any]:
    if not (float(delta) != 0.0 and math.isfinite(float(delta))):
        raise ValueError(f"delta must be a non-zero finite number, got {delta!r}")
    _check_test(alpha, sides)
    return {"delta": float(delta), "steps": int(steps),
            "cluster_period_size": float(cluster_period_size), "icc": float(icc),
            "total_variance": float(total_variance), "alpha": float(alpha),
            "sides": int(sides), "strict": bool(strict)}


def _sw_record(inp: Mapping[str, Any], clusters: int, target: float | None,
               extra: Mapping[str, float]) -> SampleSize:
    steps, m = inp["steps"], inp["cluster_period_size"]
    var = stepped_wedge_variance(stepped_wedge_design(clusters, steps), m, inp["icc"],
                                 inp["total_variance"])
    crit = stats.norm.isf(inp["alpha"] / inp["sides"])
    pw = _z_power(abs(inp["delta"]) / math.sqrt(var), crit, 1.0, inp["sides"], inp["strict"])
    periods = steps + 1
    n_total = math.ceil(clusters * periods * m - _ROUND_TOL)
    aim = f" (target {_pct(target)})" if target is not None else ""
    return SampleSize(
        method="stepped_wedge.hussey_hughes", n_per_arm=None, n_total=n_total, power=pw,
        inputs=inp, clusters=clusters,
        details={"variance": var, "std_error": math.sqrt(var), "periods": periods,
                 "clusters_per_step": clusters // steps} | dict(extra),
        rationale=(f"{clusters} clusters crossing over in {steps} steps ({clusters // steps} per "
                   f"step, {periods} periods of {m:g} individuals per cluster, {n_total} in "
                   f"total) give {_pct(pw)} power{aim} to detect a difference of "
                   f"{inp['delta']:g} (total SD {math.sqrt(inp['total_variance']):.4g}, ICC "
                   f"{inp['icc']:g}) at the {_test_words(inp['alpha'], inp['sides'])} "
                   f"(Hussey & Hughes 2007)."),
    )


def power_stepped_wedge(
    delta: float,
    clusters: int,
    steps: int,
    cluster_period_size: float,
    icc: float,
    total_variance: float = 1.0,
    *,
    alpha: float = 0.05,
    sides: int = 2,
    strict: bool = True,
) -> SampleSize:
    """Power of a standard cross-sectional stepped-wedge trial (Hussey & Hughes 2007).

    Parameters
    ----------
    delta
        Treatment effect on the outcome scale.
    clusters, steps
        Clusters (a multiple of ``steps``) and steps; there are ``steps + 1`` periods.
    cluster_period_size, icc, total_variance
        As in :func:`stepped_wedge_variance`.
    alpha, sides, strict
        As in :func:`n_means`.

    Returns
    -------
    SampleSize
        ``n_per_arm`` is ``None``; ``clusters`` and ``n_total`` (individuals measured) are set.

    Notes
    -----
    Power :math:`= \\Phi(|\\theta| / \\sqrt{\\operatorname{Var}(\\hat\\theta)} -
    z_{1-\\alpha/s}) [+ \\Phi(-|\\theta|/\\sqrt{\\operatorname{Var}} - z_{1-\\alpha/2})]`,
    the normal approximation of Hussey & Hughes (2007, eq. 9) with the variance of
    :func:`stepped_wedge_variance`.
    """
    inp = _sw_inputs(delta, steps, cluster_period_size, icc, total_variance, alpha, sides,
                     strict)
    return _sw_record(inp, int(clusters), None, {})


def n_stepped_wedge(
    delta: float,
    steps: int,
    cluster_period_size: float,
    icc: float,
    total_variance: float = 1.0,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    sides: int = 2,
    strict: bool = True,
) -> SampleSize:
    """Smallest number of clusters (a multiple of ``steps``) for a stepped-wedge trial.

    Parameters are those of :func:`power_stepped_wedge` with the target ``power``.

    Notes
    -----
    Replicating the basic design (one cluster per step) g times divides the Hussey & Hughes
    variance by g exactly, so with :math:`V_1` the variance for ``steps`` clusters,
    :math:`g = \\lceil V_1 (z_{1-\\alpha/s} + z_{1-\\beta})^2 / \\theta^2 \\rceil` ignoring the
    far tail; the search then steps g up until the power reaches the target.
    ``details["clusters_unrounded"]`` holds ``steps`` × the continuous g.
    """
    inp = _sw_inputs(delta, steps, cluster_period_size, icc, total_variance, alpha, sides,
                     strict)
    _check_test(alpha, sides, power)
    inp["power"] = float(power)
    v1 = stepped_wedge_variance(stepped_wedge_design(steps, steps), cluster_period_size, icc,
                                total_variance)
    z = stats.norm.isf(alpha / sides) + stats.norm.isf(1.0 - power)
    g_exact = float(v1 * z * z / (delta * delta))
    g = max(1, math.ceil(g_exact - _ROUND_TOL))
    while g > 1 and _sw_record(inp, (g - 1) * steps, None, {}).power >= power:
        g -= 1  # with strict=True the far tail can make one fewer replicate enough
    while _sw_record(inp, g * steps, None, {}).power < power:
        g += 1
    return _sw_record(inp, g * steps, float(power), {"clusters_unrounded": g_exact * steps})
