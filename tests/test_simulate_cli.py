"""`trials simulate`: the protocol's own design under scenarios, before the lock."""

from __future__ import annotations

import json
import re

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


def _simulate(protocol, *extra, report=False):
    return CliRunner().invoke(app, ["simulate", str(protocol), "--scheduler", "synchronous",
                                    "--trials", "2000", "--no-progress",
                                    *([] if report else ["--no-report"]), *extra])


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
    assert not protocol.with_name("protocol.design.html").exists()


def test_oc_json_carries_the_decision_engine_outcomes(protocol):
    assert _simulate(protocol).exit_code == 0
    doc = json.loads(protocol.with_name("protocol.oc.json").read_text())
    row = doc["summary"][0]
    assert {"success", "go", "no_go"} <= set(row)  # old columns kept, new ones added
    scenario = doc["simulation"]["scenarios"][0]
    assert set(scenario["decisions"]) == {"go", "no_go", "stop_efficacy", "stop_futility",
                                          "stop_for_harm"}
    assert all(len(v) == 2 for v in scenario["decisions"].values())
    assert scenario["information_fractions"][-1] == 1.0
    simulated = {c["id"] for c in doc["criteria"] if c["simulated"]}
    assert {"superiority", "bayes_benefit", "futility_cid", "harm_worse"} <= simulated
    assert [lk["id"] for lk in doc["looks"]] == ["interim", "final"]
    assert doc["labels"]["go"] == "GO"


def test_design_report_rendered_offline_beside_the_oc_json(protocol):
    # The one rendering test (about 10 s): the CLI renders design.qmd by default.
    from reports.qmd import validate_qmd
    from reports.render import template_text

    doc = validate_qmd(template_text("design"), "design.qmd")
    assert all("fig-alt" in c.options for c in doc.cells
               if str(c.options.get("label", "")).startswith("fig-"))
    result = _simulate(protocol, report=True)
    assert result.exit_code == 0, result.output
    assert "protocol.design.html" in result.output
    page = protocol.with_name("protocol.design.html").read_text()
    assert "Under no effect the study says GO in" in page
    assert 'alt="Stacked bar charts' in page and "data:image/png;base64," in page
    assert "STOP-FOR-HARM" in page and "bayes_benefit" in page
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
                 "#000000"}
    assert set(re.findall(r"#[0-9A-F]{6}", template_text("design"))) <= okabe_ito


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
