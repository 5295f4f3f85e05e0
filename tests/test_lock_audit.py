"""Locking, amending and checking a protocol; the hash-chained audit log and its anchors."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trials.audit import GENESIS, AuditLog
from trials.demo import demo_protocol_text
from trials.errors import AuditError, LockError
from trials.lock import (
    StudyFiles,
    amend_protocol,
    check_lock,
    lock_anchors,
    lock_protocol,
    read_lock,
)
from trials.protocol import load_protocol

runner = CliRunner()


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def protocol(tmp_path: Path) -> Path:
    """The demo protocol, unlocked, alone in a study folder."""
    path = tmp_path / "study" / "protocol.yaml"
    path.parent.mkdir()
    path.write_text(demo_protocol_text(), encoding="utf-8")
    return path


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` (a regex, multiline) in the file."""
    text = path.read_text(encoding="utf-8")
    new_text, n = re.subn(old, new, text, flags=re.MULTILINE)
    assert n == 1, f"{old!r} occurs {n} times in {path}"
    path.write_text(new_text, encoding="utf-8")


def bump_version(path: Path, to: int = 2) -> None:
    edit(path, r"^version: \d+$", f"version: {to}")


def canonical_sha256(canonical: dict) -> str:
    # The definition of the protocol hash (docs): compact, key-sorted JSON of the canonical form.
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dump_entry(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def assert_one_line(exc: BaseException, *names: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg.strip() == msg
    for name in names:
        assert name in msg, f"{name!r} not in {msg!r}"
    return msg


def snapshot(*paths: Path) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.exists() else None) for p in paths}


@pytest.fixture
def chained(protocol: Path) -> StudyFiles:
    """A study with four audit entries: lock (1), amend (2), data_load (3), run (4)."""
    files = StudyFiles.beside(protocol)
    lock_protocol(protocol)
    bump_version(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    amend_protocol(protocol, "Recruitment target raised after the pilot")
    log = AuditLog(files.audit)
    log.append("data_load", {"protocol_id": "COMPANION-PC", "files": ["demo.csv"]})
    log.append("run", {"protocol_id": "COMPANION-PC", "decision": "GO"})
    assert len(lines_of(files.audit)) == 4
    return files


def fake_run_dir(path: Path, head: dict) -> Path:
    # What the pipeline records: run.json with the audit head after its own "run" entry.
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"audit_head": head}), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- lock


def test_lock_writes_lock_file_beside_protocol_named_after_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "trial-a.yaml"
    path.write_text(demo_protocol_text(), encoding="utf-8")
    lock_protocol(path)
    assert (tmp_path / "trial-a.lock.json").is_file()
    assert (tmp_path / "audit.jsonl").is_file()


def test_lock_records_canonical_sha256_and_canonical_protocol(protocol: Path) -> None:
    lock = lock_protocol(protocol)
    on_disk = json.loads(protocol.with_name("protocol.lock.json").read_text(encoding="utf-8"))
    assert on_disk == lock
    assert lock["protocol_id"] == "COMPANION-PC"
    assert lock["protocol_file"] == "protocol.yaml"
    (record,) = lock["versions"]
    canonical = load_protocol(protocol).canonical()
    assert record["canonical"] == canonical
    assert record["sha256"] == canonical_sha256(canonical)
    assert record["sha256"] == load_protocol(protocol).sha256()
    assert record["file_sha256"] == hashlib.sha256(protocol.read_bytes()).hexdigest()
    assert record["version"] == 1
    assert record["event"] == "lock"
    assert record["reason"] is None
    assert record["time"]


def test_lock_appends_one_hash_chained_entry(protocol: Path) -> None:
    lock = lock_protocol(protocol)
    (line,) = lines_of(protocol.with_name("audit.jsonl"))
    entry = json.loads(line)
    assert entry["seq"] == 1
    assert entry["prev"] == GENESIS
    assert entry["event"] == "lock"
    assert entry["details"]["sha256"] == lock["versions"][0]["sha256"]
    assert entry["details"]["version"] == 1
    assert entry["hash"] == entry_hash(entry)
    assert lock["versions"][0]["audit_head"] == {"seq": 1, "hash": entry["hash"]}


