"""Sample size and power for two-arm trials: pure functions returning a frozen `SampleSize`.

Families: continuous outcomes (normal approximation or exact noncentral t, optional ANCOVA
gain), two proportions (pooled, unpooled or arcsine), counts (Poisson / negative binomial rate
ratio), attrition inflation, cluster randomisation (design effect, unequal cluster sizes) and the
stepped-wedge design of Hussey & Hughes (2007).

Conventions shared by every function:

* arm order is always (control, treatment); ``allocation = n_treatment / n_control``;
* ``sides`` is 1 or 2 and ``alpha`` is the total type-I error (``alpha / sides`` per tail);
* ``strict=True`` counts both rejection regions of a two-sided test in the power (as
  statsmodels' power classes and R's ``power.t.test(strict = TRUE)`` do); ``strict=False`` counts
  only the tail in the direction of the effect (R's default, the textbook closed forms);
* the solved continuous sample size is kept (``n_unrounded``) for comparison with other software;
  ``n_per_arm`` rounds the control arm up and sets the treatment arm to
  ``ceil(allocation * n_control)``, and ``power`` is the power achieved at those integers.

Two proportions and two rates live in :mod:`designs.sample_size_discrete`, cluster-randomised and
stepped-wedge designs in :mod:`designs.sample_size_clustered`; both are
re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from scipy import optimize, stats

__all__ = [
    "SampleSize",
    "design_effect",
    "inflate_for_dropout",
    "n_clusters",
    "n_means",
    "n_proportions",
    "n_rates",
    "n_stepped_wedge",
    "power_at",
    "power_clusters",
    "power_means",
    "power_proportions",
    "power_rates",
    "power_stepped_wedge",
    "stepped_wedge_design",
    "stepped_wedge_variance",
]

# A solved n within this of an integer is that integer (root-finding noise, 0.8 not exact).
_ROUND_TOL = 1e-8


@dataclass(frozen=True)
class SampleSize:
    """Result of a sample size or power calculation (raw numbers; format only on display).

    Attributes
    ----------
    method
        Stable identifier of the calculation, e.g. ``"means.t"``, ``"proportions.pooled"``,
        ``"rates.pooled"``, ``"stepped_wedge.hussey_hughes"``.
    n_per_arm
        Participants to enrol as (control, treatment); ``None`` for a stepped-wedge design, where
        every cluster contributes to both conditions.
    n_total
        Participants in total (for a stepped wedge: clusters × periods × individuals per
        cluster-period).
    power
        Power achieved at the integer sample size (at the expected completers after dropout).
    inputs
        Every argument that defines the calculation (read-only).
    rationale
        One sentence a protocol can quote.
    n_unrounded
        The continuous solution per arm (control, treatment) before rounding, comparable with
        R's ``power.t.test``/statsmodels ``solve_power``; ``None`` when power was computed for a
        given n.
    clusters_per_arm
        Clusters as (control, treatment) for a parallel cluster randomised design.
    clusters
        Total number of clusters (cluster randomised and stepped-wedge designs).
    details
        Derived quantities (standard errors, design effect, noncentrality, ...).
    """

    method: str
    n_per_arm: tuple[int, int] | None
    n_total: int
    power: float
    inputs: Mapping[str, Any]
    rationale: str
    n_unrounded: tuple[float, float] | None = None
    clusters_per_arm: tuple[int, int] | None = None
    clusters: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", MappingProxyType(dict(self.inputs)))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary of the record."""
        return {
            "method": self.method,
            "n_per_arm": list(self.n_per_arm) if self.n_per_arm else None,
            "n_total": self.n_total,
            "power": self.power,
            "inputs": dict(self.inputs),
            "rationale": self.rationale,
            "n_unrounded": list(self.n_unrounded) if self.n_unrounded else None,
            "clusters_per_arm": list(self.clusters_per_arm) if self.clusters_per_arm else None,
            "clusters": self.clusters,
            "details": dict(self.details),
        }


# --------------------------------------------------------------------------- validation


