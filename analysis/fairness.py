"""Equity measures by subgroup with small-cell and complementary suppression.

For each pre-specified subgroup variable, level and arm: how many participants, how many dropped
out (primary outcome missing), engaged, had a red flag, an adverse event or a serious adverse
event; the difference in attrition between arms within each level (Newcombe interval). Counts
that could identify people are suppressed, and so are enough other cells that no suppressed
count can be worked out from the published totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.proportions import risk_difference
from trials.errors import AnalysisError
from trials.privacy import suppress

MEASURES = ("attrited", "engaged", "red_flag", "adverse_event", "serious_ae")
TOTAL = "all"
MISSING_LEVEL = "missing"
TOO_SMALL = "too small to say anything"
SMALL_COUNT = "suppressed: a count below the small-cell threshold"
COMPLEMENTARY = "withheld so that a suppressed cell cannot be recovered from the totals"


@dataclass(frozen=True)
class FairnessSpec:
    """Which subgroup variables to tabulate, the small-cell threshold and the two arms compared.

    ``experimental`` / ``comparator`` default to the arms with ``treated`` 1 / 0 when the frame
    has a ``treated`` column; otherwise both must be given unless there are exactly two arms
    and one of them is named here.
    """

    subgroups: tuple[str, ...]
    min_cell: int = 10
    experimental: str | None = None
    comparator: str | None = None
    interval_level: float = 0.95


@dataclass(frozen=True)
class FairnessRow:
    """One cell of a (variable x measure) table: a level (or ``"all"``) by an arm (or ``"all"``).

    ``n``, ``count``, ``percent`` and ``mean`` are None when suppressed; ``count_label`` and
    ``n_label`` are what a published table shows (``"<10"`` for a small cell, ``"[c]"`` for a
    complementary suppression).
    """

    variable: str
    level: str
    arm: str
    measure: str
    n: int | None
    count: int | None
    percent: float | None
    mean: float | None
    n_label: str
    count_label: str
    n_suppressed: bool
    count_suppressed: bool
    flag: str | None


@dataclass(frozen=True)
class AttritionRow:
    """Differential attrition (experimental minus comparator) within one subgroup level."""

    variable: str
    level: str
    n_exp: int | None
    n_ctl: int | None
    attrited_exp: int | None
    attrited_ctl: int | None
    difference: float | None
    ci_lower: float | None
    ci_upper: float | None
    p_value: float | None
    suppressed: bool
    flag: str | None


@dataclass(frozen=True)
class FairnessResult:
    rows: tuple[FairnessRow, ...]
    attrition: tuple[AttritionRow, ...]
    measures: tuple[str, ...]
    arms: tuple[str, ...]
    min_cell: int
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_cell": self.min_cell,
            "arms": list(self.arms),
            "measures": list(self.measures),
            "rows": [asdict(r) for r in self.rows],
            "attrition": [asdict(r) for r in self.attrition],
            "warnings": list(self.warnings),
        }

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows])


# ---------------------------------------------------------------------------- suppression
def with_margins(counts: np.ndarray) -> np.ndarray:
    """The (R+1) x (C+1) table: interior counts, row totals in the last column, column totals
    in the last row and the grand total in the corner."""
    c = np.asarray(counts, dtype=np.int64)
    out = np.zeros((c.shape[0] + 1, c.shape[1] + 1), dtype=np.int64)
    out[:-1, :-1] = c
    out[:-1, -1] = c.sum(axis=1)
    out[-1, :-1] = c.sum(axis=0)
    out[-1, -1] = c.sum()
    return out


def _lines(shape: tuple[int, int]) -> list[list[tuple[int, int]]]:
    rows, cols = shape
    return ([[(i, j) for j in range(cols)] for i in range(rows)]
            + [[(i, j) for i in range(rows)] for j in range(cols)])


def recoverable(table: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Which suppressed cells of a margined table are fixed by the published values.

    Every row and column of the margined table is a linear equation (interior cells sum to the
    margin cell); a suppressed cell is recoverable when its unit vector lies in the row space
    of those equations restricted to the suppressed cells.
    """
    rows, cols = table.shape
    cells = [(i, j) for i in range(rows) for j in range(cols) if mask[i, j]]
    out = np.zeros_like(mask, dtype=bool)
    if not cells:
        return out
    index = {c: k for k, c in enumerate(cells)}
    a = np.zeros((rows + cols, len(cells)))
    for li, line in enumerate(_lines((rows, cols))):
        for (i, j) in line:
            if (i, j) in index:
                margin = (j == cols - 1) if li < rows else (i == rows - 1)
                a[li, index[(i, j)]] = -1.0 if margin else 1.0
    rank = np.linalg.matrix_rank(a)
    for (i, j), k in index.items():
        unit = np.zeros(len(cells))
        unit[k] = 1.0
        out[i, j] = np.linalg.matrix_rank(np.vstack([a, unit])) == rank
    return out


