"""The `trials` command on bad input: exit code 2, one `error:` line on stderr (plus one line per
data problem), no traceback, and nothing written to the run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from trials.cli import app

TRIALS = Path(sys.executable).with_name("trials")



def _logs(data):
    """The demo's escalation, engagement and adverse-event logs as `trials run` options."""
    from trials.demo import demo_logs

    return [arg for kind, path in demo_logs(data).items()
            for arg in (f"--{kind.replace('_', '-')}", path)]

def _trials(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_error(result: Result, *fragments: str, data_lines: int = 0) -> str:
    """Exit 2; stderr is one `error:` line (then ``data_lines`` problem lines); no traceback."""
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not an internal crash
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert len(lines) == 1 + data_lines, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _lock(protocol: Path) -> None:
    result = _trials("lock", protocol)
    assert result.exit_code == 0, result.stderr


def _edit_value(protocol: Path, old: str, new: str) -> None:
    text = protocol.read_text(encoding="utf-8")
    assert old in text
    protocol.write_text(text.replace(old, new, 1), encoding="utf-8")


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def edited_after_lock(small_study) -> tuple[Path, Path]:
    """A locked study whose protocol was then edited (a criterion's threshold)."""
    protocol, data = small_study
    _lock(protocol)
    _edit_value(protocol, "threshold: -2.0", "threshold: -1.0")
    return protocol, data


# --------------------------------------------------------------------------- check-data


def test_check_data_on_good_data_exits_0(small_study):
    protocol, data = small_study

    result = _trials("check-data", protocol, data)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: ")
    assert result.stderr == ""


def test_check_data_on_bad_data_prints_every_problem_line(small_study, tmp_path):
    protocol, data = small_study
    text = pd.read_csv(data, dtype=str, keep_default_na=False)
    text.loc[0, "phq9_1"] = "7"      # CSV row 2
    text.loc[1, "arm"] = "placebo"  # CSV row 3: unknown, and then not constant within CMP-0001
    text.loc[4, "gad7_3"] = "x"     # CSV row 6
    bad = tmp_path / "bad.csv"
    text.to_csv(bad, index=False)
    pid = text.loc[1, "participant_id"]
    assert text.loc[0, "participant_id"] == pid

    result = _trials("check-data", protocol, bad)

    first = _assert_error(result, "4 problem(s)", data_lines=4)
    assert first == "error: 4 problem(s) in the data"
    problems = result.stderr.splitlines()[1:]
    expected = [
        f"{bad}: row 3, column 'arm': unknown arm 'placebo'",
        f"column 'arm': differs between visits of participant {pid!r}",
        f"{bad}: row 2, column 'phq9_1': '7' outside PHQ-9 item range 0..3",
        f"{bad}: row 6, column 'gad7_3': 'x' is not a whole number",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in problems) == 1, (fragment, problems)


def test_check_data_writes_nothing(small_study, tmp_path):
    protocol, data = small_study
    text = pd.read_csv(data, dtype=str, keep_default_na=False)
    text.loc[0, "phq9_1"] = "7"
    bad = tmp_path / "bad.csv"
    text.to_csv(bad, index=False)
    study_before = _tree(protocol.parent)

    _assert_error(_trials("check-data", protocol, bad), data_lines=1)

    assert _tree(protocol.parent) == study_before


def test_check_data_missing_file_is_one_line(small_study, tmp_path):
    protocol, _ = small_study
    missing = tmp_path / "nope.csv"

    _assert_error(_trials("check-data", protocol, missing), f"{missing}: file not found")


def test_check_data_with_invalid_protocol_is_one_line_naming_the_field(small_study):
    protocol, data = small_study
    _edit_value(protocol, 'comparator: "<"', 'comparator: "=="')

    _assert_error(_trials("check-data", protocol, data), f"{protocol}: criteria.0.comparator: ")


def test_check_data_with_missing_protocol_is_one_line(small_study, tmp_path):
    _, data = small_study
    missing = tmp_path / "missing.yaml"

    _assert_error(_trials("check-data", missing, data), f"{missing}: cannot read protocol")


# --------------------------------------------------------------------------- lock


def test_lock_twice_is_refused(small_study):
    protocol, _ = small_study
    _lock(protocol)

    _assert_error(_trials("lock", protocol), "already locked")


# --------------------------------------------------------------------------- run refused


def test_run_unlocked_protocol_is_refused_and_writes_nothing(small_study, tmp_path):
    protocol, data = small_study
    out = tmp_path / "run"

    result = _trials("run", protocol, "--data", data, *_logs(data), "--out", out)

    _assert_error(result, f"{protocol}: not locked")
    assert not out.exists()


def test_run_edited_after_lock_is_refused(edited_after_lock, tmp_path):
    protocol, data = edited_after_lock
    out = tmp_path / "run"

    result = _trials("run", protocol, "--data", data, *_logs(data), "--out", out)

    _assert_error(result, f"{protocol}: differs from its lock", "--exploratory")


def test_run_edited_after_lock_writes_nothing(edited_after_lock, tmp_path):
    protocol, data = edited_after_lock
    out = tmp_path / "runs" / "run-1"
    audit_before = (protocol.parent / "audit.jsonl").read_bytes()

    _trials("run", protocol, "--data", data, *_logs(data), "--out", out)

    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no staging left over
    assert (protocol.parent / "audit.jsonl").read_bytes() == audit_before


def test_run_edited_after_lock_leaves_an_earlier_run_untouched(edited_after_lock, tmp_path):
    protocol, data = edited_after_lock
    out = tmp_path / "run"
    out.mkdir()
    (out / "marker.txt").write_text("earlier run\n", encoding="utf-8")
    (out / "decision.json").write_text('{"earlier": true}\n', encoding="utf-8")
    before = _tree(out)

    result = _trials("run", protocol, "--data", data, *_logs(data), "--out", out)

    _assert_error(result, "differs from its lock")
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".run")) == []


