"""Minimisation (Pocock & Simon 1975): sequential allocation balancing the margins of factors.

Each new participant is given the arm that would leave the smallest total imbalance over the
levels of the stated factors that they have, with probability ``p``; the other arms share the
rest. Every step is seeded by ``(seed, seq)``, so the whole list and the step-by-step service
(:meth:`Minimisation.next`, given the previous allocations) give the same arms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from designs.randomisation import (
    COLUMNS,
    Allocation,
    AllocationList,
    _arms_ratio,
    _check_seed,
    stratum_label,
)

MEASURES = ("range", "variance")
# Scores are sums of ratio-scaled counts: equal scores may differ by rounding (e.g. thirds).
_TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class MinimisationStep:
    """The allocation of one participant and why.

    ``scores[k]`` is the total weighted imbalance :math:`G_k` if the participant joined arm
    ``k``; ``preferred`` are the arms with the smallest score; ``probabilities`` those used for
    the draw.
    """

    seq: int
    arm: str
    scores: dict[str, float]
    probabilities: dict[str, float]
    preferred: tuple[str, ...]


@dataclass(frozen=True)
class Minimisation:
    """Specification of a Pocock–Simon minimisation.

    Parameters
    ----------
    arms
        Arm ids.
    factors
        Names of the (categorical) factors to balance; levels are compared as text.
    weights
        One positive weight per factor (all 1 by default).
    ratio
        Integer allocation weights (1:1 by default); see Notes.
    measure
        ``range`` or ``variance`` of the ratio-scaled counts within a factor level.
    p
        Probability of the arm(s) that minimise the imbalance, in (0, 1]. ``p = 1`` is
        deterministic except for ties and makes the next allocation predictable: use it only to
        check the arithmetic.
    seed
        Seed; step ``seq`` draws from a generator seeded by ``(seed, seq)``.

    Notes
    -----
    For a new participant with level :math:`l_i` of factor :math:`i`, let :math:`n_{ik}` be the
    number already in arm :math:`k` with that level and :math:`r_k` the ratio. If the participant
    joined arm :math:`k`, the counts would be :math:`x_{ij} = n_{ij} + [j = k]`; the imbalance of
    factor :math:`i` is the range (max minus min) or the variance (divisor ``K``, the number of
    arms) of :math:`x_{ij} / r_j` over arms :math:`j`, and

    .. math:: G_k = \\sum_i w_i \\, d_i(k).

    The arms with the smallest :math:`G_k` share probability ``p`` and the others ``1 - p``,
    each set in proportion to the ratio; if every arm ties, the draw is by the ratio alone.

    With an unequal ratio, dividing by :math:`r_k` makes "balanced" mean "in the ratio", so the
    counts overall and within each factor level track the ratio (tested for 2:1). As with every
    minimisation of this kind, the probability of each arm at a given step is not the target
    ratio (Kuznetsova & Tymofyeyev 2012): re-randomisation tests must re-run this procedure,
    not permute labels.
    """

    arms: Sequence[str]
    factors: Sequence[str]
    weights: Sequence[float] | None = None
    ratio: Sequence[int] | None = None
    measure: str = "range"
    p: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        arms, ratio = _arms_ratio(self.arms, self.ratio)
        factors = tuple(str(f) for f in self.factors)
        if not factors or len(set(factors)) != len(factors):
            raise ValueError(f"factors must be one or more distinct names, not {list(factors)}")
        clash = sorted(set(factors) & set(COLUMNS))
        if clash:
            raise ValueError(f"factor name(s) {clash} clash with allocation list columns")
        weights = tuple(float(w) for w in self.weights) if self.weights is not None \
            else (1.0,) * len(factors)
        if len(weights) != len(factors):
            raise ValueError(f"{len(weights)} weights for {len(factors)} factors")
        if any(not math.isfinite(w) or w <= 0 for w in weights):
            raise ValueError(f"weights must be positive and finite, not {list(weights)}")
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, not {self.measure!r}")
        if not 0 < float(self.p) <= 1:
            raise ValueError(f"p must be in (0, 1], not {self.p!r}")
        for name, value in (("arms", arms), ("ratio", ratio), ("factors", factors),
                            ("weights", weights), ("p", float(self.p)),
                            ("seed", _check_seed(self.seed))):
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ core

    def _scores(self, counts: np.ndarray) -> np.ndarray:
        """``G_k`` for each arm from the counts (factors x arms) at the participant's levels."""
        k = len(self.arms)
        ratio = np.asarray(self.ratio, dtype=float)
        candidate = (counts[None, :, :] + np.eye(k)[:, None, :]) / ratio  # arm x factor x arm
        if self.measure == "range":
            spread = candidate.max(axis=2) - candidate.min(axis=2)
        else:
            spread = candidate.var(axis=2)
        return spread @ np.asarray(self.weights, dtype=float)

    def _decide(self, counts: np.ndarray, seq: int) -> MinimisationStep:
        scores = self._scores(counts)
        best = scores <= scores.min() + _TIE_TOLERANCE
        ratio = np.asarray(self.ratio, dtype=float)
        if best.all():
            prob = ratio / ratio.sum()
        else:
            prob = np.where(best, self.p * ratio / ratio[best].sum(),
                            (1 - self.p) * ratio / ratio[~best].sum())
        rng = np.random.default_rng([self.seed, seq])
        arm = self.arms[int(rng.choice(len(self.arms), p=prob))]
        return MinimisationStep(
            seq, arm,
            scores={a: float(s) for a, s in zip(self.arms, scores, strict=True)},
            probabilities={a: float(q) for a, q in zip(self.arms, prob, strict=True)},
            preferred=tuple(a for a, b in zip(self.arms, best, strict=True) if b),
        )

    def _levels(self, participant: Mapping[str, Any], where: str) -> tuple[str, ...]:
        missing = [f for f in self.factors if f not in participant]
        if missing:
            raise ValueError(f"{where}: no value for factor(s) {missing}")
        return tuple(str(participant[f]) for f in self.factors)

    # ------------------------------------------------------------------ public

    def next(self, history: pd.DataFrame, participant: Mapping[str, Any],
             seq: int | None = None, arm_column: str = "arm") -> MinimisationStep:
        """Allocate one new participant given the previous allocations.

        Parameters
        ----------
        history
            One row per participant already allocated: the factor columns and ``arm_column``
            (for example :meth:`AllocationList.to_frame` of the list so far).
        participant
            The new participant's level of every factor.
        seq
            The participant's sequence number (``len(history) + 1`` by default); with the same
            history it gives the same draw as :meth:`allocate`.
        """
        missing = [c for c in (*self.factors, arm_column) if c not in history.columns]
        if missing:
            raise ValueError(f"history has no column(s) {missing}")
        unknown = sorted(set(history[arm_column].astype(str)) - set(self.arms))
        if unknown:
            raise ValueError(f"history column {arm_column!r} has arms {unknown} not in "
                             f"{list(self.arms)}")
        levels = self._levels(participant, "participant")
        arm = history[arm_column].astype(str)
        counts = np.array([
            [int(((history[f].astype(str) == lvl) & (arm == a)).sum()) for a in self.arms]
            for f, lvl in zip(self.factors, levels, strict=True)
        ], dtype=float)
        return self._decide(counts, len(history) + 1 if seq is None else int(seq))

    def allocate(self, participants: pd.DataFrame) -> AllocationList:
        """Allocate ``participants`` (one row each, in order of enrolment) from an empty trial."""
        missing = [f for f in self.factors if f not in participants.columns]
        if missing:
            raise ValueError(f"participants have no column(s) {missing}")
        counts: dict[tuple[int, str], np.ndarray] = {}
        used: dict[str, int] = {}
        index = {a: j for j, a in enumerate(self.arms)}
        rows: list[Allocation] = []
        for seq, row in enumerate(participants[list(self.factors)].itertuples(index=False), 1):
            levels = tuple(str(v) for v in row)
            at_levels = [counts.setdefault((i, lvl), np.zeros(len(self.arms)))
                         for i, lvl in enumerate(levels)]
            step = self._decide(np.array(at_levels), seq)
            for c in at_levels:
                c[index[step.arm]] += 1
            stratum = stratum_label(self.factors, levels)
            used[stratum] = used.get(stratum, 0) + 1
            rows.append(Allocation(seq, stratum, used[stratum], step.arm, levels=levels))
        params = (("factors", tuple(self.factors)), ("weights", tuple(self.weights)),
                  ("measure", self.measure), ("p", self.p))
        return AllocationList("minimisation", int(self.seed), tuple(self.arms),
                              tuple(self.ratio), tuple(rows), factors=tuple(self.factors),
                              parameters=params)


def minimisation(participants: pd.DataFrame, arms: Sequence[str],
                 factors: Sequence[str] | None = None, weights: Sequence[float] | None = None,
                 ratio: Sequence[int] | None = None, measure: str = "range", p: float = 0.8,
                 seed: int = 0) -> AllocationList:
    """Minimisation list for ``participants`` (factors: all their columns by default).

    See :class:`Minimisation` for the parameters and the method.
    """
    spec = Minimisation(arms, list(participants.columns) if factors is None else factors,
                        weights, ratio, measure, p, seed)
    return spec.allocate(participants)
