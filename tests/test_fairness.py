"""Equity measures by subgroup: small-cell and complementary suppression, differential attrition.

Suppression is checked on hand-built tables whose suppressed cells are worked out in the
comments, and by a property test: over random tables, no suppressed cell can be recovered from
the published cells and totals, neither by subtraction within a row or column nor by solving
all the published equations together (null space of the margin equations, computed here
independently of the code under test). The differential-attrition interval is checked against
R's Newcombe hybrid score interval (tests/reference/newcombe_rd.csv, R 4.2.2 ``prop.test``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.linalg import null_space

from analysis.fairness import (
    FairnessSpec,
    equity_measures,
    recoverable,
    suppression_pattern,
    with_margins,
)
from tests.conftest import REFERENCE
from trials.errors import AnalysisError


def cells(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in np.argwhere(mask)}


# ------------------------------------------------------------------ hand-built tables
def test_one_small_cell_takes_a_rectangle_of_complements():
    # interior      margins: row totals 43, 110, 45; column totals 73, 125; total 198
    #   3  40       3 is small; row 0 then needs a second cell: 40 (only other interior);
    #  50  60       column 0 needs one: smallest non-zero other interior is 20 (row 2);
    #  20  25       column 1 needs one: 25 (row 2); row 2 now has two. Rectangle, no margins.
    table, primary, mask = suppression_pattern(np.array([[3, 40], [50, 60], [20, 25]]), 10)
    assert table[-1, -1] == 198
    assert cells(primary) == {(0, 0)}
    assert cells(mask) == {(0, 0), (0, 1), (2, 0), (2, 1)}


def test_two_small_cells_protect_each_other_where_they_can():
    # 12  4  | 16    4 and 2 are small. Row 0 takes 12, row 2 takes 50; then column 0 has
    # 15 30  | 45    12 and 2, column 1 has 4 and 50: every line has two, and the four form a
    #  2 50  | 52    cycle, so none follows from the totals.
    _, primary, mask = suppression_pattern(np.array([[12, 4], [15, 30], [2, 50]]), 10)
    assert cells(primary) == {(0, 1), (2, 0)}
    assert cells(mask) == {(0, 0), (0, 1), (2, 0), (2, 1)}


def test_small_margin_is_suppressed_too():
    #  2  3 |  5     2, 3 and their row total 5 are small. Column 0 takes 40, column 1 takes
    # 40 50 | 90     50; the row-total column has only 5, so it takes 90 (margins only there).
    # 42 53 | 95     The total row publishes 42, 53, 95.
    _, primary, mask = suppression_pattern(np.array([[2, 3], [40, 50]]), 10)
    assert cells(primary) == {(0, 0), (0, 1), (0, 2)}
    assert cells(mask) == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)}


def test_zero_is_not_suppressed_and_prefers_non_zero_complements():
    # 0 is no disclosure. Row 0 (5 small) takes 30 rather than the 0 beside it; columns 0 and
    # 2 then take 20 and 40 from row 1.
    _, primary, mask = suppression_pattern(np.array([[5, 0, 30], [20, 0, 40]]), 10)
    assert cells(primary) == {(0, 0)}
    assert cells(mask) == {(0, 0), (0, 2), (1, 0), (1, 2)}


def test_nothing_small_nothing_suppressed():
    _, primary, mask = suppression_pattern(np.array([[0, 40], [50, 60]]), 10)
    assert not primary.any() and not mask.any()


def test_recoverable_finds_a_bridge_between_two_protected_blocks():
    # Two 2x2 blocks each protect themselves, but the single cell (1, 2) joining them is
    # fixed by the equations although its row and column each hold two or more suppressions.
    table = with_margins(np.arange(1, 17).reshape(4, 4) * 7)
    mask = np.zeros(table.shape, dtype=bool)
    for c in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3), (1, 2)]:
        mask[c] = True
    assert cells(recoverable(table, mask)) == {(1, 2)}


# ------------------------------------------------------------------ property test
def determined_cells(table: np.ndarray, mask: np.ndarray) -> set[tuple[int, int]]:
    """Suppressed cells fixed by the published values, by an independent method: a cell is
    free iff some vector in the null space of the margin equations moves it."""
    rows, cols = table.shape
    unknown = [(i, j) for i in range(rows) for j in range(cols) if mask[i, j]]
    if not unknown:
        return set()
    eqs = []
    for i in range(rows):  # interior of row i sums to its last cell
        eqs.append([(1.0 if j < cols - 1 else -1.0) if u[0] == i else 0.0
                    for u in unknown for j in [u[1]]])
    for j in range(cols):
        eqs.append([(1.0 if i < rows - 1 else -1.0) if u[1] == j else 0.0
                    for u in unknown for i in [u[0]]])
    ns = null_space(np.array(eqs))
    return {u for k, u in enumerate(unknown) if ns.shape[1] == 0 or np.abs(ns[k]).max() < 1e-9}


tables = st.integers(1, 4).flatmap(lambda r: st.integers(1, 4).flatmap(
    lambda c: st.lists(st.lists(st.one_of(st.integers(0, 12), st.integers(0, 80)),
                                min_size=c, max_size=c), min_size=r, max_size=r)))


@settings(max_examples=150, deadline=None)
@given(tables, st.integers(2, 11))
def test_no_suppressed_cell_can_be_recovered(counts, min_cell):
    table, primary, mask = suppression_pattern(np.array(counts), min_cell)
    assert np.array_equal(table, with_margins(np.array(counts)))
    small = (table > 0) & (table < min_cell)
    assert not (small & ~mask).any()  # every small cell, margins included, is suppressed
    assert np.array_equal(primary, small)
    for i in range(table.shape[0]):  # subtraction from a row total
        assert mask[i].sum() != 1
    for j in range(table.shape[1]):  # subtraction from a column total
        assert mask[:, j].sum() != 1
    assert determined_cells(table, mask) == set()


participants_strategy = st.lists(
    st.tuples(st.sampled_from(["ai", "uc"]), st.sampled_from(["f", "m", "x", None]),
              st.sampled_from(["1", "2", "3"]), st.booleans(), st.booleans()),
    min_size=5, max_size=160)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(participants_strategy)
def test_published_rows_never_reveal_a_suppressed_count(records):
    frame = pd.DataFrame(records, columns=["arm", "gender", "imd", "attrited", "red_flag"])
    frame["treated"] = (frame["arm"] == "ai").astype(int)
    if frame["arm"].nunique() < 2:
        return
    res = equity_measures(frame, FairnessSpec(("gender", "imd"), min_cell=5))
    out = res.to_frame()
    for (var, measure), t in out.groupby(["variable", "measure"]):
        for field in ("count", "n"):
            grid = t.pivot(index="level", columns="arm", values=field)
            hidden = grid.isna().to_numpy()
            assert all(row.sum() != 1 for row in hidden), (var, measure, field)
            assert all(col.sum() != 1 for col in hidden.T), (var, measure, field)
            shown = grid.fillna(-1).to_numpy()
            assert not ((shown > 0) & (shown < 5)).any()
        assert t.loc[t["count"].isna() | t["n"].isna(), "percent"].isna().all()


# ------------------------------------------------------------------ equity_measures
def trial_frame() -> pd.DataFrame:
    """ai / uc by gender: female 70 / 80 (attrition 56 / 48, R's Newcombe case 1), male
    30 / 30 (attrition 12 / 12), nb 4 / 3 (attrition 1 / 0); one row with gender missing."""
    recs = []

    def add(arm, gender, n, attrited, **extra):
        for k in range(n):
            recs.append({"arm": arm, "gender": gender, "attrited": k < attrited,
                         "red_flag": k == 0, **extra})

    add("ai", "female", 70, 56)
    add("uc", "female", 80, 48)
    add("ai", "male", 30, 12)
    add("uc", "male", 30, 12)
    add("ai", "nb", 4, 1)
    add("uc", "nb", 3, 0)
    add("uc", None, 1, 0)
    frame = pd.DataFrame(recs)
    frame["treated"] = (frame["arm"] == "ai").astype(int)
    frame["engaged"] = np.arange(len(frame)) % 5  # a numeric dose
    return frame


@pytest.fixture(scope="module")
def result():
    return equity_measures(trial_frame(), FairnessSpec(("gender",), min_cell=10))


def _row(result, level, arm, measure="attrited"):
    return next(r for r in result.rows if (r.level, r.arm, r.measure) == (level, arm, measure))


@pytest.mark.reference
def test_differential_attrition_matches_r_newcombe(result):
    # R 4.2.2: newcombe_rd.csv, 56/70 vs 48/80 at level 0.95 (prop.test Wilson limits)
    r = pd.read_csv(REFERENCE / "newcombe_rd.csv")
    ref = r[(r.x1 == 56) & (r.n1 == 70) & (r.x2 == 48) & (r.n2 == 80) & (r.level == 0.95)]
    row = next(a for a in result.attrition if a.level == "female")
    assert row.difference == pytest.approx(float(ref["diff"].iloc[0]), abs=1e-12)
    assert row.ci_lower == pytest.approx(float(ref["lower"].iloc[0]), abs=1e-10)
    assert row.ci_upper == pytest.approx(float(ref["upper"].iloc[0]), abs=1e-10)
    assert row.p_value == pytest.approx(float(ref["fisher_p"].iloc[0]), rel=1e-8)


def test_small_level_is_flagged_and_its_counts_hidden(result):
    nb = _row(result, "nb", "ai")
    assert nb.n is None and nb.n_label == "<10" and nb.flag == "too small to say anything"
    assert nb.count is None and nb.count_label == "<10" and nb.percent is None
    att = next(a for a in result.attrition if a.level == "nb")
    assert att.suppressed and att.difference is None and att.flag == "too small to say anything"
    assert _row(result, "nb", "uc").count == 0  # zero is shown


def test_complementary_cells_are_withheld_and_labelled(result):
    # n table: nb 4 / 3 and missing 0 / 1 are small, and so is nb's total 7; the rows that
    # protect them are withheld as "[c]".
    labels = {(r.level, r.arm): r.n_label for r in result.rows if r.measure == "attrited"}
    assert labels[("nb", "ai")] == "<10" and labels[("nb", "uc")] == "<10"
    assert labels[("missing", "uc")] == "<10"
    assert "[c]" in labels.values()
    assert labels[("all", "all")] == "218"


def test_totals_and_percent_when_nothing_is_hidden(result):
    tot = _row(result, "all", "all")
    assert (tot.n, tot.count) == (218, 129)
    assert tot.percent == pytest.approx(100 * 129 / 218)


def test_numeric_dose_is_summarised_by_its_mean(result):
    row = _row(result, "all", "all", "engaged")
    frame = trial_frame()
    assert row.mean == pytest.approx(frame["engaged"].mean())
    assert row.count == int((frame["engaged"] > 0).sum())


def test_absent_measures_are_skipped_and_result_is_json_safe(result):
    assert result.measures == ("attrited", "engaged", "red_flag")
    json.dumps(result.to_dict(), allow_nan=False)


def test_missing_subgroup_value_forms_its_own_level(result):
    assert any(r.level == "missing" for r in result.rows)


def test_input_not_mutated():
    frame = trial_frame()
    before = frame.copy()
    equity_measures(frame, FairnessSpec(("gender",)))
    pd.testing.assert_frame_equal(frame, before)


def test_errors_name_the_column():
    frame = trial_frame()
    with pytest.raises(AnalysisError, match="ethnicity"):
        equity_measures(frame, FairnessSpec(("ethnicity",)))
    with pytest.raises(AnalysisError, match="attrited"):
        equity_measures(frame.drop(columns="attrited"), FairnessSpec(("gender",)))
    bad = frame.assign(red_flag="yes")
    with pytest.raises(AnalysisError, match="red_flag"):
        equity_measures(bad, FairnessSpec(("gender",)))


def test_arms_from_spec_without_treated_column():
    frame = trial_frame().drop(columns="treated")
    res = equity_measures(frame, FairnessSpec(("gender",), experimental="ai", comparator="uc"))
    female = next(a for a in res.attrition if a.level == "female")
    assert female.difference == pytest.approx(56 / 70 - 48 / 80)
    with pytest.raises(AnalysisError, match="experimental"):
        equity_measures(frame, FairnessSpec(("gender",)))
