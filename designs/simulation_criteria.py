"""The protocol's own criteria and decision rule, applied to simulated trials (vectorised).

At every look of every simulated trial the monitored estimand's estimate and standard error
stand in for each pre-specified analysis of that estimand; from them each analysis reports the
statistics its criteria read, as the fitted analysis would (:class:`AnalysisRule`):

* frequentist: the estimate, the interval at the analysis's ``interval_level`` (normal with the
  summary engine's known SD, Student t with the patient engine's residual degrees of freedom)
  and the two-sided p-value;
* Bayesian: the conjugate normal posterior of the treatment effect under the analysis's stated
  normal prior (posterior mean, equal-tailed credible interval, posterior probabilities; no
  p-value, so a p-value criterion on a Bayesian analysis is never met, as in the run).

The decision at a look is :func:`trials.decision.decide`'s rule (:func:`look_decisions`):
harm -> STOP-FOR-HARM; futility -> STOP-FUTILITY (interim) or NO-GO (final); every success
criterion met -> STOP-EFFICACY (interim) or GO (final); else CONTINUE (interim) or NO-GO
(final). The group-sequential boundaries enter as criteria, as :func:`trials.sequential.monitor`
adds them: ``gs_efficacy`` (success, Z >= efficacy boundary), ``gs_futility`` (futility, interim
looks only, Z <= futility boundary) and ``gs_harm`` (harm, Z <= -harm_z); the simulation's
harm-event rule is one more harm criterion. A criterion that cannot be evaluated at a look (its
analysis is not run there, or lacks the statistic) is not met, as in ``decide``; simulated fits
are always reliable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtr, ndtri, stdtr, stdtrit

if TYPE_CHECKING:
    from designs.simulation_spec import LookPlan

#: Decision outcomes, as :class:`trials.decision.Outcome` values; codes are the indices.
DECISIONS = ("go", "no_go", "stop_efficacy", "stop_futility", "stop_for_harm")
GO, NO_GO, STOP_EFFICACY, STOP_FUTILITY, STOP_FOR_HARM = range(5)
CONTINUE = -1
KINDS = ("success", "futility", "harm")
STATISTICS = ("estimate", "ci_lower", "ci_upper", "p_value", "posterior_probability")
_COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


class CriteriaError(ValueError):
    """A criterion or analysis rule that cannot be simulated; one line naming the field."""


@dataclass(frozen=True)
class AnalysisRule:
    """How one analysis of the monitored estimand reports the statistics its criteria read.

    Parameters
    ----------
    id
        The analysis id (``analyses[].id``).
    engine
        ``"frequentist"`` or ``"bayesian"``.
    interval_level
        Level of its confidence or credible interval.
    prior_mean, prior_sd
        Normal prior on the treatment effect (Bayesian analyses only).
    looks
        0-based indices of the looks at which the analysis is run; ``None``: every look.
    """

    id: str
    engine: str = "frequentist"
    interval_level: float = 0.95
    prior_mean: float | None = None
    prior_sd: float | None = None
    looks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.engine not in ("frequentist", "bayesian"):
            raise CriteriaError(f"analysis {self.id!r}: engine must be frequentist or bayesian, "
                                f"got {self.engine!r}")
        if not 0 < self.interval_level < 1:
            raise CriteriaError(f"analysis {self.id!r}: interval_level must be in (0, 1), got "
                                f"{self.interval_level}")
        if self.engine == "bayesian" and not (
                self.prior_mean is not None and math.isfinite(self.prior_mean)
                and self.prior_sd is not None and math.isfinite(self.prior_sd)
                and self.prior_sd > 0):
            raise CriteriaError(f"analysis {self.id!r}: a bayesian analysis needs a normal prior "
                                "on the treatment effect (prior_mean, prior_sd > 0)")
        if self.looks is not None:
            object.__setattr__(self, "looks", tuple(int(k) for k in self.looks))

    def runs_at(self, k: int) -> bool:
        return self.looks is None or k in self.looks

    def statistics(self, estimate: np.ndarray, se: np.ndarray,
                   df: np.ndarray | float) -> LookStatistics:
        """What this analysis reports when the simulated trial gives ``estimate`` and ``se``.

        Notes
        -----
        Frequentist: :math:`\\hat\\theta \\pm q\\,SE` with q the :math:`(1 + level)/2` quantile of
        N(0, 1) (``df`` infinite) or of :math:`t_{df}`, and :math:`p = 2 F(-|\\hat\\theta| / SE)`.
        Bayesian, prior :math:`N(m_0, s_0^2)` and likelihood :math:`N(\\hat\\theta, SE^2)`:
        posterior precision :math:`1/s_0^2 + 1/SE^2`, mean
        :math:`(m_0/s_0^2 + \\hat\\theta/SE^2)` over the precision; the interval is the
        equal-tailed normal one and :math:`P(\\theta < c) = \\Phi((c - \\mu) / \\sigma)`.
        """
        estimate = np.asarray(estimate, dtype=float)
        se = np.asarray(se, dtype=float)
        tail = (1.0 + self.interval_level) / 2.0
        if self.engine == "bayesian":
            assert self.prior_mean is not None and self.prior_sd is not None
            precision = 1.0 / self.prior_sd**2 + 1.0 / se**2
            mean = (self.prior_mean / self.prior_sd**2 + estimate / se**2) / precision
            sd = 1.0 / np.sqrt(precision)
            q = float(ndtri(tail))
            return LookStatistics(mean, mean - q * sd, mean + q * sd, None, mean, sd)
        df = np.broadcast_to(np.asarray(df, dtype=float), estimate.shape)
        finite = np.isfinite(df)
        safe = np.where(finite, df, 1.0)
        q = np.where(finite, stdtrit(safe, tail), ndtri(tail))
        lower_tail = np.where(finite, stdtr(safe, -np.abs(estimate / se)),
                              ndtr(-np.abs(estimate / se)))
        return LookStatistics(estimate, estimate - q * se, estimate + q * se, 2.0 * lower_tail)


@dataclass(frozen=True)
class LookStatistics:
    """One analysis's statistics over simulated trials (arrays); see
    :meth:`AnalysisRule.statistics`."""

    estimate: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    p_value: np.ndarray | None
    posterior_mean: np.ndarray | None = None
    posterior_sd: np.ndarray | None = None

    def probability(self, comparator: str, threshold: float) -> np.ndarray | None:
        """P(effect ``comparator`` threshold) under the posterior (None: not Bayesian)."""
        if self.posterior_mean is None or self.posterior_sd is None:
            return None
        below = ndtr((threshold - self.posterior_mean) / self.posterior_sd)
        return below if comparator in ("<", "<=") else 1.0 - below


@dataclass(frozen=True)
class CriterionRule:
    """One pre-specified criterion on an analysis of the monitored estimand.

    Parameters
    ----------
    id, kind
        The criterion's id and kind (``success``, ``futility`` or ``harm``).
    analysis
        The :class:`AnalysisRule` it reads.
    statistic, comparator, threshold, probability
        As in the protocol: met when ``statistic comparator threshold`` holds, or for
        ``posterior_probability`` when P(effect comparator threshold) >= ``probability``.
    look
        0-based index of the look at which it applies; ``None``: the final look.
    """

    id: str
    kind: str
    analysis: AnalysisRule
    statistic: str
    comparator: str
    threshold: float
    probability: float | None = None
    look: int | None = None

    def __post_init__(self) -> None:
        where = f"criterion {self.id!r}"
        if self.kind not in KINDS:
            raise CriteriaError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.statistic not in STATISTICS:
            raise CriteriaError(f"{where}: statistic must be one of {STATISTICS}, got "
                                f"{self.statistic!r}")
        if self.comparator not in _COMPARE:
            raise CriteriaError(f"{where}: comparator must be one of {sorted(_COMPARE)}, got "
                                f"{self.comparator!r}")
        if not math.isfinite(self.threshold):
            raise CriteriaError(f"{where}: threshold must be finite, got {self.threshold}")
        if (self.statistic == "posterior_probability") != (self.probability is not None):
            raise CriteriaError(f"{where}: probability goes with statistic "
                                "posterior_probability, and only with it")

    def applies_at(self, k: int, looks: int) -> bool:
        return (looks - 1 if self.look is None else self.look) == k

    def met(self, stats: LookStatistics) -> np.ndarray:
        """Met or not, per trial; a statistic the analysis does not report is never met."""
        if self.statistic == "posterior_probability":
            value = stats.probability(self.comparator, self.threshold)
            if value is None:
                return np.zeros(stats.estimate.shape, dtype=bool)
            assert self.probability is not None
            return value >= self.probability
        value = getattr(stats, self.statistic)
        if value is None:
            return np.zeros(stats.estimate.shape, dtype=bool)
        return _COMPARE[self.comparator](value, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["analysis"] = asdict(self.analysis)
        if self.analysis.looks is not None:
            out["analysis"]["looks"] = list(self.analysis.looks)
        return out


@dataclass(frozen=True)
class DecisionRules:
    """The decision rule a simulated trial follows at each look.

    Parameters
    ----------
    criteria
        The protocol's criteria on analyses of the monitored estimand.
    boundaries
        Apply the group-sequential boundaries as criteria (``gs_efficacy``, ``gs_futility``,
        ``gs_harm``); ``False``: the criteria alone decide (a design without boundaries).
    not_simulated
        ``(criterion id, reason)`` for each protocol criterion the simulation cannot evaluate
        (safety measures, responders, other estimands, secondary claims), for the record.
    """

    criteria: tuple[CriterionRule, ...] = ()
    boundaries: bool = True
    not_simulated: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"criteria": [c.to_dict() for c in self.criteria],
                "boundaries": self.boundaries,
                "not_simulated": [{"id": i, "reason": r} for i, r in self.not_simulated]}


def look_decisions(plan: LookPlan, k: int, estimate: np.ndarray, se: np.ndarray,
                   df: np.ndarray | float, z: np.ndarray,
                   harm_event_z: np.ndarray | None = None) -> np.ndarray:
    """The decision code (:data:`DECISIONS` index, or :data:`CONTINUE`) of each trial at look k.

    Parameters
    ----------
    plan
        The resolved rules (boundaries at this scenario's looks and ``plan.rules``).
    k
        0-based look index.
    estimate, se, df
        The monitored estimand's estimate, standard error and degrees of freedom (``inf``:
        normal) per trial at this look.
    z
        Benefit-positive Z of the monitored analysis per trial (the boundaries read it).
    harm_event_z
        Two-proportion z of harm events per trial, with ``plan.harm_event_z``.
    """
    rules = plan.rules if plan.rules is not None else DecisionRules()
    final = k == plan.looks - 1
    z = np.asarray(z, dtype=float)
    success: list[np.ndarray] = []
    futility: list[np.ndarray] = []
    harm: list[np.ndarray] = []
    if rules.boundaries:
        success.append(z >= plan.efficacy_z[k])
        if not final and math.isfinite(plan.futility_z[k]):
            futility.append(z <= plan.futility_z[k])
        if plan.outcome_harm_z is not None:
            harm.append(z <= plan.outcome_harm_z[k])
    if harm_event_z is not None and plan.harm_event_z is not None:
        harm.append(harm_event_z > plan.harm_event_z[k])
    cache: dict[str, LookStatistics] = {}
    for c in rules.criteria:
        if not c.applies_at(k, plan.looks):
            continue
        if not c.analysis.runs_at(k):  # no estimate at this look: not evaluable
            met = np.zeros(z.shape, dtype=bool)
        else:
            if c.analysis.id not in cache:
                cache[c.analysis.id] = c.analysis.statistics(estimate, se, df)
            met = c.met(cache[c.analysis.id])
        {"success": success, "futility": futility, "harm": harm}[c.kind].append(met)
    none = np.zeros(z.shape, dtype=bool)
    any_harm = np.logical_or.reduce(harm) if harm else none
    any_futility = np.logical_or.reduce(futility) if futility else none
    all_success = np.logical_and.reduce(success) if success else none
    stop_futility, stop_efficacy = (NO_GO, GO) if final else (STOP_FUTILITY, STOP_EFFICACY)
    return np.select([any_harm, any_futility, all_success],
                     [STOP_FOR_HARM, stop_futility, stop_efficacy],
                     default=NO_GO if final else CONTINUE)
