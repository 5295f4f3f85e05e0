"""The demo study end to end: the spine's promises on its real output."""

from __future__ import annotations

import json
import re

import pytest

from reports.qmd import validate_qmd
from reports.render import template_text
from trials.audit import AuditLog
from trials.bundle import read_members, verify_bundle
from trials.io import read_json


@pytest.fixture(scope="module")
def run_dir(demo_run):
    return demo_run.run.run_dir


def test_run_directory_has_every_output(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"results.json", "decision.json", "run.json", "environment.txt", "brief.qmd",
            "brief.html", "full.qmd", "full.html", "monitoring.qmd", "monitoring.html",
            "bundle.zip", "posterior_primary_bayes.nc"} <= names
    assert not any(n.startswith(".") for n in names)


def test_demo_decision_is_go_for_its_seed(demo_run):
    d = read_json(demo_run.run.run_dir / "decision.json")
    assert d["outcome"] == "go" and d["label"] == "GO" and d["exploratory"] is False
    assert {c["id"] for c in d["criteria"]} == {"superiority", "bayes_benefit", "futility_cid",
                                                "harm_worse", "harm_item9",
                                                "harm_missed_escalation", "harm_slow_escalation",
                                                "harm_serious_events", "gs_efficacy", "gs_harm",
                                                "anxiety_claim", "recovery_claim"}


def test_bayesian_estimate_agrees_with_frequentist_within_monte_carlo_error(demo_run):
    est = {e["analysis"]: e for e in demo_run.run.results["estimates"]}
    f, b = est["primary_ancova"], est["primary_bayes"]
    assert b["reliable"]
    # Monte Carlo error plus the pull of the Normal(0, 5) prior (about SE^2/25 of the effect).
    assert abs(b["estimate"] - f["estimate"]) < 4 * b["diagnostics"]["mcse_effect"] + 0.05
    assert b["std_error"] == pytest.approx(f["std_error"], rel=0.1)


def test_bayesian_diagnostics_are_recorded(demo_run):
    b = next(e for e in demo_run.run.results["estimates"] if e["engine"] == "bayesian")
    diag = b["diagnostics"]
    assert diag["max_rhat"] <= 1.01 and diag["divergences"] == 0
    assert diag["min_ess_bulk"] >= 400 and diag["min_ess_tail"] >= 400


def test_safety_summary_counts_item9_flags(demo_run):
    flag = demo_run.run.results["safety"]["red_flags"][0]
    assert flag["id"] == "phq9_item9"
    for arm in ("ai_cbt", "usual_care"):
        assert isinstance(flag["by_arm"][arm]["participants_flagged"], int)
        assert flag["by_arm"][arm]["participants_flagged"] > 0


def test_bundle_verifies_and_holds_the_study(run_dir):
    manifest = verify_bundle(run_dir / "bundle.zip")
    assert {"protocol/protocol.yaml", "protocol/protocol.lock.json", "protocol/audit.jsonl",
            "results.json", "decision.json", "brief.qmd", "brief.html",
            "environment.txt"} <= set(manifest["files"])


def test_no_participant_identifiers_in_any_shared_output(run_dir):
    members = read_members(run_dir / "bundle.zip")
    for name, data in members.items():
        assert b"CMP-" not in data, name  # the demo's study IDs
    text = "".join((run_dir / name).read_text() for name in (
        "results.json", "brief.html", "full.html", "monitoring.html"))
    assert not re.search(r"P-[0-9a-f]{16}", text)  # nor their pseudonyms
    assert ".pseudonym.key" not in members


def test_audit_log_records_lock_data_and_run(demo_run):
    log = AuditLog(demo_run.protocol.with_name("audit.jsonl"))
    # design simulation, lock, then the interim look (data, run), then the final analysis
    assert [e["event"] for e in log.entries()] == ["simulate", "lock", "data_load", "run",
                                                   "data_load", "run"]
    run_meta = read_json(demo_run.run.run_dir / "run.json")
    assert run_meta["audit_head"]["seq"] == 6


def test_brief_shows_decision_renderer_and_no_errors(run_dir):
    html = (run_dir / "brief.html").read_text()
    assert "decision-banner" in html and "Decision: GO" in html
    assert "Rendered by the offline renderer" in html or "Rendered by Quarto" in html
    assert "Traceback" not in html and "Error" not in html
    assert 'alt="Estimated difference between arms' in html
    assert "data:image/png;base64," in html and "<script" not in html


def test_quarto_source_sits_beside_rendering_and_is_valid(run_dir):
    source = (run_dir / "brief.qmd").read_text()
    assert source == template_text("brief")
    validate_qmd(source, "brief.qmd")


def test_results_record_environment_and_data_provenance(run_dir, demo_run):
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["sources"][0]["file"] == "demo.csv"
    assert len(results["data"]["sources"][0]["sha256"]) == 64
    env = (run_dir / "environment.txt").read_text()
    assert re.search(r"^pymc==", env, re.M) and re.search(r"^statsmodels==", env, re.M)


@pytest.mark.slow
def test_demo_is_deterministic(demo_run, tmp_path):
    from trials.demo import run_demo

    again = run_demo(tmp_path / "again")
    for name in ("results.json", "decision.json"):
        first = (demo_run.run.run_dir / name).read_bytes()
        assert (again.run.run_dir / name).read_bytes() == first, name
    assert again.data.read_bytes() == demo_run.data.read_bytes()


