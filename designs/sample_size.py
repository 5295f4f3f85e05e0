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

The file holds every family in one place on purpose: they share the record, the rounding rule
and the power dispatcher that ``inflate_for_dropout`` and the cluster functions re-use.
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


# --------------------------------------------------------------------------- binary


def _proportions_inputs(p_control, p_treatment, alpha, sides, allocation, method,
                        strict) -> dict[str, Any]:
    _check_open01("p_control", p_control)
    _check_open01("p_treatment", p_treatment)
    if p_control == p_treatment:
        raise ValueError("p_control and p_treatment must differ")
    _check_test(alpha, sides)
    _check_positive("allocation", allocation)
    if method not in ("pooled", "unpooled", "arcsine"):
        raise ValueError(f"method must be 'pooled', 'unpooled' or 'arcsine', got {method!r}")
    return {"p_control": float(p_control), "p_treatment": float(p_treatment),
            "alpha": float(alpha), "sides": int(sides), "allocation": float(allocation),
            "method": method, "strict": bool(strict)}


def _proportions_words(inp: Mapping[str, Any]) -> str:
    test = {"pooled": "a z-test with pooled variance under H0",
            "unpooled": "a z-test with unpooled (Wald) variance",
            "arcsine": "an arcsine-transformed z-test (Cohen's h)"}[inp["method"]]
    return (f"{_pct(inp['p_treatment'])} vs {_pct(inp['p_control'])} (treatment vs control) "
            f"with {test} at the {_test_words(inp['alpha'], inp['sides'])}")


def _proportions_details(inp: Mapping[str, Any]) -> dict[str, float]:
    p_c, p_t = inp["p_control"], inp["p_treatment"]
    return {"difference": p_t - p_c,
            "cohens_h": 2.0 * math.asin(math.sqrt(p_t)) - 2.0 * math.asin(math.sqrt(p_c))}


def n_proportions(
    p_control: float,
    p_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    sides: int = 2,
    allocation: float = 1.0,
    method: Literal["pooled", "unpooled", "arcsine"] = "pooled",
    strict: bool = True,
) -> SampleSize:
    """Sample size to detect a difference between two independent proportions.

    Parameters
    ----------
    p_control, p_treatment
        Event probabilities under the alternative.
    alpha, power, sides, allocation, strict
        As in :func:`n_means`.
    method
        ``"pooled"``: z-test whose null variance uses the pooled proportion (R
        ``power.prop.test``, statsmodels ``power_proportions_2indep``, rpact
        ``getSampleSizeRates``); ``"unpooled"``: Wald z-test, same variance under H0 and H1;
        ``"arcsine"``: z-test on Cohen's :math:`h = 2\\arcsin\\sqrt{p_t} - 2\\arcsin\\sqrt{p_c}`
        (statsmodels ``NormalIndPower`` with ``proportion_effectsize``, ``pwr::pwr.2p.test``).

    Returns
    -------
    SampleSize
        With ``method`` ``"proportions.<method>"``.

    Notes
    -----
    With :math:`d = |p_t - p_c|`, :math:`\\bar p = (n_c p_c + n_t p_t)/(n_c + n_t)`,
    :math:`\\sigma_1^2 = p_c(1-p_c)/n_c + p_t(1-p_t)/n_t` and
    :math:`\\sigma_0^2 = \\bar p (1-\\bar p)(1/n_c + 1/n_t)` (pooled) or :math:`\\sigma_1^2`
    (unpooled), power :math:`= \\Phi((d - z_{1-\\alpha/s}\\sigma_0)/\\sigma_1)
    [+ \\Phi((-d - z_{1-\\alpha/2}\\sigma_0)/\\sigma_1)]`. Arcsine: power
    :math:`= \\Phi(|h| / \\sqrt{1/n_c + 1/n_t} - z_{1-\\alpha/s}) [+ \\ldots]`. No continuity
    correction. n is solved by Brent's method.
    """
    inp = _proportions_inputs(p_control, p_treatment, alpha, sides, allocation, method, strict)
    _check_test(alpha, sides, power)
    inp["power"] = float(power)
    exact, n, achieved = _solve_and_round(_proportions_power, inp, inp["power"], 1e-6)
    return SampleSize(
        method=f"proportions.{method}", n_per_arm=n, n_total=sum(n), power=achieved, inputs=inp,
        n_unrounded=exact, details=_proportions_details(inp),
        rationale=(f"{_arms_words(n)} give {_pct(achieved)} power (target {_pct(power)}) to "
                   f"detect {_proportions_words(inp)}."),
    )