def suppression_pattern(counts: np.ndarray, min_cell: int) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """Primary and complementary suppression of a two-way table of counts with its margins.

    Parameters
    ----------
    counts
        R x C interior counts (no totals).
    min_cell
        Counts in ``(0, min_cell)`` are suppressed (zero discloses nothing about a person).

    Returns
    -------
    table, primary, suppressed
        The margined table (see :func:`with_margins`), the cells suppressed for being small
        (margins included) and all suppressed cells.

    Notes
    -----
    After the primary cells, any row or column (totals included) with exactly one suppressed
    cell gets a second one: the smallest non-zero interior cell of that line, else the smallest
    other cell. Then, since a pattern can pass that rule and still be solvable from several
    totals together, any suppressed cell the published values determine (see
    :func:`recoverable`) gets a further suppression in its row (or column), and both steps
    repeat until neither applies. The suppressed set only grows, so this stops; at worst the
    whole table is withheld.
    """
    table = with_margins(counts)
    rows, cols = table.shape
    primary = (table > 0) & (table < min_cell)
    mask = primary.copy()
    lines = _lines(table.shape)

    def add_in(line: list[tuple[int, int]]) -> bool:
        free = [c for c in line if not mask[c]]
        if not free:
            return False
        best = min(free, key=lambda c: (c[0] == rows - 1 or c[1] == cols - 1,
                                        table[c] == 0, table[c], c))
        mask[best] = True
        return True

    while True:
        changed = False
        for line in lines:
            if int(sum(mask[c] for c in line)) == 1:
                changed = add_in(line) or changed
        if changed:
            continue
        exposed = recoverable(table, mask)
        if not exposed.any():
            break
        i, j = map(int, np.argwhere(exposed)[0])
        if not add_in(lines[i]) and not add_in(lines[rows + j]):
            break  # pragma: no cover - the whole row and column are already suppressed
    return table, primary, mask


# ---------------------------------------------------------------------------- tabulation
def level_order(values: pd.Series) -> list[Any]:
    """Observed levels in categorical order when the column is categorical, else sorted."""
    present = values.dropna().unique().tolist()
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [c for c in values.cat.categories if c in set(present)]
    return sorted(present)


def _arms(participants: pd.DataFrame, spec: FairnessSpec) -> tuple[str, str]:
    if spec.experimental is not None and spec.comparator is not None:
        return spec.experimental, spec.comparator
    if "treated" in participants.columns:
        by = participants.groupby("arm")["treated"].first()
        exp, ctl = by.index[by == 1].tolist(), by.index[by == 0].tolist()
        if len(exp) == 1 and len(ctl) == 1:
            return str(exp[0]), str(ctl[0])
    arms = sorted(map(str, participants["arm"].dropna().unique()))
    if len(arms) == 2 and (spec.experimental in arms or spec.comparator in arms):
        named = spec.experimental or spec.comparator
        other = arms[1 - arms.index(named)]
        return (named, other) if spec.experimental else (other, named)
    raise AnalysisError("fairness: set FairnessSpec.experimental and comparator (column 'arm')")


