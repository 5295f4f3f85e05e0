"""PHQ-9 and GAD-7 scoring on hand-worked examples.

Sources: Kroenke, Spitzer & Williams (2001) J Gen Intern Med 16:606 (PHQ-9 total 0-27, severity
cut-points 5/10/15/20); Spitzer et al. (2006) Arch Intern Med 166:1092 (GAD-7 total 0-21,
cut-points 5/10/15). The prorating rule is this project's stated rule (see Instrument.missing_rule).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from outcomes import GAD7, PHQ9, red_flag_visits, score_instrument

NA = np.nan


def _score(rows, inst):
    return score_instrument(pd.DataFrame(rows, dtype=float), inst)


@pytest.mark.parametrize(
    ("items", "total", "band"),
    [
        ([0] * 9, 0, "minimal"),
        ([1, 1, 1, 1, 0, 0, 0, 0, 0], 4, "minimal"),
        ([1, 1, 1, 1, 1, 0, 0, 0, 0], 5, "mild"),
        ([2, 2, 1, 1, 1, 1, 1, 0, 0], 9, "mild"),
        ([2, 2, 2, 1, 1, 1, 1, 0, 0], 10, "moderate"),
        ([2, 2, 2, 2, 2, 2, 2, 0, 0], 14, "moderate"),
        ([3, 2, 2, 2, 2, 2, 1, 1, 0], 15, "moderately severe"),
        ([3, 3, 3, 2, 2, 2, 2, 2, 0], 19, "moderately severe"),
        ([3, 3, 3, 3, 2, 2, 2, 2, 0], 20, "severe"),
        ([3] * 9, 27, "severe"),
    ],
)
def test_phq9_totals_and_bands(items, total, band):
    s = _score([items], PHQ9).iloc[0]
    assert s["total"] == total
    assert s["band"] == band
    assert not s["prorated"]


@pytest.mark.parametrize(
    ("items", "total", "band"),
    [([0] * 7, 0, "minimal"), ([1, 1, 1, 1, 0, 0, 0], 4, "minimal"),
     ([1, 1, 1, 1, 1, 0, 0], 5, "mild"), ([2, 2, 2, 1, 1, 1, 1], 10, "moderate"),
     ([3, 2, 2, 2, 2, 2, 2], 15, "severe"), ([3] * 7, 21, "severe")],
)
def test_gad7_totals_and_bands(items, total, band):
    s = _score([items], GAD7).iloc[0]
    assert s["total"] == total
    assert s["band"] == band


def test_phq9_prorated_with_one_missing_item():
    # 8 answered items summing to 12: mean 1.5, x 9 = 13.5, rounded half up = 14.
    s = _score([[2, 2, 2, 2, 1, 1, 1, 1, NA]], PHQ9).iloc[0]
    assert s["total"] == 14
    assert s["prorated"]
    assert s["n_missing"] == 1


def test_phq9_prorated_with_two_missing_items():
    # 7 answered items summing to 7: mean 1, x 9 = 9.
    s = _score([[1, 1, 1, 1, 1, 1, 1, NA, NA]], PHQ9).iloc[0]
    assert s["total"] == 9
    assert s["band"] == "mild"


def test_phq9_missing_when_three_items_missing():
    s = _score([[1, 1, 1, 1, 1, 1, NA, NA, NA]], PHQ9).iloc[0]
    assert np.isnan(s["total"])
    assert s["band"] is None
    assert not s["prorated"]


def test_gad7_allows_one_missing_item_only():
    out = _score([[1, 1, 1, 1, 1, 1, NA], [1, 1, 1, 1, 1, NA, NA]], GAD7)
    assert out["total"].iloc[0] == 7  # mean 1 x 7
    assert np.isnan(out["total"].iloc[1])


def test_scoring_is_vectorised_and_keeps_index():
    items = pd.DataFrame([[0] * 9, [3] * 9], index=["a", "b"], dtype=float)
    out = score_instrument(items, PHQ9)
    assert list(out.index) == ["a", "b"]
    assert list(out["total"]) == [0, 27]


def test_wrong_number_of_item_columns_is_refused():
    with pytest.raises(ValueError, match="expected 9 item columns"):
        score_instrument(pd.DataFrame([[1] * 8]), PHQ9)


def test_item9_red_flag_true_false_and_unscreened():
    flags = red_flag_visits(pd.Series([0, 1, 3, None], dtype="Int64"), at_least=1)
    assert flags.iloc[0] is False or flags.iloc[0] == False  # noqa: E712
    assert bool(flags.iloc[1]) and bool(flags.iloc[2])
    assert flags.isna().iloc[3]  # not answered: not screened, never "no flag"


def test_missing_rule_is_stated():
    assert "prorated" in PHQ9.missing_rule and "2 of 9" in PHQ9.missing_rule
