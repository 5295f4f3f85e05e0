"""Clinical change definitions on hand-worked examples.

Each expectation is worked out in the comment beside it; none is recomputed with the code under
test. Thresholds are the NHS Talking Therapies ones (PHQ-9 caseness 10, reliable change 6;
GAD-7 caseness 8, reliable change 4) unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from outcomes.change import (
    JT_LABELS,
    caseness,
    jacobson_truax,
    jt_cutoff,
    mcid_responder,
    paired_reliable_deterioration,
    paired_reliable_improvement,
    recovery,
    reliable_change_threshold,
    reliable_deterioration,
    reliable_improvement,
    reliable_recovery,
    remission,
    response,
    standard_error_difference,
)

NA = pd.NA


def _as_list(s: pd.Series) -> list:
    assert str(s.dtype) == "boolean"
    return [NA if v is NA else bool(v) for v in s]


# ---- response -------------------------------------------------------------------------------


def test_response_fifty_percent_hand_worked():
    ids = pd.Index(["p1", "p2", "p3", "p4", "p5", "p6"], name="participant")
    baseline = pd.Series([20, 20, 15, 15, 10, 27], index=ids)
    follow_up = pd.Series([10, 11, 7, 8, 14, 0], index=ids)
    out = response(baseline, follow_up)
    # p1: 20 - 10 = 10 >= 0.5 * 20 = 10      -> True (boundary counts)
    # p2: 20 - 11 = 9  <  10                 -> False
    # p3: 15 - 7  = 8  >= 0.5 * 15 = 7.5     -> True
    # p4: 15 - 8  = 7  <  7.5                -> False
    # p5: 10 - 14 = -4 <  5 (got worse)      -> False
    # p6: 27 - 0  = 27 >= 13.5               -> True
    assert _as_list(out) == [True, False, True, False, False, True]
    assert out.index.equals(ids)
    assert out.name == "response"


def test_response_baseline_zero_and_missing_are_na():
    baseline = pd.Series([0, 0, np.nan, 12], dtype="float64")
    follow_up = pd.Series([0, 3, 5, np.nan])
    # Baseline 0: proportional reduction 0/0 is undefined, so not assessable (NA), whatever the
    # follow-up. Missing baseline or follow-up: NA, never False.
    assert _as_list(response(baseline, follow_up)) == [NA, NA, NA, NA]


def test_response_other_fraction_is_exact_at_the_boundary():
    # fraction 0.3 of baseline 10 is 3 points; 0.3 * 10 == 3.0000000000000004 in floating
    # point, so a reduction of exactly 3 must still count. 10 -> 7: 3 >= 3 True;
    # 10 -> 8: 2 < 3 False.
    out = response(pd.Series([10, 10]), pd.Series([7, 8]), fraction=0.3)
    assert _as_list(out) == [True, False]


def test_response_nullable_integer_input():
    baseline = pd.Series([18, pd.NA, 12], dtype="Int64")
    follow_up = pd.Series([9, 4, pd.NA], dtype="Int64")
    # 18 -> 9: 9 >= 9 True; the others have a missing score.
    assert _as_list(response(baseline, follow_up)) == [True, NA, NA]


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_response_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        response(pd.Series([10]), pd.Series([5]), fraction=fraction)


def test_response_rejects_negative_scores():
    with pytest.raises(ValueError, match=">= 0"):
        response(pd.Series([-1]), pd.Series([0]))


# ---- remission and caseness -------------------------------------------------------------------


def test_remission_below_threshold():
    # PHQ-9 remission < 5: 4 yes, 5 no (not strictly below), missing NA, 0 yes.
    out = remission(pd.Series([4, 5, np.nan, 0]), threshold=5)
    assert _as_list(out) == [True, False, NA, True]


def test_caseness_phq9_and_gad7():
    # PHQ-9 >= 10: 9 no, 10 yes (boundary), 27 yes, missing NA.
    assert _as_list(caseness(pd.Series([9, 10, 27, np.nan]), threshold=10)) == [
        False, True, True, NA]
    # GAD-7 >= 8: 7 no, 8 yes.
    assert _as_list(caseness(pd.Series([7, 8]), threshold=8)) == [False, True]


# ---- reliable improvement / deterioration and MCID ---------------------------------------------


def test_reliable_improvement_and_deterioration_phq9():
    baseline = pd.Series([18, 18, 18, 18, np.nan, 18])
    follow_up = pd.Series([12, 13, 24, 25, 3, 18])
    # changes (follow-up - baseline): -6, -5, +6, +7, NA, 0; criterion 6 points.
    assert _as_list(reliable_improvement(baseline, follow_up, rci_points=6)) == [
        True, False, False, False, NA, False]
    assert _as_list(reliable_deterioration(baseline, follow_up, rci_points=6)) == [
        False, False, True, True, NA, False]


def test_reliable_change_higher_is_better():
    # A wellbeing scale (higher is better), criterion 8 points:
    # 40 -> 48 (+8) improved; 40 -> 32 (-8) deteriorated; 40 -> 47 (+7) neither.
    b, f = pd.Series([40, 40, 40]), pd.Series([48, 32, 47])
    assert _as_list(reliable_improvement(b, f, 8, higher_is_better=True)) == [True, False, False]
    assert _as_list(reliable_deterioration(b, f, 8, higher_is_better=True)) == [
        False, True, False]
    # The same numbers read as a symptom scale swap the two.
    assert _as_list(reliable_improvement(b, f, 8)) == [False, True, False]


def test_mcid_responder_both_directions():
    # Symptom scale, MCID 5: 15 -> 10 (-5) yes; 15 -> 11 (-4) no; missing NA.
    out = mcid_responder(pd.Series([15, 15, 15]), pd.Series([10, 11, np.nan]), mcid=5)
    assert _as_list(out) == [True, False, NA]
    # Item-mean scale, higher better, MCID 0.5: 3.3 -> 3.8 is 0.4999999999999996 in floating
    # point but 0.5 in fact, so it counts; 3.3 -> 3.7 (0.4) does not.
    out = mcid_responder(pd.Series([3.3, 3.3]), pd.Series([3.8, 3.7]), 0.5, higher_is_better=True)
    assert _as_list(out) == [True, False]


def test_inputs_must_share_an_index():
    with pytest.raises(ValueError, match="index"):
        reliable_improvement(pd.Series([10], index=["a"]), pd.Series([2], index=["b"]), 6)


def test_non_numeric_scores_are_refused():
    with pytest.raises(ValueError, match="numeric"):
        caseness(pd.Series(["ten"]), 10)


@pytest.mark.parametrize("points", [0, -6, math.inf])
def test_criterion_must_be_positive(points):
    with pytest.raises(ValueError, match="rci_points"):
        reliable_improvement(pd.Series([10]), pd.Series([2]), points)


# ---- NHS Talking Therapies recovery -------------------------------------------------------------

# (PHQ-9 baseline, PHQ-9 follow-up, GAD-7 baseline, GAD-7 follow-up); thresholds 10 / 8,
# reliable change 6 / 4.
PAIRED = pd.DataFrame(
    [
        # A: case (15>=10); after 8<10 and 6<8 -> recovered; -7 (RI) and -6 (RI) -> reliable.
        ("A", 15, 8, 12, 6),
        # B: case (11, 9); after 9<10, 7<8 -> recovered; -2 and -2: no RI -> not reliable.
        ("B", 11, 9, 9, 7),
        # C: case via PHQ-9; GAD-7 after 9>=8 still a case -> not recovered.
        ("C", 15, 8, 5, 9),
        # D: 8<10 and 6<8 at baseline: not a case -> excluded (NA) from recovery.
        ("D", 8, 2, 6, 1),
        # E: case; PHQ-9 after 12>=10 -> not recovered although -8 is a reliable improvement.
        ("E", 20, 12, 14, 10),
        # F: case; GAD-7 after 8>=8 (boundary) -> not recovered.
        ("F", 16, 9, 3, 8),
        # G: PHQ-9 follow-up missing -> NA.
        ("G", 12, None, 10, 5),
        # H: case (16); after 9<10, 7<8 -> recovered; PHQ-9 -7 is RI but GAD-7 +5 >= 4 is
        #    reliable deterioration -> not reliable improvement -> not reliable recovery.
        ("H", 16, 9, 2, 7),
        # I: case at exactly 10; after 9<10, 3<8 -> recovered; -1, 0: not reliable.
        ("I", 10, 9, 3, 3),
        # J: GAD-7 baseline missing -> NA (paired scores required) even though PHQ-9 5 < 10.
        ("J", 5, 4, None, 2),
        # K: case (10); PHQ-9 +7 (RD), GAD-7 0 -> not recovered; reliable deterioration.
        ("K", 10, 17, 8, 8),
    ],
    columns=["id", "d1", "d2", "a1", "a2"],
).set_index("id")

THRESHOLDS = {"depression_threshold": 10, "anxiety_threshold": 8}
RCI = {"depression_rci": 6, "anxiety_rci": 4}


def _paired(fn, **kw):
    p = PAIRED
    return dict(zip(p.index, _as_list(fn(p.d1, p.d2, p.a1, p.a2, **kw)), strict=True))


def test_recovery_nhs_talking_therapies():
    assert _paired(recovery, **THRESHOLDS) == {
        "A": True, "B": True, "C": False, "D": NA, "E": False, "F": False,
        "G": NA, "H": True, "I": True, "J": NA, "K": False,
    }


def test_reliable_recovery_nhs_talking_therapies():
    assert _paired(reliable_recovery, **THRESHOLDS, **RCI) == {
        "A": True, "B": False, "C": False, "D": NA, "E": False, "F": False,
        "G": NA, "H": False, "I": False, "J": NA, "K": False,
    }


def test_paired_reliable_improvement_and_deterioration():
    # Not restricted to baseline cases: D (8->2: -6 RI, 6->1: -5 RI) counts as improved.
    # E: -8 (RI) and -4 (RI, boundary) -> improved.
    # Mixed results count as neither improved nor deteriorated: C (PHQ-9 -7 RI, GAD-7 +4 RD
    # at the boundary), F (-7 RI, +5 RD) and H (-7 RI, +5 RD).
    assert _paired(paired_reliable_improvement, **RCI) == {
        "A": True, "B": False, "C": False, "D": True, "E": True, "F": False,
        "G": NA, "H": False, "I": False, "J": NA, "K": False,
    }
    # Only K (+7 on PHQ-9, 0 on GAD-7) reliably deteriorated.
    assert _paired(paired_reliable_deterioration, **RCI) == {
        "A": False, "B": False, "C": False, "D": False, "E": False, "F": False,
        "G": NA, "H": False, "I": False, "J": NA, "K": True,
    }


# ---- Jacobson & Truax (1991) ---------------------------------------------------------------

# Jacobson NS, Truax P. J Consult Clin Psychol 1991;59:12-19.
# Worked by hand: SD 7.5, r_xx 0.88
#   S_E    = 7.5 * sqrt(1 - 0.88) = 7.5 * sqrt(0.12) = 7.5 * 0.3464102 = 2.5980762
#   S_diff = sqrt(2 * S_E^2) = sqrt(2) * 2.5980762 = 1.4142136 * 2.5980762 = 3.6742346
#   criterion in points = 1.96 * 3.6742346 = 7.2014998 (about 7.2 points)


def test_jacobson_truax_s_diff_and_threshold():
    assert standard_error_difference(7.5, 0.88) == pytest.approx(3.6742346, abs=1e-7)
    assert reliable_change_threshold(7.5, 0.88) == pytest.approx(7.2014998, abs=1e-7)
    # z = 1.645 (one-sided 5%): 1.645 * 3.6742346 = 6.0441159
    assert reliable_change_threshold(7.5, 0.88, z=1.645) == pytest.approx(6.0441159, abs=1e-7)


def test_jacobson_truax_rci_and_classification():
    ids = pd.Index(["a", "b", "c", "d", "e"])
    baseline = pd.Series([20, 20, 10, 20, 20], index=ids)
    follow_up = pd.Series([12, 13, 18, np.nan, 20], index=ids)
    out = jacobson_truax(baseline, follow_up, sd=7.5, reliability=0.88)
    # a: -8 / 3.6742346 = -2.1773242 -> |RC| > 1.96, towards lower scores -> improved
    # b: -7 / 3.6742346 = -1.9051587 -> not beyond 1.96 -> no reliable change
    # c: +8 / 3.6742346 = +2.1773242 -> deteriorated
    # d: follow-up missing -> RCI NaN, classification missing
    # e: 0 -> no reliable change
    assert out.loc["a", "rci"] == pytest.approx(-2.1773242, abs=1e-7)
    assert out.loc["b", "rci"] == pytest.approx(-1.9051587, abs=1e-7)
    assert out.loc["c", "rci"] == pytest.approx(2.1773242, abs=1e-7)
    assert math.isnan(out.loc["d", "rci"])
    assert list(out["change"].iloc[[0, 1, 2, 4]]) == [-8, -7, 8, 0]
    labels = out["classification"]
    assert list(labels.cat.categories) == list(JT_LABELS)
    assert labels["a"] == "reliably improved"
    assert labels["b"] == "no reliable change"
    assert labels["c"] == "reliably deteriorated"
    assert pd.isna(labels["d"])
    assert labels["e"] == "no reliable change"


def test_jacobson_truax_higher_is_better_flips_labels():
    out = jacobson_truax(pd.Series([40, 40]), pd.Series([48, 32]), sd=7.5, reliability=0.88,
                         higher_is_better=True)
    # +8 -> RC +2.18 towards better health -> improved; -8 -> deteriorated.
    assert list(out["classification"]) == ["reliably improved", "reliably deteriorated"]


@pytest.mark.parametrize(("sd", "r"), [(0, 0.8), (-1, 0.8), (7.5, 1.0), (7.5, -0.1)])
def test_jacobson_truax_rejects_bad_parameters(sd, r):
    with pytest.raises(ValueError):
        standard_error_difference(sd, r)


def test_jt_cutoffs_lower_is_better():
    # Clinical M1 = 18, s1 = 5; normal M0 = 4, s0 = 4.
    #   a = 18 - 2 * 5 = 8
    #   b = 4 + 2 * 4 = 12
    #   c = (s0 * M1 + s1 * M0) / (s0 + s1) = (4 * 18 + 5 * 4) / 9 = 92 / 9 = 10.2222222
    #   check: (c - 4) / 4 = 1.5555556 = (18 - c) / 5
    cut = jt_cutoff(18, 5, 4, 4)
    assert cut.a == pytest.approx(8.0, abs=1e-12)
    assert cut.b == pytest.approx(12.0, abs=1e-12)
    assert cut.c == pytest.approx(92 / 9, abs=1e-12)
    assert cut.as_dict() == {"a": cut.a, "b": cut.b, "c": cut.c}


def test_jt_cutoffs_higher_is_better():
    # Clinical M1 = 40, s1 = 6; normal M0 = 52, s0 = 8.
    #   a = 40 + 2 * 6 = 52;  b = 52 - 2 * 8 = 36
    #   c = (8 * 40 + 6 * 52) / 14 = (320 + 312) / 14 = 632 / 14 = 45.1428571
    cut = jt_cutoff(40, 6, 52, 8, higher_is_better=True)
    assert (cut.a, cut.b) == (pytest.approx(52.0), pytest.approx(36.0))
    assert cut.c == pytest.approx(632 / 14, abs=1e-12)


def test_jt_cutoff_without_norms_gives_a_only():
    cut = jt_cutoff(18, 5)
    assert (cut.a, cut.b, cut.c) == (8.0, None, None)


def test_jt_cutoff_checks_norms():
    with pytest.raises(ValueError, match="both"):
        jt_cutoff(18, 5, mean_normal=4)
    with pytest.raises(ValueError, match="below"):
        jt_cutoff(18, 5, 20, 4)  # a "normal" mean worse than the clinical one