def _measure(participants: pd.DataFrame, name: str) -> tuple[pd.Series, pd.Series | None, int]:
    """The event indicator (0/1), the numeric values when the measure is a dose, and the number
    of missing values (counted as no event)."""
    try:
        values = participants[name].astype("float64")
    except (TypeError, ValueError):
        raise AnalysisError(f"fairness: column '{name}' must be boolean or numeric") from None
    n_missing = int(values.isna().sum())
    binary = set(values.dropna().unique()) <= {0.0, 1.0}
    event = (values.fillna(0) > 0).astype(int)
    return event, (None if binary else values), n_missing


def equity_measures(participants: pd.DataFrame, spec: FairnessSpec) -> FairnessResult:
    """Counts and percentages of attrition, engagement and safety events by subgroup and arm.

    Parameters
    ----------
    participants
        One row per participant with ``arm``, the subgroup columns and any of the measure
        columns ``attrited``, ``engaged``, ``red_flag``, ``adverse_event``, ``serious_ae``
        (boolean or 0/1; ``engaged`` may be a numeric dose, counted as engaged when > 0 and
        summarised by its mean). Absent measure columns are skipped.
    spec
        Subgroups, threshold and arms.

    Notes
    -----
    Participants with a missing subgroup value form the level ``"missing"`` so that every
    table adds up to the arm totals. For each variable and measure the level x arm table of
    counts with its totals is suppressed by :func:`suppression_pattern`, and so is the table of
    participant numbers; a percentage is shown only when both its count and its denominator
    are. Differential attrition within a level is
    :math:`\\hat p_{exp} - \\hat p_{ctl}` with Newcombe's hybrid score interval and Fisher's
    exact p (:func:`analysis.proportions.risk_difference`); it is withheld when any of its four
    numbers is suppressed.
    """
    missing_cols = [c for c in ("arm", *spec.subgroups) if c not in participants.columns]
    if missing_cols:
        raise AnalysisError(f"fairness: missing column(s) {', '.join(missing_cols)}")
    if spec.min_cell < 1:
        raise AnalysisError("fairness: FairnessSpec.min_cell must be at least 1")
    exp, ctl = _arms(participants, spec)
    data = participants.copy()
    data["arm"] = data["arm"].astype(str)
    arms = sorted(data["arm"].unique())
    for a in (exp, ctl):
        if a not in arms:
            raise AnalysisError(f"fairness: arm '{a}' not found in column 'arm'")
    measures = tuple(m for m in MEASURES if m in data.columns)
    if "attrited" not in measures:
        raise AnalysisError("fairness: missing column 'attrited'")
    indicators, warnings = {}, []
    for m in measures:
        event, dose, n_missing = _measure(data, m)
        indicators[m] = (event, dose)
        if n_missing:
            warnings.append(f"{n_missing} missing value(s) in '{m}' counted as no event")

    rows: list[FairnessRow] = []
    attrition: list[AttritionRow] = []
    for var in spec.subgroups:
        levels = level_order(data[var])
        labels = [str(v) for v in levels]
        key = data[var].map(dict(zip(levels, labels, strict=True))).fillna(MISSING_LEVEL)
        if (key == MISSING_LEVEL).any() and MISSING_LEVEL not in labels:
            labels.append(MISSING_LEVEL)
        ncount = pd.crosstab(key, data["arm"]).reindex(index=labels, columns=arms, fill_value=0)
        n_tab, _, n_mask = suppression_pattern(ncount.to_numpy(), spec.min_cell)
        per_measure = {}
        for m in measures:
            event, dose = indicators[m]
            x = (event.groupby([key, data["arm"]]).sum().unstack(fill_value=0)
                 .reindex(index=labels, columns=arms, fill_value=0))
            x_tab, x_primary, x_mask = suppression_pattern(x.to_numpy(), spec.min_cell)
            per_measure[m] = (x_tab, x_mask)
            means = _means(dose, key, data["arm"], labels, arms)
            rows += _rows(var, m, labels, arms, n_tab, n_mask, x_tab, x_primary, x_mask,
                          means, spec.min_cell)
        attrition += _attrition(var, labels, arms, exp, ctl, n_tab, n_mask,
                                *per_measure["attrited"], spec)
    return FairnessResult(tuple(rows), tuple(attrition), measures, tuple(arms), spec.min_cell,
                          tuple(warnings))


