"""Delta-adjusted tipping-point analysis for multiply imputed ANCOVA (missing not at random).

Under missing at random the imputations come from the observed-data model; the delta
adjustment (a pattern-mixture model; Ratitch, O'Kelly & Tosiello 2013, *Pharm Stat*
12:337-347) shifts every imputed outcome in the chosen arm(s) by ``delta`` and asks how large
the shift must be before the trial's conclusion no longer holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimate import Estimate
from analysis.imputation import (
    ImputationSpec,
    ancova_design,
    impute,
    ols_treatment,
    pooled_estimate,
)
from analysis.pooling import pool
from trials.errors import AnalysisError

_ARMS = ("experimental", "comparator", "both")
_DIRECTIONS = ("lower", "higher")


@dataclass(frozen=True)
class TippingSpec:
    """Which shifts to try, in which arm, and what "the conclusion holds" means.

    ``deltas`` are added to imputed outcomes only (observed ones never change). With
    ``direction`` "lower" (benefit is a negative effect) the conclusion holds when the upper
    interval bound is below ``threshold``; with "higher" when the lower bound is above it.
    ``imputation`` defaults to ``ImputationSpec(estimand, analysis)``.
    """

    estimand: str
    analysis: str
    deltas: tuple[float, ...]
    arm: str = "experimental"
    threshold: float = 0.0
    direction: str = "lower"
    imputation: ImputationSpec | None = None


@dataclass(frozen=True)
class TippingRow:
    """The pooled analysis after shifting imputed outcomes by ``delta``."""

    delta: float
    estimate: float
    std_error: float
    ci_lower: float
    ci_upper: float
    p_value: float
    df: float
    fmi: float
    conclusion_holds: bool


@dataclass(frozen=True)
class TippingResult:
    """``estimate`` is the unshifted (MAR, delta = 0) analysis; ``rows`` one per delta."""

    estimate: Estimate
    rows: tuple[TippingRow, ...]
    holds_under_mar: bool
    tipping_delta: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.to_dict(),
            "rows": [asdict(r) for r in self.rows],
            "holds_under_mar": self.holds_under_mar,
            "tipping_delta": self.tipping_delta,
        }


def _holds(bound: float, spec: TippingSpec) -> bool:
    return bound < spec.threshold if spec.direction == "lower" else bound > spec.threshold


def crossing(deltas: np.ndarray, margins: np.ndarray) -> float | None:
    """The delta nearest 0 where ``margin`` changes sign, interpolated linearly.

    ``deltas`` are sorted and include 0; ``margins`` are (bound - threshold) at each delta.
    Walking away from 0 on each side, the first pair of neighbouring grid points whose margins
    lie on different sides of 0 gives :math:`\\delta^* = d_a + (d_b - d_a)\\,
    g_a / (g_a - g_b)`; the one with the smaller :math:`|\\delta^*|` is returned.
    """
    zero = int(np.flatnonzero(deltas == 0)[0])
    found: list[float] = []
    for step in (1, -1):
        i = zero
        while 0 <= i + step < len(deltas):
            a, b = i, i + step
            if (margins[a] < 0) != (margins[b] < 0):
                ga, gb = margins[a], margins[b]
                found.append(float(deltas[a] + (deltas[b] - deltas[a]) * ga / (ga - gb)))
                break
            i = b
    return min(found, key=abs) if found else None


def tipping_point(frame: pd.DataFrame, spec: TippingSpec) -> TippingResult:
    """Shift imputed outcomes by each delta, refit and pool, and find the tipping delta.

    Parameters
    ----------
    frame
        One row per participant (see :func:`analysis.imputation.impute`).
    spec
        The delta grid, arm, threshold and direction, and the imputation settings.

    Returns
    -------
    TippingResult
        One row per delta (pooled estimate, interval, p-value, whether the conclusion holds)
        and ``tipping_delta``: the delta nearest 0 at which the conclusion changes from what it
        is under MAR, interpolated linearly in the interval bound between neighbouring grid
        points (0 is always evaluated), or None if it never changes on the grid.

    Notes
    -----
    The m completed data sets are drawn once under MAR (so every delta uses the same
    imputations, and the curve is smooth in delta); for each delta
    :math:`\\tilde y_{ij} = y_{ij} + \\delta\\,[\\text{imputed and in a shifted arm}]`, the
    ANCOVA is refitted on each copy and pooled by Rubin's rules. When only ``y`` is incomplete
    this equals mice's ``post`` hook adding delta inside the chained equations; when
    covariates are imputed too, their imputations do not see the shift.
    """
    if spec.arm not in _ARMS:
        raise AnalysisError(f"{spec.analysis}: tipping arm must be one of {_ARMS}, "
                            f"got {spec.arm!r}")
    if spec.direction not in _DIRECTIONS:
        raise AnalysisError(f"{spec.analysis}: direction must be one of {_DIRECTIONS}, "
                            f"got {spec.direction!r}")
    if not spec.deltas or not all(math.isfinite(d) for d in spec.deltas):
        raise AnalysisError(f"{spec.analysis}: deltas must be a non-empty tuple of numbers")
    imp = spec.imputation or ImputationSpec(spec.estimand, spec.analysis)
    imp = replace(imp, estimand=spec.estimand, analysis=spec.analysis)
    copies = impute(frame, imp)
    missing = frame["y"].isna().to_numpy()
    treated = frame["treated"].to_numpy() == 1
    in_arm = {"experimental": treated, "comparator": ~treated,
              "both": np.ones_like(treated)}[spec.arm]
    shift = (missing & in_arm).astype(float)
    designs = [ancova_design(c, imp.covariates) for c in copies]
    ys = [c["y"].to_numpy(dtype=float) for c in copies]

    def fits_at(delta: float) -> tuple[list[tuple[float, float]], int]:
        out, df = [], 0
        for x, y in zip(designs, ys, strict=True):
            est, se, df = ols_treatment(x, y + delta * shift)
            out.append((est, se))
        return out, df

    grid = sorted({0.0, *(float(d) for d in spec.deltas)})
    rows: dict[float, TippingRow] = {}
    mar_fits, df_complete = fits_at(0.0)
    for d in grid:
        fits = mar_fits if d == 0 else fits_at(d)[0]
        p = pool([f[0] for f in fits], [f[1] ** 2 for f in fits], df_complete=df_complete)
        lo, hi = p.ci(imp.interval_level)
        bound = hi if spec.direction == "lower" else lo
        rows[d] = TippingRow(delta=d, estimate=p.estimate, std_error=p.se, ci_lower=float(lo),
                             ci_upper=float(hi), p_value=p.p_value, df=p.df, fmi=p.fmi,
                             conclusion_holds=_holds(bound, spec))
    bounds = np.array([rows[d].ci_upper if spec.direction == "lower" else rows[d].ci_lower
                       for d in grid])
    # The sign convention of crossing(): margin < 0 means "the conclusion holds".
    margins = bounds - spec.threshold if spec.direction == "lower" else spec.threshold - bounds
    tip = crossing(np.array(grid), margins)
    holds0 = rows[0.0].conclusion_holds
    extra = {"tipping_delta": tip, "tipping_arm": spec.arm, "threshold": spec.threshold,
             "direction": spec.direction, "holds_under_mar": holds0,
             "deltas": [float(d) for d in spec.deltas]}
    est, _ = pooled_estimate(frame, imp, mar_fits, df_complete, extra)
    wanted = tuple(rows[float(d)] for d in spec.deltas)
    return TippingResult(estimate=est, rows=wanted, holds_under_mar=holds0, tipping_delta=tip)