def power_proportions(
    p_control: float,
    p_treatment: float,
    n_control: float,
    n_treatment: float | None = None,
    *,
    alpha: float = 0.05,
    sides: int = 2,
    method: Literal["pooled", "unpooled", "arcsine"] = "pooled",
    strict: bool = True,
) -> SampleSize:
    """Power of a comparison of two proportions at given arm sizes.

    Parameters are those of :func:`n_proportions`; ``n_treatment`` defaults to ``n_control``.

    Notes
    -----
    See :func:`n_proportions` for the formulas.
    """
    n_treatment = n_control if n_treatment is None else n_treatment
    _check_n(n_control, n_treatment)
    inp = _proportions_inputs(p_control, p_treatment, alpha, sides, n_treatment / n_control,
                              method, strict)
    pw = _proportions_power(inp, float(n_control), float(n_treatment))
    n = (math.ceil(n_control - _ROUND_TOL), math.ceil(n_treatment - _ROUND_TOL))
    return SampleSize(
        method=f"proportions.{method}", n_per_arm=n, n_total=sum(n), power=pw, inputs=inp,
        details=_proportions_details(inp),
        rationale=f"{_arms_words(n)} give {_pct(pw)} power to detect {_proportions_words(inp)}.",
    )


# --------------------------------------------------------------------------- counts


def _rates_inputs(rate_control, rate_treatment, exposure, dispersion, alpha, sides, allocation,
                  null_variance, strict) -> dict[str, Any]:
    _check_positive("rate_control", rate_control)
    _check_positive("rate_treatment", rate_treatment)
    if rate_control == rate_treatment:
        raise ValueError("rate_control and rate_treatment must differ")
    _check_positive("exposure", exposure)
    if not (float(dispersion) >= 0.0 and math.isfinite(float(dispersion))):
        raise ValueError(f"dispersion must be >= 0, got {dispersion!r}")
    _check_test(alpha, sides)
    _check_positive("allocation", allocation)
    if null_variance not in ("pooled", "control", "alternative"):
        raise ValueError("null_variance must be 'pooled', 'control' or 'alternative', got "
                         f"{null_variance!r}")
    return {"rate_control": float(rate_control), "rate_treatment": float(rate_treatment),
            "exposure": float(exposure), "dispersion": float(dispersion), "alpha": float(alpha),
            "sides": int(sides), "allocation": float(allocation),
            "null_variance": null_variance, "strict": bool(strict)}


def _rates_words(inp: Mapping[str, Any]) -> str:
    model = (f"negative binomial (dispersion {inp['dispersion']:g})" if inp["dispersion"]
             else "Poisson")
    return (f"a rate ratio of {inp['rate_treatment'] / inp['rate_control']:.4g} "
            f"({inp['rate_treatment']:g} vs {inp['rate_control']:g} events per unit time, "
            f"exposure {inp['exposure']:g}) with a {model} Wald test on log(rate ratio) "
            f"({inp['null_variance']} null variance, Zhu & Lakkis 2014) at the "
            f"{_test_words(inp['alpha'], inp['sides'])}")


