"""Report sources are valid Quarto even without the CLI; the offline renderer fails cleanly."""

from __future__ import annotations

import pytest

import reports.render as render
from reports.qmd import QmdError, parse_qmd, validate_qmd
from reports.render import ReportError, render_report, template_text


def test_brief_template_is_valid_quarto():
    doc = validate_qmd(template_text("brief"), "brief.qmd")
    fm = doc.front_matter
    assert fm["jupyter"] == "python3"
    assert fm["format"]["html"]["embed-resources"] is True
    assert "typst" in fm["format"]
    assert fm["execute"]["echo"] is False
    labels = [c.options.get("label") for c in doc.cells if c.kind == "code"]
    assert "fig-effect" in labels and "banner" in labels
    assert {"fig-fairness", "fairness", "criteria", "limits"} <= set(labels)


def test_cell_options_are_parsed_as_yaml():
    doc = parse_qmd("---\ntitle: t\n---\n\n```{python}\n#| label: a\n#| output: asis\nx = 1\n```\n")
    cell = doc.cells[0]
    assert cell.options == {"label": "a", "output": "asis"}
    assert cell.source == "x = 1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no front matter\n", "starts with YAML front matter"),
        ("---\ntitle: [unclosed\n---\n", "not valid YAML"),
        ("---\ntitle: t\n", "not closed"),
        ("---\ntitle: t\nformat: {html: {}, typst: {}}\njupyter: python3\n---\n"
         "```{python}\n#| colour: red\n```\n", "unknown cell option"),
        ("---\ntitle: t\nformat: {html: {}}\njupyter: python3\n---\n", "html and typst"),
        ("---\ntitle: t\nformat: {html: {}, typst: {}}\njupyter: python3\n---\n"
         "```{python}\n#| label: fig-x\nplot()\n```\n", "fig-alt"),
        ("---\ntitle: t\nformat: {html: {}, typst: {}}\njupyter: python3\n---\n"
         "```{python}\nx = 1\n", "not closed"),
    ],
)
def test_invalid_quarto_is_reported_in_one_line(text, message):
    with pytest.raises(QmdError, match=message) as info:
        validate_qmd(text, "x.qmd")
    assert "\n" not in str(info.value)


def test_failing_report_cell_is_one_line_error(tmp_path, monkeypatch):
    bad = ("---\ntitle: t\nformat: {html: {}, typst: {}}\njupyter: python3\n---\n\n"
           "```{python}\nraise RuntimeError('boom')\n```\n")
    monkeypatch.setattr(render, "template_text", lambda name: bad)
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    with pytest.raises(ReportError, match="a report cell failed") as info:
        render_report(tmp_path, "brief")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "brief.html").exists()


def test_offline_renderer_handles_asis_markdown_and_divs(tmp_path, monkeypatch):
    doc = ("---\ntitle: Demo title\nformat: {html: {}, typst: {}}\njupyter: python3\n---\n\n"
           "Intro *text*.\n\n```{python}\n#| output: asis\n"
           "print('::: {.decision-banner}')\nprint('| a | b |\\n|---|---|\\n| 1 | 2 |')\n"
           "print(':::')\n```\n")
    monkeypatch.setattr(render, "template_text", lambda name: doc)
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    out = render_report(tmp_path, "brief")
    html = out.html.read_text()
    assert out.renderer == render.OFFLINE
    assert '<div class="decision-banner">' in html and "<table>" in html
    assert "<h1>Demo title</h1>" in html and "<em>text</em>" in html
