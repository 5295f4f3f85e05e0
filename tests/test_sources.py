"""Every data source gives the frame the CSV reader gives for the same data: text cells, missing
as NaN, the same columns; only the ``__source__`` / ``__row__`` bookkeeping differs, and it points
at a place a human can find in that source.

The demo's data (n=40) are written to CSV (the reference), Parquet, Excel, SPSS, Stata, SAS
transport, a REDCap export built from them, SQLite and (when ``TRIALS_TEST_POSTGRES_URL`` is set,
see ``tests/services/postgres.sh``) PostgreSQL.
"""

from __future__ import annotations

import csv
import os
import re
import uuid
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from trials.demo.simulate import simulate_demo
from trials.errors import DataError
from trials.sources import read_excel, read_redcap, read_source, read_sql, read_stat

N = 40
BOOKKEEPING = ["__source__", "__row__"]
PHQ9 = [f"phq9_{i}" for i in range(1, 10)]
GAD7 = [f"gad7_{i}" for i in range(1, 8)]
EVENT_VISITS = {"baseline_arm_1": 0, "week_4_arm_1": 4, "week_8_arm_1": 8, "week_12_arm_1": 12}
ITEM_CHOICES = "0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day"
DICTIONARY_HEADER = [
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note",
    "Text Validation Type OR Show Slider Number", "Text Validation Min", "Text Validation Max",
    "Identifier?", "Branching Logic (Show field only if...)", "Required Field?",
    "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name", "Matrix Ranking?",
    "Field Annotation",
]
PG_URL = os.environ.get("TRIALS_TEST_POSTGRES_URL", "")
needs_postgres = pytest.mark.skipif(
    not PG_URL, reason="TRIALS_TEST_POSTGRES_URL is not set; start a server with "
                       "'eval \"$(bash tests/services/postgres.sh)\"' to run the PostgreSQL tests")


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return simulate_demo(n=N)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="module")
def reference(demo: pd.DataFrame, folder: Path) -> pd.DataFrame:
    path = folder / "demo.csv"
    demo.to_csv(path, index=False)
    return read_source(path)


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop(columns=BOOKKEEPING)
    key = pd.to_numeric(out["week"])
    out = out.assign(_key=key).sort_values(["participant_id", "_key"], kind="stable")
    return out.drop(columns="_key").reset_index(drop=True)


def _assert_same(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_comparable(frame), _comparable(reference))


def _for_stat_files(demo: pd.DataFrame) -> pd.DataFrame:
    """SPSS, Stata and SAS store numbers as doubles with their own missing value."""
    return demo.astype({c: "float64" for c in PHQ9 + GAD7})


def _one_line(exc: DataError) -> str:
    for line in [str(exc), *exc.problems]:
        assert "\n" not in line and line.strip(), f"not one line: {line!r}"
    return str(exc)


# --------------------------------------------------------------------------- files


def test_csv_reference_is_text_with_line_numbers(reference, demo):
    assert len(reference) == len(demo)
    assert all(str(t) == "str" for t in reference.drop(columns=BOOKKEEPING).dtypes)
    assert reference["__row__"].tolist()[:2] == [2, 3]  # line 1 is the header
    assert reference["phq9_1"].iloc[0] in {"0", "1", "2", "3"}


def test_parquet_matches_csv(demo, folder, reference):
    path = folder / "demo.parquet"
    demo.to_parquet(path, index=False)
    _assert_same(read_source(path), reference)


def test_excel_matches_csv_with_spreadsheet_rows(demo, folder, reference):
    path = folder / "demo.xlsx"
    demo.to_excel(path, index=False, sheet_name="visits")
    frame = read_source(path)
    _assert_same(frame, reference)
    assert frame["__row__"].tolist()[:2] == [2, 3]
    assert frame["__source__"].iat[0] == f"{path} [sheet visits]"
    by_name = read_source({"excel": {"path": str(path), "sheet": "visits"}})
    pd.testing.assert_frame_equal(by_name, frame)


