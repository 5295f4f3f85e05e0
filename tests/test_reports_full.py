"""The full (journal) report and the monitoring (DMC) report: valid Quarto, rendered beside the
brief at the final look, only the monitoring report at an interim look, the sections each
audience needs, and no small cell in the results sections they read."""

from __future__ import annotations

import json
import re
from html import unescape

import pandas as pd
import pytest

from reports.qmd import validate_qmd
from reports.render import render_report, template_text
from tests.conftest import demo_protocol
from trials.bundle import verify_bundle
from trials.io import read_json
from trials.summaries import _pooled_cell, baseline_table, protocol_history

REPORTS = ("full", "monitoring")


@pytest.fixture(scope="module")
def run_dir(demo_run):
    return demo_run.run.run_dir


@pytest.fixture(scope="module")
def full_html(run_dir):
    return (run_dir / "full.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def monitoring_html(run_dir):
    return (run_dir / "monitoring.html").read_text(encoding="utf-8")


def _text(html: str) -> str:
    """The visible text of a rendered page: tags dropped, entities decoded."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


# --------------------------------------------------------------------------- the sources


@pytest.mark.parametrize("name", REPORTS)
def test_template_is_valid_quarto_with_alt_text_on_every_figure(name):
    doc = validate_qmd(template_text(name), f"{name}.qmd")
    fm = doc.front_matter
    assert fm["jupyter"] == "python3" and fm["execute"]["echo"] is False
    assert fm["format"]["html"]["embed-resources"] is True and "typst" in fm["format"]
    code = [c for c in doc.cells if c.kind == "code"]
    for cell in code:
        if "plt.show()" in cell.source:  # every figure cell is labelled as one, with alt text
            assert str(cell.options.get("label", "")).startswith("fig-"), cell.line
            assert len(str(cell.options.get("fig-alt", ""))) > 40, cell.line
    # the full report draws the flow, the effects and the trajectories; the monitoring report
    # is tables only (it renders at every look, and matplotlib costs about a second)
    assert sum("plt.show()" in c.source for c in code) >= (3 if name == "full" else 0)


@pytest.mark.parametrize("name", REPORTS)
def test_sources_sit_beside_the_renderings(run_dir, name):
    assert (run_dir / f"{name}.qmd").read_text(encoding="utf-8") == template_text(name)
    validate_qmd((run_dir / f"{name}.qmd").read_text(encoding="utf-8"), f"{name}.qmd")


def test_final_look_renders_all_three_reports(run_dir, demo_run):
    names = {p.name for p in run_dir.iterdir()}
    assert {"brief.html", "full.html", "monitoring.html"} <= names
    assert read_json(run_dir / "run.json")["reports"] == ["brief.html", "full.html",
                                                          "monitoring.html"]
    assert demo_run.run.report == run_dir / "brief.html"
    members = verify_bundle(run_dir / "bundle.zip")["files"]
    assert {"full.qmd", "full.html", "monitoring.qmd", "monitoring.html"} <= set(members)


def test_interim_look_renders_only_the_monitoring_report(demo_run):
    interim = demo_run.interim
    assert interim is not None
    names = {p.name for p in interim.run_dir.iterdir()}
    assert {"monitoring.qmd", "monitoring.html"} <= names
    assert not names & {"brief.html", "brief.qmd", "full.html", "full.qmd"}
    assert read_json(interim.run_dir / "run.json")["reports"] == ["monitoring.html"]
    assert interim.report == interim.run_dir / "monitoring.html"
    text = _text((interim.run_dir / "monitoring.html").read_text(encoding="utf-8"))
    gs = interim.results["monitoring"]["group_sequential"]
    assert "Look: interim (look 1 of 2)" in text
    assert f"stop for efficacy if Z ≥ {gs['efficacy_z']:.2f}" in text
    assert f"stop for futility if Z ≤ {gs['futility_z']:.2f}" in text
    assert "Part 1 — Open report" in text and "Part 2 — Closed report" in text
    assert "Pre-registered rules at this look: CONTINUE" in text


# --------------------------------------------------------------------------- the full report


@pytest.mark.parametrize("name", ("full.html", "monitoring.html"))
def test_rendered_reports_have_no_errors_and_every_image_has_alt_text(run_dir, name):
    html = (run_dir / name).read_text(encoding="utf-8")
    assert "Traceback" not in html and "Error" not in html
    assert "<script" not in html
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) >= (3 if name == "full.html" else 0)
    for img in images:
        assert re.search(r'alt="[^"]{40,}"', img), img[:120]
    # every table reached the page as a table: a split would leave raw "|---|" behind
    assert "|---|" not in html


def test_full_report_has_consort_figure_with_alt_text_and_its_numbers(full_html, demo_run):
    assert "Participant flow (CONSORT 2025)" in full_html
    assert 'alt="CONSORT flow diagram drawn from this run' in full_html
    text = _text(full_html)
    flow = demo_run.run.results["consort"]
    for arm, f in flow["arms"].items():
        assert f["allocated"] == demo_run.run.results["flow"][arm]["randomised"]
        assert f["analysed"] == demo_run.run.results["flow"][arm]["analysed_primary"]
    assert f"Randomised in total: {flow['randomised']}" in text


def test_full_report_table1_shows_both_arms_and_baseline_scores(full_html, demo_run):
    text = _text(full_html)
    assert "Baseline characteristics (Table 1)" in text
    base = demo_run.run.results["baseline"]
    for arm in demo_run.run.results["arms"]:
        assert f"{arm['label']} (n = {base['randomised'][arm['id']]})" in text
    phq = next(c for c in base["continuous"] if c["outcome"] == "phq9")["by_arm"]["ai_cbt"]
    assert f"{phq['mean']:.1f} ({phq['sd']:.1f}); n = {phq['n']}" in text
    for label in ("Age group", "Gender", "Ethnicity", "IMD quintile", "Practice"):
        assert label in text
    assert "&lt;5" in full_html  # the demo has small categories, shown suppressed


def test_full_report_has_every_section(full_html, demo_run):
    text = _text(full_html)
    for heading in ("Estimands and their analyses", "Clinical change (responders)",
                    "Patient-reported outcomes over time", "Harms",
                    "Engagement and AI version", "Measurement properties (psychometrics)",
                    "Design and monitoring", "Protocol amendments and deviations",
                    "Appendix A: Bayesian diagnostics", "Appendix B: Software and environment"):
        assert heading in text, heading
    for analysis in ("primary_mmrm", "primary_ancova", "primary_bayes", "primary_mi",
                     "anxiety_ancova", "recovery_logistic"):
        assert analysis in text
    for heading in ("Repeated measures (MMRM)", "Missing data", "Prior sensitivity",
                    "Secondary estimands and multiplicity", "Subgroups", "Equity"):
        assert heading in text, heading
    tipping = demo_run.run.results["analysis_details"]["primary_mi"]["tipping_point"]
    if tipping["tipping_delta"] is not None:
        assert (f"on average {tipping['tipping_delta']:.1f} points worse than assumed under "
                "MAR") in text
    assert "operating characteristics" in text and "companion-1.5" in text
    assert "Escalation of red flags to a clinician" in text and "Adverse events" in text
    assert 'alt="Mean score by arm at each visit' in full_html


def test_full_report_lists_amendments_and_software_versions(full_html, run_dir, demo_run):
    text = _text(full_html)
    assert "Amendments" in text
    history = demo_run.run.results["protocol_history"]
    assert history["matches_latest_lock"] is True
    assert [v["version"] for v in history["versions"]] == [1]
    assert f"{history['versions'][0]['sha256'][:16]}…" in text
    env = (run_dir / "environment.txt").read_text(encoding="utf-8")
    for package in ("pymc", "statsmodels", "numpy"):
        version = re.search(rf"^{package}==(\S+)$", env, re.M).group(1)
        assert f"{package} {version}" in text, package
    assert "python 3." in text


# --------------------------------------------------------------------------- the monitoring report


def test_monitoring_report_separates_open_and_closed_parts(monitoring_html, demo_run):
    text = _text(monitoring_html)
    start = text.index("Part 1 — Open report (pooled over arms)")
    closed = text.index("Part 2 — Closed report (by arm)")
    assert start < closed
    open_part = text[start:closed]
    for arm in demo_run.run.results["arms"]:  # nothing by arm before the closed part
        assert arm["label"] not in open_part
        assert arm["label"] in text[closed:]
    assert "Recruitment and retention" in open_part and "Safety, pooled" in open_part
    pooled = demo_run.run.results["pooled"]
    assert f"Randomised: {pooled['randomised']} of {pooled['planned_size']} planned" in open_part
    assert "Safety by arm" in text[closed:] and "Participant flow by arm" in text[closed:]
    gs = demo_run.run.results["monitoring"]["group_sequential"]
    assert "Look: final (look 2 of 2)" in text[:start]
    assert f"{gs['z']:.2f}" in text[closed:]


# --------------------------------------------------------------------------- results sections


NOT_COUNTS = {"visit", "primary_visit", "planned_size"}


def _small_counts(obj, k, path="$"):
    """Every integer count in 1..k-1 reachable from ``obj`` (shares and means are floats)."""
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int):
        return [path] if 0 < obj < k else []
    if isinstance(obj, dict):
        return [p for key, v in obj.items() if key not in NOT_COUNTS
                for p in _small_counts(v, k, f"{path}.{key}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _small_counts(v, k, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("look", ("run", "interim"))
def test_new_results_sections_hold_no_small_cell(demo_run, look):
    results = demo_run.run.results if look == "run" else demo_run.interim.results
    k = results["small_cell_threshold"]
    for section in ("baseline", "consort", "pooled"):
        assert _small_counts(results[section], k) == [], section
    history = results["protocol_history"]
    assert all(set(v) == {"version", "event", "sha256", "reason"} for v in history["versions"])


def _people(rows):
    """A scored frame for ``baseline_table``: one baseline visit per (arm, gender) count."""
    frame = []
    pid = 0
    for arm, gender, n in rows:
        for _ in range(n):
            pid += 1
            frame.append({"participant": f"P{pid:03d}", "arm": arm, "visit": 0,
                          "practice": "p1", "severity_stratum": "severe", "age_group": "25-34",
                          "gender": gender, "ethnicity": "White", "imd_quintile": "1",
                          "phq9": 15.0 + pid % 3, "gad7": 10.0})
    return pd.DataFrame(frame)


def test_baseline_table_suppresses_small_cells_and_their_complements():
    protocol = demo_protocol()
    scored = _people([("ai_cbt", "woman", 20), ("ai_cbt", "man", 3),
                      ("usual_care", "woman", 12), ("usual_care", "man", 12)])
    table = baseline_table(protocol, scored)
    gender = next(v for v in table["categorical"] if v["variable"] == "gender")
    cells = {lv["level"]: lv["by_arm"] for lv in gender["levels"]}
    assert cells["man"]["ai_cbt"] == {"n": "<5", "percent": None, "suppressed": True}
    # 20 of 23: the 3 outside could be worked back, so the count and share are withheld
    assert cells["woman"]["ai_cbt"] == {"n": None, "percent": None, "suppressed": True}
    # arm sizes and pooled counts are published: no row or column may hide exactly one cell,
    # or it could be worked back by subtraction (so usual care is withheld here too)
    hidden = [[cells[lv][a]["suppressed"] for a in ("ai_cbt", "usual_care")] for lv in cells]
    assert all(sum(row) != 1 for row in hidden)
    assert all(sum(col) != 1 for col in zip(*hidden, strict=True))
    assert cells["woman"]["usual_care"]["n"] in (None, 12)
    age = next(v for v in table["categorical"] if v["variable"] == "age_group")
    assert age["levels"][0]["by_arm"]["ai_cbt"]["percent"] == 100.0
    phq = table["continuous"][0]["by_arm"]["ai_cbt"]
    assert phq["n"] == 23 and phq["missing"] == 0 and phq["mean"] is not None


def test_pooled_counts_never_give_back_a_suppressed_arm():
    assert _pooled_cell({"a": 3, "b": 40}, 5) is None  # 43 - 40 would reveal the 3
    assert _pooled_cell({"a": 0, "b": 3}, 5) == "<5"
    assert _pooled_cell({"a": 10, "b": 12}, 5) == 22
    assert _pooled_cell({"a": 0, "b": 0}, 5) == 0


def test_protocol_history_keeps_no_times_and_flags_a_departure():
    protocol = demo_protocol()
    lock = {"versions": [{"event": "lock", "version": 1, "sha256": "a" * 64, "reason": None,
                          "time": "2026-01-01T00:00:00Z", "canonical": {}},
                         {"event": "amend", "version": 2, "sha256": protocol.sha256(),
                          "reason": "Add GAD-7", "time": "2026-02-01T00:00:00Z"}]}
    history = protocol_history(protocol, lock)
    assert [v["version"] for v in history["versions"]] == [1, 2]
    assert "time" not in json.dumps(history)
    assert history["matches_latest_lock"] is True
    lock["versions"].pop()
    assert protocol_history(protocol, lock)["matches_latest_lock"] is False
    assert protocol_history(protocol, None) == {"versions": [],
                                                "run_protocol_sha256": protocol.sha256(),
                                                "matches_latest_lock": False}


def test_reports_render_without_monitoring_with_an_amendment_and_suppressed_cells(
    demo_run, tmp_path
):
    """A single-look protocol, an amended protocol, an unreliable Bayesian fit and a
    suppressed safety difference: both reports still render, and say so."""
    run_dir = demo_run.run.run_dir
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    results.pop("monitoring")
    results.pop("design")
    results["protocol_history"]["versions"].append(
        {"version": 2, "event": "amend", "sha256": "b" * 64, "reason": "Add <b>GAD-7</b>"})
    results["protocol_history"]["matches_latest_lock"] = False
    bayes = next(e for e in results["estimates"] if e["engine"] == "bayesian")
    bayes["reliable"] = False
    bayes["diagnostics"]["max_rhat"] = 1.2
    flag = results["safety"]["red_flags"][0]
    flag["by_arm"]["ai_cbt"]["participants_flagged"] = "<5"
    flag["estimate"].update(estimate=None, ci_lower=None, ci_upper=None, suppressed=True)
    flag["estimate"]["details"]["proportions"] = {"ai_cbt": None, "usual_care": None}
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (tmp_path / "decision.json").write_bytes((run_dir / "decision.json").read_bytes())
    full = render_report(tmp_path, "full").html.read_text(encoding="utf-8")
    text = _text(full)
    assert "no group-sequential monitoring" in text
    assert "Add &lt;b&gt;GAD-7&lt;/b&gt;" in full  # reasons are text, never markup
    assert "differs from the latest locked version" in text
    assert "FAILED its diagnostics" in text and "| NO |" not in full
    assert "withheld, because a count is below 5" in text
    monitoring = render_report(tmp_path, "monitoring").html.read_text(encoding="utf-8")
    assert "sets no group-sequential boundaries" in _text(monitoring)
    for html in (full, monitoring):
        assert "Traceback" not in html and "Error" not in html