def _means(dose: pd.Series | None, key: pd.Series, arm: pd.Series, labels: Sequence[str],
           arms: Sequence[str]) -> np.ndarray | None:
    if dose is None:
        return None
    inner = dose.groupby([key, arm]).mean().unstack().reindex(index=labels, columns=arms)
    out = np.full((len(labels) + 1, len(arms) + 1), np.nan)
    out[:-1, :-1] = inner.to_numpy(dtype=float)
    out[:-1, -1] = dose.groupby(key).mean().reindex(labels).to_numpy(dtype=float)
    out[-1, :-1] = dose.groupby(arm).mean().reindex(arms).to_numpy(dtype=float)
    out[-1, -1] = float(dose.mean())
    return out


def _label(value: int, primary: bool, suppressed: bool, min_cell: int) -> str:
    if primary:
        return str(suppress(value, min_cell))
    return "[c]" if suppressed else str(int(value))


def _rows(var: str, measure: str, labels: Sequence[str], arms: Sequence[str],
          n_tab: np.ndarray, n_mask: np.ndarray, x_tab: np.ndarray, x_primary: np.ndarray,
          x_mask: np.ndarray, means: np.ndarray | None, min_cell: int) -> list[FairnessRow]:
    out = []
    n_primary = (n_tab > 0) & (n_tab < min_cell)
    for i, level in enumerate([*labels, TOTAL]):
        for j, arm in enumerate([*arms, TOTAL]):
            n, x = int(n_tab[i, j]), int(x_tab[i, j])
            n_sup, x_sup = bool(n_mask[i, j]), bool(x_mask[i, j])
            shown = not (n_sup or x_sup) and n > 0
            mean = None
            if means is not None and not n_sup and n > 0 and np.isfinite(means[i, j]):
                mean = float(means[i, j])
            flag = None
            if n_primary[i, j]:
                flag = TOO_SMALL
            elif n_sup or x_sup:
                flag = SMALL_COUNT if x_primary[i, j] else COMPLEMENTARY
            out.append(FairnessRow(
                variable=var, level=level, arm=arm, measure=measure,
                n=None if n_sup else n, count=None if x_sup else x,
                percent=float(100.0 * x / n) if shown else None, mean=mean,
                n_label=_label(n, bool(n_primary[i, j]), n_sup, min_cell),
                count_label=_label(x, bool(x_primary[i, j]), x_sup, min_cell),
                n_suppressed=n_sup, count_suppressed=x_sup, flag=flag,
            ))
    return out


def _attrition(var: str, labels: Sequence[str], arms: Sequence[str], exp: str, ctl: str,
               n_tab: np.ndarray, n_mask: np.ndarray, x_tab: np.ndarray, x_mask: np.ndarray,
               spec: FairnessSpec) -> list[AttritionRow]:
    je, jc = arms.index(exp), arms.index(ctl)
    out = []
    for i, level in enumerate([*labels, TOTAL]):
        n1, n0, x1, x0 = (int(n_tab[i, je]), int(n_tab[i, jc]),
                          int(x_tab[i, je]), int(x_tab[i, jc]))
        small = min(n1, n0) < spec.min_cell
        hidden = bool(n_mask[i, je] or n_mask[i, jc] or x_mask[i, je] or x_mask[i, jc])
        if small or hidden:
            flag = COMPLEMENTARY
            if small:
                flag = TOO_SMALL
            elif any(0 < x < spec.min_cell for x in (x1, x0)):
                flag = SMALL_COUNT
            out.append(AttritionRow(
                var, level, None if n_mask[i, je] else n1, None if n_mask[i, jc] else n0,
                None if x_mask[i, je] else x1, None if x_mask[i, jc] else x0,
                None, None, None, None, True, flag))
            continue
        rd = risk_difference(x1, n1, x0, n0, level=spec.interval_level,
                             estimand="attrition", analysis=f"{var}={level}", arms=(exp, ctl))
        out.append(AttritionRow(var, level, n1, n0, x1, x0, float(rd.estimate),
                                float(rd.ci_lower), float(rd.ci_upper), float(rd.p_value),
                                False, None))
    return out
