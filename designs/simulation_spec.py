"""What an operating-characteristics simulation simulates: scenarios, the design's rules, looks.

A :class:`Scenario` is one state of nature (effect, SD, dropout, accrual, harm rates, size); a
:class:`SimulationSpec` is the design under study (group-sequential boundaries, look positions,
direction of benefit, harm rules). :meth:`SimulationSpec.plan` resolves both into a
:class:`LookPlan`: plain numbers an engine applies without further thought.

Conventions
-----------
* The effect ``theta`` is experimental minus control in outcome units, as in ``Estimate``.
* ``direction="lower"`` (PHQ-9) means a negative effect is benefit: the boundaries, which test
  benefit on a benefit-positive Z scale, are applied to ``Z = -theta_hat / SE``.
* Looks are placed by completers: look k is held when each arm has
  ``round(t_k * n_max)`` participants with the outcome (``t_k`` = ``look_fractions[k]``), and the
  final look, at ``t_K = 1``, has ``n_max`` per arm. Allocation is 1:1.
* The information at look k is ``1 / SE_k^2``; its fraction of the final look's is
  ``n_k / n_max`` (exactly, with the summary engine's known SD), so by default the boundaries
  are recomputed at those observed fractions, every earlier look included, as alpha spending
  at the observed information requires (``observed_information``).
* The decision at each look is the protocol's rule
  (:mod:`designs.simulation_criteria`): the boundaries as criteria plus ``rules.criteria``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from designs.boundaries import (
    Boundaries,
    GroupSequentialDesign,
    _json_safe,  # noqa: F401  (shared JSON cleaner)
)
from designs.simulation_criteria import DecisionRules
from trials.errors import TrialsError

DIRECTIONS = {"higher": 1.0, "lower": -1.0}


class SimulationError(TrialsError, ValueError):
    """A scenario, specification or run option that cannot be simulated; one line naming the
    field."""


@dataclass(frozen=True)
class Scenario:
    """One state of nature under which the design is simulated.

    Parameters
    ----------
    name
        Label used in tables and plots (unique within a run).
    effect
        True effect theta, experimental minus control, in outcome units.
    sd
        Standard deviation of the outcome in each arm.
    n_max
        Completers (participants with the outcome) per arm at the final look.
    dropout
        Probability that a randomised participant has no outcome (missing completely at random).
    accrual_rate
        Participants randomised per unit time, both arms together; ``None`` when unknown (no
        one is then counted as randomised but still in follow-up, and no duration is given).
    follow_up
        Time from randomisation to the outcome, in the unit of ``accrual_rate``.
    baseline_correlation
        Correlation rho between the baseline measurement and the outcome. The summary engine
        uses the ANCOVA residual SD ``sd * sqrt(1 - rho**2)``; the patient-level engine
        simulates the baseline and fits the ANCOVA.
    harm_rate
        Probability of a harm event per participant as (control, experimental).
    """

    name: str
    effect: float
    sd: float
    n_max: int
    dropout: float = 0.0
    accrual_rate: float | None = None
    follow_up: float = 0.0
    baseline_correlation: float = 0.0
    harm_rate: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        where = f"scenario {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise SimulationError(f"scenario name: must be a non-empty string, got {self.name!r}")
        if not math.isfinite(self.effect):
            raise SimulationError(f"{where}: effect must be finite, got {self.effect}")
        if not (math.isfinite(self.sd) and self.sd > 0):
            raise SimulationError(f"{where}: sd must be positive, got {self.sd}")
        if isinstance(self.n_max, bool) or int(self.n_max) != self.n_max or self.n_max < 2:
            raise SimulationError(f"{where}: n_max must be an integer >= 2, got {self.n_max}")
        object.__setattr__(self, "n_max", int(self.n_max))
        if not 0 <= self.dropout < 1:
            raise SimulationError(f"{where}: dropout must be in [0, 1), got {self.dropout}")
        if self.accrual_rate is not None and not (math.isfinite(self.accrual_rate)
                                                  and self.accrual_rate > 0):
            raise SimulationError(f"{where}: accrual_rate must be positive, got "
                                  f"{self.accrual_rate}")
        if not (math.isfinite(self.follow_up) and self.follow_up >= 0):
            raise SimulationError(f"{where}: follow_up must be >= 0, got {self.follow_up}")
        if not -1 < self.baseline_correlation < 1:
            raise SimulationError(f"{where}: baseline_correlation must be in (-1, 1), got "
                                  f"{self.baseline_correlation}")
        rates = tuple(float(p) for p in self.harm_rate)
        if len(rates) != 2 or not all(0 <= p <= 1 for p in rates):
            raise SimulationError(f"{where}: harm_rate must be (control, experimental) "
                                  f"probabilities in [0, 1], got {self.harm_rate}")
        object.__setattr__(self, "harm_rate", rates)

    @property
    def residual_sd(self) -> float:
        """SD of the outcome given the baseline: ``sd * sqrt(1 - rho**2)``."""
        return self.sd * math.sqrt(1.0 - self.baseline_correlation**2)

    @property
    def in_follow_up(self) -> float:
        """Participants per arm randomised but not yet at the outcome: ``rate * follow_up / 2``."""
        return 0.0 if self.accrual_rate is None else self.accrual_rate * self.follow_up / 2.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["harm_rate"] = list(self.harm_rate)
        return out


@dataclass(frozen=True)
class HarmEventRule:
    """Stop for harm when harm events are more frequent in the experimental arm.

    Parameters
    ----------
    z
        One-sided threshold (one number, or one per look): stop at look k when the two-proportion
        z statistic of experimental minus control harm-event proportion exceeds ``z[k]``.

    Notes
    -----
    Among the participants whose follow-up has closed by the look (completers and dropouts),
    with proportions :math:`\\hat p_e, \\hat p_c` over :math:`m_e, m_c` participants and pooled
    :math:`\\bar p`,

    .. math:: z = (\\hat p_e - \\hat p_c) / \\sqrt{\\bar p (1 - \\bar p)(1/m_e + 1/m_c)},

    taken as 0 when no or every participant had an event.
    """

    z: float | tuple[float, ...]

    def __post_init__(self) -> None:
        values = (self.z,) if isinstance(self.z, int | float) else tuple(self.z)
        values = tuple(float(v) for v in values)
        if not values or not all(math.isfinite(v) for v in values):
            raise SimulationError(f"harm_events.z: give finite thresholds, got {self.z}")
        object.__setattr__(self, "z", values[0] if isinstance(self.z, int | float) else values)

    def thresholds(self, looks: int) -> tuple[float, ...]:
        if isinstance(self.z, float):
            return (self.z,) * looks
        if len(self.z) != looks:
            raise SimulationError(f"harm_events.z: give one threshold or {looks} (one per look), "
                                  f"got {len(self.z)}")
        return self.z


@dataclass(frozen=True)
class LookPlan:
    """A specification resolved for one scenario: what every engine applies at each look.

    Z is benefit-positive. At look k the decision rule of
    :func:`designs.simulation_criteria.look_decisions` applies, in this order: harm when
    ``Z <= outcome_harm_z[k]``, the harm-event z exceeds ``harm_event_z[k]`` or a harm criterion
    of ``rules`` is met; else futility when ``Z <= futility_z[k]`` (interim looks) or a futility
    criterion is met; else success when ``Z >= efficacy_z[k]`` and every success criterion is
    met; the last look ends every trial still running. The boundaries are those at
    ``information_fractions``, the information the looks have (``completers / n_max``).
    """

    completers: tuple[int, ...]
    efficacy_z: tuple[float, ...]
    futility_z: tuple[float, ...]
    outcome_harm_z: tuple[float, ...] | None
    harm_event_z: tuple[float, ...] | None
    sign: float
    information_fractions: tuple[float, ...] | None = None
    rules: DecisionRules | None = None

    @property
    def looks(self) -> int:
        return len(self.completers)


@dataclass(frozen=True)
class SimulationSpec:
    """The group-sequential design whose operating characteristics are simulated.

    Parameters
    ----------
    design
        :class:`~designs.boundaries.Boundaries`, used as given, or a
        :class:`~designs.boundaries.GroupSequentialDesign` to compute them from (at
        ``look_fractions`` when these differ from its planned information rates, i.e. the
        boundaries recomputed at the information the looks will have).
    look_fractions
        Fractions of ``n_max`` completers at which the looks are held; default: the boundaries'
        information rates. The last must be 1.
    direction
        ``"higher"`` or ``"lower"``: the direction of benefit of the outcome.
    harm_events
        Optional :class:`HarmEventRule` on harm-event proportions.
    outcome_harm
        Apply the boundaries' ``harm_z`` to the outcome Z (when the design has one).
    obey_futility
        Stop at futility boundaries; ``False`` simulates a non-binding futility rule ignored.
    rules
        The protocol's criteria and whether the boundaries apply
        (:class:`~designs.simulation_criteria.DecisionRules`); ``None``: the boundaries alone.
    observed_information
        Recompute the boundaries (of a :class:`~designs.boundaries.GroupSequentialDesign`) at
        the information fractions the looks actually have, ``n_k / n_max`` with
        ``n_k = round(t_k n_max)`` completers per arm, as a run recomputes them at the
        observed information; ``False``: the boundaries at ``look_fractions``.
    """

    design: Boundaries | GroupSequentialDesign
    look_fractions: tuple[float, ...] | None = None
    direction: str = "higher"
    harm_events: HarmEventRule | None = None
    outcome_harm: bool = True
    obey_futility: bool = True
    rules: DecisionRules | None = None
    observed_information: bool = True
    boundaries: Boundaries = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise SimulationError(f"direction: use 'higher' or 'lower', got {self.direction!r}")
        if isinstance(self.design, GroupSequentialDesign):
            planned = self.design.information_rates
            fractions = planned if self.look_fractions is None else _fractions(
                self.look_fractions, len(planned))
            same = np.allclose(fractions, planned, rtol=0, atol=1e-12)
            bounds = self.design.compute(None if same else fractions)
        elif isinstance(self.design, Boundaries):
            bounds = self.design
            looks = len(bounds.efficacy_z)
            fractions = bounds.information_rates if self.look_fractions is None else _fractions(
                self.look_fractions, looks)
        else:
            raise SimulationError("design: give a GroupSequentialDesign or its Boundaries, got "
                                  f"{type(self.design).__name__}")
        object.__setattr__(self, "look_fractions", tuple(float(t) for t in fractions))
        object.__setattr__(self, "boundaries", bounds)
        if self.look_fractions[-1] != 1.0:
            raise SimulationError(f"look_fractions: the last look must be at 1 (n_max "
                                  f"completers), got {self.look_fractions[-1]}")
        if self.harm_events is not None:
            self.harm_events.thresholds(self.looks)

    @property
    def looks(self) -> int:
        return len(self.look_fractions)  # type: ignore[arg-type]

    def plan(self, scenario: Scenario) -> LookPlan:
        """The rules of this specification at the looks of ``scenario``."""
        b = self.boundaries
        n = [int(round(t * scenario.n_max)) for t in self.look_fractions]  # type: ignore[union-attr]
        if n[0] < 2 or any(b2 <= b1 for b1, b2 in zip(n, n[1:], strict=False)):
            raise SimulationError(
                f"look_fractions: with n_max={scenario.n_max} (scenario {scenario.name!r}) the "
                f"looks fall at {n} completers per arm; they must be >= 2 and strictly increasing")
        observed = tuple(nk / scenario.n_max for nk in n)
        if (self.observed_information and isinstance(self.design, GroupSequentialDesign)
                and not np.allclose(observed, b.information_rates, rtol=0, atol=1e-12)):
            b = self.design.compute(observed)
        futility = b.futility_z if self.obey_futility else (-math.inf,) * self.looks
        harm = b.harm_z if self.outcome_harm else None
        return LookPlan(
            completers=tuple(n), efficacy_z=tuple(b.efficacy_z), futility_z=tuple(futility),
            outcome_harm_z=None if harm is None else tuple(harm),
            harm_event_z=None if self.harm_events is None else self.harm_events.thresholds(
                self.looks),
            sign=DIRECTIONS[self.direction],
            information_fractions=tuple(float(t) for t in b.information_rates),
            rules=self.rules)

    def to_dict(self) -> dict[str, Any]:
        """The specification and the boundaries applied (non-finite numbers as None)."""
        b = self.boundaries
        design = self.design.design if isinstance(self.design, Boundaries) else self.design
        return _json_safe({
            "design": asdict(design),
            "look_fractions": list(self.look_fractions),  # type: ignore[arg-type]
            "direction": self.direction,
            "harm_events": None if self.harm_events is None else {"z": self.harm_events.z},
            "outcome_harm": self.outcome_harm,
            "obey_futility": self.obey_futility,
            "observed_information": self.observed_information,
            "rules": None if self.rules is None else self.rules.to_dict(),
            "boundaries": {"information_rates": list(b.information_rates),
                           "efficacy_z": list(b.efficacy_z), "futility_z": list(b.futility_z),
                           "harm_z": None if b.harm_z is None else list(b.harm_z)},
        })


def _fractions(values: Sequence[float], looks: int) -> tuple[float, ...]:
    t = tuple(float(v) for v in values)
    if len(t) != looks:
        raise SimulationError(f"look_fractions: the boundaries have {looks} looks, got {len(t)} "
                              "fractions")
    if not all(math.isfinite(v) for v in t) or t[0] <= 0 or any(
            b <= a for a, b in zip(t, t[1:], strict=False)):
        raise SimulationError(f"look_fractions: must be positive and strictly increasing, got "
                              f"{list(t)}")
    return t