def test_excel_rows_are_the_rows_excel_shows(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    ws.title = "data"
    ws.append([])  # the header may start lower down
    ws.append(["participant_id", "week", "score"])
    ws.append(["P1", 0, 3.0])
    ws.append([])
    ws.append(["P2", 4, 2.5])
    book.create_sheet("other")
    path = tmp_path / "gaps.xlsx"
    book.save(path)
    frame = read_excel(path)
    assert frame["__row__"].tolist() == [3, 5]
    assert frame["score"].tolist() == ["3", "2.5"]
    with pytest.raises(DataError, match=r"no sheet 'nope' \(sheets: data, other\)"):
        read_excel(path, sheet="nope")
    with pytest.raises(DataError, match="the sheet is empty"):
        read_excel(path, sheet=1)


@pytest.mark.parametrize("suffix, write", [
    (".sav", pyreadstat.write_sav),
    (".dta", pyreadstat.write_dta),
    (".xpt", pyreadstat.write_xport),
])
def test_spss_stata_sas_match_csv(demo, folder, reference, suffix, write):
    path = folder / f"demo{suffix}"
    write(_for_stat_files(demo), str(path))
    frame = read_source(path)
    _assert_same(frame, reference)
    assert frame["__row__"].tolist()[:2] == [1, 2]  # record numbers
    pd.testing.assert_frame_equal(read_stat(path), frame)


# --------------------------------------------------------------------------- REDCap


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows([["" if pd.isna(v) else v for v in row] for row in rows])
    return path


def _dictionary(path: Path, fields: list[tuple[str, str, str, str, str, str, str]]) -> Path:
    """fields: (name, form, type, choices, validation, min, max)."""
    rows = []
    for name, form, kind, choices, validation, low, high in fields:
        row = dict.fromkeys(DICTIONARY_HEADER, "")
        row.update({"Variable / Field Name": name, "Form Name": form, "Field Type": kind,
                    "Field Label": name.replace("_", " "),
                    "Choices, Calculations, OR Slider Labels": choices,
                    "Text Validation Type OR Show Slider Number": validation,
                    "Text Validation Min": low, "Text Validation Max": high})
        rows.append(list(row.values()))
    return _write_csv(path, DICTIONARY_HEADER, rows)


def _demo_forms(demo: pd.DataFrame) -> dict[str, list[str]]:
    """The demo's columns as REDCap forms: randomisation and demographics (the columns that are
    constant per participant), one form per instrument (``name_1``, ``name_2``...) and a visit
    form for anything else recorded per visit. Derived from the columns, so that a demo that
    gains a column still makes a complete export."""
    per_participant = demo.groupby("participant_id").nunique(dropna=False).le(1).all()
    constant = [c for c in demo.columns[1:] if c != "week" and per_participant[c]]
    instruments: dict[str, list[str]] = {}
    for c in demo.columns:
        match = re.fullmatch(r"([a-z][a-z0-9]*)_\d+", c)
        if match and c not in constant:
            instruments.setdefault(match.group(1), []).append(c)
    taken = {"participant_id", "week", *constant, *sum(instruments.values(), [])}
    forms = {"randomisation": [c for c in constant if c == "arm"],
             "demographics": [c for c in constant if c != "arm"],
             "visit": [c for c in demo.columns if c not in taken]}
    return {**{k: v for k, v in forms.items() if v}, **instruments}


def _demo_dictionary_field(demo: pd.DataFrame, form: str, column: str) -> tuple[str, ...]:
    values = demo[column].dropna()
    if form in ("phq9", "gad7"):
        return (column, form, "radio", ITEM_CHOICES, "", "", "")
    if column == "imd_quintile":  # a validated integer text field
        return (column, form, "text", "", "integer", "1", "5")
    if pd.api.types.is_integer_dtype(values) and form not in DEMO_TEXT_FORMS:
        codes = range(int(values.min()), int(values.max()) + 1)
        return (column, form, "radio", " | ".join(f"{v}, {v}" for v in codes), "", "", "")
    codes = sorted(values.astype(str).unique())
    if form in DEMO_TEXT_FORMS or not all(re.fullmatch(r"\w+", v) for v in codes):
        return (column, form, "text", "", "", "", "")
    return (column, form, "dropdown", " | ".join(f"{v}, {v.replace('_', ' ')}" for v in codes),
            "", "", "")


DEMO_TEXT_FORMS = {"visit"}


def _demo_redcap(demo: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    """The demo as a longitudinal REDCap project exports it: raw codes, one row per event with
    blanks for forms not filled in at that event, randomisation and demographics entered only at
    baseline, each instrument only at the events where it has data."""
    forms = _demo_forms(demo)
    fields = [("record_id", "enrolment", "text", "", "", "", "")]
    fields += [_demo_dictionary_field(demo, f, c) for f, cols in forms.items() for c in cols]
    dictionary = _dictionary(folder / "redcap_dictionary.csv", fields)

    header = ["record_id", "redcap_event_name", "redcap_repeat_instrument",
              "redcap_repeat_instance", "enrolment_complete"]
    for form, cols in forms.items():
        header += [*cols, f"{form}_complete"]
    events = {v: k for k, v in EVENT_VISITS.items()}
    rows = []
    for rec in demo.to_dict("records"):
        week = rec["week"]
        row = dict.fromkeys(header, None)
        row.update(record_id=rec["participant_id"], redcap_event_name=events[week],
                   enrolment_complete=2 if week == 0 else None)
        for form, cols in forms.items():
            baseline_only = form in ("randomisation", "demographics")
            if (baseline_only and week == 0) or (not baseline_only
                                                 and any(pd.notna(rec[c]) for c in cols)):
                row.update({c: rec[c] for c in cols})
                row[f"{form}_complete"] = 2
        rows.append(list(row.values()))
    return _write_csv(folder / "redcap_records.csv", header, rows), dictionary


def test_redcap_export_matches_csv(demo, folder, reference):
    records, dictionary = _demo_redcap(demo, folder)
    frame = read_redcap(records, dictionary, EVENT_VISITS,
                        field_map={"record_id": "participant_id"}, visit_column="week")
    assert set(frame.columns) == set(reference.columns)
    _assert_same(frame[reference.columns], reference)
    first = frame.iloc[1]
    assert first["__row__"] == f"3 (record {first['participant_id']}, event week_4_arm_1)"
    via_spec = read_source({"redcap": {"records": str(records), "dictionary": str(dictionary),
                                       "event_visits": EVENT_VISITS, "visit_column": "week",
                                       "field_map": {"record_id": "participant_id"}}})
    pd.testing.assert_frame_equal(via_spec, frame)


def test_redcap_unknown_event_is_one_line_naming_the_row(demo, folder):
    records, dictionary = _demo_redcap(demo, folder)
    events = {k: v for k, v in EVENT_VISITS.items() if k != "week_8_arm_1"}
    with pytest.raises(DataError) as info:
        read_redcap(records, dictionary, events, visit_column="week")
    message = _one_line(info.value)
    lines = records.read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, start=1) if ",week_8_arm_1," in text)
    record = lines[line - 1].split(",")[0]
    assert message.startswith(f"{records}: line {line} (record '{record}', event 'week_8_arm_1'),"
                              " column 'redcap_event_name': unknown event 'week_8_arm_1'")
    assert len(info.value.problems) == (demo["week"] == 8).sum()


