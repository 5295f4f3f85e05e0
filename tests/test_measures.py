"""Secondary measures of a run, on small hand-worked inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import demo_protocol as _protocol
from trials.errors import DataError
from trials.measures import (
    clinician_rating_measures,
    escalation_measures,
    reliability_measures,
    responder_indicator,
)


def _scored(rows):
    """rows: (participant, arm, visit, phq9, gad7)."""
    return pd.DataFrame(rows, columns=["participant", "arm", "visit", "phq9", "gad7"])


SCORED = _scored([
    ("a", "ai_cbt", 0, 20, 12), ("a", "ai_cbt", 12, 8, 6),       # response, recovery
    ("b", "ai_cbt", 0, 12, 9), ("b", "ai_cbt", 12, 11, 9),       # no change, still a case
    ("c", "usual_care", 0, 15, 7), ("c", "usual_care", 12, 4, 3),  # remission, recovery
    ("d", "usual_care", 0, 18, 10), ("d", "usual_care", 12, np.nan, np.nan),  # missing
])


def _responder(pid):
    return next(r for r in _protocol().responders if r.id == pid)


def test_response_is_half_the_baseline_or_better():
    # a: 20 -> 8 (60% down: yes); b: 12 -> 11 (no); c: 15 -> 4 (yes); d: missing.
    ind = responder_indicator(_protocol(), SCORED, _responder("phq9_response"))
    assert [ind["a"], ind["b"], ind["c"]] == [True, False, True]
    assert ind.isna()["d"]  # missing follow-up: not a non-responder


def test_remission_below_five():
    ind = responder_indicator(_protocol(), SCORED, _responder("phq9_remission"))
    assert [ind["a"], ind["b"], ind["c"]] == [False, False, True]


def test_reliable_improvement_uses_the_instrument_criterion_of_six_points():
    # a: -12 (yes), b: -1 (no), c: -11 (yes).
    ind = responder_indicator(_protocol(), SCORED, _responder("phq9_reliable_improvement"))
    assert [ind["a"], ind["b"], ind["c"]] == [True, False, True]


def test_recovery_needs_both_measures_below_caseness():
    # caseness PHQ-9 >= 10 or GAD-7 >= 8. a: 8/6 at follow-up (recovered); b: 11 (case);
    # c: baseline 15 (case) -> 4/3 (recovered).
    ind = responder_indicator(_protocol(), SCORED, _responder("recovery"))
    assert [ind["a"], ind["b"], ind["c"]] == [True, False, True]
    assert ind.isna()["d"]


def _reliability(**over):
    def edit(p):
        p["reliability"].update(over)
    return _protocol(edit)


def test_downtime_is_clipped_to_the_period_and_overlaps_merged():
    proto = _reliability(period_start="2026-01-01T00:00", period_end="2026-01-11T00:00")
    log = pd.DataFrame({
        "start": ["2025-12-31T23:00", "2026-01-05T10:00", "2026-01-05T11:00", "2026-02-01T00:00"],
        "end": ["2026-01-01T01:00", "2026-01-05T12:00", "2026-01-05T13:00", "2026-02-01T05:00"],
    })
    out = reliability_measures(proto, log)
    # 1 h inside the period from the first; 10:00-13:00 merged = 3 h; the last is outside.
    assert out["downtime_hours"] == pytest.approx(4.0)
    assert out["period_hours"] == pytest.approx(240.0)
    assert out["availability"] == pytest.approx(1 - 4 / 240)
    assert out["incidents"] == 3


def test_downtime_end_before_start_names_the_file_row(tmp_path):
    from trials.data import read_table

    path = tmp_path / "downtime.csv"
    pd.DataFrame({"start": ["2026-02-01T03:00", "2026-02-01T05:00"],
                  "end": ["2026-02-01T04:00", "2026-02-01T04:00"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="row 3: start and end"):
        reliability_measures(_protocol(), read_table(path))


def test_downtime_mixing_time_zones_is_one_line_error():
    def utc_period(p):
        p["reliability"]["period_start"] = "2026-01-05T00:00+00:00"
        p["reliability"]["period_end"] = "2026-09-30T23:59+00:00"
    log = pd.DataFrame({"start": ["2026-02-01T03:00"], "end": ["2026-02-01T04:00"]})
    with pytest.raises(DataError, match="time zone"):
        reliability_measures(_protocol(utc_period), log)


def test_clinician_ratings_scored_on_the_declared_instrument():
    log = pd.DataFrame({"clinician_id": [f"c{i}" for i in range(6)],
                        "clinsat_1": [5, 4, 3, 4, 5, 2], "clinsat_2": [5, 4, 3, 4, 5, 2],
                        "clinsat_3": [5, 4, 3, 4, 5, 2], "clinsat_4": [5, 4, 3, 4, 5, 2]})
    out = clinician_rating_measures(_protocol(), log)
    # CLIN-SAT is the mean of 4 items: totals 5, 4, 3, 4, 5, 2 -> mean 23/6.
    assert out["clinicians"] == 6
    assert out["mean"] == pytest.approx(23 / 6)
    assert out["median"] == pytest.approx(4.0)


def test_too_few_clinicians_are_suppressed():
    log = pd.DataFrame({"clinician_id": ["c1", "c2"], **{f"clinsat_{j}": [4, 5]
                                                         for j in range(1, 5)}})
    out = clinician_rating_measures(_protocol(), log)
    assert out["clinicians"] == "<5" and out["mean"] is None


def test_missing_required_log_is_refused():
    with pytest.raises(DataError, match="requires an escalation log"):
        escalation_measures(_protocol(), SCORED, None)


def test_flag_without_escalation_is_missed():
    scored = pd.DataFrame({
        "participant": ["a", "a", "b"], "arm": ["ai_cbt", "ai_cbt", "usual_care"],
        "visit": [0, 4, 4], "completed_at": ["2026-02-01T10:00", "2026-03-01T10:00",
                                             "2026-03-02T09:00"],
        "flag_phq9_item9": pd.array([True, False, True], dtype="boolean"),
    })
    log = pd.DataFrame({"participant_id": ["a"], "week": ["0"],
                        "contact_time": ["2026-02-01T12:30"], "outcome": ["safety plan"]})
    esc = escalation_measures(_protocol(), scored, log)
    assert esc.estimates["missed_escalations"].estimate == 1
    overall = esc.summary.loc["overall"]
    assert overall["n_flags"] == 2 and overall["n_within_limit"] == 1
    assert overall["median_hours"] == pytest.approx(2.5)


def test_log_missing_a_protocol_column_is_one_line(tmp_path):
    from trials.measures import read_logs

    path = tmp_path / "adverse_events.csv"
    pd.DataFrame({"participant_id": ["a"], "term": ["headache"]}).to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_logs({"adverse_events": path}, _protocol())
    assert str(info.value) == (f"{path}: column(s) 'serious' missing from the adverse events "
                               "log")


def test_log_rows_are_numbered_as_in_the_file(tmp_path):
    from trials.data import read_table

    path = tmp_path / "log.csv"
    pd.DataFrame({"a": [1, 2, 3]}).to_csv(path, index=False)
    assert list(read_table(path).index) == [2, 3, 4]  # line 1 is the header


def test_red_flag_id_cannot_shadow_a_safety_measure():
    from trials.errors import ProtocolError

    def clash(p):
        p["safety"]["red_flags"][0]["id"] = "sae_any"
        p["criteria"] = [c for c in p["criteria"] if c.get("safety") != "phq9_item9"]
    with pytest.raises(ProtocolError, match="reserved for a safety measure"):
        _protocol(clash)
