"""Controlled-access replication: with ``privacy.controlled_access_dataset: true`` a run writes the
pseudonymised analysis data to ``controlled_data/`` beside the bundle (never into it) and their
SHA-256 to ``controlled_data.json`` (in it); ``trials replicate BUNDLE --data DIR`` re-runs the
analyses on exactly those files and reproduces results.json and decision.json byte for byte.

A small frequentist protocol (ANCOVA, MMRM, multiple imputation, logistic) keeps this fast;
the demo protocol itself runs under the ``slow`` marker.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from trials.bundle import read_members, verify_bundle
from trials.cli import app
from trials.demo.simulate import simulate_demo
from trials.errors import BundleError
from trials.lock import lock_protocol
from trials.pipeline import RunResult, run_study
from trials.replicate import replicate_bundle

RAW_ID = re.compile(rb"CMP-\d{4}")  # the simulator's study IDs

PROTOCOL: dict[str, Any] = {
    "id": "CONTROLLED", "title": "Controlled-access replication", "version": 1,
    "design": {"planned_size": 80,
               "arms": [{"id": "usual_care", "label": "Usual care", "control": True},
                        {"id": "ai_cbt", "label": "Companion"}]},
    "data": {"participant": "participant_id", "arm": "arm", "visit": "week",
             "participant_columns": ["severity_stratum"]},
    "outcomes": [{"id": "phq9", "instrument": "PHQ-9", "visits": [0, 4, 8, 12],
                  "baseline_visit": 0}],
    "estimands": [
        {"id": "primary", "label": "PHQ-9 at week 12", "population": "all",
         "variable": {"outcome": "phq9", "visit": 12},
         "treatment": {"arm": "ai_cbt", "comparator": "usual_care"}},
        {"id": "remission", "label": "Remission at week 12", "population": "all",
         "variable": {"outcome": "phq9", "visit": 12, "measure": "responder",
                      "responder": "remission"},
         "treatment": {"arm": "ai_cbt", "comparator": "usual_care"},
         "summary": "risk_difference"}],
    "responders": [{"id": "remission", "kind": "remission", "outcome": "phq9", "visit": 12,
                    "threshold": 5}],
    "analyses": [
        {"id": "mmrm", "estimand": "primary", "engine": "frequentist", "model": "mmrm"},
        {"id": "ancova", "estimand": "primary", "engine": "frequentist"},
        # seeded imputation: the re-run must draw the same imputations
        {"id": "mi", "estimand": "primary", "engine": "frequentist", "model": "ancova_mi",
         "options": {"m": 5, "iterations": 3, "auxiliary_visits": [8], "seed": 4}},
        {"id": "remission_logistic", "estimand": "remission", "engine": "frequentist",
         "model": "logistic"}],
    "multiplicity": {"method": "holm", "hypotheses": ["remission_logistic"]},
    "criteria": [
        {"id": "benefit", "kind": "success", "analysis": "mmrm", "statistic": "ci_upper",
         "comparator": "<", "threshold": 0},
        {"id": "remission_claim", "kind": "secondary", "analysis": "remission_logistic",
         "statistic": "p_value", "comparator": "<", "threshold": 0.05}],
    "privacy": {"pseudonymise_ids": True, "small_cell_threshold": 5,
                "controlled_access_dataset": True},
}


@pytest.fixture(scope="module")
def controlled_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    folder = tmp_path_factory.mktemp("controlled")
    study = folder / "study"
    study.mkdir()
    protocol = study / "protocol.yaml"
    protocol.write_text(yaml.safe_dump(copy.deepcopy(PROTOCOL), sort_keys=False),
                        encoding="utf-8")
    data = study / "visits.csv"
    visits = simulate_demo(n=80, seed=7)
    visits[[c for c in visits.columns if not c.startswith(("gad7", "csq8", "sus"))]].to_csv(
        data, index=False)
    lock_protocol(protocol)
    return run_study(protocol, [data], folder / "run", render=False, bundle=True)


def test_controlled_data_sit_beside_the_bundle_not_in_it(controlled_run):
    run_dir = controlled_run.run_dir
    folder = run_dir / "controlled_data"
    assert sorted(p.name for p in folder.iterdir()) == ["intake.csv", "shared.json"]
    members = read_members(controlled_run.bundle)
    assert not any(name.startswith(("data/", "controlled_data/")) for name in members)
    assert "controlled_data.json" in members
    assert members["controlled_data.json"] == (run_dir / "controlled_data.json").read_bytes()
    verify_bundle(controlled_run.bundle)


def test_controlled_index_records_every_files_sha256(controlled_run):
    import hashlib

    index = json.loads((controlled_run.run_dir / "controlled_data.json").read_text())
    assert index["schema"] == "trials.controlled_data/1"
    folder = controlled_run.run_dir / "controlled_data"
    assert {e["file"]: e["sha256"] for e in index["files"]} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_controlled_data_are_pseudonymised(controlled_run):
    intake = (controlled_run.run_dir / "controlled_data" / "intake.csv").read_bytes()
    assert not RAW_ID.search(intake)
    for name, member in read_members(controlled_run.bundle).items():
        assert not RAW_ID.search(member), name


def test_replication_with_the_data_is_byte_identical(controlled_run, tmp_path):
    rep = replicate_bundle(controlled_run.bundle, tmp_path / "work",
                           data=controlled_run.run_dir / "controlled_data")
    assert rep.rerun is True and rep.reason is None
    assert [(c.file, c.identical) for c in rep.comparisons] == [
        ("results.json", True), ("decision.json", True)]
    assert rep.exit_code == 0
    for name in ("results.json", "decision.json"):
        assert (tmp_path / "work" / "run" / name).read_bytes() == (
            controlled_run.run_dir / name).read_bytes()


def test_changed_byte_in_the_data_is_one_line_bundle_error(controlled_run, tmp_path):
    copy_dir = tmp_path / "released"
    shutil.copytree(controlled_run.run_dir / "controlled_data", copy_dir)
    intake = copy_dir / "intake.csv"
    raw = bytearray(intake.read_bytes())
    at = raw.rindex(b",") + 1  # the last cell: an item response
    raw[at] = ord("3") if raw[at] != ord("3") else ord("2")
    intake.write_bytes(bytes(raw))
    with pytest.raises(BundleError) as info:
        replicate_bundle(controlled_run.bundle, data=copy_dir)
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"--data {copy_dir}: intake.csv differs from the data the bundle was "
                       "made from (SHA-256 mismatch)")


def test_missing_file_in_the_data_is_one_line_bundle_error(controlled_run, tmp_path):
    copy_dir = tmp_path / "released"
    shutil.copytree(controlled_run.run_dir / "controlled_data", copy_dir)
    (copy_dir / "shared.json").unlink()
    with pytest.raises(BundleError, match=r"shared\.json is missing$"):
        replicate_bundle(controlled_run.bundle, data=copy_dir)


def test_without_data_the_replication_is_not_rerun(controlled_run):
    result = CliRunner().invoke(app, ["replicate", str(controlled_run.bundle)])
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "NOT RE-RUN: " in result.stdout


def test_cli_with_data_replicates(controlled_run):
    result = CliRunner().invoke(app, ["replicate", str(controlled_run.bundle), "--data",
                                      str(controlled_run.run_dir / "controlled_data")])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "replicated: identical results" in result.stdout


def test_cli_with_changed_data_is_one_error_line(controlled_run, tmp_path):
    copy_dir = tmp_path / "released"
    shutil.copytree(controlled_run.run_dir / "controlled_data", copy_dir)
    (copy_dir / "intake.csv").write_bytes((copy_dir / "intake.csv").read_bytes() + b"\n")
    result = CliRunner().invoke(app, ["replicate", str(controlled_run.bundle), "--data",
                                      str(copy_dir)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "SHA-256 mismatch" in lines[0]


@pytest.mark.slow
def test_demo_protocol_replicates_with_its_controlled_data(demo_run, tmp_path):
    run_dir = demo_run.run.run_dir
    assert (run_dir / "controlled_data" / "intake.csv").is_file()
    rep = replicate_bundle(run_dir / "bundle.zip", tmp_path / "work",
                           data=run_dir / "controlled_data")
    assert rep.rerun and rep.identical, [c.line() for c in rep.comparisons]


def test_run_reports_the_secondary_claim_with_its_adjustment(controlled_run):
    """The pipeline passes the multiplicity adjustment to the decision (one hypothesis: Holm
    leaves its p-value as it is)."""
    multiplicity = controlled_run.results["multiplicity"]
    assert multiplicity["method"] == "holm" and multiplicity["not_tested"] == []
    raw = next(e["p_value"] for e in controlled_run.results["estimates"]
               if e["analysis"] == "remission_logistic")
    assert multiplicity["p_values"]["remission_logistic"] == pytest.approx(raw, abs=1e-15)
    claim = next(c for c in controlled_run.decision.criteria if c.id == "remission_claim")
    assert claim.counts_toward_decision is False and "holm-adjusted" in claim.rationale