def test_redcap_values_are_checked_against_the_dictionary(demo, folder, tmp_path):
    records, dictionary = _demo_redcap(demo, folder)
    bad = pd.read_csv(records, dtype=str, keep_default_na=False)
    bad.loc[0, "phq9_2"] = "4"
    bad.loc[0, "imd_quintile"] = "6"
    bad.loc[0, "arm"] = "placebo"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError) as info:
        read_redcap(tmp_path / "bad.csv", dictionary, EVENT_VISITS, visit_column="week")
    _one_line(info.value)
    where = f"{tmp_path / 'bad.csv'}: line 2 (record 'CMP-0001', event 'baseline_arm_1')"
    assert info.value.problems == [
        f"{where}, column 'arm': 'placebo' is not a choice of arm (ai_cbt, usual_care)",
        f"{where}, column 'imd_quintile': '6' is outside imd_quintile's validation range 1..5 "
        "in the dictionary",
        f"{where}, column 'phq9_2': '4' is not a choice of phq9_2 (0, 1, 2, 3)",
    ]


CHECKBOX_FIELDS = [
    ("record_id", "enrolment", "text", "", "", "", ""),
    ("gender", "demographics", "text", "", "", "", ""),
    ("support", "followup", "checkbox", "1, Phone | 2, Text message | -1, None of these",
     "", "", ""),
    ("mood", "followup", "radio", "0, Low | 1, OK | 2, Good", "", "", ""),
    ("ae_term", "adverse_events", "text", "", "", "", ""),
]
CHECKBOX_HEADER = ["record_id", "redcap_event_name", "redcap_repeat_instrument",
                   "redcap_repeat_instance", "enrolment_complete", "gender",
                   "demographics_complete", "support___1", "support___2", "support____1", "mood",
                   "followup_complete", "ae_term", "adverse_events_complete"]


