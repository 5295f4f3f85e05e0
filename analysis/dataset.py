"""Analysis datasets: one row per participant for a single-visit estimand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class VisitEstimandSpec:
    """Which scored outcome, at which visit, compared between which two arms.

    ``scores`` passed to :func:`visit_frame` is tidy: one row per participant and visit with the
    outcome total in column ``outcome``.
    """

    outcome: str
    visit: int
    baseline_visit: int | None
    measure: str  # "score" or "change"
    arm: str
    comparator: str
    participant: str = "participant"
    arm_column: str = "arm"
    visit_column: str = "visit"


def visit_frame(
    scores: pd.DataFrame, spec: VisitEstimandSpec, covariates: Sequence[str] = ()
) -> pd.DataFrame:
    """Wide frame with ``participant, arm, treated, y, baseline`` and the covariate columns.

    Participants of other arms are left out. Rows are kept even when ``y`` is missing; the
    model decides what to do with them (and says so).
    """
    s = scores[scores[spec.arm_column].isin([spec.arm, spec.comparator])]
    p = spec.participant
    if spec.baseline_visit is None:
        base = pd.Series(float("nan"), index=s[p].unique(), dtype=float)
    else:
        base = s.loc[s[spec.visit_column] == spec.baseline_visit].set_index(p)[spec.outcome]
    at = s.loc[s[spec.visit_column] == spec.visit].set_index(p)[spec.outcome]
    extra = [c for c in covariates if c != "baseline"]
    people = s.groupby(p, sort=False)[[spec.arm_column, *extra]].first()
    frame = people.rename(columns={spec.arm_column: "arm"})
    frame["baseline"] = base.reindex(frame.index)
    y = at.reindex(frame.index)
    frame["y"] = y - frame["baseline"] if spec.measure == "change" else y
    frame["treated"] = (frame["arm"] == spec.arm).astype(int)
    frame.index.name = "participant"
    return frame.reset_index()
