"""The report sections for the newer model families (MMRM, multiple imputation and its tipping
point, prior sensitivity, Holm-tested secondary claims, subgroup effects with shrinkage, equity)
and the two-page brief with its fairness panel.

The fixture ``tests/fixtures/report_sections/`` is the demo's ``results.json`` and
``decision.json`` (final look) with the protocol's ``purpose`` filled into ``analysis_plan``.
It holds aggregates only: no participant identifiers (pseudonyms start with ``P-``; the test
below checks that none is there). Each report is rendered once per module (about 10 s each).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from reports.qmd import validate_qmd
from reports.render import _CSS, render_report, template_text
from tests.test_browser import CHROMIUM_ARGS, chromium_path

FIXTURE = Path(__file__).parent / "fixtures" / "report_sections"
OKABE_ITO = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
             "#000000"}
NEUTRAL = {"#555555"}  # reference lines (no difference)
NEW_FIGURES = {"full": ("fig-estimands", "fig-mmrm", "fig-tipping", "fig-subgroups"),
               "brief": ("fig-effect", "fig-fairness")}


def _text(html: str) -> str:
    """The visible text of a rendered page: tags dropped, entities decoded."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _copy(target: Path, edit=None) -> Path:
    results = json.loads((FIXTURE / "results.json").read_text(encoding="utf-8"))
    decision = json.loads((FIXTURE / "decision.json").read_text(encoding="utf-8"))
    if edit:
        edit(results, decision)
    target.mkdir(parents=True, exist_ok=True)
    (target / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (target / "decision.json").write_text(json.dumps(decision), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def results():
    return json.loads((FIXTURE / "results.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def full_html(tmp_path_factory):
    """The full report of the fixture, with the decision turned NOT INTERPRETABLE so the new
    banner kind is rendered too (the full report's sections do not depend on the decision)."""

    def not_interpretable(results, decision):
        decision.update(outcome="not_interpretable", label="NOT INTERPRETABLE",
                        rationale="A pre-specified falsification check failed.")

    run = _copy(tmp_path_factory.mktemp("full"), not_interpretable)
    return render_report(run, "full").html.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def brief(tmp_path_factory):
    run = _copy(tmp_path_factory.mktemp("brief"))
    return render_report(run, "brief").html


# --------------------------------------------------------------------------- sources


def test_fixture_holds_no_participant_identifiers():
    for name in ("results.json", "decision.json"):
        text = (FIXTURE / name).read_text(encoding="utf-8")
        assert not re.search(r'"P-[^"]*"', text), name
        assert '"participant"' not in text and '"participant_id"' not in text, name


@pytest.mark.parametrize("name", ("full", "brief", "monitoring"))
def test_templates_are_valid_quarto(name):
    doc = validate_qmd(template_text(name), f"{name}.qmd")
    for cell in doc.cells:
        if cell.kind == "code" and "plt.show()" in cell.source:
            assert len(str(cell.options.get("fig-alt", ""))) > 40, (name, cell.line)


@pytest.mark.parametrize("name", ("full", "brief"))
def test_new_figures_use_the_okabe_ito_palette(name):
    doc = validate_qmd(template_text(name), f"{name}.qmd")
    cells = {c.options.get("label"): c for c in doc.cells if c.kind == "code"}
    for label in NEW_FIGURES[name]:
        assert label in cells, label
        colours = {c.upper() for c in re.findall(r"#[0-9A-Fa-f]{6}\b", cells[label].source)}
        # fig-estimands and fig-effect take theirs from the setup cell's palette
        assert colours <= OKABE_ITO | NEUTRAL, (label, colours - OKABE_ITO - NEUTRAL)
    setup = cells["setup"].source
    for colour in re.findall(r'"(#[0-9A-Fa-f]{6})"', setup.split("PURPOSE_COLOUR", 1)[1][:200]):
        assert colour.upper() in OKABE_ITO


def test_not_interpretable_banner_has_a_style():
    assert ".decision-not-interpretable{" in _CSS


# --------------------------------------------------------------------------- the full report


def test_full_report_has_the_new_sections_and_no_errors(full_html):
    assert "Traceback" not in full_html and "Error" not in full_html
    assert "|---|" not in full_html  # every table reached the page whole
    text = _text(full_html)
    for heading in ("Estimands and their analyses", "Repeated measures (MMRM)", "Missing data",
                    "Prior sensitivity", "Secondary estimands and multiplicity", "Subgroups",
                    "Equity", "Appendix A: Bayesian diagnostics",
                    "Patient-reported outcomes over time", "Harms"):
        assert heading in text, heading
    images = re.findall(r"<img [^>]*>", full_html)
    assert len(images) >= 6  # flow, estimands, LS means, tipping point, trajectories, subgroups
    for img in images:
        assert re.search(r'alt="[^"]{40,}"', img), img[:120]
    assert '<div class="decision-banner decision-not-interpretable">' in full_html


def test_full_report_groups_analyses_by_purpose(full_html):
    text = _text(full_html)
    order = [text.index(f"{purpose} {analysis}") for purpose, analysis in (
        ("primary", "primary_mmrm"), ("sensitivity", "primary_bayes"),
        ("supportive", "primary_ancova"))]
    assert order == sorted(order)
    assert "sensitivity primary_mi" in text
    # the logistic model's marginal summaries (risk difference, ratio, odds ratio)
    assert "Risk difference 18.73 percentage points" in text
    assert "Odds ratio 3.42" in text and "Risk ratio 2.47" in text


def test_full_report_mmrm_and_missing_data_numbers(full_html):
    text = _text(full_html)
    assert "9.57 (8.91 to 10.23)" in text  # LS mean, companion, week 12
    assert "13.50 (12.89 to 14.11)" in text  # LS mean, usual care, week 4
    assert "8 -1.87 0.456 318.0 -2.77 to -0.97 5.39e-05" in text  # contrast at week 8
    # pooled MI: estimate, RIV, FMI
    assert "-1.52" in text and "0.255" in text and "0.212" in text
    assert ("The conclusion would change if the missing outcomes in the AI-guided CBT "
            "companion arm were on average 2.6 points worse than assumed under MAR.") in text
    assert text.count("changes") >= 4  # deltas 3, 4, 5, 6


def test_full_report_prior_sensitivity_and_multiplicity(full_html):
    text = _text(full_html)
    for prior in ("sceptical 0 (1.22) -1.37 (0.44)", "enthusiastic -2 (1.22) -1.62 (0.44)"):
        assert prior in text, prior
    assert "Holm procedure at family-wise α = 0.05" in text
    assert "recovery_logistic Recovery (PHQ-9 and GAD-7 below caseness) at week 12 2.62e-05 "\
           "5.25e-05 yes yes" in text
    assert "Companion lowers GAD-7 at week 12 (Holm-adjusted p < 0.05): supported" in text


def test_full_report_subgroups_show_no_numbers_for_suppressed_levels(full_html, results):
    rows = re.findall(r"<tr>(.*?)</tr>", full_html, flags=re.S)
    cells = [[_text(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)]
             for r in rows]
    suppressed = [r for r in results["subgroup_effects"][0]["rows"] if r["suppressed"]]
    assert suppressed
    for r in suppressed:
        row = next(c for c in cells if c[:2] == ["Gender" if r["variable"] == "gender" else
                                                  "Ethnicity", r["level"]])
        assert row[2:] == ["<10 / <10", "too small to say anything", "–"], row
    assert "0.31 (5, 283) 0.909" in _text(full_html)  # interaction test, age group
    assert "0.48 (0.02 to 2.03)" in _text(full_html)  # tau, age group
    assert "Subgroup shrinkage model for primary_ancova" in _text(full_html)


def test_full_report_equity_shows_suppression_labels(full_html, results):
    text = _text(full_html)
    assert "Differential attrition" in text
    assert "-2.3 (-10.6 to +6.1)" in text  # all participants
    assert "<10 of 26" in text and "[c] of 32" in text  # attrition, age 18-24, by arm
    assert text.count("All participants") == 1 + len(results["equity"]["measures"])


# --------------------------------------------------------------------------- the brief


def test_brief_has_every_required_element(brief):
    html = brief.read_text(encoding="utf-8")
    assert "Traceback" not in html and "Error" not in html and "|---|" not in html
    text = _text(html)
    assert '<div class="decision-banner decision-go">' in html
    for part in ("Criteria, as pre-registered", "The effect on the primary outcome",
                 "Safety and escalation", "Escalation of red flags",
                 "Fairness: does the effect hold across groups?", "Differential attrition",
                 "What this result does not show", "In plain words."):
        assert part in text, part
    assert "Secondary claims (Holm; they do not change the decision)" in text
    assert "on average 2.6 points worse than assumed under MAR" in text
    assert "overall -2.3 (-10.6 to 6.1)" in text
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) == 2 and all(re.search(r'alt="[^"]{40,}"', i) for i in images)


def test_brief_prints_on_at_most_two_a4_pages(brief, tmp_path):
    executable = chromium_path()
    pdf = tmp_path / "brief.pdf"
    done = subprocess.run(
        [str(executable), "--headless", *CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'p'}",
         "--no-pdf-header-footer", f"--print-to-pdf={pdf}", brief.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and pdf.exists(), done.stderr[-500:]
    data = pdf.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
    assert 1 <= pages <= 2, f"the brief prints on {pages} pages"
    # A4 is 595 x 842 points; the brief's @page rule asks for it whatever the printer default
    for box in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data):
        assert (round(float(box[0])), round(float(box[1]))) == (595, 842), box
    shutil.rmtree(tmp_path / "p", ignore_errors=True)


def test_results_without_the_new_sections_still_render(tmp_path):
    """Older results (no analysis details, multiplicity, subgroup effects or equity, no
    ``purpose``) and a brief whose primary analysis has no tipping point: both reports say
    what is missing instead of failing."""

    def strip(results, decision):
        for key in ("analysis_details", "multiplicity", "subgroup_effects", "equity"):
            results.pop(key)
        for row in results["analysis_plan"]:
            row.pop("purpose")
        decision["criteria"] = [c for c in decision["criteria"] if c["kind"] != "secondary"]

    run = _copy(tmp_path / "run", strip)
    full = _text(render_report(run, "full").html.read_text(encoding="utf-8"))
    for line in ("No mixed model for repeated measures was pre-specified.",
                 "No multiple-imputation analysis was pre-specified",
                 "No prior-sensitivity analysis was pre-specified.",
                 "No multiplicity adjustment was pre-specified.",
                 "The protocol names no subgroup effect analyses.",
                 "The protocol names no equity measures."):
        assert line in full, line
    assert "primary primary_mmrm" in full and "sensitivity primary_mi" in full  # by default
    brief = _text(render_report(run, "brief").html.read_text(encoding="utf-8"))
    assert "The protocol names no subgroup effect analyses." in brief
    assert "Secondary claims" not in brief and "worse than assumed under MAR" not in brief
    for html in (full, brief):
        assert "Traceback" not in html and "Error" not in html