def _checkbox_project(tmp_path: Path, ae_instances: int) -> tuple[Path, Path]:
    rows = [
        ["1", "baseline_arm_1", "", "", "2", "woman", "2", "0", "0", "0", "", "", "", ""],
        ["1", "week_4_arm_1", "", "", "", "", "", "1", "0", "0", "2", "2", "", ""],
        ["2", "baseline_arm_1", "", "", "2", "man", "2", "0", "0", "0", "", "", "", ""],
        ["2", "week_4_arm_1", "", "", "", "", "", "0", "0", "0", "1", "2", "", ""],
    ]
    ae_rows = [["1", "week_4_arm_1", "adverse_events", str(i), "", "", "", "", "", "", "", "",
                term, "2"] for i, term in enumerate(["headache", "nausea"][:ae_instances], start=1)]
    rows = rows[:2] + ae_rows + rows[2:]  # repeat rows follow their event's row, as REDCap does
    records = _write_csv(tmp_path / "records.csv", CHECKBOX_HEADER, rows)
    return records, _dictionary(tmp_path / "dictionary.csv", CHECKBOX_FIELDS)


def test_redcap_checkboxes_repeating_forms_and_carried_fields(tmp_path):
    records, dictionary = _checkbox_project(tmp_path, ae_instances=1)
    frame = read_redcap(records, dictionary, {"baseline_arm_1": 0, "week_4_arm_1": 4},
                        field_map={"record_id": "participant_id", "support": "support_used"})
    nan = float("nan")
    expected = pd.DataFrame({
        "participant_id": ["1", "1", "2", "2"],
        "visit": ["0", "4", "0", "4"],
        "gender": ["woman", "woman", "man", "man"],  # demographics: baseline only, carried
        # Not filled in at baseline: REDCap's zeros there mean nothing, so they are missing;
        # at week 4 participant 2 answered and ticked nothing, so the zeros are kept.
        "support_used___1": [nan, "1", nan, "0"],
        "support_used___2": [nan, "0", nan, "0"],
        "support_used____1": [nan, "0", nan, "0"],
        "mood": [nan, "2", nan, "1"],
        "ae_term": [nan, "headache", nan, nan],  # one instance: it joins its event's row
    }).astype("str")
    pd.testing.assert_frame_equal(frame.drop(columns=BOOKKEEPING), expected)
    assert frame["__row__"].tolist() == [
        "2 (record 1, event baseline_arm_1)", "3, 4 (record 1, event week_4_arm_1)",
        "5 (record 2, event baseline_arm_1)", "6 (record 2, event week_4_arm_1)"]