def test_lock_appends_to_an_existing_log(protocol: Path) -> None:
    log = AuditLog(protocol.with_name("audit.jsonl"))
    first = log.append("note", {"text": "study folder created"})
    lock_protocol(protocol)
    entries = log.entries()
    assert [e["event"] for e in entries] == ["note", "lock"]
    assert entries[1]["prev"] == first.hash


def test_locking_twice_fails_with_one_line_and_changes_nothing(protocol: Path) -> None:
    files = StudyFiles.beside(protocol)
    lock_protocol(protocol)
    before = snapshot(files.lock, files.audit)
    with pytest.raises(LockError) as info:
        lock_protocol(protocol)
    assert_one_line(info.value, str(protocol), "already locked")
    assert snapshot(files.lock, files.audit) == before


# --------------------------------------------------------------------------- amend


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_amend_needs_a_non_empty_reason(protocol: Path, reason: str) -> None:
    files = StudyFiles.beside(protocol)
    lock_protocol(protocol)
    bump_version(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    before = snapshot(files.lock, files.audit)
    with pytest.raises(LockError) as info:
        amend_protocol(protocol, reason)
    assert_one_line(info.value, str(protocol), "reason")
    assert snapshot(files.lock, files.audit) == before


def test_amend_of_unchanged_protocol_fails(protocol: Path) -> None:
    files = StudyFiles.beside(protocol)
    lock_protocol(protocol)
    # Comments and layout are not changes.
    protocol.write_text("# reviewed, nothing to change\n" + protocol.read_text(), encoding="utf-8")
    before = snapshot(files.lock, files.audit)
    with pytest.raises(LockError) as info:
        amend_protocol(protocol, "no real change")
    assert_one_line(info.value, str(protocol), "unchanged")
    assert snapshot(files.lock, files.audit) == before


def test_amend_needs_a_higher_version(protocol: Path) -> None:
    files = StudyFiles.beside(protocol)
    lock_protocol(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    before = snapshot(files.lock, files.audit)
    with pytest.raises(LockError) as info:
        amend_protocol(protocol, "Recruitment target raised")
    assert_one_line(info.value, str(protocol), "version")
    assert snapshot(files.lock, files.audit) == before


def test_amend_of_unlocked_protocol_fails(protocol: Path) -> None:
    bump_version(protocol)
    with pytest.raises(LockError) as info:
        amend_protocol(protocol, "anything")
    assert_one_line(info.value, str(protocol), "not locked")


def test_amend_records_version_two_with_reason_and_both_canonicals(protocol: Path) -> None:
    v1 = load_protocol(protocol).canonical()
    lock_protocol(protocol)
    bump_version(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    v2 = load_protocol(protocol).canonical()
    lock = amend_protocol(protocol, "  Recruitment target raised after the pilot  ")

    assert lock == json.loads(protocol.with_name("protocol.lock.json").read_text())
    first, second = lock["versions"]
    assert (first["version"], first["event"], first["reason"]) == (1, "lock", None)
    assert (second["version"], second["event"]) == (2, "amend")
    assert second["reason"] == "Recruitment target raised after the pilot"
    assert first["canonical"] == v1 and first["sha256"] == canonical_sha256(v1)
    assert second["canonical"] == v2 and second["sha256"] == canonical_sha256(v2)
    assert second["canonical"]["design"]["planned_size"] == 420

    entries = AuditLog(protocol.with_name("audit.jsonl")).verify()
    assert entries.seq == 2
    (amend_entry,) = [json.loads(x) for x in lines_of(protocol.with_name("audit.jsonl"))][1:]
    assert amend_entry["event"] == "amend"
    assert amend_entry["details"]["reason"] == "Recruitment target raised after the pilot"
    assert amend_entry["details"]["version"] == 2
    assert second["audit_head"] == {"seq": 2, "hash": amend_entry["hash"]}


def test_amend_refuses_when_the_audit_log_was_edited(protocol: Path) -> None:
    files = StudyFiles.beside(protocol)
    lock_protocol(protocol)
    files.audit.write_text(files.audit.read_text().replace('"lock"', '"LOCK"'), encoding="utf-8")
    bump_version(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    with pytest.raises(AuditError) as info:
        amend_protocol(protocol, "Recruitment target raised")
    assert_one_line(info.value, str(files.audit), "line 1")


@pytest.mark.parametrize("separator", ["\u2028", "\x85"])
def test_amend_reason_with_unicode_line_separator_keeps_log_valid(protocol: Path,
                                                                 separator: str) -> None:
    files = StudyFiles.beside(protocol)
    lock_protocol(protocol)
    bump_version(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    amend_protocol(protocol, f"Target raised{separator}(text pasted from the DMC minutes)")
    assert AuditLog(files.audit).verify(lock_anchors(read_lock(files))).seq == 2


# --------------------------------------------------------------------------- check_lock


def test_check_lock_passes_for_the_locked_protocol(protocol: Path) -> None:
    lock_protocol(protocol)
    lock = check_lock(load_protocol(protocol), StudyFiles.beside(protocol))
    assert lock["versions"][-1]["version"] == 1


def test_check_lock_without_a_lock_fails(protocol: Path) -> None:
    with pytest.raises(LockError) as info:
        check_lock(load_protocol(protocol), StudyFiles.beside(protocol))
    assert_one_line(info.value, str(protocol), "not locked")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (r"^  planned_size: 400$", "  planned_size: 401"),
        (r'^title: "AI-guided', 'title: "Al-guided'),
        (r"^    threshold: -2\.0$", "    threshold: -2.5"),
        (r"seed: 20261127\}", "seed: 20261128}"),
        (r"^  small_cell_threshold: 5$", "  small_cell_threshold: 6"),
        (r"^  share_analysis_dataset: false$", "  share_analysis_dataset: true"),
        (r"^subgroups: \[age_group, gender, ethnicity, imd_quintile\]$",
         "subgroups: [age_group, gender, ethnicity]"),
    ],
    ids=["planned_size", "title", "threshold", "seed", "small_cell", "share_flag", "subgroups"],
)
def test_check_lock_fails_once_a_value_is_edited(protocol: Path, old: str, new: str) -> None:
    lock_protocol(protocol)
    edit(protocol, old, new)
    with pytest.raises(LockError) as info:
        check_lock(load_protocol(protocol), StudyFiles.beside(protocol))
    assert_one_line(info.value, str(protocol), "differs from its lock")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (r"^schema_version: 1$", "# A new comment line.\nschema_version: 1"),
        (r"^  planned_size: 400$", "  planned_size: 400  # the target, in participants"),
        (r"^# Demo study: .*$", "# Demo study: comment text rewritten."),
        (r"^subgroups: ", "\n\n\nsubgroups:    "),
        (r"^  planned_size: 400$", "  planned_size: 400   "),
        (r'\{id: usual_care, label: "Usual care", control: true\}',
         '{ id: usual_care ,   label: "Usual care",control: true }'),
        (r"Randomised 1:1 by permuted blocks,\n  stratified",
         "Randomised 1:1\n  by permuted blocks, stratified"),
    ],
    ids=["comment_line", "end_of_line_comment", "edited_comment", "blank_lines",
         "trailing_spaces", "flow_spacing", "refolded_text"],
)
def test_check_lock_ignores_comments_and_whitespace(protocol: Path, old: str, new: str) -> None:
    lock_protocol(protocol)
    edit(protocol, old, new)
    check_lock(load_protocol(protocol), StudyFiles.beside(protocol))


def test_check_lock_after_amend_accepts_new_and_rejects_old_version(protocol: Path) -> None:
    files = StudyFiles.beside(protocol)
    original = protocol.read_text(encoding="utf-8")
    lock_protocol(protocol)
    bump_version(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    amend_protocol(protocol, "Recruitment target raised")
    check_lock(load_protocol(protocol), files)
    protocol.write_text(original, encoding="utf-8")
    with pytest.raises(LockError) as info:
        check_lock(load_protocol(protocol), files)
    assert_one_line(info.value, str(protocol), "locked version 2")


# --------------------------------------------------------------------------- audit log


def test_verify_passes_on_intact_log_and_returns_head(chained: StudyFiles) -> None:
    last = json.loads(lines_of(chained.audit)[-1])
    head = AuditLog(chained.audit).verify(lock_anchors(read_lock(chained)))
    assert (head.seq, head.hash) == (4, last["hash"])


def test_every_entry_chains_to_the_one_before(chained: StudyFiles) -> None:
    entries = [json.loads(x) for x in lines_of(chained.audit)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    prev = GENESIS
    for entry in entries:
        assert entry["prev"] == prev
        assert entry["hash"] == entry_hash(entry)
        prev = entry["hash"]


def _edit_value(field: str, value):
    if field == "seq":
        return value + 1
    if field == "details":
        # change one character of one string inside the details
        key = sorted(k for k, v in value.items() if isinstance(v, str))[0]
        return {**value, key: value[key][:-1] + chr(ord(value[key][-1]) ^ 1)}
    return value[:-1] + chr(ord(value[-1]) ^ 1)


@pytest.mark.parametrize("field", ["seq", "time", "event", "details", "prev", "hash"])
@pytest.mark.parametrize("line", [1, 2, 3, 4])
def test_editing_any_field_of_any_entry_is_caught_at_that_line(
    chained: StudyFiles, line: int, field: str
) -> None:
    lines = lines_of(chained.audit)
    entry = json.loads(lines[line - 1])
    assert dump_entry(entry) == lines[line - 1]  # re-dumping alone changes nothing
    entry[field] = _edit_value(field, entry[field])
    lines[line - 1] = dump_entry(entry)
    write_lines(chained.audit, lines)
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).verify()
    assert_one_line(info.value, str(chained.audit), f"line {line}:")


def test_deleting_a_middle_entry_is_caught(chained: StudyFiles) -> None:
    lines = lines_of(chained.audit)
    del lines[1]
    write_lines(chained.audit, lines)
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).verify()
    assert_one_line(info.value, str(chained.audit), "line 2:")


@pytest.mark.parametrize(("a", "b"), [(1, 2), (2, 3), (3, 4), (1, 4)])
def test_swapping_two_entries_is_caught(chained: StudyFiles, a: int, b: int) -> None:
    lines = lines_of(chained.audit)
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    write_lines(chained.audit, lines)
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).verify()
    assert_one_line(info.value, str(chained.audit), f"line {a}:")


