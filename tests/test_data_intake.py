"""Data intake: clean data pass; every problem is listed at once, one line each, naming the file,
row and column; direct identifiers are dropped; unreadable inputs fail in one line.

CSV row numbers count the header as line 1, so the frame row at position ``i`` is CSV row
``i + 2``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from trials.data import read_data
from trials.errors import DataError
from trials.protocol import Protocol, load_protocol

PARTICIPANT_LEVEL = ["practice", "severity_stratum", "age_group", "gender", "ethnicity",
                     "imd_quintile"]
ITEMS = ([f"phq9_{i}" for i in range(1, 10)] + [f"gad7_{i}" for i in range(1, 8)]
         + [f"csq8_{i}" for i in range(1, 9)] + [f"sus_{i}" for i in range(1, 11)])
COLUMNS = ["participant_id", "arm", "week", *PARTICIPANT_LEVEL, "completed_at", *ITEMS]


@pytest.fixture
def protocol(demo_study) -> Protocol:
    return load_protocol(demo_study[0])


@pytest.fixture
def csv_path(demo_study) -> Path:
    return demo_study[1]


def _as_text(path: Path) -> pd.DataFrame:
    """The CSV as the user wrote it: every cell text, empty cells as empty strings."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _row(position: int) -> int:
    return position + 2


def _problems(paths: list[Path], protocol: Protocol) -> list[str]:
    with pytest.raises(DataError) as info:
        read_data(paths, protocol)
    for line in [str(info.value), *info.value.problems]:
        assert "\n" not in line and line.strip(), f"not one line: {line!r}"
    return info.value.problems


# --------------------------------------------------------------------------- clean data


def test_clean_csv_passes_with_every_row_and_the_protocol_columns(protocol, csv_path):
    n_rows = len(csv_path.read_text(encoding="utf-8").splitlines()) - 1

    intake = read_data([csv_path], protocol)

    assert list(intake.frame.columns) == COLUMNS
    assert len(intake.frame) == n_rows
    assert intake.sources == ({
        "file": csv_path.name,
        "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
        "rows": n_rows,
        "content_sha256": intake.sources[0]["content_sha256"],
    },)
    assert len(intake.sources[0]["content_sha256"]) == 64
    assert intake.dropped_identifiers == ()


def test_clean_csv_gives_integer_visits_and_nullable_integer_items(protocol, csv_path):
    frame = read_data([csv_path], protocol).frame

    assert pd.api.types.is_integer_dtype(frame["week"])
    assert set(frame["week"]) == {0, 4, 8, 12}
    for c in ITEMS:
        assert frame[c].dtype == "Int64", c
    # GAD-7 is scheduled at weeks 0 and 12 only.
    assert frame.loc[frame["week"].isin([4, 8]), [c for c in ITEMS if c.startswith("gad7")]
                     ].isna().all().all()


def test_clean_csv_keeps_the_values_written(protocol, csv_path):
    text = _as_text(csv_path).sort_values(["participant_id", "week"], key=_visit_order)
    frame = read_data([csv_path], protocol).frame

    assert list(frame["participant_id"]) == list(text["participant_id"])
    for c in ITEMS:
        expected = [pd.NA if v == "" else int(v) for v in text[c]]
        assert frame[c].tolist() == expected, c


def test_clean_csv_does_not_change_the_file(protocol, csv_path):
    before = csv_path.read_bytes()

    read_data([csv_path], protocol)

    assert csv_path.read_bytes() == before


def test_parquet_of_the_same_text_gives_the_same_frame(protocol, csv_path, tmp_path):
    parquet = tmp_path / "demo.parquet"
    pd.read_csv(csv_path, dtype=str).to_parquet(parquet)

    from_csv = read_data([csv_path], protocol).frame
    from_parquet = read_data([parquet], protocol).frame

    pd.testing.assert_frame_equal(from_parquet, from_csv)


def test_parquet_written_by_pandas_gives_the_same_frame_as_csv(protocol, csv_path, tmp_path):
    parquet = tmp_path / "demo.parquet"
    pd.read_csv(csv_path).to_parquet(parquet)

    from_csv = read_data([csv_path], protocol).frame
    from_parquet = read_data([parquet], protocol).frame

    pd.testing.assert_frame_equal(from_parquet, from_csv)


def test_two_files_are_read_as_one_study(protocol, csv_path, tmp_path):
    text = _as_text(csv_path)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    text.iloc[:500].to_csv(first, index=False)
    text.iloc[500:].to_csv(second, index=False)

    intake = read_data([first, second], protocol)

    pd.testing.assert_frame_equal(intake.frame, read_data([csv_path], protocol).frame)
    assert [s["rows"] for s in intake.sources] == [500, len(text) - 500]