def test_redcap_several_instances_in_one_visit_are_reported_or_left_out(tmp_path):
    records, dictionary = _checkbox_project(tmp_path, ae_instances=2)
    events = {"baseline_arm_1": 0, "week_4_arm_1": 4}
    with pytest.raises(DataError) as info:
        read_redcap(records, dictionary, events)
    assert _one_line(info.value).startswith(
        f"{records}: lines 3, 4, 5 (record '1', visit 4), column 'ae_term': rows of one record "
        "and visit disagree ('headache', 'nausea')")
    frame = read_redcap(records, dictionary, events,
                        forms=["enrolment", "demographics", "followup"])
    assert "ae_term" not in frame.columns and len(frame) == 4


def test_redcap_participant_fields_can_be_named(tmp_path):
    records, dictionary = _checkbox_project(tmp_path, ae_instances=0)
    frame = read_redcap(records, dictionary, {"baseline_arm_1": 0, "week_4_arm_1": 4},
                        participant_fields=[])
    assert frame["gender"].isna().tolist() == [False, True, False, True]


@pytest.mark.parametrize("kwargs, message", [
    ({"field_map": {"nope": "x"}}, "field_map: 'nope' is not a field of the data dictionary"),
    ({"field_map": {"gender": "mood"}}, "output column 'mood' would appear more than once"),
    ({"visit_column": "gender"}, "output column 'gender' would appear more than once"),
    ({"forms": ["followups"]}, "forms: 'followups' is not a form of"),
    ({"participant_fields": ["sex"]}, "participant_fields: 'sex' is not a field"),
])
def test_redcap_option_mistakes_are_one_line(tmp_path, kwargs, message):
    records, dictionary = _checkbox_project(tmp_path, ae_instances=0)
    with pytest.raises(DataError) as info:
        read_redcap(records, dictionary, {"baseline_arm_1": 0, "week_4_arm_1": 4}, **kwargs)
    assert message in _one_line(info.value)


def test_redcap_export_and_dictionary_must_belong_together(tmp_path):
    records, dictionary = _checkbox_project(tmp_path, ae_instances=0)
    text = records.read_text(encoding="utf-8").replace("support____1", "support___9", 1)
    records.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=r"column 'support___9': support has no checkbox choice "
                                        r"'9'"):
        read_redcap(records, dictionary, {"baseline_arm_1": 0, "week_4_arm_1": 4})
    with pytest.raises(DataError, match="not a REDCap data dictionary"):
        read_redcap(records, records, {"baseline_arm_1": 0})
    with pytest.raises(DataError, match="visit of event 'baseline_arm_1' must be a whole number"):
        read_redcap(records, dictionary, {"baseline_arm_1": "0"})


# --------------------------------------------------------------------------- SQL