def test_inserting_a_forged_entry_is_caught(chained: StudyFiles) -> None:
    lines = lines_of(chained.audit)
    first = json.loads(lines[0])
    # A well-formed forgery: right sequence number, chained to entry 1, correct own hash.
    forged = {"seq": 2, "time": first["time"], "event": "amend",
              "details": {"reason": "backdated"}, "prev": first["hash"]}
    forged["hash"] = entry_hash(forged)
    lines.insert(1, dump_entry(forged))
    write_lines(chained.audit, lines)
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).verify()
    assert_one_line(info.value, str(chained.audit), "line 3:")


@pytest.mark.parametrize(
    "garbage",
    ['{"seq": 3, "event": "run"', "not json at all", "", "[3]", '{"seq": 3}'],
    ids=["truncated", "text", "blank", "list", "no_hash"],
)
def test_a_line_that_is_not_an_entry_is_caught(chained: StudyFiles, garbage: str) -> None:
    lines = lines_of(chained.audit)
    lines[2] = garbage
    write_lines(chained.audit, lines)
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).verify()
    assert_one_line(info.value, str(chained.audit), "line 3:")


def test_removing_last_entries_is_invisible_without_anchors(chained: StudyFiles) -> None:
    # The chain alone cannot see a cut at the end: that is what anchors are for.
    write_lines(chained.audit, lines_of(chained.audit)[:1])
    assert AuditLog(chained.audit).verify().seq == 1