def _check_open01(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return value


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _check_test(alpha: float, sides: int, power: float | None = None) -> None:
    _check_open01("alpha", alpha)
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    if power is not None:
        _check_open01("power", power)
        if power <= alpha / sides:
            raise ValueError(f"power ({power}) must exceed alpha / sides ({alpha / sides})")


def _check_n(n_control: float, n_treatment: float) -> None:
    _check_positive("n_control", n_control)
    _check_positive("n_treatment", n_treatment)


# --------------------------------------------------------------------------- power kernels
# Each kernel takes the record's inputs and (non-integer) arm sizes and returns the power.


def _z_power(shift: float, crit: float, ratio: float, sides: int, strict: bool) -> float:
    """P(reject) for a statistic whose standardised mean is ``shift`` under H1.

    ``crit`` is the critical value on the null scale and ``ratio`` = SD under H0 / SD under H1.
    """
    upper = stats.norm.sf(crit * ratio - shift)
    if sides == 2 and strict:
        upper += stats.norm.cdf(-crit * ratio - shift)
    return float(upper)


def _means_power(inp: Mapping[str, Any], n_c: float, n_t: float) -> float:
    sd = inp["sd"] * math.sqrt(1.0 - inp["baseline_correlation"] ** 2)
    ncp = abs(inp["delta"]) / (sd * math.sqrt(1.0 / n_c + 1.0 / n_t))
    a_tail = inp["alpha"] / inp["sides"]
    if inp["method"] == "normal":
        return _z_power(ncp, stats.norm.isf(a_tail), 1.0, inp["sides"], inp["strict"])
    df = n_c + n_t - 2.0 - (1.0 if inp["covariate_df"] else 0.0)
    crit = stats.t.isf(a_tail, df)
    pw = stats.nct.sf(crit, df, ncp)
    if inp["sides"] == 2 and inp["strict"]:
        pw += stats.nct.cdf(-crit, df, ncp)
    return float(pw)


def _proportions_power(inp: Mapping[str, Any], n_c: float, n_t: float) -> float:
    p_c, p_t = inp["p_control"], inp["p_treatment"]
    crit = stats.norm.isf(inp["alpha"] / inp["sides"])
    if inp["method"] == "arcsine":
        h = abs(2.0 * math.asin(math.sqrt(p_t)) - 2.0 * math.asin(math.sqrt(p_c)))
        return _z_power(h / math.sqrt(1.0 / n_c + 1.0 / n_t), crit, 1.0, inp["sides"],
                        inp["strict"])
    sd1 = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    if inp["method"] == "pooled":
        pbar = (n_c * p_c + n_t * p_t) / (n_c + n_t)
        sd0 = math.sqrt(pbar * (1 - pbar) * (1.0 / n_c + 1.0 / n_t))
    else:
        sd0 = sd1
    return _z_power(abs(p_t - p_c) / sd1, crit, sd0 / sd1, inp["sides"], inp["strict"])


def _rates_sd(inp: Mapping[str, Any], n_c: float, n_t: float) -> tuple[float, float]:
    """SD of log(rate ratio) under H0 and under H1 (Zhu & Lakkis 2014)."""
    r_c, r_t, t, k = inp["rate_control"], inp["rate_treatment"], inp["exposure"], inp["dispersion"]
    var1 = (1.0 / (t * r_c) + k) / n_c + (1.0 / (t * r_t) + k) / n_t
    if inp["null_variance"] == "alternative":
        var0 = var1
    else:
        r0 = r_c if inp["null_variance"] == "control" else (n_c * r_c + n_t * r_t) / (n_c + n_t)
        var0 = (1.0 / (t * r0) + k) * (1.0 / n_c + 1.0 / n_t)
    return math.sqrt(var0), math.sqrt(var1)


def _rates_power(inp: Mapping[str, Any], n_c: float, n_t: float) -> float:
    sd0, sd1 = _rates_sd(inp, n_c, n_t)
    log_rr = abs(math.log(inp["rate_treatment"] / inp["rate_control"]))
    crit = stats.norm.isf(inp["alpha"] / inp["sides"])
    return _z_power(log_rr / sd1, crit, sd0 / sd1, inp["sides"], inp["strict"])


_KERNELS: dict[str, Callable[[Mapping[str, Any], float, float], float]] = {
    "means": _means_power,
    "proportions": _proportions_power,
    "rates": _rates_power,
}


def _family(result: SampleSize) -> str:
    family = result.method.split(".")[0]
    if family not in _KERNELS:
        raise ValueError(f"method {result.method!r} is not an individually randomised calculation")
    return family


def power_at(result: SampleSize, n_control: float, n_treatment: float) -> float:
    """Power of the calculation in ``result`` at other arm sizes (non-integers allowed).

    Parameters
    ----------
    result
        A record from ``n_means``/``n_proportions``/``n_rates`` or their ``power_*`` twins; its
        effect, variance, test and ``alpha`` are re-used.
    n_control, n_treatment
        Analysed participants per arm.
    """
    _check_n(n_control, n_treatment)
    return _KERNELS[_family(result)](result.inputs, float(n_control), float(n_treatment))


# --------------------------------------------------------------------------- solving


def _solve_n_control(power_of: Callable[[float], float], target: float, lower: float) -> float:
    """Smallest continuous n_control with power_of(n) = target (power increases with n)."""
    lo = lower
    hi = max(2.0 * lower, 4.0)
    while power_of(hi) < target:
        lo, hi = hi, hi * 2.0
        if hi > 1e12:
            raise ValueError("no sample size below 1e12 reaches the requested power")
    if power_of(lo) >= target:
        return lo
    return float(optimize.brentq(lambda n: power_of(n) - target, lo, hi, xtol=1e-12,
                                 rtol=4 * np.finfo(float).eps, maxiter=500))


def _round_arms(n_c: float, allocation: float) -> tuple[int, int]:
    c = max(1, math.ceil(n_c - _ROUND_TOL))
    return c, max(1, math.ceil(allocation * c - _ROUND_TOL))


def _solve_and_round(
    kernel: Callable[[Mapping[str, Any], float, float], float],
    inp: Mapping[str, Any],
    target: float,
    lower: float,
) -> tuple[tuple[float, float], tuple[int, int], float]:
    a = inp["allocation"]
    n_exact = _solve_n_control(lambda n: kernel(inp, n, a * n), target, lower)
    n_c, n_t = _round_arms(n_exact, a)
    achieved = kernel(inp, n_c, n_t)
    # Rounding up both arms cannot lower power for these tests; the loop is a guard only.
    while achieved < target - 1e-12:
        n_c, n_t = _round_arms(n_c + 1, a)
        achieved = kernel(inp, n_c, n_t)
    return (n_exact, a * n_exact), (n_c, n_t), achieved


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pct_short(x: float) -> str:
    return f"{100 * x:.4g}%"


def _test_words(alpha: float, sides: int) -> str:
    return f"{'two' if sides == 2 else 'one'}-sided {_pct_short(alpha)} level"


def _arms_words(n: tuple[int, int]) -> str:
    if n[0] == n[1]:
        return f"{n[0]} per arm ({n[0] + n[1]} in total)"
    return f"{n[0]} control and {n[1]} treatment ({n[0] + n[1]} in total)"


# --------------------------------------------------------------------------- continuous


def _means_inputs(delta, sd, alpha, sides, allocation, method, baseline_correlation,
                  covariate_df, strict) -> dict[str, Any]:
    if not (float(delta) != 0.0 and math.isfinite(float(delta))):
        raise ValueError(f"delta must be a non-zero finite number, got {delta!r}")
    _check_positive("sd", sd)
    _check_test(alpha, sides)
    _check_positive("allocation", allocation)
    if method not in ("t", "normal"):
        raise ValueError(f"method must be 't' or 'normal', got {method!r}")
    rho = float(baseline_correlation)
    if not -1.0 < rho < 1.0:
        raise ValueError(f"baseline_correlation must lie in (-1, 1), got {rho!r}")
    if covariate_df and method != "t":
        raise ValueError("covariate_df applies to method='t' only (the normal approximation "
                         "has no degrees of freedom)")
    return {"delta": float(delta), "sd": float(sd), "alpha": float(alpha), "sides": int(sides),
            "allocation": float(allocation), "method": method, "baseline_correlation": rho,
            "covariate_df": bool(covariate_df), "strict": bool(strict)}


def _means_words(inp: Mapping[str, Any]) -> str:
    test = ("a two-sample t-test (noncentral t)" if inp["method"] == "t"
            else "a two-sample z-test (normal approximation)")
    rho = inp["baseline_correlation"]
    if rho:
        df = ", one df for the covariate" if inp["covariate_df"] else ""
        test = (f"ANCOVA on baseline (r = {rho:g}: residual variance × {1 - rho ** 2:.4g}"
                f"{df}; power from {test})")
    return (f"a difference in means of {inp['delta']:g} (SD {inp['sd']:g}) with {test} "
            f"at the {_test_words(inp['alpha'], inp['sides'])}")


def _means_details(inp: Mapping[str, Any], n_c: float, n_t: float) -> dict[str, float]:
    sd_adj = inp["sd"] * math.sqrt(1.0 - inp["baseline_correlation"] ** 2)
    se = sd_adj * math.sqrt(1.0 / n_c + 1.0 / n_t)
    out = {"sd_adjusted": sd_adj, "effect_size": inp["delta"] / inp["sd"], "std_error": se,
           "noncentrality": abs(inp["delta"]) / se}
    if inp["method"] == "t":
        out["df"] = n_c + n_t - 2.0 - (1.0 if inp["covariate_df"] else 0.0)
    return out


def n_means(
    delta: float,
    sd: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    sides: int = 2,
    allocation: float = 1.0,
    method: Literal["t", "normal"] = "t",
    baseline_correlation: float = 0.0,
    covariate_df: bool = False,
    strict: bool = True,
) -> SampleSize:
    """Sample size to detect a difference in means between two independent groups.

    Parameters
    ----------
    delta
        Difference in means (treatment − control) under the alternative; only its size matters.
    sd
        Common standard deviation of the outcome (at follow-up).
    alpha, power, sides
        Type-I error (total over ``sides`` tails) and target power.
    allocation
        ``n_treatment / n_control``.
    method
        ``"t"``: exact power of the two-sample t-test from the noncentral t distribution, n
        found by root-finding (iterated); ``"normal"``: z-test (normal approximation).
    baseline_correlation
        Correlation ρ between baseline and follow-up when the analysis is ANCOVA on baseline;
        0 (default) is the unadjusted comparison.
    covariate_df
        With ``method="t"``, take one residual degree of freedom for the baseline covariate
        (df = n_c + n_t − 3), the small-sample refinement of the ANCOVA approximation.
    strict
        Count both rejection regions of a two-sided test in the power.

    Returns
    -------
    SampleSize
        With ``method`` ``"means.t"`` or ``"means.normal"``.

    Notes
    -----
    With :math:`\\sigma^2_a = \\sigma^2 (1 - \\rho^2)` (the ANCOVA residual variance; Borm,
    Fransen & Lemmens 2007, J Clin Epidemiol 60:1234-1238: ANCOVA with :math:`(1-\\rho^2)n`
    per group has the power of a t-test with n), :math:`r` = allocation and
    :math:`\\lambda = |\\delta| / (\\sigma_a \\sqrt{1/n_c + 1/(r n_c)})`:

    * normal: power :math:`= \\Phi(\\lambda - z_{1-\\alpha/s}) [+ \\Phi(-\\lambda -
      z_{1-\\alpha/2})]`; ignoring the bracketed far tail this inverts to
      :math:`n_c = (z_{1-\\alpha/s} + z_{1-\\beta})^2 \\sigma_a^2 (1 + 1/r) / \\delta^2`;
    * t: power :math:`= P(T_{\\nu,\\lambda} > t_{\\nu,1-\\alpha/s}) [+ P(T_{\\nu,\\lambda} <
      -t_{\\nu,1-\\alpha/2})]` with :math:`T_{\\nu,\\lambda}` noncentral t,
      :math:`\\nu = n_c + n_t - 2` (−1 more with ``covariate_df``); n solved by Brent's method.

    Matches R ``power.t.test`` (``strict`` as there), ``pwr::pwr.t2n.test``, statsmodels
    ``TTestIndPower``/``NormalIndPower`` (effect size δ/σ, ``ratio`` = allocation) and
    rpact ``getSampleSizeMeans`` (``allocationRatioPlanned`` = allocation).
    """
    inp = _means_inputs(delta, sd, alpha, sides, allocation, method, baseline_correlation,
                        covariate_df, strict)
    _check_test(alpha, sides, power)
    inp["power"] = float(power)
    # Search from one residual degree of freedom: n_c (1 + r) = 3 (+1 with the covariate).
    lower = (3.0 + inp["covariate_df"]) / (1.0 + inp["allocation"]) if method == "t" else 1e-6
    exact, n, achieved = _solve_and_round(_means_power, inp, inp["power"], lower)
    return SampleSize(
        method=f"means.{method}", n_per_arm=n, n_total=sum(n), power=achieved, inputs=inp,
        n_unrounded=exact, details=_means_details(inp, *n),
        rationale=(f"{_arms_words(n)} give {_pct(achieved)} power (target {_pct(power)}) to "
                   f"detect {_means_words(inp)}."),
    )


def power_means(
    delta: float,
    sd: float,
    n_control: float,
    n_treatment: float | None = None,
    *,
    alpha: float = 0.05,
    sides: int = 2,
    method: Literal["t", "normal"] = "t",
    baseline_correlation: float = 0.0,
    covariate_df: bool = False,
    strict: bool = True,
) -> SampleSize:
    """Power of a two-sample comparison of means at given arm sizes.

    Parameters are those of :func:`n_means`; ``n_treatment`` defaults to ``n_control``.
    Arm sizes may be non-integers (for comparison with other software); ``n_per_arm`` then
    holds them rounded up.

    Notes
    -----
    See :func:`n_means` for the formulas.
    """
    n_treatment = n_control if n_treatment is None else n_treatment
    _check_n(n_control, n_treatment)
    inp = _means_inputs(delta, sd, alpha, sides, n_treatment / n_control, method,
                        baseline_correlation, covariate_df, strict)
    pw = _means_power(inp, float(n_control), float(n_treatment))
    n = (math.ceil(n_control - _ROUND_TOL), math.ceil(n_treatment - _ROUND_TOL))
    return SampleSize(
        method=f"means.{method}", n_per_arm=n, n_total=sum(n), power=pw, inputs=inp,
        details=_means_details(inp, float(n_control), float(n_treatment)),
        rationale=f"{_arms_words(n)} give {_pct(pw)} power to detect {_means_words(inp)}.",
    )


# --------------------------------------------------------------------------- binary and counts
# (the record's words; the solvers are in designs.sample_size_discrete)


def _proportions_words(inp: Mapping[str, Any]) -> str:
    test = {"pooled": "a z-test with pooled variance under H0",
            "unpooled": "a z-test with unpooled (Wald) variance",
            "arcsine": "an arcsine-transformed z-test (Cohen's h)"}[inp["method"]]
    return (f"{_pct(inp['p_treatment'])} vs {_pct(inp['p_control'])} (treatment vs control) "
            f"with {test} at the {_test_words(inp['alpha'], inp['sides'])}")


def _rates_words(inp: Mapping[str, Any]) -> str:
    model = (f"negative binomial (dispersion {inp['dispersion']:g})" if inp["dispersion"]
             else "Poisson")
    return (f"a rate ratio of {inp['rate_treatment'] / inp['rate_control']:.4g} "
            f"({inp['rate_treatment']:g} vs {inp['rate_control']:g} events per unit time, "
            f"exposure {inp['exposure']:g}) with a {model} Wald test on log(rate ratio) "
            f"({inp['null_variance']} null variance, Zhu & Lakkis 2014) at the "
            f"{_test_words(inp['alpha'], inp['sides'])}")


_WORDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "means": _means_words,
    "proportions": _proportions_words,
    "rates": _rates_words,
}