def _to_table(demo: pd.DataFrame, url: str, table: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        demo.to_sql(table, engine, index=False)
    finally:
        engine.dispose()


def test_sqlite_table_and_query_match_csv(demo, folder, reference):
    url = f"sqlite:///{folder / 'demo.db'}"
    _to_table(demo, url, "visits")
    frame = read_source({"sql": {"url": url, "table": "visits"}})
    _assert_same(frame, reference)
    assert frame["__row__"].tolist()[:2] == [1, 2]
    assert frame["__source__"].iat[0] == f"{url} [table visits]"
    query = read_sql(url, "SELECT * FROM visits WHERE arm = :arm ORDER BY participant_id, week",
                     {"arm": "ai_cbt"})
    _assert_same(query, reference[reference["arm"] == "ai_cbt"])


def test_sqlite_mistakes_are_one_line(folder, tmp_path):
    url = f"sqlite:///{folder / 'demo.db'}"
    with pytest.raises(DataError, match=r"\[table missing\]: no table 'missing'"):
        read_sql(url, "missing")
    with pytest.raises(DataError) as info:
        read_sql(url, "SELECT nope FROM visits")
    assert "cannot read (no such column: nope)" in _one_line(info.value)
    with pytest.raises(DataError, match="database file .* not found"):
        read_sql(f"sqlite:///{tmp_path / 'absent.db'}", "visits")
    assert not (tmp_path / "absent.db").exists()


def test_passwords_never_appear_in_errors():
    url = "postgresql+psycopg://trials:s3cret-pw@127.0.0.1:1/trials"
    for attempt in (lambda: read_sql(url, "visits"),
                    lambda: read_source({"sql": {"url": url, "table": "t", "extra": 1}}),
                    lambda: read_source({"sql": {"url": url}}),
                    lambda: read_source(url)):
        with pytest.raises(DataError) as info:
            attempt()
        message = _one_line(info.value)
        assert "s3cret-pw" not in message and "***" in message, message


@needs_postgres
def test_postgresql_table_and_query_match_csv(demo, reference):
    import sqlalchemy as sa

    table = f"demo_{uuid.uuid4().hex[:12]}"
    _to_table(demo, PG_URL, table)
    engine = sa.create_engine(PG_URL)
    try:
        frame = read_sql(PG_URL, table)
        _assert_same(frame, reference)
        assert "***" in frame["__source__"].iat[0]
        query = read_source({"sql": {"url": PG_URL, "params": {"w": 12},
                                     "query": f"SELECT * FROM {table} WHERE week = :w"}})
        _assert_same(query, reference[reference["week"] == "12"])
        with engine.begin() as conn:  # NUMERIC and REAL columns read as the CSV would write them
            conn.execute(sa.text(f"CREATE TABLE {table}_n (a NUMERIC(5, 2), b REAL, c DATE)"))
            conn.execute(sa.text(f"INSERT INTO {table}_n VALUES (3.00, 2.5, '2026-01-31'), "
                                 "(0.10, NULL, NULL)"))
        numbers = read_sql(PG_URL, f"SELECT * FROM {table}_n ORDER BY a DESC")
        assert numbers[["a", "b", "c"]].astype(object).where(numbers.notna(), None).values \
            .tolist() == [["3", "2.5", "2026-01-31"], ["0.1", None, None]]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}, {table}_n"))
        engine.dispose()


@needs_postgres
def test_postgresql_wrong_password_is_masked():
    import sqlalchemy as sa

    url = sa.make_url(PG_URL).set(password="wrong-password-123")
    with pytest.raises(DataError) as info:
        read_sql(url.render_as_string(hide_password=False), "visits")
    message = _one_line(info.value)
    assert "wrong-password-123" not in message and "password authentication failed" in message


# --------------------------------------------------------------------------- dispatcher


@pytest.mark.parametrize("spec, message", [
    ("data/visits.txt", "data/visits.txt: unsupported data source; use a file ending in .csv"),
    ("old.xls", "old.xls: unsupported data source (save it as .xlsx)"),
    (42, "42: unsupported data source"),
    ({"mongo": {"url": "mongodb://u:pw@h/db"}}, "{'mongo': {'url': 'mongodb://u:***@h/db'}}: "
                                               "unsupported data source"),
    ({"redcap": {"records": "r.csv"}}, "redcap source has missing dictionary, event_visits"),
    ({"sql": {"url": "sqlite://", "query": "SELECT 1", "table": "t"}},
     "sql source needs exactly one of query, table"),
])
def test_unsupported_sources_are_one_line(spec, message):
    with pytest.raises(DataError) as info:
        read_source(spec)
    assert message in _one_line(info.value)


@pytest.mark.parametrize("name", ["absent.csv", "absent.xlsx", "absent.sav", "absent.dta",
                                  "absent.xpt", "absent.sas7bdat"])