@pytest.mark.parametrize(("keep", "missing"), [(0, "entry 1"), (1, "entry 2")])
def test_removing_last_entries_is_caught_by_lock_anchors(
    chained: StudyFiles, keep: int, missing: str
) -> None:
    write_lines(chained.audit, lines_of(chained.audit)[:keep])
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).verify(lock_anchors(read_lock(chained)))
    assert_one_line(info.value, str(chained.audit), missing, "missing")


def test_deleting_the_whole_log_is_caught_by_lock_anchors(chained: StudyFiles) -> None:
    chained.audit.unlink()
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).verify(lock_anchors(read_lock(chained)))
    assert_one_line(info.value, str(chained.audit), "entry 1")


def test_rewriting_the_chain_after_an_edit_is_caught_by_lock_anchors(
    chained: StudyFiles,
) -> None:
    # Edit entry 1 and recompute every hash after it: the chain is consistent again, but the
    # lock still holds the original hashes of entries 1 and 2.
    entries = [json.loads(x) for x in lines_of(chained.audit)]
    entries[0]["details"]["sha256"] = "f" * 64
    prev = GENESIS
    for entry in entries:
        entry["prev"] = prev
        entry["hash"] = prev = entry_hash(entry)
    write_lines(chained.audit, [dump_entry(e) for e in entries])
    assert AuditLog(chained.audit).verify().seq == 4
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).verify(lock_anchors(read_lock(chained)))
    assert_one_line(info.value, str(chained.audit), "entry 1")


