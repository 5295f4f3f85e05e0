"""Bayesian go/no-go rules for a two-arm trial with a normal (or normal-approximated) effect.

Pure, vectorised functions of summary statistics: inputs broadcast against each other by numpy's
rules, and scalar inputs give scalar outputs. Nothing here fits a model; a fitted
:class:`analysis.estimate.Estimate` supplies ``estimate`` and ``std_error``.

Conventions
-----------
* The effect ``theta`` is experimental arm minus comparator, as in ``Estimate``.
* ``direction`` names the direction of benefit: ``"higher"`` (a wellbeing score) or ``"lower"``
  (PHQ-9, where a negative difference is good). "Beyond ``t``" means ``> t`` for ``"higher"``
  and ``< t`` for ``"lower"``.
* A posterior-probability criterion with effect ``threshold`` and ``probability`` gamma is met
  when P(theta beyond threshold | data) >= gamma: the same "at least" rule as
  ``trials.protocol.Criterion``.
* The prior for theta is N(``prior_mean``, ``prior_sd``**2); ``prior_sd=np.inf`` is the flat
  prior, under which the posterior is N(estimate, std_error**2).
* Information is precision: a standard error ``se`` carries information ``1 / se**2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

GO = "go"
CONSIDER = "consider"
NO_GO = "no_go"
_DIRECTIONS = {"higher": 1.0, "lower": -1.0}


class EffectSummary(NamedTuple):
    """An effect estimate and its standard error."""

    estimate: Any
    std_error: Any


class NormalPosterior(NamedTuple):
    """A normal posterior N(mean, sd**2) for the effect."""

    mean: Any
    sd: Any


class MonteCarloEstimate(NamedTuple):
    """A Monte Carlo estimate, its Monte Carlo standard error and the number of draws."""

    estimate: Any
    mc_se: Any
    n_draws: int


class CalibratedThreshold(NamedTuple):
    """A posterior-probability threshold calibrated by simulation, with its Monte Carlo SE."""

    probability: Any
    mc_se: Any
    n_sim: int


class TvLrvDecision(NamedTuple):
    """Zone (``"go"``, ``"consider"``, ``"no_go"``) and the two posterior probabilities read."""

    zone: Any
    p_beyond_lrv: Any
    p_beyond_tv: Any


class OperatingCharacteristics(NamedTuple):
    """P(GO), P(CONSIDER) and P(NO-GO) at each true effect; they sum to one."""

    go: Any
    consider: Any
    no_go: Any


@dataclass(frozen=True)
class TvLrvRule:
    r"""A target-value / lower-reference-value go / consider / no-go rule.

    Parameters
    ----------
    lrv
        Lower reference value: the smallest effect worth pursuing (e.g. -2 PHQ-9 points).
    tv
        Target value: the effect hoped for; must lie beyond ``lrv`` in the direction of benefit.
    p_lrv
        GO needs P(theta beyond LRV) >= ``p_lrv`` (0.8 in GNGTools' default).
    p_tv
        GO needs P(theta beyond TV) >= ``p_tv``; NO-GO needs it below ``p_tv`` (0.1).
    p_nogo
        NO-GO needs P(theta beyond LRV) < ``p_nogo`` (0.65); at most ``p_lrv``.
    direction
        ``"higher"`` or ``"lower"``: the direction of benefit.

    Notes
    -----
    The zones, with :math:`P_L = P(\theta \text{ beyond LRV} \mid y)` and
    :math:`P_T = P(\theta \text{ beyond TV} \mid y)`:

    * GO: :math:`P_L \ge p_{lrv}` and :math:`P_T \ge p_{tv}`;
    * NO-GO: :math:`P_L < p_{nogo}` and :math:`P_T < p_{tv}`;
    * CONSIDER: otherwise.

    This is the rule exactly as coded in ``get.ts.bin.dec`` of the R package GNGTools
    (G. Cicconetti), inequalities included: a posterior-probability form of the TV/LRV
    framework of Lalonde et al. (2007) and Frewer et al. (2016). GO and NO-GO exclude each
    other because one needs :math:`P_T \ge p_{tv}` and the other :math:`P_T < p_{tv}`. With
    ``p_nogo == p_lrv`` it is the symmetric two-by-two table (GO when both probabilities clear
    their cut-offs, NO-GO when neither does, CONSIDER when one does: the "significance and
    relevance" scheme of Fisch et al. 2015), apart from ties at a cut-off, which have
    probability zero under a normal posterior.

    References
    ----------
    Frewer P, Mitchell P, Watkins C, Matcham J. Decision-making in early clinical drug
    development. Pharm Stat 2016;15:255-263.
    Lalonde RL, et al. Model-based drug development. Clin Pharmacol Ther 2007;82:21-32.
    Fisch R, et al. Bayesian design of proof-of-concept trials. Ther Innov Regul Sci
    2015;49:155-162.
    """

    lrv: float
    tv: float
    p_lrv: float
    p_tv: float
    p_nogo: float
    direction: str = "higher"

    def __post_init__(self) -> None:
        sign = _sign(self.direction)
        if not (np.isfinite(self.lrv) and np.isfinite(self.tv)):
            raise ValueError("TvLrvRule: lrv and tv must be finite")
        if sign * (self.tv - self.lrv) < 0:
            raise ValueError(f"TvLrvRule: tv ({self.tv:g}) must not lie short of lrv "
                             f"({self.lrv:g}) in the direction of benefit ({self.direction})")
        for name in ("p_lrv", "p_tv", "p_nogo"):
            _check_open_unit(getattr(self, name), f"TvLrvRule.{name}")
        if self.p_nogo > self.p_lrv:
            raise ValueError(f"TvLrvRule: p_nogo ({self.p_nogo:g}) must not exceed p_lrv "
                             f"({self.p_lrv:g})")


# ---------------------------------------------------------------------------- data summaries
def effect_std_error(
    sd_treatment: ArrayLike,
    n_treatment: ArrayLike,
    n_control: ArrayLike,
    sd_control: ArrayLike | None = None,
) -> Any:
    r"""Standard error of a difference in means from per-arm SDs and sizes.

    Parameters
    ----------
    sd_treatment, n_treatment, n_control
        SD in the experimental arm and the two arm sizes.
    sd_control
        SD in the comparator arm; the experimental arm's SD when omitted (common SD).

    Returns
    -------
    Standard error of the difference (experimental minus comparator).

    Notes
    -----
    :math:`SE = \sqrt{s_T^2 / n_T + s_C^2 / n_C}`, the normal approximation with the SDs taken
    as known. For planning, the final SE at ``n`` per arm and common SD ``s`` is
    :math:`s \sqrt{2 / n}`.
    """
    sd_t = _positive(sd_treatment, "sd_treatment")
    sd_c = sd_t if sd_control is None else _positive(sd_control, "sd_control")
    n_t = _positive(n_treatment, "n_treatment")
    n_c = _positive(n_control, "n_control")
    return _out(np.sqrt(sd_t**2 / n_t + sd_c**2 / n_c))


def effect_from_arms(
    mean_treatment: ArrayLike,
    mean_control: ArrayLike,
    sd_treatment: ArrayLike,
    n_treatment: ArrayLike,
    n_control: ArrayLike,
    sd_control: ArrayLike | None = None,
) -> EffectSummary:
    """Difference in means and its standard error from per-arm summaries.

    Parameters
    ----------
    mean_treatment, mean_control
        Arm means (or mean changes).
    sd_treatment, n_treatment, n_control, sd_control
        As in :func:`effect_std_error`.

    Returns
    -------
    EffectSummary
        ``estimate`` = mean_treatment - mean_control and its ``std_error``.
    """
    est = np.asarray(mean_treatment, float) - np.asarray(mean_control, float)
    se = effect_std_error(sd_treatment, n_treatment, n_control, sd_control)
    return EffectSummary(_out(est), se)


# ---------------------------------------------------------------------------- posterior
def normal_update(
    estimate: ArrayLike,
    std_error: ArrayLike,
    prior_mean: ArrayLike = 0.0,
    prior_sd: ArrayLike = np.inf,
) -> NormalPosterior:
    r"""Conjugate normal update of a normal prior by a normal likelihood for the effect.

    Parameters
    ----------
    estimate, std_error
        The data summarised as an effect estimate y and its standard error.
    prior_mean, prior_sd
        Prior N(m0, s0**2); ``prior_sd=np.inf`` is flat.

    Returns
    -------
    NormalPosterior
        ``mean`` m1 and ``sd`` s1.

    Notes
    -----
    With prior precision :math:`P_0 = 1/s_0^2` and data precision :math:`I = 1/SE^2`,

    .. math::

        \frac{1}{s_1^2} = P_0 + I, \qquad m_1 = s_1^2 \, (P_0 m_0 + I y).

    The posterior mean is a precision-weighted average of prior mean and estimate
    (Spiegelhalter, Abrams & Myles 2004, chapter 3). A flat prior gives N(y, SE**2).
    """
    y = np.asarray(estimate, float)
    info = 1.0 / _positive(std_error, "std_error") ** 2
    p0, m0 = _prior_precision(prior_mean, prior_sd)
    p1 = p0 + info
    mean = (p0 * m0 + info * y) / p1
    return NormalPosterior(_out(mean), _out(np.sqrt(1.0 / p1)))


def posterior_probability(
    mean: ArrayLike,
    sd: ArrayLike,
    threshold: ArrayLike = 0.0,
    direction: str = "higher",
) -> Any:
    r"""P(theta beyond ``threshold`` | data) under a normal posterior.

    Parameters
    ----------
    mean, sd
        Posterior mean and SD (from :func:`normal_update`).
    threshold
        Effect threshold delta.
    direction
        ``"higher"``: P(theta > delta); ``"lower"``: P(theta < delta).

    Returns
    -------
    The posterior probability.

    Notes
    -----
    With :math:`s = +1` for ``"higher"`` and :math:`-1` for ``"lower"``,
    :math:`P = \Phi\{ s (m_1 - \delta) / s_1 \}`.
    """
    sign = _sign(direction)
    m = np.asarray(mean, float)
    s = _positive(sd, "sd")
    return _out(stats.norm.cdf(sign * (m - np.asarray(threshold, float)) / s))


# ---------------------------------------------------------------------------- prediction
def predictive_probability(
    estimate: ArrayLike,
    std_error: ArrayLike,
    final_std_error: ArrayLike,
    threshold: ArrayLike = 0.0,
    probability: ArrayLike = 0.975,
    *,
    prior_mean: ArrayLike = 0.0,
    prior_sd: ArrayLike = np.inf,
    direction: str = "higher",
) -> Any:
    r"""Predictive probability that the final analysis meets a posterior-probability criterion.

    Parameters
    ----------
    estimate, std_error
        The interim effect estimate y1 and its standard error.
    final_std_error
        Planned standard error of the estimate from all data at the final analysis; at most
        ``std_error``. The final data include the interim data.
    threshold, probability
        The final criterion: P(theta beyond ``threshold`` | all data) >= ``probability``.
    prior_mean, prior_sd
        Prior N(m0, s0**2), used both for prediction and for the final analysis.
    direction
        Direction of benefit.

    Returns
    -------
    The predictive probability of final success, in [0, 1].

    Notes
    -----
    Work in the benefit direction (:math:`s = \pm 1`). Let :math:`P_0 = 1/s_0^2`,
    :math:`I_1 = 1/SE_1^2`, :math:`I_F = 1/SE_F^2`, :math:`I_2 = I_F - I_1` (information still
    to come), :math:`P_1 = P_0 + I_1`, :math:`P_F = P_0 + I_F`, and :math:`m_1` the interim
    posterior mean. The final posterior mean is
    :math:`m_F = (P_1 m_1 + I_2 y_2) / P_F`, where the estimate :math:`y_2` from the new data has
    the predictive distribution :math:`N(m_1, 1/I_2 + 1/P_1)`, so

    .. math::

        m_F \mid y_1 \sim N\!\left(m_1, \frac{I_2}{P_1 P_F}\right).

    The final criterion :math:`\Phi\{s (m_F - \delta) \sqrt{P_F}\} \ge \gamma` is
    :math:`s (m_F - \delta) \ge z_\gamma / \sqrt{P_F}`, hence

    .. math::

        PP = \Phi\!\left( \frac{s (m_1 - \delta) - z_\gamma / \sqrt{P_F}}
                              {\sqrt{I_2 / (P_1 P_F)}} \right).

    With a flat prior, :math:`\delta = 0`, interim z-statistic :math:`Z_1` and information
    fraction :math:`t = I_1 / I_F` this is
    :math:`\Phi\{(Z_1 - z_\gamma \sqrt{t}) / \sqrt{1 - t}\}`, the Bayesian predictive
    power of Spiegelhalter, Abrams & Myles (2004, section 6.6) and Dmitrienko & Wang (2006).
    When no information remains (:math:`I_2 = 0`) PP is 1 if the interim posterior already
    meets the criterion and 0 otherwise; as :math:`I_F \to \infty` it tends to the interim
    posterior probability of theta beyond delta.

    References
    ----------
    Spiegelhalter DJ, Abrams KR, Myles JP. Bayesian Approaches to Clinical Trials and
    Health-Care Evaluation. Wiley; 2004. Section 6.6.
    Dmitrienko A, Wang MD. Bayesian predictive approach to interim monitoring in clinical
    trials. Stat Med 2006;25:2178-2195.
    """
    sign = _sign(direction)
    pre = _predictive_setup(estimate, std_error, final_std_error, prior_mean, prior_sd)
    z_gamma = stats.norm.ppf(_check_open_unit(probability, "probability"))
    margin = sign * (pre["m1"] - np.asarray(threshold, float)) - z_gamma / np.sqrt(pre["pf"])
    spread = np.sqrt(pre["i2"] / (pre["p1"] * pre["pf"]))
    with np.errstate(divide="ignore", invalid="ignore"):
        pp = stats.norm.cdf(margin / spread)
    # No information left: the final analysis is the interim analysis.
    pp = np.where(spread > 0, pp, (margin >= 0).astype(float))
    return _out(pp)


def predictive_probability_mc(
    estimate: ArrayLike,
    std_error: ArrayLike,
    final_std_error: ArrayLike,
    threshold: ArrayLike = 0.0,
    probability: ArrayLike = 0.975,
    *,
    prior_mean: ArrayLike = 0.0,
    prior_sd: ArrayLike = np.inf,
    direction: str = "higher",
    n_draws: int = 100_000,
    seed: int = 0,
) -> MonteCarloEstimate:
    r"""Monte Carlo check of :func:`predictive_probability`.

    Draws theta from the interim posterior, the remaining data's estimate given theta, refits
    the final posterior with :func:`normal_update` on the pooled estimate and counts how often
    the final criterion is met. Same parameters as :func:`predictive_probability`, plus the
    number of draws and the seed.

    Returns
    -------
    MonteCarloEstimate
        The proportion of draws meeting the criterion and its binomial Monte Carlo SE
        :math:`\sqrt{\hat p (1 - \hat p) / n}`.

    Notes
    -----
    :math:`\theta \sim N(m_1, 1/P_1)`, :math:`y_2 \mid \theta \sim N(\theta, 1/I_2)`, final
    estimate :math:`y_F = (I_1 y_1 + I_2 y_2)/I_F` with standard error :math:`SE_F`.
    """
    pre = _predictive_setup(estimate, std_error, final_std_error, prior_mean, prior_sd)
    gamma = _check_open_unit(probability, "probability")
    shape = np.broadcast_shapes(*(np.shape(v) for v in pre.values()), np.shape(threshold),
                                np.shape(gamma))
    rng = np.random.default_rng(seed)
    z_theta = rng.standard_normal((n_draws, *shape))
    z_data = rng.standard_normal((n_draws, *shape))
    theta = pre["m1"] + z_theta / np.sqrt(pre["p1"])
    # I2 * y2 written without dividing by I2, so that I2 = 0 (no new data) is allowed.
    weighted_y2 = pre["i2"] * theta + np.sqrt(pre["i2"]) * z_data
    y_final = (pre["i1"] * pre["y1"] + weighted_y2) / pre["if"]
    post = normal_update(y_final, 1.0 / np.sqrt(pre["if"]), prior_mean, prior_sd)
    met = posterior_probability(post.mean, post.sd, threshold, direction) >= gamma
    p = met.mean(axis=0)
    return MonteCarloEstimate(_out(p), _out(np.sqrt(p * (1 - p) / n_draws)), n_draws)


# ---------------------------------------------------------------------------- TV / LRV
def tv_lrv_decision(mean: ArrayLike, sd: ArrayLike, rule: TvLrvRule) -> TvLrvDecision:
    """Go / consider / no-go zone of a normal posterior under a TV/LRV rule.

    Parameters
    ----------
    mean, sd
        Posterior mean and SD of the effect.
    rule
        The :class:`TvLrvRule` (its Notes give the three zones and the published variant).

    Returns
    -------
    TvLrvDecision
        ``zone`` (``"go"``, ``"consider"`` or ``"no_go"``; an array of them for array input)
        and the two posterior probabilities it was read from.
    """
    p_l = np.asarray(posterior_probability(mean, sd, rule.lrv, rule.direction))
    p_t = np.asarray(posterior_probability(mean, sd, rule.tv, rule.direction))
    go = (p_l >= rule.p_lrv) & (p_t >= rule.p_tv)
    no_go = (p_l < rule.p_nogo) & (p_t < rule.p_tv)
    zone = np.where(go, GO, np.where(no_go, NO_GO, CONSIDER))
    return TvLrvDecision(str(zone) if zone.ndim == 0 else zone, _out(p_l), _out(p_t))


def tv_lrv_operating_characteristics(
    theta: ArrayLike,
    std_error: ArrayLike,
    rule: TvLrvRule,
    *,
    prior_mean: ArrayLike = 0.0,
    prior_sd: ArrayLike = np.inf,
) -> OperatingCharacteristics:
    r"""P(GO), P(CONSIDER), P(NO-GO) of a TV/LRV rule at true effects ``theta`` (analytic).

    Parameters
    ----------
    theta
        True effects (a grid, typically).
    std_error
        Standard error of the effect estimate at the analysis.
    rule
        The :class:`TvLrvRule`.
    prior_mean, prior_sd
        Analysis prior.

    Returns
    -------
    OperatingCharacteristics

    Notes
    -----
    The estimate is :math:`y \sim N(\theta, SE^2)`. Each criterion
    :math:`P(\theta \text{ beyond } c \mid y) \ge p` holds exactly when
    :math:`u = s y \ge b(c, p)` (see :func:`success_probability`), because the posterior mean
    increases with y and the posterior SD does not depend on y. So GO is
    :math:`u \ge \max\{b(LRV, p_{lrv}), b(TV, p_{tv})\}`, NO-GO is
    :math:`u < \min\{b(LRV, p_{nogo}), b(TV, p_{tv})\}`, and with :math:`u \sim N(s\theta,
    SE^2)`

    .. math::

        P(GO) = \Phi\{(s\theta - g)/SE\}, \quad P(NO\text{-}GO) = \Phi\{(n - s\theta)/SE\},

    :math:`P(CONSIDER) = 1 - P(GO) - P(NO\text{-}GO)`.
    """
    sign = _sign(rule.direction)
    se = _positive(std_error, "std_error")
    s_theta = sign * np.asarray(theta, float)
    go_cut = np.maximum(_cutoff(se, rule.lrv, rule.p_lrv, prior_mean, prior_sd, sign),
                        _cutoff(se, rule.tv, rule.p_tv, prior_mean, prior_sd, sign))
    nogo_cut = np.minimum(_cutoff(se, rule.lrv, rule.p_nogo, prior_mean, prior_sd, sign),
                          _cutoff(se, rule.tv, rule.p_tv, prior_mean, prior_sd, sign))
    p_go = stats.norm.cdf((s_theta - go_cut) / se)
    p_nogo = stats.norm.cdf((nogo_cut - s_theta) / se)
    p_consider = np.clip(1.0 - p_go - p_nogo, 0.0, 1.0)
    return OperatingCharacteristics(_out(p_go), _out(p_consider), _out(p_nogo))


# ---------------------------------------------------------------------------- helpers
def _cutoff(se: np.ndarray, threshold: ArrayLike, probability: ArrayLike,
            prior_mean: ArrayLike, prior_sd: ArrayLike, sign: float) -> np.ndarray:
    """The b of :func:`success_probability`: criterion met iff sign * estimate >= b."""
    z = stats.norm.ppf(_check_open_unit(probability, "probability"))
    p0, m0 = _prior_precision(prior_mean, prior_sd)
    info = 1.0 / se**2
    s1 = np.sqrt(1.0 / (p0 + info))
    w = info / (p0 + info)
    return (sign * np.asarray(threshold, float) + z * s1 - (1.0 - w) * sign * m0) / w


def _predictive_setup(estimate: ArrayLike, std_error: ArrayLike, final_std_error: ArrayLike,
                      prior_mean: ArrayLike, prior_sd: ArrayLike) -> dict[str, np.ndarray]:
    se1 = _positive(std_error, "std_error")
    sef = _positive(final_std_error, "final_std_error")
    i1, i_f = 1.0 / se1**2, 1.0 / sef**2
    # Rounding in a caller's SE arithmetic must not turn "no data left" into an error.
    if np.any(i_f < i1 * (1 - 1e-12)):
        raise ValueError("final_std_error must not exceed std_error: the final analysis "
                         "includes the interim data")
    i2 = np.maximum(i_f - i1, 0.0)
    p0, m0 = _prior_precision(prior_mean, prior_sd)
    y1 = np.asarray(estimate, float)
    p1 = p0 + i1
    return {"y1": y1, "i1": i1, "i2": i2, "if": i1 + i2, "p1": p1, "pf": p1 + i2,
            "m1": (p0 * m0 + i1 * y1) / p1}


def _prior_precision(prior_mean: ArrayLike, prior_sd: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    sd = _positive(prior_sd, "prior_sd", allow_inf=True)
    m0 = np.asarray(prior_mean, float)
    if not np.all(np.isfinite(m0)):
        raise ValueError("prior_mean must be finite")
    p0 = 1.0 / sd**2
    # A flat prior has zero precision; its mean then plays no part (avoid 0 * nan).
    return p0, np.where(p0 > 0, m0, 0.0)


def _positive(x: ArrayLike, name: str, allow_inf: bool = False) -> np.ndarray:
    a = np.asarray(x, float)
    ok = (a > 0) & (np.isfinite(a) | (allow_inf & np.isposinf(a)))
    if not np.all(ok):
        raise ValueError(f"{name} must be positive{'' if allow_inf else ' and finite'}, "
                         f"got {x!r}")
    return a


def _check_open_unit(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, float)
    if not np.all((a > 0) & (a < 1)):
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {x!r}")
    return a


def _sign(direction: str) -> float:
    try:
        return _DIRECTIONS[direction]
    except (KeyError, TypeError):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}") from None


def _out(x: Any) -> Any:
    """0-d arrays to numpy scalars, so that scalar input gives scalar output."""
    a = np.asarray(x)
    return a[()] if a.ndim == 0 else a


# Single-criterion calibration re-uses this module's helpers; imported last to avoid a cycle.
from designs.bayes_calibration import (  # noqa: E402, F401  (re-exported)
    analytic_probability_threshold,
    calibrate_probability_threshold,
    success_probability,
)