def test_missing_files_are_one_line(tmp_path, name):
    with pytest.raises(DataError, match=f"{name}: file not found"):
        read_source(tmp_path / name)


def test_damaged_files_are_one_line(tmp_path):
    for name in ("broken.sas7bdat", "broken.xlsx", "broken.dta"):
        (tmp_path / name).write_bytes(b"not really " + name.encode())
        with pytest.raises(DataError) as info:
            read_source(tmp_path / name)
        assert _one_line(info.value).startswith(f"{tmp_path / name}: cannot read")


# --------------------------------------------------------------------------- through the protocol


def _analysis_dataset(protocol_path: Path, source: Path) -> pd.DataFrame:
    from trials.data import read_data
    from trials.protocol import load_protocol
    from trials.stages import score_outcomes

    protocol = load_protocol(protocol_path)
    return score_outcomes(protocol, read_data([source], protocol).frame)


def _spec(path: Path, spec: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from trials.demo import write_demo_study

    return write_demo_study(tmp_path_factory.mktemp("equivalence") / "study", n=40, seed=11)


def _all_sources(study, folder: Path, sql_url: str | None) -> dict[str, Path]:
    protocol, csv_path = study
    visits = pd.read_csv(csv_path)
    for c in visits.columns:
        if pd.api.types.is_float_dtype(visits[c]):
            visits[c] = visits[c].astype("Int64")
    parquet = folder / "demo.parquet"
    pd.read_csv(csv_path).to_parquet(parquet)
    records, dictionary = _demo_redcap(visits, folder)
    sources = {
        "csv": csv_path,
        "parquet": parquet,
        "redcap": _spec(folder / "redcap.yaml", {"redcap": {
            "records": records.name, "dictionary": dictionary.name,
            "event_visits": EVENT_VISITS, "visit_column": "week",
            "field_map": {"record_id": "participant_id"}}}),
    }
    sqlite_url = f"sqlite:///{folder / 'demo.db'}"
    _to_table(pd.read_csv(csv_path), sqlite_url, "visits")
    sources["sqlite"] = _spec(folder / "sqlite.yaml", {"sql": {"url": sqlite_url,
                                                               "table": "visits"}})
    if sql_url:
        table = f"demo_{uuid.uuid4().hex[:12]}"
        _to_table(pd.read_csv(csv_path), sql_url, table)
        sources["postgresql"] = _spec(folder / "pg.yaml", {"sql": {
            "url": "${TRIALS_TEST_POSTGRES_URL}", "table": table}})
    return sources


def test_every_source_gives_the_identical_analysis_dataset(study, tmp_path):
    sources = _all_sources(study, tmp_path, PG_URL)
    if not PG_URL:
        pytest.skip("PostgreSQL not started (run tests/services/postgres.sh); "
                    "the other sources were built")
    protocol = study[0]
    reference = _analysis_dataset(protocol, sources.pop("csv"))
    for name, path in sources.items():
        got = _analysis_dataset(protocol, path)
        pd.testing.assert_frame_equal(got, reference, obj=name)


def test_file_sources_give_the_identical_analysis_dataset(study, tmp_path):
    sources = _all_sources(study, tmp_path, None)
    protocol = study[0]
    reference = _analysis_dataset(protocol, sources.pop("csv"))
    for name, path in sources.items():
        pd.testing.assert_frame_equal(_analysis_dataset(protocol, path), reference, obj=name)


def test_content_hash_is_the_same_for_every_format(study, tmp_path):
    from trials.data import read_data
    from trials.protocol import load_protocol

    sources = _all_sources(study, tmp_path, None)
    protocol = load_protocol(study[0])
    hashes = {name: read_data([p], protocol).sources[0]["content_sha256"]
              for name, p in sources.items() if name in ("csv", "parquet", "sqlite")}
    assert len(set(hashes.values())) == 1, hashes