def test_lock_anchors_cannot_see_entries_removed_after_the_last_lock(
    chained: StudyFiles,
) -> None:
    # Entries 3 and 4 came after the amendment: only a run's recorded head can vouch for them.
    write_lines(chained.audit, lines_of(chained.audit)[:2])
    assert AuditLog(chained.audit).verify(lock_anchors(read_lock(chained))).seq == 2


@pytest.mark.parametrize(
    "tamper",
    ["edit", "delete_middle", "swap", "not_json"],
)
def test_appending_to_a_broken_log_is_refused_and_leaves_it_unchanged(
    chained: StudyFiles, tamper: str
) -> None:
    lines = lines_of(chained.audit)
    if tamper == "edit":
        lines[1] = lines[1].replace("pilot", "pilot!")
    elif tamper == "delete_middle":
        del lines[1]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        lines[1] = lines[1][:40]
    write_lines(chained.audit, lines)
    before = chained.audit.read_bytes()
    with pytest.raises(AuditError) as info:
        AuditLog(chained.audit).append("run", {"decision": "GO"})
    assert_one_line(info.value, str(chained.audit), "line 2:")
    assert chained.audit.read_bytes() == before
    assert sorted(p.name for p in chained.audit.parent.iterdir()) == sorted(
        ["audit.jsonl", "protocol.lock.json", "protocol.yaml"]
    )


def test_append_after_a_missing_final_newline_keeps_one_entry_per_line(
    chained: StudyFiles,
) -> None:
    chained.audit.write_text(chained.audit.read_text().rstrip("\n"), encoding="utf-8")
    AuditLog(chained.audit).append("run", {"decision": "GO"})
    assert AuditLog(chained.audit).verify().seq == 5
