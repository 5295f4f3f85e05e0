"""The pandera schema generated from the protocol and the instrument definitions."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pytest

from trials.data import read_data
from trials.errors import DataError
from trials.protocol import load_protocol
from trials.schema import build_schema


@pytest.fixture
def protocol(demo_study):
    return load_protocol(demo_study[0])


def _text(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def test_schema_has_a_column_per_protocol_field_and_item(protocol, demo_study):
    frame = _text(demo_study[1])
    schema, rules = build_schema(protocol, frame, list(frame.columns))
    assert isinstance(schema, pa.DataFrameSchema)
    for c in ("participant_id", "arm", "week", "completed_at", "phq9_9", "gad7_7", "csq8_8",
              "sus_10"):
        assert c in schema.columns, c
    checks = {ch.name for ch in schema.columns["sus_1"].checks}
    assert checks == {"whole_number", "sus_item_range", "sus_scheduled"}
    assert {"known_arm", "known_visit", "date_time", "csq8_item_range"} <= set(rules)


def test_item_range_comes_from_the_instrument_definition(protocol, demo_study, tmp_path):
    frame = _text(demo_study[1])
    row = frame.index[frame["week"] == "12"][0]
    frame.loc[row, "csq8_1"] = "0"  # CSQ-8 items run 1..4
    frame.loc[row, "sus_1"] = "6"  # SUS items run 1..5
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_data([path], protocol)
    lines = info.value.problems
    assert lines == [
        f"{path}: row {row + 2}, column 'csq8_1': '0' outside CSQ-8 item range 1..4 "
        "[rule csq8_item_range]",
        f"{path}: row {row + 2}, column 'sus_1': '6' outside SUS item range 1..5 "
        "[rule sus_item_range]",
    ]


def test_every_problem_names_file_row_column_value_and_rule(protocol, demo_study, tmp_path):
    frame = _text(demo_study[1])
    frame.loc[0, "completed_at"] = "yesterday"
    frame.loc[1, "arm"] = "placebo"
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_data([path], protocol)
    assert info.value.problems == [
        f"{path}: row 3, column 'arm': unknown arm 'placebo' (protocol arms: usual_care, ai_cbt) "
        "[rule known_arm]",
        f"{path}: row 2, column 'completed_at': 'yesterday' is not a date-time (ISO 8601, e.g. "
        "2026-03-04T14:30) [rule date_time]",
        f"{path}: rows 2, 3, 4, 5, column 'arm': differs between visits of participant "
        "'CMP-0001' (must be constant) [rule constant_per_participant]",
    ]