# --------------------------------------------------------------------------- every problem at once


@dataclass(frozen=True)
class Fault:
    rows: tuple[int, ...]
    column: str
    says: str


def _corrupt(text: pd.DataFrame) -> tuple[pd.DataFrame, list[Fault]]:
    """Plant one fault per participant; return the corrupted frame and the faults to expect."""
    visits = text.groupby("participant_id")["week"].transform("size")
    complete = list(dict.fromkeys(text.loc[visits == 4, "participant_id"]))
    single = text.index[visits == 1][0]

    def at(k: int, week: str) -> int:
        hit = text.index[(text["participant_id"] == complete[k]) & (text["week"] == week)]
        return int(hit[0])

    bad = text.copy()
    faults = []
    bad.loc[single, "arm"] = "placebo"
    faults.append(Fault((_row(single),), "arm", "unknown arm 'placebo'"))
    i = at(1, "4")
    bad.loc[i, "phq9_3"] = "7"
    faults.append(Fault((_row(i),), "phq9_3", "'7' outside PHQ-9 item range 0..3"))
    i = at(2, "4")
    bad.loc[i, "phq9_4"] = "1.5"
    faults.append(Fault((_row(i),), "phq9_4", "'1.5' is not a whole number"))
    i = at(3, "0")
    bad.loc[i, "gad7_2"] = "x"
    faults.append(Fault((_row(i),), "gad7_2", "'x' is not a whole number"))
    i = at(4, "8")
    bad.loc[i, "practice"] = "practice_99"
    rows = tuple(_row(at(4, w)) for w in ("0", "4", "8", "12"))
    faults.append(Fault(rows, "practice", "differs between visits"))
    i = at(5, "12")
    bad.loc[i, "participant_id"] = ""
    faults.append(Fault((_row(i),), "participant_id", "participant ID is empty"))
    i = at(6, "4")
    bad.loc[i, "gad7_1"] = "2"
    faults.append(Fault((_row(i),), "gad7_1", "gad7 is not scheduled at this visit"))
    i = at(7, "12")
    bad = pd.concat([bad, bad.loc[[i]]], ignore_index=True)  # the copy becomes the last row
    faults.append(Fault((_row(i), _row(len(bad) - 1)), "participant_id",
                        f"duplicate participant-visit (participant {complete[7]!r}, visit 12)"))
    i = at(0, "8")
    bad.loc[i, "week"] = "6"
    faults.append(Fault((_row(i),), "week", "unknown visit '6'"))
    return bad, faults


def _line_for(problems: list[str], path: Path, fault: Fault) -> list[str]:
    if len(fault.rows) == 1:
        where = [f"{path}: row {fault.rows[0]}, "]
    elif fault.says.startswith("duplicate"):
        where = [f"{path}: row {r}" for r in fault.rows]
    else:
        where = [f"{path}: rows {', '.join(map(str, fault.rows))}, "]
    return [p for p in problems
            if all(w in p for w in where) and f"'{fault.column}'" in p and fault.says in p]


def test_every_row_problem_is_listed_once_naming_file_row_and_column(protocol, csv_path,
                                                                      tmp_path):
    bad, faults = _corrupt(_as_text(csv_path))
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)

    problems = _problems([path], protocol)

    for fault in faults:
        assert len(_line_for(problems, path, fault)) == 1, (fault, problems)
    assert len(set(problems)) == len(problems)


def test_every_problem_line_points_at_a_corrupted_row(protocol, csv_path, tmp_path):
    bad, faults = _corrupt(_as_text(csv_path))
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    planted = {r for f in faults for r in f.rows}

    problems = _problems([path], protocol)

    for line in problems:
        assert line.startswith(f"{path}: row"), line
        assert ", column" in line, line
        rows = _row_numbers(line, path)
        assert rows and rows <= planted, line


def test_missing_column_is_listed_together_with_row_problems(protocol, csv_path, tmp_path):
    bad, faults = _corrupt(_as_text(csv_path))
    path = tmp_path / "bad.csv"
    bad.drop(columns="phq9_5").to_csv(path, index=False)

    problems = _problems([path], protocol)

    assert f"{path}: column 'phq9_5' is missing" in problems
    for fault in faults:
        assert len(_line_for(problems, path, fault)) == 1, (fault, problems)


def test_missing_item_column_is_named(protocol, csv_path, tmp_path):
    path = tmp_path / "bad.csv"
    _as_text(csv_path).drop(columns=["phq9_5", "practice"]).to_csv(path, index=False)

    problems = _problems([path], protocol)

    assert sorted(problems) == sorted([f"{path}: column 'phq9_5' is missing",
                                       f"{path}: column 'practice' is missing"])


