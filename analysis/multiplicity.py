"""Multiplicity adjustment of a family of p-values (Bonferroni, Holm, Hochberg, fixed sequence).

Adjusted p-values are those of R's ``p.adjust`` (Bonferroni, Holm 1979, Hochberg 1988) and, for
the fixed-sequence procedure, the running maximum of the raw p-values in the testing order
(Westfall & Krishen 2001). A hypothesis is rejected when its adjusted p-value is at most the
family-wise ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trials.errors import AnalysisError

METHODS = ("holm", "hochberg", "fixed_sequence", "bonferroni")


@dataclass(frozen=True)
class MultiplicitySpec:
    """Which procedure controls the family-wise error rate, at what level, in what order.

    p-values are used as given: pass two-sided p-values, or one-sided ones if the hypotheses are
    one-sided (then ``alpha`` is the one-sided level). ``order`` is required for
    ``fixed_sequence`` (the pre-specified testing order) and otherwise only orders the rows.
    """

    method: str
    alpha: float = 0.05
    order: tuple[str, ...] = ()


@dataclass(frozen=True)
class HypothesisResult:
    """One hypothesis: ``step`` is its 1-based position in the testing order (fixed sequence:
    ``tested`` is False for hypotheses after the one at which testing stopped)."""

    hypothesis: str
    raw_p: float
    adjusted_p: float
    rejected: bool
    tested: bool
    step: int | None


@dataclass(frozen=True)
class MultiplicityResult:
    """Adjusted p-values and decisions; ``stopped_at`` is the fixed-sequence hypothesis that
    was not rejected (testing stopped there; None if every one was rejected or another method
    was used), ``stopped_step`` its position."""

    method: str
    alpha: float
    rows: tuple[HypothesisResult, ...]
    stopped_at: str | None = None
    stopped_step: int | None = None

    def row(self, hypothesis: str) -> HypothesisResult:
        for r in self.rows:
            if r.hypothesis == hypothesis:
                return r
        raise KeyError(hypothesis)

    @property
    def adjusted(self) -> dict[str, float]:
        return {r.hypothesis: r.adjusted_p for r in self.rows}

    @property
    def rejected(self) -> dict[str, bool]:
        return {r.hypothesis: r.rejected for r in self.rows}

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "alpha": self.alpha,
                "rows": [asdict(r) for r in self.rows],
                "stopped_at": self.stopped_at, "stopped_step": self.stopped_step}


def _holm(p: np.ndarray) -> np.ndarray:
    n = p.size
    o = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((n - np.arange(n)) * p[o]))
    out = np.empty(n)
    out[o] = adj
    return out


def _hochberg(p: np.ndarray) -> np.ndarray:
    n = p.size
    o = np.argsort(-p, kind="stable")  # decreasing p
    adj = np.minimum(1.0, np.minimum.accumulate((np.arange(n) + 1) * p[o]))
    out = np.empty(n)
    out[o] = adj
    return out


def adjust(p_values: Mapping[str, float], spec: MultiplicitySpec) -> MultiplicityResult:
    """Adjust a family of p-values for multiplicity.

    Parameters
    ----------
    p_values
        Hypothesis id -> raw p-value.
    spec
        Procedure, family-wise level and (for ``fixed_sequence``) testing order.

    Returns
    -------
    MultiplicityResult

    Notes
    -----
    With n hypotheses and ordered p-values :math:`p_{(1)} \\le \\dots \\le p_{(n)}`:
    Bonferroni :math:`\\tilde p_i = \\min(1, n p_i)`; Holm
    :math:`\\tilde p_{(i)} = \\min(1, \\max_{j \\le i} (n - j + 1) p_{(j)})`; Hochberg
    :math:`\\tilde p_{(i)} = \\min(1, \\min_{j \\ge i} (n - j + 1) p_{(j)})`. Fixed sequence in
    the order :math:`H_1, H_2, \\dots`: :math:`\\tilde p_k = \\max_{j \\le k} p_j`, so
    :math:`H_k` is rejected exactly when :math:`H_1..H_k` all have :math:`p \\le \\alpha`.
    """
    if spec.method not in METHODS:
        raise AnalysisError(f"multiplicity: method must be one of {METHODS}, got {spec.method!r}")
    if not 0 < spec.alpha < 1:
        raise AnalysisError(f"multiplicity: alpha must be in (0, 1), got {spec.alpha}")
    if not p_values:
        raise AnalysisError("multiplicity: no p-values given")
    for name, p in p_values.items():
        if p is None or not math.isfinite(p) or not 0 <= p <= 1:
            raise AnalysisError(f"multiplicity: p-value of {name!r} must be in [0, 1], got {p}")
    if spec.order:
        if len(set(spec.order)) != len(spec.order) or set(spec.order) != set(p_values):
            raise AnalysisError("multiplicity: order must list each hypothesis id exactly once "
                                f"(order {list(spec.order)}, p-values for {list(p_values)})")
        names = list(spec.order)
    elif spec.method == "fixed_sequence":
        raise AnalysisError("multiplicity: fixed_sequence needs the testing order (order)")
    else:
        names = list(p_values)
    p = np.array([float(p_values[k]) for k in names])
    if spec.method == "bonferroni":
        adj = np.minimum(1.0, p.size * p)
    elif spec.method == "holm":
        adj = _holm(p)
    elif spec.method == "hochberg":
        adj = _hochberg(p)
    else:
        adj = np.maximum.accumulate(p)
    rejected = adj <= spec.alpha
    stopped_at = stopped_step = None
    tested = np.ones(p.size, dtype=bool)
    if spec.method == "fixed_sequence" and not rejected.all():
        stop = int(np.flatnonzero(~rejected)[0])
        stopped_at, stopped_step = names[stop], stop + 1
        tested[stop + 1:] = False
    steps = spec.method == "fixed_sequence"
    rows = tuple(
        HypothesisResult(hypothesis=k, raw_p=float(p[i]), adjusted_p=float(adj[i]),
                         rejected=bool(rejected[i]), tested=bool(tested[i]),
                         step=i + 1 if steps else None)
        for i, k in enumerate(names)
    )
    return MultiplicityResult(method=spec.method, alpha=spec.alpha, rows=rows,
                              stopped_at=stopped_at, stopped_step=stopped_step)