@pytest.mark.parametrize("where", ["study", "parent"])
def test_run_out_on_the_study_folder_is_refused(small_study, where):
    protocol, data = small_study
    _lock(protocol)
    study = protocol.parent
    out = study if where == "study" else study.parent
    before = _tree(study)

    result = _trials("run", protocol, "--data", data, *_logs(data), "--out", out)

    _assert_error(result, f"--out {out}: would replace the folder holding {protocol}")
    assert _tree(study) == before


def test_run_on_bad_data_exits_2_and_writes_nothing(small_study, tmp_path):
    protocol, data = small_study
    _lock(protocol)
    bad = tmp_path / "bad.csv"
    text = pd.read_csv(data, dtype=str, keep_default_na=False)
    text.loc[2, "phq9_2"] = "5"
    text.to_csv(bad, index=False)
    out = tmp_path / "run"

    result = _trials("run", protocol, "--data", bad, *_logs(data), "--out", out)

    _assert_error(result, "1 problem(s)", data_lines=1)
    assert result.stderr.splitlines()[1] == (
        f"{bad}: row 4, column 'phq9_2': '5' outside PHQ-9 item range 0..3 "
        "[rule phq9_item_range]")
    assert not out.exists()


def test_run_unknown_look_is_one_line(small_study, tmp_path):
    protocol, data = small_study
    _lock(protocol)

    result = _trials("run", protocol, "--data", data, *_logs(data), "--out", tmp_path / "run",
                     "--look", "week6")

    _assert_error(result, "design.looks has no look 'week6'")


def test_installed_command_reports_one_line_without_traceback(small_study, tmp_path):
    protocol, data = small_study
    out = tmp_path / "run"

    proc = subprocess.run([TRIALS, "run", protocol, "--data", data, *_logs(data), "--out", out],
                          capture_output=True, text=True, timeout=300, check=False)

    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: {protocol}: not locked (run `trials lock {protocol}`)"]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists()


# --------------------------------------------------------------------------- exploratory run


@pytest.fixture(scope="module")
def exploratory_run(tmp_path_factory) -> tuple[Result, Path]:
    """The small study (as the ``small_study`` fixture writes it), locked, edited, then run with
    --exploratory and the brief rendered. Run once for the tests below."""
    from trials.demo import write_demo_study

    protocol, data = write_demo_study(tmp_path_factory.mktemp("exploratory") / "study",
                                      n=60, seed=7)
    _lock(protocol)
    # The edit also makes the Bayesian fit quick.
    _edit_value(protocol, "sampler: {draws: 1000, tune: 500, chains: 2",
                "sampler: {draws: 200, tune: 200, chains: 2")
    out = protocol.parent.parent / "run"
    result = _trials("run", protocol, "--data", data, *_logs(data), "--out", out, "--exploratory")
    return result, out


def test_exploratory_run_of_an_edited_protocol_succeeds(exploratory_run):
    result, out = exploratory_run

    assert result.exit_code == 0, (result.stderr, result.exception)
    assert result.stdout.startswith("decision: EXPLORATORY ")
    assert (out / "brief.html").is_file()


def test_exploratory_decision_is_stamped(exploratory_run):
    _, out = exploratory_run

    decision = json.loads((out / "decision.json").read_text(encoding="utf-8"))

    assert decision["exploratory"] is True
    assert decision["display_label"].startswith("EXPLORATORY ")
    assert decision["rationale"].startswith("EXPLORATORY")


def test_exploratory_environment_file_is_stamped_on_its_first_line(exploratory_run):
    _, out = exploratory_run

    first = (out / "environment.txt").read_text(encoding="utf-8").splitlines()[0]

    assert "EXPLORATORY" in first


def test_exploratory_brief_is_stamped(exploratory_run):
    _, out = exploratory_run

    assert "EXPLORATORY" in (out / "brief.html").read_text(encoding="utf-8")


def test_exploratory_results_and_run_record_are_stamped(exploratory_run):
    _, out = exploratory_run

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))

    assert results["exploratory"] is True
    assert run["exploratory"] is True