# --------------------------------------------------------------------------- attrition


def inflate_for_dropout(result: SampleSize, dropout: float) -> SampleSize:
    """Enrolment needed so that the expected completers match an individually randomised ``result``.

    Parameters
    ----------
    result
        Record from ``n_means``/``n_proportions``/``n_rates`` (or a ``power_*`` twin): its
        ``n_per_arm`` are the completers needed.
    dropout
        Expected proportion lost to follow-up, in [0, 1), the same in both arms.

    Returns
    -------
    SampleSize
        ``n_per_arm`` to enrol; ``power`` at the expected completers ``n (1 − dropout)``.

    Notes
    -----
    :math:`n_{enrol} = \\lceil n / (1 - d) \\rceil` per arm. This assumes dropouts are simply
    lost (complete-case analysis under MCAR); it is not a correction for bias. For a cluster
    design, pass the expected completers per cluster as the cluster size instead.
    """
    _family(result)
    if any(key in result.inputs for key in ("dropout", "cluster_size")):
        raise ValueError("inflate_for_dropout needs an individually randomised result that has "
                         "not been inflated already (for clusters, pass the expected completers "
                         "per cluster as cluster_size)")
    d = float(dropout)
    if not 0.0 <= d < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    n_c, n_t = (math.ceil(x / (1.0 - d) - _ROUND_TOL) for x in result.n_per_arm)
    pw = power_at(result, n_c * (1.0 - d), n_t * (1.0 - d))
    inp = dict(result.inputs) | {"dropout": d}
    done = result.n_per_arm
    return SampleSize(
        method=result.method, n_per_arm=(n_c, n_t), n_total=n_c + n_t, power=pw, inputs=inp,
        n_unrounded=result.n_unrounded,
        details=dict(result.details) | {"completers_per_arm": done},
        rationale=(f"Enrol {_arms_words((n_c, n_t))} so that {_arms_words(done)} are expected "
                   f"to complete with {_pct_short(d)} dropout, giving {_pct(pw)} power to detect "
                   f"{_WORDS[_family(result)](result.inputs)}."),
    )


# Binary, count and clustered designs re-use this module's record and dispatcher; imported last
# to avoid a cycle.
from designs.sample_size_clustered import (  # noqa: E402
    design_effect,
    n_clusters,
    n_stepped_wedge,
    power_clusters,
    power_stepped_wedge,
    stepped_wedge_design,
    stepped_wedge_variance,
)
from designs.sample_size_discrete import (  # noqa: E402
    n_proportions,
    n_rates,
    power_proportions,
    power_rates,
)
