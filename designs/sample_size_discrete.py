"""Sample size and power for two proportions and for two event rates (counts).

Split from :mod:`designs.sample_size`, which holds the shared record (:class:`SampleSize`), the
power kernels and the solver, and re-exports these functions; the conventions in its module
docstring apply here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from designs.sample_size import (
    _ROUND_TOL,
    SampleSize,
    _arms_words,
    _check_n,
    _check_open01,
    _check_positive,
    _check_test,
    _pct,
    _proportions_power,
    _proportions_words,
    _rates_power,
    _rates_sd,
    _rates_words,
    _solve_and_round,
)


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
