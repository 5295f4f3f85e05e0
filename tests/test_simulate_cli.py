"""`trials simulate`: the protocol's own design under scenarios, before the lock."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from trials.cli import app
from trials.demo import demo_protocol_text


@pytest.fixture
def protocol(tmp_path):
    path = tmp_path / "protocol.yaml"
    path.write_text(demo_protocol_text(), encoding="utf-8")
    return path


def _simulate(protocol, *extra):
    return CliRunner().invoke(app, ["simulate", str(protocol), "--scheduler", "synchronous",
                                    "--trials", "2000", "--no-progress", *extra])


def test_simulate_writes_table_plot_and_audit_entry(protocol):
    result = _simulate(protocol)
    assert result.exit_code == 0, result.output
    doc = json.loads(protocol.with_name("protocol.oc.json").read_text())
    assert [r["scenario"] for r in doc["summary"]] == ["no_effect", "planned_effect",
                                                        "small_effect", "harmful"]
    assert doc["plot"]["alt"] and protocol.with_name("protocol.oc.png").stat().st_size > 1000
    table = protocol.with_name("protocol.oc.csv").read_text().splitlines()
    assert table[0].startswith("scenario,effect,success") and len(table) == 5
    entry = json.loads(protocol.with_name("audit.jsonl").read_text().splitlines()[-1])
    assert entry["event"] == "simulate" and entry["details"]["trials"] == 2000


def test_scenarios_file_replaces_the_protocols(protocol, tmp_path):
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(yaml.safe_dump([
        {"name": "slow_accrual", "effect": -1.8, "sd": 5.5, "dropout": 0.3,
         "accrual_rate": 5, "follow_up": 12},
    ]))
    result = _simulate(protocol, "--scenarios", str(scenarios))
    assert result.exit_code == 0, result.output
    doc = json.loads(protocol.with_name("protocol.oc.json").read_text())
    assert [r["scenario"] for r in doc["summary"]] == ["slow_accrual"]


def test_bad_scenarios_file_is_one_line(protocol, tmp_path):
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(yaml.safe_dump([{"name": "x", "effect": 1.0, "sd": -2}]))
    result = _simulate(protocol, "--scenarios", str(scenarios))
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {scenarios}: 0.sd:")


def test_same_seed_same_file_whatever_the_workers(protocol, tmp_path):
    assert _simulate(protocol).exit_code == 0
    synchronous = protocol.with_name("protocol.oc.json").read_text()
    result = CliRunner().invoke(app, ["simulate", str(protocol), "--trials", "2000",
                                      "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert protocol.with_name("protocol.oc.json").read_text() == synchronous
