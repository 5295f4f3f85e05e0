"""The instrument library: hand-worked scoring examples per instrument, user-defined instruments,
validation of bad definitions, and property tests of the scorer.

Every expected total below is worked by hand from the instrument's published scoring rule (the
source is named above each block); none is recomputed with the code under test.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outcomes import (
    GAD7,
    INSTRUMENTS,
    PHQ9,
    get_instrument,
    instrument_from_dict,
    load_instrument_file,
    load_library,
    score_instrument,
)

pytestmark = pytest.mark.reference

NA = np.nan
PROPERTY = settings(max_examples=60, deadline=None, database=None)


def _score(rows, inst):
    columns = [f"q{j}" for j in range(1, inst.n_items + 1)]
    return score_instrument(pd.DataFrame(rows, columns=columns, dtype=float), inst)


def _one(items, name):
    return _score([items], get_instrument(name)).iloc[0]


def _check(items, name, total, band, prorated=False):
    s = _one(items, name)
    assert s["total"] == pytest.approx(total, abs=1e-9)
    assert s["band"] == band
    assert bool(s["prorated"]) is prorated


# --------------------------------------------------------------------------- the library


def test_library_holds_the_ten_instruments():
    assert sorted(INSTRUMENTS) == ["CORE-10", "CSQ-8", "GAD-7", "K10", "PHQ-8", "PHQ-9", "SUS",
                                   "SWEMWBS", "WEMWBS", "WSAS"]
    assert PHQ9 is INSTRUMENTS["PHQ-9"] and GAD7 is INSTRUMENTS["GAD-7"]


@pytest.mark.parametrize("name", sorted(INSTRUMENTS))
def test_every_definition_is_complete_and_round_trips(name):
    inst = INSTRUMENTS[name]
    assert re.search(r"\b(19|20)\d\d\b", inst.source), "source names the year"
    assert inst.reported_score and inst.item_coding
    assert inst.missing_rule.startswith(f"{name}: ") and inst.missing_rule.count(".") >= 1
    assert instrument_from_dict(inst.to_dict(), "roundtrip") == inst


def test_unknown_instrument_names_the_known_ones():
    with pytest.raises(KeyError, match="PHQ-9"):
        get_instrument("PHQ-10")


@pytest.mark.parametrize(
    ("name", "caseness", "reliable_change", "higher_is_better"),
    [
        ("PHQ-9", 10, 6, False),  # NHS Talking Therapies
        ("GAD-7", 8, 4, False),  # NHS Talking Therapies
        ("PHQ-8", 10, None, False),  # Kroenke et al. 2009: PHQ-8 >= 10
        ("CORE-10", 11, 6, False),  # Barkham et al. 2013: cut-off 11.0, RCI (90% CI) 6
        ("WEMWBS", None, None, True),
        ("SWEMWBS", None, None, True),
        ("K10", None, None, False),  # ABS 2012: no universally agreed categories
        ("WSAS", None, None, False),
        ("SUS", None, None, True),
        ("CSQ-8", None, None, True),
    ],
)
def test_thresholds_and_direction(name, caseness, reliable_change, higher_is_better):
    inst = INSTRUMENTS[name]
    assert inst.caseness_threshold == caseness
    assert inst.reliable_change == reliable_change
    assert inst.higher_is_better is higher_is_better


# --------------------------------------------------------------------------- PHQ-9, PHQ-8, GAD-7
# Kroenke, Spitzer & Williams 2001 (PHQ-9: 0-27, cut-points 5/10/15/20); NHS Data Dictionary:
# up to two missing items replaced by the mean of the others.


def test_phq9_worked_examples():
    _check([0] * 9, "PHQ-9", 0, "minimal")
    _check([3] * 9, "PHQ-9", 27, "severe")
    _check([1, 2, 0, 3, 1, 0, 2, 1, 0], "PHQ-9", 10, "moderate")
    # 7 answered items sum to 9: 9 x 9 / 7 = 11.57 -> 12
    _check([1, 2, 0, 3, 1, 0, 2, NA, NA], "PHQ-9", 12, "moderate", prorated=True)
    assert math.isnan(_one([1, 2, 0, 3, 1, 0, NA, NA, NA], "PHQ-9")["total"])
    assert PHQ9.is_case(10) and not PHQ9.is_case(9)  # NHS Talking Therapies: >= 10


def test_phq8_worked_examples():
    # Kroenke et al. 2009: PHQ-8 0-24, current depression at >= 10; every item needed here.
    _check([0] * 8, "PHQ-8", 0, "minimal")
    _check([3] * 8, "PHQ-8", 24, "severe")
    _check([2, 2, 1, 1, 1, 1, 1, 1], "PHQ-8", 10, "moderate")
    assert get_instrument("PHQ-8").is_case(10) and not get_instrument("PHQ-8").is_case(9)
    s = _one([2, 2, 1, 1, 1, 1, 1, NA], "PHQ-8")
    assert math.isnan(s["total"]) and s["n_missing"] == 1 and not s["prorated"]


def test_gad7_worked_examples():
    # Spitzer et al. 2006: 0-21, cut-points 5/10/15; NHS Talking Therapies caseness >= 8.
    _check([0] * 7, "GAD-7", 0, "minimal")
    _check([3] * 7, "GAD-7", 21, "severe")
    _check([1, 1, 1, 1, 1, 1, 2], "GAD-7", 8, "mild")
    assert GAD7.is_case(8) and not GAD7.is_case(7)
    # 6 answered sum to 9: 9 x 7 / 6 = 10.5 -> 11 (half up)
    _check([2, 2, 2, 1, 1, 1, NA], "GAD-7", 11, "moderate", prorated=True)
    assert math.isnan(_one([2, 2, 2, 1, 1, NA, NA], "GAD-7")["total"])


# --------------------------------------------------------------------------- WEMWBS, SWEMWBS


def test_wemwbs_worked_examples():
    # Tennant et al. 2007 / Warwick scoring guidance: sum of 14 items scored 1-5, 14-70.
    _check([1] * 14, "WEMWBS", 14, None)
    _check([5] * 14, "WEMWBS", 70, None)
    _check([1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4], "WEMWBS", 40, None)
    assert math.isnan(_one([3] * 13 + [NA], "WEMWBS")["total"])


# Stewart-Brown et al. 2009 / Warwick SWEMWBS conversion table: raw sum -> metric score.
SWEMWBS_TABLE = {7: 7.00, 8: 9.51, 9: 11.25, 10: 12.40, 11: 13.33, 12: 14.08, 13: 14.75,
                 14: 15.32, 15: 15.84, 16: 16.36, 17: 16.88, 18: 17.43, 19: 17.98, 20: 18.59,
                 21: 19.25, 22: 19.98, 23: 20.73, 24: 21.54, 25: 22.35, 26: 23.21, 27: 24.11,
                 28: 25.03, 29: 26.02, 30: 27.03, 31: 28.13, 32: 29.31, 33: 30.70, 34: 32.55,
                 35: 35.00}


@pytest.mark.parametrize(
    ("items", "metric"),
    [([1] * 7, 7.00), ([5] * 7, 35.00), ([2] * 7, 15.32), ([3] * 7, 19.25), ([4] * 7, 25.03),
     ([1, 2, 3, 4, 5, 3, 2], 18.59), ([5, 5, 5, 5, 5, 5, 4], 32.55)],
)
def test_swemwbs_converts_raw_sums_with_the_published_table(items, metric):
    _check(items, "SWEMWBS", metric, None)


def test_swemwbs_whole_table():
    rows = [[1 + (raw - 7 - j + 6) // 7 for j in range(7)] for raw in range(7, 36)]
    assert [sum(r) for r in rows] == list(range(7, 36))
    out = _score(rows, get_instrument("SWEMWBS"))
    assert list(out["total"]) == pytest.approx([SWEMWBS_TABLE[r] for r in range(7, 36)])
    assert math.isnan(_one([3, 3, 3, 3, 3, 3, NA], "SWEMWBS")["total"])


# --------------------------------------------------------------------------- K10, CORE-10, WSAS


@pytest.mark.parametrize(
    ("items", "total", "band"),
    [([1] * 10, 10, "low"), ([2] * 5 + [1] * 5, 15, "low"), ([2] * 6 + [1] * 4, 16, "moderate"),
     ([3] + [2] * 9, 21, "moderate"), ([3, 3] + [2] * 8, 22, "high"),
     ([3] * 9 + [2], 29, "high"), ([3] * 10, 30, "very high"), ([5] * 10, 50, "very high")],
)
def test_k10_worked_examples(items, total, band):
    # Kessler et al. 2002: items 1-5, total 10-50.
    # ABS 4817.0.55.001 (2012) groupings: 10-15 low, 16-21 moderate, 22-29 high, 30-50 very high.
    _check(items, "K10", total, band)


def test_core10_worked_examples():
    # Barkham et al. 2013 / CORE System Trust: items 0-4 by response column; items 2 and 3 are
    # positively worded and reverse-keyed; clinical score = mean x 10 (sum when complete);
    # cut-off 11; one missing item may be prorated.
    _check([0, 4, 4, 0, 0, 0, 0, 0, 0, 0], "CORE-10", 0, "healthy")
    _check([4, 0, 0, 4, 4, 4, 4, 4, 4, 4], "CORE-10", 40, "severe")
    _check([0] * 10, "CORE-10", 8, "low level")  # items 2, 3 "not at all" score 4 each
    # keyed 2, 3, 1, 2, 1, 0, 3, 2, 2, 1 = 17
    _check([2, 1, 3, 2, 1, 0, 3, 2, 2, 1], "CORE-10", 17, "moderate")
    core = get_instrument("CORE-10")
    assert core.is_case(11) and not core.is_case(10.9)


def test_core10_reverse_keys_before_prorating_and_no_rounding():
    # Item 2 missing; keyed answered items 2, 1, 2, 1, 0, 3, 2, 2, 1 sum to 14: 14 x 10 / 9.
    _check([2, NA, 3, 2, 1, 0, 3, 2, 2, 1], "CORE-10", 140 / 9, "moderate", prorated=True)
    # keyed sum 10 over 9 items: 11.11, past the cut-off of 11 -> mild
    _check([2, 4, 4, 2, 2, 1, 1, 1, 1, NA], "CORE-10", 100 / 9, "mild", prorated=True)
    # keyed sum 9 over 9 items: 10.0 -> low level
    _check([2, 4, 4, 2, 1, 1, 1, 1, 1, NA], "CORE-10", 10, "low level", prorated=True)
    assert get_instrument("CORE-10").band(10.5) == "low level"
    assert math.isnan(_one([2, 4, 4, 2, 1, 1, 1, 1, NA, NA], "CORE-10")["total"])


def test_wsas_worked_examples():
    # Mundt et al. 2002: 5 items 0-8, total 0-40; < 10 subclinical, 10-20 significant, > 20
    # moderately severe. NHS Data Dictionary: one missing / not-applicable item -> mean of others.
    _check([0] * 5, "WSAS", 0, "subclinical")
    _check([2, 2, 2, 2, 1], "WSAS", 9, "subclinical")
    _check([2] * 5, "WSAS", 10, "significant impairment")
    _check([4] * 5, "WSAS", 20, "significant impairment")
    _check([4, 4, 4, 4, 5], "WSAS", 21, "moderately severe or worse")
    _check([8] * 5, "WSAS", 40, "moderately severe or worse")
    _check([NA, 2, 2, 2, 2], "WSAS", 10, "significant impairment", prorated=True)
    _check([3, 3, 4, 4, NA], "WSAS", 18, "significant impairment", prorated=True)  # 17.5 -> 18
    assert math.isnan(_one([3, 3, 4, NA, NA], "WSAS")["total"])


# --------------------------------------------------------------------------- SUS, CSQ-8


def test_sus_worked_example_from_brooke_1996():
    # Brooke 1996 scoring figure (as reproduced by Tullis & Albert 2008, fig. 6.8): item
    # contributions 4, 1, 1, 4, 1, 2, 1, 1, 4, 3 sum to 22; SUS = 22 x 2.5 = 55. Odd items
    # contribute response - 1, even items 5 - response, so the responses are:
    _check([5, 4, 2, 1, 2, 3, 2, 4, 5, 2], "SUS", 55, None)
    _check([1, 5] * 5, "SUS", 0, None)
    _check([5, 1] * 5, "SUS", 100, None)
    _check([3] * 10, "SUS", 50, None)
    assert math.isnan(_one([5, 4, 2, 1, 2, 3, 2, 4, 5, NA], "SUS")["total"])


def test_csq8_worked_examples():
    # Larsen et al. 1979 / CSQ scoring guide: items scored 1-4 (printed scores), sum 8-32.
    _check([1] * 8, "CSQ-8", 8, None)
    _check([4] * 8, "CSQ-8", 32, None)
    _check([4, 3, 3, 4, 3, 4, 4, 3], "CSQ-8", 28, None)
    assert math.isnan(_one([4, 3, 3, 4, 3, 4, 4, NA], "CSQ-8")["total"])


# --------------------------------------------------------------------------- scorer contract


def test_values_outside_the_item_range_name_column_row_and_value():
    frame = pd.DataFrame([[0] * 9, [0, 0, 4, 0, 0, 0, 0, 0, 0]],
                         columns=[f"phq9_{i}" for i in range(1, 10)], index=["a", "b"])
    with pytest.raises(ValueError, match=r"column 'phq9_3', row 'b': 4 is not a whole number"):
        score_instrument(frame, PHQ9)


@pytest.mark.parametrize("bad", [1.5, -1, 99, np.inf, "2", True])
def test_non_integer_and_non_numeric_values_are_refused(bad):
    frame = pd.DataFrame({f"q{i}": [1, 1] for i in range(1, 8)}, dtype=object)
    frame.loc[1, "q5"] = bad
    with pytest.raises(ValueError, match=r"column 'q5', row 1") as err:
        score_instrument(frame, GAD7)
    assert "\n" not in str(err.value)


def test_nullable_integers_and_none_are_missing_values():
    frame = pd.DataFrame({f"q{i}": pd.array([2, None], dtype="Int64") for i in range(1, 8)})
    out = score_instrument(frame, GAD7)
    assert out["total"].iloc[0] == 14 and math.isnan(out["total"].iloc[1])
    assert list(out["n_missing"]) == [0, 7]


def test_callers_frame_is_not_modified():
    frame = pd.DataFrame([[2, 1, 3, 2, 1, 0, 3, 2, 2, 1]], dtype=float)
    before = frame.copy()
    score_instrument(frame, get_instrument("CORE-10"))
    pd.testing.assert_frame_equal(frame, before)


def test_band_method_matches_scored_bands_and_refuses_out_of_range():
    assert PHQ9.band(10) == "moderate" and get_instrument("WEMWBS").band(40) is None
    with pytest.raises(ValueError, match="outside 0..27"):
        PHQ9.band(28)
    with pytest.raises(ValueError, match="no caseness threshold"):
        get_instrument("SUS").is_case(50)


# --------------------------------------------------------------------------- user-defined


def _custom(**changes):
    d = {
        "name": "MY-5", "items": 5, "item_min": 1, "item_max": 4, "reverse_items": [2],
        "method": "mean", "max_missing": 1, "higher_is_better": True,
        "bands": [{"label": "low", "low": 1, "high": 2.4}, {"label": "high", "low": 2.5,
                                                           "high": 4}],
        "caseness_threshold": 2, "reliable_change": 1.0,
        "source": {"authors": "Doe J", "year": 2024, "title": "A made-up scale",
                   "journal": "J Test"},
    }
    d.update(changes)
    return {k: v for k, v in d.items() if v is not ...}


def test_user_defined_instrument_from_a_dict():
    inst = instrument_from_dict(_custom(), "instruments.0")
    assert inst.source == "Doe J. A made-up scale. J Test 2024."
    assert (inst.total_min, inst.total_max) == (1, 4)
    # item 2 reversed: 4 -> 1, so all keyed items are 1; mean 1.0
    out = _score([[1, 4, 1, 1, 1], [4, NA, 4, 4, 4], [4, NA, NA, 4, 4]], inst)
    assert list(out["total"][:2]) == [1.0, 4.0] and math.isnan(out["total"].iloc[2])
    assert list(out["band"]) == ["low", "high", None]
    assert inst.is_case(2) and not inst.is_case(2.5)  # higher is better: case at <= 2


def test_user_defined_instrument_from_a_yaml_file(tmp_path):
    path = tmp_path / "my5.yaml"
    path.write_text(
        "name: MY-3\nitems: 3\nitem_min: 0\nitem_max: 2\nreverse_items: [3]\nmethod: sum\n"
        "multiplier: 10\nmax_missing: 0\nhigher_is_better: false\n"
        "bands:\n  - {label: low, low: 0, high: 20}\n  - {label: high, low: 30, high: 60}\n"
        "source: Doe J. A made-up scale. J Test 2024.\n", encoding="utf-8")
    inst = load_instrument_file(path)
    assert (inst.total_min, inst.total_max) == (0, 60)
    # item 3 reversed (0 <-> 2): keyed 2, 2, 2 -> 6 x 10 = 60; keyed 0, 0, 0 -> 0
    out = _score([[2, 2, 0], [0, 0, 2]], inst)
    assert list(out["total"]) == [60, 0]
    assert list(out["band"]) == ["high", "low"]
    assert load_library(tmp_path) == {"MY-3": inst}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"method": ...}, "method", "required field is missing"),
        ({"item_max": 0}, "item_max", "0 is not above item_min 1"),
        ({"reverse_items": [6]}, "reverse_items", "item 6 is beyond the 5 items"),
        ({"method": "median"}, "method", "unknown method 'median'"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"items": 4.5}, "items", "4.5 is not a whole number"),
        ({"max_missing": 5}, "max_missing", "5 outside 0..4"),
        ({"bands": [{"label": "all", "low": 1, "high": 3}]}, "bands", "must cover"),
        ({"caseness_threshold": 9}, "caseness_threshold", "outside the total range"),
        ({"source": {"authors": "Doe J", "year": 2024, "title": "T"}}, "source.journal",
         "required field is missing"),
        ({"method": "conversion", "prorate_rounding": "half_up",
          "conversion": {5: 1.0, 6: 2.0}}, "conversion", "no score for raw sum 7"),
        ({"higher_is_better": "yes"}, "higher_is_better", "is not true or false"),
        ({"method": "sum", "bands": [{"label": "a", "low": 5, "high": 9},
                                     {"label": "b", "low": 11, "high": 20}]},
         "bands", "gap between 'a' (to 9) and 'b' (from 11)"),
        ({"bands": [{"label": "a", "low": 1, "high": 3}, {"label": "b", "low": 2, "high": 4}]},
         "bands", "overlap"),
        ({"reverse_items": [2, 2]}, "reverse_items", "lists an item twice"),
        ({"multiplier": -1}, "multiplier", "must be a positive number"),
    ],
)
def test_bad_definitions_give_one_line_errors_naming_the_field(changes, field, message):
    with pytest.raises(ValueError) as err:
        instrument_from_dict(_custom(**changes), "instruments.2")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"instruments.2.{field}: ")
    assert message in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: X\nname: Y\n", "duplicate key 'name'"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping"),
        ("name: X\nitems: 3\nitem_min: 3\nitem_max: 2\nmax_missing: 0\nmethod: sum\n"
         "higher_is_better: false\nsource: Doe J 2024\n", "item_max: 2 is not above item_min 3"),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_instrument_file(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        load_instrument_file(tmp_path / "nope.yaml")


def test_sus_method_keeps_brookes_definition():
    d = get_instrument("SUS").to_dict() | {"reverse_items": [1, 3, 5, 7, 9]}
    with pytest.raises(ValueError, match=r"x\.reverse_items: method 'sus' reverse-keys the even"):
        instrument_from_dict(d, "x")


# --------------------------------------------------------------------------- properties

CUSTOM = [instrument_from_dict(_custom(), "custom"),
          instrument_from_dict(_custom(name="MY-SUM", method="sum", bands=None,
                                       caseness_threshold=None, max_missing=2,
                                       prorate_rounding="half_up", reliable_change=None),
                               "custom")]
ALL = [INSTRUMENTS[n] for n in sorted(INSTRUMENTS)] + CUSTOM


@st.composite
def item_frames(draw, complete=False):
    inst = draw(st.sampled_from(ALL))
    cell = st.integers(inst.item_min, inst.item_max)
    if not complete:
        cell = st.one_of(cell, st.none())
    rows = draw(st.lists(st.lists(cell, min_size=inst.n_items, max_size=inst.n_items),
                         min_size=1, max_size=12))
    frame = pd.DataFrame(rows, columns=[f"q{j}" for j in range(1, inst.n_items + 1)],
                         index=[f"r{i}" for i in range(len(rows))], dtype=float)
    return inst, frame


def _plain_total(inst, row):
    """The published formula on a complete row, written out independently of the scorer."""
    keyed = [inst.item_min + inst.item_max - v if j + 1 in inst.reverse_items else v
             for j, v in enumerate(row)]
    if inst.method == "sum":
        return sum(keyed) * inst.multiplier
    if inst.method == "mean":
        return sum(keyed) / len(keyed) * inst.multiplier
    if inst.method == "sus":
        return sum(k - 1 for k in keyed) * 2.5
    return dict(inst.conversion)[int(sum(keyed))]


@PROPERTY
@given(item_frames(), st.randoms(use_true_random=False))
def test_scoring_is_invariant_to_row_order(case, rnd):
    inst, frame = case
    order = list(frame.index)
    rnd.shuffle(order)
    straight = score_instrument(frame, inst)
    shuffled = score_instrument(frame.loc[order], inst)
    pd.testing.assert_frame_equal(shuffled, straight.loc[order])


@PROPERTY
@given(item_frames(), st.data())
def test_out_of_range_values_always_raise(case, data):
    inst, frame = case
    row = data.draw(st.integers(0, len(frame) - 1))
    col = data.draw(st.integers(0, inst.n_items - 1))
    bad = data.draw(st.one_of(
        st.integers(-10**6, inst.item_min - 1), st.integers(inst.item_max + 1, 10**6),
        st.floats(inst.item_min, inst.item_max).filter(lambda v: not float(v).is_integer()),
        st.sampled_from([np.inf, -np.inf])))
    frame.iat[row, col] = bad
    with pytest.raises(ValueError, match=re.escape(f"column 'q{col + 1}', row 'r{row}'")):
        score_instrument(frame, inst)


@PROPERTY
@given(item_frames())
def test_totals_stay_within_the_instrument_range(case):
    inst, frame = case
    out = score_instrument(frame, inst)
    scored = out["total"].dropna()
    assert ((scored >= inst.total_min - 1e-9) & (scored <= inst.total_max + 1e-9)).all()
    assert (out["n_missing"] == frame.isna().sum(axis=1)).all()
    if inst.bands:
        assert out.loc[scored.index, "band"].notna().all()


@PROPERTY
@given(item_frames(complete=True))
def test_nothing_missing_means_nothing_prorated(case):
    inst, frame = case
    out = score_instrument(frame, inst)
    assert not out["prorated"].any()
    expected = [_plain_total(inst, list(r)) for r in frame.itertuples(index=False)]
    assert list(out["total"]) == pytest.approx(expected, abs=1e-9)
    strict = dataclasses.replace(inst, max_missing=0)
    pd.testing.assert_frame_equal(score_instrument(frame, strict), out)
