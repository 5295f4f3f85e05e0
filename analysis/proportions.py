"""Difference of two independent proportions: Newcombe hybrid score interval, Fisher's test."""

from __future__ import annotations

import math

from scipy import stats

from analysis.estimate import Estimate


def wilson_interval(x: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (no continuity correction)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def risk_difference(
    x1: int, n1: int, x0: int, n0: int, *, level: float = 0.95,
    estimand: str, analysis: str, arms: tuple[str, str] = ("experimental", "control"),
) -> Estimate:
    """Risk difference p1 - p0 with Newcombe's hybrid score interval and Fisher's exact p.

    Notes
    -----
    Newcombe (1998, Stat Med 17:873-890, method 10): with Wilson limits :math:`(l_i, u_i)`,
    :math:`L = \\hat p_1 - \\hat p_0 - \\sqrt{(\\hat p_1 - l_1)^2 + (u_0 - \\hat p_0)^2}` and
    :math:`U = \\hat p_1 - \\hat p_0 + \\sqrt{(u_1 - \\hat p_1)^2 + (\\hat p_0 - l_0)^2}`.
    The standard error is the Wald one, reported for information only.
    """
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1, level)
    l0, u0 = wilson_interval(x0, n0, level)
    d = p1 - p0
    lower = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    p_value = float(stats.fisher_exact([[x1, n1 - x1], [x0, n0 - x0]]).pvalue)
    return Estimate(
        estimand=estimand,
        analysis=analysis,
        engine="exact",
        model="risk_difference_newcombe",
        estimate=d,
        std_error=se,
        ci_lower=lower,
        ci_upper=upper,
        ci_level=level,
        p_value=p_value,
        n_analysed=n1 + n0,
        n_by_arm={arms[0]: n1, arms[1]: n0},
        details={"events": {arms[0]: x1, arms[1]: x0}, "proportions": {arms[0]: p1, arms[1]: p0}},
    )