def n_rates(
    rate_control: float,
    rate_treatment: float,
    *,
    exposure: float = 1.0,
    dispersion: float = 0.0,
    alpha: float = 0.05,
    power: float = 0.8,
    sides: int = 2,
    allocation: float = 1.0,
    null_variance: Literal["pooled", "control", "alternative"] = "pooled",
    strict: bool = True,
) -> SampleSize:
    """Sample size to detect a ratio of two event rates (Poisson or negative binomial counts).

    Parameters
    ----------
    rate_control, rate_treatment
        Event rates per unit of exposure under the alternative.
    exposure
        Follow-up (exposure) per participant, the same in both arms.
    dispersion
        Negative binomial dispersion k, with Var(Y) = μ + kμ² (R ``rnbinom``'s ``1/size``);
        0 gives Poisson counts.
    alpha, power, sides, allocation, strict
        As in :func:`n_means`.
    null_variance
        Variance of log(rate ratio) used for the critical value, the three methods of Zhu &
        Lakkis (2014): ``"control"`` (method 1, both arms at the control rate),
        ``"alternative"`` (method 2, the rates under H1; equals Keene et al. 2007 for 1:1), and
        ``"pooled"`` (method 3, the allocation-weighted rate, the default; statsmodels'
        ``method_var="ftotal"``).

    Returns
    -------
    SampleSize
        With ``method`` ``"rates.<null_variance>"``.

    Notes
    -----
    Zhu H, Lakkis H (2014). Sample size calculation for comparing two negative binomial rates.
    Stat Med 33:376-387. With :math:`\\mu_i = \\lambda_i t`, the Wald statistic for
    :math:`\\log(\\lambda_t/\\lambda_c)` has variance under H1
    :math:`V_1 = (1/\\mu_c + k)/n_c + (1/\\mu_t + k)/n_t` and under H0
    :math:`V_0 = (1/(\\tilde\\lambda t) + k)(1/n_c + 1/n_t)` with
    :math:`\\tilde\\lambda = \\lambda_c` (method 1) or
    :math:`(n_c\\lambda_c + n_t\\lambda_t)/(n_c+n_t)` (method 3), or :math:`V_0 = V_1`
    (method 2). Power :math:`= \\Phi((|\\log RR| - z_{1-\\alpha/s}\\sqrt{V_0})/\\sqrt{V_1})
    [+ \\Phi((-|\\log RR| - z_{1-\\alpha/2}\\sqrt{V_0})/\\sqrt{V_1})]`; without the far tail
    :math:`n_c = (z_{1-\\alpha/s}\\sqrt{v_0} + z_{1-\\beta}\\sqrt{v_1})^2 / \\log(RR)^2` where
    :math:`v = n_c V`. Keene ON, Jones MRK, Lane PW, Anderson J (2007, Pharm Stat 6:89-97)
    give the 1:1, method-2 case. The formula assumes every participant has the same exposure.
    """
    inp = _rates_inputs(rate_control, rate_treatment, exposure, dispersion, alpha, sides,
                        allocation, null_variance, strict)
    _check_test(alpha, sides, power)
    inp["power"] = float(power)
    exact, n, achieved = _solve_and_round(_rates_power, inp, inp["power"], 1e-6)
    sd0, sd1 = _rates_sd(inp, *n)
    return SampleSize(
        method=f"rates.{null_variance}", n_per_arm=n, n_total=sum(n), power=achieved,
        inputs=inp, n_unrounded=exact,
        details={"rate_ratio": rate_treatment / rate_control, "sd_null": sd0, "sd_alt": sd1},
        rationale=(f"{_arms_words(n)} give {_pct(achieved)} power (target {_pct(power)}) to "
                   f"detect {_rates_words(inp)}."),
    )


def power_rates(
    rate_control: float,
    rate_treatment: float,
    n_control: float,
    n_treatment: float | None = None,
    *,
    exposure: float = 1.0,
    dispersion: float = 0.0,
    alpha: float = 0.05,
    sides: int = 2,
    null_variance: Literal["pooled", "control", "alternative"] = "pooled",
    strict: bool = True,
) -> SampleSize:
    """Power of a comparison of two event rates at given arm sizes.

    Parameters are those of :func:`n_rates`; ``n_treatment`` defaults to ``n_control``.

    Notes
    -----
    See :func:`n_rates` for the formulas (Zhu & Lakkis 2014).
    """
    n_treatment = n_control if n_treatment is None else n_treatment
    _check_n(n_control, n_treatment)
    inp = _rates_inputs(rate_control, rate_treatment, exposure, dispersion, alpha, sides,
                        n_treatment / n_control, null_variance, strict)
    pw = _rates_power(inp, float(n_control), float(n_treatment))
    sd0, sd1 = _rates_sd(inp, float(n_control), float(n_treatment))
    n = (math.ceil(n_control - _ROUND_TOL), math.ceil(n_treatment - _ROUND_TOL))
    return SampleSize(
        method=f"rates.{null_variance}", n_per_arm=n, n_total=sum(n), power=pw, inputs=inp,
        details={"rate_ratio": rate_treatment / rate_control, "sd_null": sd0, "sd_alt": sd1},
        rationale=f"{_arms_words(n)} give {_pct(pw)} power to detect {_rates_words(inp)}.",
    )


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