def test_problems_in_a_second_file_name_that_file_and_its_own_row(protocol, csv_path, tmp_path):
    text = _as_text(csv_path)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    text.iloc[:500].to_csv(first, index=False)
    part = text.iloc[500:].reset_index(drop=True)
    part.loc[3, "phq9_1"] = "9"
    part.to_csv(second, index=False)

    problems = _problems([first, second], protocol)

    assert problems == [f"{second}: row 5, column 'phq9_1': '9' outside PHQ-9 item range 0..3 "
                        "[rule phq9_item_range]"]


def test_header_only_csv_names_the_file(protocol, csv_path, tmp_path):
    path = tmp_path / "empty.csv"
    _as_text(csv_path).iloc[:0].to_csv(path, index=False)

    problems = _problems([path], protocol)

    assert problems == [f"{path}: no data rows"]


def test_empty_participant_id_in_parquet_is_reported(protocol, csv_path, tmp_path):
    text = pd.read_csv(csv_path, dtype=str)  # missing items stay missing (null) in Parquet
    text.loc[5, "participant_id"] = ""
    path = tmp_path / "bad.parquet"
    text.to_parquet(path)

    problems = _problems([path], protocol)

    # Parquet has no header line: its first data row is row 1.
    assert problems == [f"{path}: row 6, column 'participant_id': participant ID is empty "
                        "[rule not_nullable]"]


# --------------------------------------------------------------------------- privacy


def test_direct_identifiers_are_dropped_and_never_returned(protocol, csv_path, tmp_path):
    text = _as_text(csv_path)
    text.insert(1, "email", [f"person{i}@example.org" for i in range(len(text))])
    text["postcode"] = "ZZ9 9ZZ"
    path = tmp_path / "with-identifiers.csv"
    text.to_csv(path, index=False)
    assert {"email", "postcode"} <= set(protocol.privacy.direct_identifiers)

    intake = read_data([path], protocol)

    assert intake.dropped_identifiers == ("email", "postcode")
    assert "email" not in intake.frame.columns and "postcode" not in intake.frame.columns
    everything = intake.frame.to_csv(index=False)
    assert "@example.org" not in everything and "ZZ9" not in everything


def test_direct_identifiers_are_dropped_before_any_check(protocol, csv_path, tmp_path):
    text = _as_text(csv_path)
    text["email"] = ""  # empty and non-constant values would fail a participant-level check
    text.loc[0, "email"] = "a@example.org"
    path = tmp_path / "with-identifiers.csv"
    text.to_csv(path, index=False)

    intake = read_data([path], protocol)

    assert intake.dropped_identifiers == ("email",)


def test_columns_the_protocol_does_not_name_are_not_kept(protocol, csv_path, tmp_path):
    text = _as_text(csv_path)
    text["clinician_note"] = "free text"
    path = tmp_path / "extra.csv"
    text.to_csv(path, index=False)

    intake = read_data([path], protocol)

    assert list(intake.frame.columns) == COLUMNS
    assert intake.dropped_identifiers == ()


# --------------------------------------------------------------------------- unreadable inputs


def test_unsupported_extension_is_one_line(protocol, csv_path, tmp_path):
    path = tmp_path / "demo.txt"
    path.write_bytes(csv_path.read_bytes())

    with pytest.raises(DataError) as info:
        read_data([path], protocol)

    assert str(info.value).startswith(f"{path}: unsupported file type '.txt' (use .csv, .parquet")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["missing.csv", "missing.parquet"])
def test_missing_file_is_one_line(protocol, tmp_path, name):
    path = tmp_path / name

    with pytest.raises(DataError) as info:
        read_data([path], protocol)

    assert str(info.value) == f"{path}: file not found"


def test_corrupt_parquet_is_one_line(protocol, tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not a parquet file\n" * 3)

    with pytest.raises(DataError) as info:
        read_data([path], protocol)

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot read (")


def test_no_files_is_an_error(protocol):
    with pytest.raises(DataError, match="^no data files given$"):
        read_data([], protocol)


# --------------------------------------------------------------------------- helpers


def _visit_order(col: pd.Series) -> pd.Series:
    return col.astype(int) if col.name == "week" else col


def _row_numbers(line: str, path: Path) -> set[int]:
    """Row numbers a problem line points at (the text before its column)."""
    where = line.split(", column")[0].replace(str(path), "")
    return {int(n) for n in re.findall(r"\d+", where)}
