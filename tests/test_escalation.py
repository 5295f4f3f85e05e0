"""Safety escalation timeliness: matching flags to the escalation log, summaries, Estimates.

Every expected number below is worked by hand from the small tables in this file.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.escalation import escalation_estimates, escalation_summary
from analysis.proportions import wilson_interval
from outcomes.escalation import EscalationMatch, match_escalations
from trials.decision import evaluate_criterion
from trials.io import canonical_json
from trials.protocol import Criterion

LIMIT = 24.0


def _flags() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant": ["p1", "p2", "p3", "p4", "p1"],
            "arm": ["a", "a", "b", "b", "a"],
            "visit": [2, 4, 2, 6, 6],
            "flag_time": ["2024-03-01 09:00", "2024-03-02 10:00", "2024-03-03 08:00",
                          "2024-03-04 12:00", "2024-03-10 09:00"],
        },
        index=[10, 11, 12, 13, 14],
    )


def _log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant": ["p1", "p2", "p3", "p1", "p1", "p5", "p1"],
            "visit": [2, 4, 2, 6, 6, 2, 8],
            "contact_time": ["2024-03-01 15:00",  # p1 v2: 6 h, on time
                             "2024-03-03 22:00",  # p2 v4: 36 h, late
                             None,                # p3 v2: logged, never contacted
                             None,                # p1 v6: failed attempt ...
                             "2024-03-11 09:00",  # ... then contact at exactly 24 h
                             "2024-03-01 10:00",  # p5: no flag at all
                             "2024-03-20 10:00"],  # p1 v8: no flag at that visit
            "outcome": ["safety plan", "urgent referral", "no further action", "no answer",
                        " safety plan ", "safety plan", "safety plan"],
        },
        index=list("abcdefg"),
    )


@pytest.fixture
def matched() -> EscalationMatch:
    return match_escalations(_flags(), _log(), limit_hours=LIMIT)


# --------------------------------------------------------------------------- matching


def test_each_flag_gets_its_escalation(matched):
    f = matched.flags
    assert list(f.index) == [10, 11, 12, 13, 14]
    assert f["escalated"].tolist() == [True, True, True, False, True]
    assert f["n_log_entries"].tolist() == [1, 1, 1, 0, 2]
    assert f["hours_to_contact"].iloc[:2].tolist() == [6.0, 36.0]
    assert math.isnan(f.at[12, "hours_to_contact"]) and math.isnan(f.at[13, "hours_to_contact"])
    assert f.at[14, "hours_to_contact"] == 24.0
    # within the limit is inclusive; missed = no log entry or no contact time
    assert f["within_limit"].tolist() == [True, False, False, False, True]
    assert f["missed"].tolist() == [False, False, True, True, False]
    assert f["outcome"].tolist() == ["safety plan", "urgent referral", "no further action",
                                     None, "safety plan"]
    # the entry with the earliest contact is the one used
    assert f["log_row"].tolist() == ["a", "b", "c", None, "e"]


def test_log_entries_without_a_flag_are_reported(matched):
    u = matched.unmatched_log
    assert list(u.index) == ["f", "g"]
    assert u["reason"].tolist() == ["no flag for this participant", "no flag at this visit"]


def test_inputs_are_not_changed():
    flags, log = _flags(), _log()
    before = flags.copy(), log.copy()
    match_escalations(flags, log, limit_hours=LIMIT)
    pd.testing.assert_frame_equal(flags, before[0])
    pd.testing.assert_frame_equal(log, before[1])


def test_match_by_time_within_tolerance():
    flags = pd.DataFrame({"participant": ["p1", "p1", "p2"], "arm": ["a", "a", "b"],
                          "flag_time": ["2024-01-01 09:00", "2024-01-01 09:20",
                                        "2024-01-02 09:00"]})
    log = pd.DataFrame({"participant": ["p1", "p2"],
                        "flagged_at": ["2024-01-01 09:10", "2024-01-02 09:30"],
                        "contact_time": ["2024-01-01 11:00", "2024-01-02 10:00"],
                        "outcome": ["safety plan", "safety plan"]})
    m = match_escalations(flags, log, limit_hours=LIMIT, by="time", tolerance="15min",
                          log_flag_time="flagged_at")
    # 09:10 is 10 min from both p1 flags: the tie goes to the earlier flag
    assert m.flags["escalated"].tolist() == [True, False, False]
    assert m.flags.at[0, "hours_to_contact"] == 2.0
    assert m.unmatched_log["reason"].tolist() == ["no flag within 0 days 00:15:00 of this flag "
                                                  "time"]


def test_aware_timestamps_compare_as_instants():
    flags = pd.DataFrame({"participant": ["p1"], "arm": ["a"], "visit": [1],
                          "flag_time": ["2024-03-01T09:00+01:00"]})
    log = pd.DataFrame({"participant": ["p1"], "visit": [1],
                        "contact_time": ["2024-03-01T10:00Z"], "outcome": ["safety plan"]})
    m = match_escalations(flags, log, limit_hours=LIMIT)
    assert m.flags.at[0, "hours_to_contact"] == 2.0


def test_aware_flags_with_no_contact_at_all():
    flags = pd.DataFrame({"participant": [7], "arm": ["a"], "visit": [1.0],
                          "flag_time": ["2024-03-01T09:00+01:00"]})
    log = pd.DataFrame({"participant": [7], "visit": [1], "contact_time": [float("nan")],
                        "outcome": [None]})
    m = match_escalations(flags, log, limit_hours=LIMIT)
    assert m.flags["escalated"].tolist() == [True] and m.flags["missed"].tolist() == [True]
    assert m.flags["outcome"].tolist() == ["not recorded"]


def test_datetime_columns_are_accepted():
    flags = _flags().assign(flag_time=lambda d: pd.to_datetime(d["flag_time"]))
    log = _log().assign(contact_time=lambda d: pd.to_datetime(d["contact_time"]))
    m = match_escalations(flags, log, limit_hours=LIMIT)
    assert m.flags["hours_to_contact"].iloc[:2].tolist() == [6.0, 36.0]


# --------------------------------------------------------------------------- summary


def test_summary_by_arm_and_overall(matched):
    s = escalation_summary(matched)
    assert list(s.index) == ["a", "b", "overall"]
    a, b, tot = s.loc["a"], s.loc["b"], s.loc["overall"]
    assert (a["n_flags"], a["n_escalated"], a["n_contacted"], a["n_within_limit"]) == (3, 3, 3, 2)
    assert (b["n_flags"], b["n_escalated"], b["n_contacted"], b["n_within_limit"]) == (2, 1, 0, 0)
    assert (tot["n_flags"], tot["n_escalated"], tot["n_within_limit"]) == (5, 4, 2)
    assert a["share_within_limit"] == pytest.approx(2 / 3)
    assert tot["share_within_limit"] == pytest.approx(0.4)
    # Wilson interval (checked against R's prop.test in test_reference_proportions)
    assert (tot["ci_lower"], tot["ci_upper"]) == pytest.approx(wilson_interval(2, 5))
    # hours 6, 24, 36: median 24, quartiles by linear interpolation 15 and 30
    assert (a["median_hours"], a["q1_hours"], a["q3_hours"]) == (24.0, 15.0, 30.0)
    assert math.isnan(b["median_hours"])
    assert (a["n_missed"], b["n_missed"], tot["n_missed"]) == (0, 2, 2)
    # p1's visit-8 entry belongs to arm a; p5 has no known arm, so only the total counts it
    assert (a["n_log_without_flag"], b["n_log_without_flag"], tot["n_log_without_flag"]) == (
        1, 0, 2)
    assert a["outcome_counts"] == {"safety plan": 2, "urgent referral": 1}
    assert tot["outcome_counts"] == {"no further action": 1, "safety plan": 2,
                                     "urgent referral": 1}
    assert tot["limit_hours"] == LIMIT and tot["ci_level"] == 0.95


def test_summary_at_another_limit(matched):
    s = escalation_summary(matched, limit_hours=48)
    assert s.at["a", "n_within_limit"] == 3


def test_summary_of_a_plain_frame_needs_the_limit(matched):
    s = escalation_summary(matched.flags, "arm", 24)
    assert s.at["overall", "n_within_limit"] == 2
    with pytest.raises(ValueError, match="limit_hours is required"):
        escalation_summary(matched.flags, "arm")


# --------------------------------------------------------------------------- estimates


def test_estimates_fields(matched):
    est = escalation_estimates(matched)
    missed, within = est["missed_escalations"], est["escalation_within_limit"]
    assert (missed.analysis, missed.estimand, missed.engine, missed.model) == (
        "missed_escalations", "missed_escalations", "exact", "count")
    assert missed.estimate == 2.0
    assert math.isnan(missed.ci_lower) and math.isnan(missed.std_error)
    assert missed.n_analysed == 5 and dict(missed.n_by_arm) == {"a": 3, "b": 2}
    assert dict(missed.details["events"]) == {"a": 0, "b": 2}
    assert missed.warnings == ("2 escalation log entries matched no red flag",)
    assert within.analysis == "escalation_within_limit" and within.engine == "exact"
    assert within.estimate == pytest.approx(0.4)
    assert (within.ci_lower, within.ci_upper) == pytest.approx(wilson_interval(2, 5))
    assert within.ci_level == 0.95 and within.details["limit_hours"] == LIMIT
    assert dict(within.details["events"]) == {"a": 2, "b": 0}
    assert within.std_error == pytest.approx(math.sqrt(0.4 * 0.6 / 5))
    assert '"estimate": 2.0' in canonical_json(missed.to_dict())


def test_estimates_feed_harm_criteria(matched):
    est = escalation_estimates(matched)
    any_missed = Criterion(id="no_missed", kind="harm", label="any missed escalation",
                           safety="missed_escalations", statistic="estimate", comparator=">",
                           threshold=0)
    slow = Criterion(id="slow", kind="harm", label="under 80% contacted in time",
                     safety="escalation_within_limit", statistic="ci_upper", comparator="<",
                     threshold=0.8)
    r = evaluate_criterion(any_missed, est["missed_escalations"])
    assert r.met is True and r.observed == 2.0
    r = evaluate_criterion(slow, est["escalation_within_limit"])
    assert r.met is True and r.observed == pytest.approx(wilson_interval(2, 5)[1])


def test_no_flags_gives_an_undefined_share():
    flags = _flags().iloc[:0]
    est = escalation_estimates(match_escalations(flags, _log().iloc[:0], limit_hours=LIMIT))
    assert est["missed_escalations"].estimate == 0.0
    assert math.isnan(est["escalation_within_limit"].estimate)
    assert "no red flags" in est["escalation_within_limit"].warnings[0]


# --------------------------------------------------------------------------- invalid input


def _one_line(excinfo: pytest.ExceptionInfo[ValueError]) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_contact_before_flag_names_the_row():
    log = _log()
    log.loc["b", "contact_time"] = "2024-03-02 09:59"
    with pytest.raises(ValueError) as e:
        match_escalations(_flags(), log, limit_hours=LIMIT)
    assert "log row 'b' (participant 'p2')" in _one_line(e) and "before" in _one_line(e)


def test_mixed_aware_and_naive_in_one_column():
    flags = _flags()
    flags.loc[11, "flag_time"] = "2024-03-02T10:00+00:00"
    with pytest.raises(ValueError) as e:
        match_escalations(flags, _log(), limit_hours=LIMIT)
    assert "mixes time-zone-aware (row 11) and naive (row 10)" in _one_line(e)


def test_aware_flags_with_naive_contacts():
    flags = _flags().assign(flag_time=lambda d: d["flag_time"] + "+00:00")
    with pytest.raises(ValueError) as e:
        match_escalations(flags, _log(), limit_hours=LIMIT)
    assert "time-zone-aware but log 'contact_time' is naive" in _one_line(e)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f, g: (f.drop(columns="arm"), g), "flags lacks column(s) 'arm'"),
        (lambda f, g: (f, g.drop(columns="outcome")), "escalation log lacks column(s)"),
        (lambda f, g: (f.assign(visit=[2, 4, 2, 6, 2]), g), "share participant and visit"),
        (lambda f, g: (f, g.assign(visit=g["visit"].astype(str))), "keys must be of the same"),
        (lambda f, g: (f.assign(flag_time=["x", *f["flag_time"][1:]]), g), "row 10: 'x' is not"),
        (lambda f, g: (f.assign(arm=["a", None, "b", "b", "a"]), g), "row 11: 'arm' is missing"),
        (lambda f, g: (f.assign(flag_time=[1.5, *f["flag_time"][1:]]), g), "is not a timestamp"),
        (lambda f, g: (f.assign(escalated=True), g), "already has column(s) 'escalated'"),
    ],
    ids=["no-arm", "no-outcome", "duplicate-key", "key-types", "bad-time", "no-arm-value",
         "number-as-time", "column-clash"],
)
def test_invalid_inputs(edit, message):
    flags, log = edit(_flags(), _log())
    with pytest.raises(ValueError) as e:
        match_escalations(flags, log, limit_hours=LIMIT)
    assert message in _one_line(e)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"limit_hours": 0}, "finite and positive"), ({"limit_hours": True}, "number of hours"),
     ({"limit_hours": 24, "by": "day"}, "by must be"),
     ({"limit_hours": 24, "tolerance": "soon"}, "tolerance must be")],
)
def test_invalid_options(kwargs, message):
    with pytest.raises(ValueError) as e:
        match_escalations(_flags(), _log(), **kwargs)
    assert message in _one_line(e)


def test_an_arm_called_overall_is_refused(matched):
    flags = matched.flags.assign(arm="overall")
    with pytest.raises(ValueError) as e:
        escalation_summary(flags, "arm", 24)
    assert "may not be called 'overall'" in _one_line(e)