def test_brief_renders_when_safety_cells_are_suppressed(demo_run, tmp_path):
    from reports.render import render_report

    run_dir = demo_run.run.run_dir
    results = json.loads((run_dir / "results.json").read_text())
    flag = results["safety"]["red_flags"][0]
    flag["by_arm"]["ai_cbt"]["participants_flagged"] = "<5"
    flag["estimate"].update(estimate=None, ci_lower=None, ci_upper=None, std_error=None,
                            suppressed=True)
    flag["estimate"]["details"]["proportions"] = {"ai_cbt": None, "usual_care": None}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "decision.json").write_bytes((run_dir / "decision.json").read_bytes())
    html = render_report(tmp_path, "brief").html.read_text()
    assert "withheld (small cells)" in html
    assert "&lt;5" in html


def test_demo_reports_escalation_timeliness_and_richer_measures(demo_run):
    results = demo_run.run.results
    overall = next(r for r in results["escalation"]["summary"] if r["group"] == "overall")
    assert overall["n_missed"] == 0 and overall["share_within_limit"] > 0.9
    assert {e["analysis"] for e in results["escalation"]["estimates"]} == {
        "missed_escalations", "escalation_within_limit"}
    assert {e["analysis"] for e in results["adverse_events"]["estimates"]} == {"ae_any", "sae_any"}
    assert {r["id"] for r in results["responders"]} >= {"phq9_response", "reliable_recovery"}
    assert {"phq9", "gad7", "csq8", "sus"} <= set(results["psychometrics"])
    assert {v["ai_version"] for v in results["engagement"]["by_ai_version"]} == {
        "companion-1.4", "companion-1.5"}
    assert results["reliability"]["incidents"] == 5
    assert results["clinician_ratings"]["instrument"] == "CLIN-SAT"


def test_brief_shows_escalation_timeliness(run_dir):
    html = (run_dir / "brief.html").read_text()
    assert "Escalation of red flags" in html
    assert "Never reached a clinician" in html and "Median hours" in html
    assert "Clinical change at visit 12" in html
    assert "Service:" in html and "Clinicians" in html


def test_psychometrics_show_positive_internal_consistency(demo_run):
    # Reverse-keyed SUS items are turned round before alpha: a negative alpha would mean the
    # keying was ignored.
    rows = demo_run.run.results["psychometrics"]["sus"]
    assert all(r["alpha"] is None or r["alpha"] > 0.7 for r in rows)


def test_interim_look_continues_with_boundaries_and_an_open_report(demo_run):
    interim = demo_run.interim
    assert interim is not None and interim.decision.look == "interim"
    assert interim.decision.outcome == "continue" and interim.decision.label == "CONTINUE"
    gs = interim.results["monitoring"]["group_sequential"]
    # asOF at the observed fraction (about 0.49 of 310): efficacy bound near 3.0, Z well below
    assert 0.4 < gs["observed_fraction"] < 0.6
    assert gs["efficacy_z"] > 2.8 and gs["z"] < gs["efficacy_z"]
    assert gs["futility_z"] < gs["z"]
    assert {c.id for c in interim.decision.criteria} == {"gs_efficacy", "gs_futility", "gs_harm"}
    open_part = interim.results["monitoring"]["open"]
    assert {"randomised", "with_primary_outcome", "primary_by_visit"} <= set(open_part)
    assert all("arm" not in row for row in open_part["primary_by_visit"])


def test_final_look_uses_the_spent_alpha(demo_run):
    gs = demo_run.run.results["monitoring"]["group_sequential"]
    # rpact 3.3.4 asOF, information rates 0.5 and 1: final critical value 1.9686. The interim
    # look's observed fraction (recorded in the audit log) replaces 0.5, which moves the final
    # boundary by less than 0.01 when the interim is held near its planned fraction.
    assert gs["look"] == "final" and gs["efficacy_z"] == pytest.approx(1.9686, abs=0.01)
    interim = demo_run.interim.results["monitoring"]["group_sequential"]
    assert gs["boundaries"]["information_rates"][0] == pytest.approx(interim["observed_fraction"])


def test_operating_characteristics_reach_results_bundle_and_brief(demo_run, run_dir):
    oc = demo_run.run.results["design"]["operating_characteristics"]
    assert oc["matches_protocol"] is True
    by_name = {r["scenario"]: r for r in oc["summary"]}
    # the design's nominal one-sided alpha is 0.025 and its power 0.8 at the planned effect
    assert abs(by_name["no_effect"]["success"] - 0.025) < 4 * by_name["no_effect"]["success_se"]
    assert 0.75 < by_name["planned_effect"]["success"] < 0.85
    assert by_name["harmful"]["harm"] > by_name["no_effect"]["harm"]
    members = read_members(run_dir / "bundle.zip")
    assert {"protocol/protocol.oc.json", "protocol/protocol.oc.png"} <= set(members)
    # the brief keeps the monitoring line; the table of operating characteristics is in the
    # full report
    assert "Group-sequential monitoring" in (run_dir / "brief.html").read_text()
    assert "How often this design gives each answer" in (run_dir / "full.html").read_text()
