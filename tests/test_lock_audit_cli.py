"""The `trials lock`, `trials amend` and `trials audit verify` commands: exit codes and one-line
errors (the functions behind them are tested in tests/test_lock_audit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_lock_audit import (  # noqa: F401, F811  (shared fixtures)
    bump_version,
    chained,
    edit,
    fake_run_dir,
    lines_of,
    protocol,
    runner,
    write_lines,
)
from trials.audit import AuditLog
from trials.cli import app
from trials.lock import (
    StudyFiles,
    read_lock,
)


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_cli_error(result, *names: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


def test_cli_lock_and_amend_and_audit_verify_succeed(protocol: Path) -> None:
    files = StudyFiles.beside(protocol)
    result = cli("lock", protocol)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"locked {protocol} version 1 sha256 ")
    assert read_lock(files)["versions"][0]["sha256"] in result.stdout

    bump_version(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    result = cli("amend", protocol, "--reason", "Recruitment target raised")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"amended {protocol} to version 2 sha256 ")
    assert read_lock(files)["versions"][1]["reason"] == "Recruitment target raised"

    result = cli("audit", "verify", protocol)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: {files.audit} intact (2 entries)\n"


def test_cli_lock_twice_exits_2_with_one_error_line(protocol: Path) -> None:
    assert cli("lock", protocol).exit_code == 0
    assert_cli_error(cli("lock", protocol), str(protocol), "already locked")


def test_cli_amend_without_reason_text_exits_2(protocol: Path) -> None:
    cli("lock", protocol)
    bump_version(protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    assert_cli_error(cli("amend", protocol, "--reason", " "), str(protocol), "reason")


def test_cli_amend_without_version_bump_exits_2(protocol: Path) -> None:
    cli("lock", protocol)
    edit(protocol, r"^  planned_size: 400$", "  planned_size: 420")
    assert_cli_error(cli("amend", protocol, "--reason", "x"), str(protocol), "version")


@pytest.mark.parametrize("tamper", ["edit", "delete_middle", "swap", "not_json"])
def test_cli_audit_verify_exits_2_on_tampering(chained: StudyFiles, tamper: str) -> None:
    lines = lines_of(chained.audit)
    if tamper == "edit":
        lines[2] = lines[2].replace("demo.csv", "demo2.csv")
    elif tamper == "delete_middle":
        del lines[2]
    elif tamper == "swap":
        lines[2], lines[3] = lines[3], lines[2]
    else:
        lines[2] = "{" + lines[2]
    write_lines(chained.audit, lines)
    assert_cli_error(cli("audit", "verify", chained.protocol), str(chained.audit), "line 3:")


def test_cli_audit_verify_catches_removed_lock_entries(chained: StudyFiles) -> None:
    write_lines(chained.audit, lines_of(chained.audit)[:1])
    assert_cli_error(cli("audit", "verify", chained.protocol), str(chained.audit), "entry 2")


def test_cli_audit_verify_with_run_catches_entries_removed_after_the_run(
    chained: StudyFiles, tmp_path: Path
) -> None:
    head = AuditLog(chained.audit).append("run", {"decision": "GO"})
    run_dir = fake_run_dir(tmp_path / "run", head.to_dict())
    assert cli("audit", "verify", chained.protocol, "--run", run_dir).exit_code == 0

    write_lines(chained.audit, lines_of(chained.audit)[:-2])  # cut entries 4 and 5
    # The lock's anchors (entries 1 and 2) are still there ...
    assert cli("audit", "verify", chained.protocol).exit_code == 0
    # ... but the run recorded entry 5.
    assert_cli_error(cli("audit", "verify", chained.protocol, "--run", run_dir),
                     str(chained.audit), "entry 5")


def test_cli_audit_verify_with_run_lacking_run_json_exits_2(
    chained: StudyFiles, tmp_path: Path
) -> None:
    (tmp_path / "empty-run").mkdir()
    assert_cli_error(cli("audit", "verify", chained.protocol, "--run", tmp_path / "empty-run"),
                     "run.json")
