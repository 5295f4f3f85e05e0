"""`trials validate` (the reference suite as a rendered qualification report) and
`trials replicate` (re-running a bundle's analyses on its shared data)."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from trials.bundle import build_bundle, read_members, verify_bundle
from trials.cli import app
from trials.replicate import compare_json_bytes, first_difference, html_text

RAW_ID = re.compile(r"CMP-\d{4}")  # the demo's original participant IDs


def _trials(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_error_line(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- validate


@pytest.mark.slow
def test_validate_runs_the_reference_suite_and_renders_what_matched(tmp_path: Path) -> None:
    out = tmp_path / "validation"
    result = _trials("validate", "--out", out)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    doc = json.loads((out / "validation.json").read_text(encoding="utf-8"))
    assert doc["summary"]["all_matched"] and doc["summary"]["not_matched"] == 0
    files = {m["file"] for m in doc["modules"]}
    assert {"tests/test_reference_ancova.py", "tests/test_reference_proportions.py",
            "tests/test_boundaries.py", "tests/test_sample_size.py",
            "tests/test_psychometrics.py", "tests/test_events.py",
            "tests/test_instruments.py"} <= files
    assert "tests/test_validate_replicate.py" not in files  # only the reference marker runs
    ancova = next(m for m in doc["modules"] if m["file"] == "tests/test_reference_ancova.py")
    assert ancova["source"] == "ANCOVA against R's lm (R 4.2.2, base stats)."
    assert "abs 1e-6" in ancova["tolerances"]  # TOL = 1e-6, followed from the constant
    test = next(t for t in doc["tests"]
                if t["id"] == "tests/test_reference_ancova.py::test_estimate_matches_r")
    assert test["outcome"] == "passed" and test["tolerances"] == ["abs 1e-6"]
    assert test["source"] == ancova["source"] and test["duration"] >= 0
    page = (out / "validation.html").read_text(encoding="utf-8")
    text = "\n".join(html_text(page))
    assert f"All {doc['summary']['checks']} reference checks matched" in text
    for m in doc["modules"]:
        assert m["source"] in text, m["source"]
    assert "matched" in text and "abs 1e-4" in text  # the rpact tolerance
    assert (out / "validation-junit.xml").exists() and (out / "validation.qmd").exists()


@pytest.fixture
def fake_project(tmp_path: Path) -> Path:
    """A project whose reference suite has one check that matches and one that does not."""
    root = tmp_path / "project"
    (root / "tests" / "reference").mkdir(parents=True)
    (root / "tests" / "conftest.py").write_text("", encoding="utf-8")
    (root / "pyproject.toml").write_text(textwrap.dedent("""\
        [tool.pytest.ini_options]
        markers = ["reference: compares with references"]
        filterwarnings = ["error"]
        """), encoding="utf-8")
    (root / "tests" / "test_fake.py").write_text(textwrap.dedent('''\
        """Fake reference values (made up for this test).

        More words about the source.
        """

        import pytest

        pytestmark = pytest.mark.reference

        TOL = 1e-9


        def _close(x, y):
            assert x == pytest.approx(y, rel=1e-3)


        def test_matches():
            assert 0.1 + 0.2 == pytest.approx(0.3, abs=TOL)


        def test_helper_tolerance():
            _close(1.0, 1.0001)


        def test_does_not_match():
            assert 1.0 == pytest.approx(1.1, abs=TOL)
        '''), encoding="utf-8")
    return root / "tests"


def test_validate_reports_a_mismatch_and_exits_1(fake_project: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trials.validate.find_tests_dir", lambda: fake_project)
    out = tmp_path / "out"
    result = _trials("validate", "--out", out)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "reference checks: 2 of 3 matched (1 modules)" in result.stdout
    assert "failed: tests/test_fake.py::test_does_not_match" in result.stdout
    doc = json.loads((out / "validation.json").read_text(encoding="utf-8"))
    by_id = {t["id"].split("::")[1]: t for t in doc["tests"]}
    assert by_id["test_does_not_match"]["outcome"] == "failed"
    assert by_id["test_does_not_match"]["tolerances"] == ["abs 1e-9"]
    assert by_id["test_helper_tolerance"]["tolerances"] == ["rel 1e-3"]  # through the helper
    assert by_id["test_matches"]["source"] == "Fake reference values (made up for this test)."
    assert not doc["summary"]["all_matched"]
    text = "\n".join(html_text((out / "validation.html").read_text(encoding="utf-8")))
    assert "did not match" in text and "test_does_not_match" in text


def test_validate_without_the_tests_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setattr("trials.validate.find_tests_dir", lambda: None)
    _one_error_line(_trials("validate", "--out", tmp_path / "v"), "not installed")
    assert not (tmp_path / "v").exists()


# --------------------------------------------------------------------------- replicate


@dataclass(frozen=True)
class Bundles:
    shared: Path  # share_analysis_dataset: true, so the bundle holds data/
    private: Path  # the demo's own setting (false): no data/, a rendered brief


def _small_study(folder: Path, share: bool) -> tuple[Path, Path]:
    """The 60-participant demo study, locked, optionally allowed to share its analysis data.

    Demo-like rather than the demo: a shorter sampler (identity, not inference, is tested here),
    and severity as the one participant-level column, since a shared dataset must be
    k-anonymous on those columns (the privacy gate) and 60 people spread over the demo's six
    such columns are not.
    """
    import yaml

    from trials.demo import write_demo_study
    from trials.lock import lock_protocol

    protocol, data = write_demo_study(folder, n=60, seed=7)
    spec = yaml.safe_load(protocol.read_text(encoding="utf-8"))
    spec["design"]["strata"] = ["severity_stratum"]
    spec["data"]["participant_columns"] = ["severity_stratum"]
    spec["subgroups"] = ["severity_stratum"]
    for analysis in spec["analyses"]:
        analysis["covariates"] = ["baseline", "severity_stratum"]
        if "sampler" in analysis:
            analysis["sampler"].update(draws=300, tune=300, chains=2)
    spec["privacy"]["share_analysis_dataset"] = share
    # The private bundle keeps its data entirely at home (no controlled-access release either);
    # tests/test_controlled_replication.py covers the controlled-access route.
    spec["privacy"]["controlled_access_dataset"] = False
    protocol.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    lock_protocol(protocol)
    return protocol, data


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    from reports.render import render_report
    from trials.bundle import write_bundle
    from trials.demo import demo_logs
    from trials.lock import StudyFiles
    from trials.pipeline import run_study

    base = tmp_path_factory.mktemp("replicate")
    protocol, data = _small_study(base / "shared-study", share=True)
    shared = run_study(protocol, [data], base / "shared-run", logs=demo_logs(data),
                       render=False)
    protocol, data = _small_study(base / "private-study", share=False)
    private = run_study(protocol, [data], base / "private-run", logs=demo_logs(data),
                        render=False, bundle=False)
    render_report(private.run_dir, "brief")  # the brief alone: what a bundle re-renders
    assert shared.bundle is not None
    return Bundles(shared.bundle, write_bundle(private.run_dir, StudyFiles.beside(protocol)))


@pytest.mark.slow
def test_shared_bundle_carries_pseudonymised_data_and_no_key(bundles: Bundles) -> None:
    members = read_members(bundles.shared)
    data = {n for n in members if n.startswith("data/")}
    assert {"data/intake.csv", "data/shared.json", "data/escalations.csv",
            "data/engagement.csv", "data/adverse_events.csv"} <= data
    for name in data:
        assert not RAW_ID.search(members[name].decode("utf-8")), name
    assert not any("key" in n for n in members)
    # only the columns the protocol names for a log are shared (no session numbers, notes)
    assert members["data/engagement.csv"].decode().splitlines()[0] == (
        "participant_id,session_start,duration_minutes,ai_version,failed")
    assert members["data/downtime.csv"].decode().splitlines()[0] == "start,end"


@pytest.mark.slow
def test_replicate_shared_bundle_gives_identical_results(bundles: Bundles,
                                                         tmp_path: Path) -> None:
    result = _trials("replicate", bundles.shared, "--out", tmp_path / "rep")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert "results.json: identical" in lines and "decision.json: identical" in lines
    assert "replicated: identical results" in lines
    assert "re-ran look final (confirmatory) on the bundle's shared data" in lines
    record = json.loads((tmp_path / "rep" / "replication.json").read_text(encoding="utf-8"))
    assert record["rerun"] and record["identical"]
    # the re-run did not pseudonymise again: no key was made beside the extracted protocol
    assert not list((tmp_path / "rep" / "study").glob(".pseudonym*"))


@pytest.mark.slow
def test_replicate_names_where_results_differ(bundles: Bundles, tmp_path: Path) -> None:
    # A bundle rebuilt around edited results verifies (its manifest is consistent); the re-run
    # is what shows that those results do not follow from the data.
    members = read_members(bundles.shared)
    results = json.loads(members["results.json"])
    results["estimates"][0]["estimate"] += 0.5
    members["results.json"] = (json.dumps(results, indent=2, sort_keys=True) + "\n").encode()
    del members["manifest.json"]
    rebuilt = tmp_path / "rebuilt.zip"
    rebuilt.write_bytes(build_bundle(members))
    verify_bundle(rebuilt)
    result = _trials("replicate", rebuilt)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "results.json: differs at estimates[0].estimate" in result.stdout
    assert "decision.json: identical" in result.stdout
    assert "NOT replicated: results differ" in result.stdout


@pytest.mark.slow
def test_tampered_data_file_is_caught_by_verify_before_any_rerun(bundles: Bundles,
                                                                 tmp_path: Path) -> None:
    from trials.bundle import _canonical_zip

    members = read_members(bundles.shared)
    lines = members["data/intake.csv"].decode().splitlines(keepends=True)
    lines[1] = lines[1].replace("ai_cbt", "AI_CBT").replace("usual_care", "USUAL_CARE")
    assert len("".join(lines)) == len(members["data/intake.csv"])  # same size, other bytes
    members["data/intake.csv"] = "".join(lines).encode()
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(_canonical_zip(members))  # the manifest is the original one
    out = tmp_path / "rep"
    _one_error_line(_trials("replicate", tampered, "--out", out), "data/intake.csv",
                    "SHA-256 differs")
    assert not out.exists()  # verified first: nothing was extracted or re-run


@pytest.mark.slow
def test_replicate_without_data_says_it_cannot_rerun(bundles: Bundles, tmp_path: Path) -> None:
    assert not any(n.startswith("data/") for n in read_members(bundles.private))
    result = _trials("replicate", bundles.private)
    assert result.exit_code == 3, (result.stdout, result.stderr)
    out = result.stdout
    assert "NOT RE-RUN: the analyses could not be re-run: the protocol does not allow sharing " \
           "the analysis data" in out
    assert "brief.html: re-rendered text identical" in out
    assert "replicated" not in out.replace("NOT RE-RUN", "")


@pytest.mark.slow
def test_replicate_without_data_names_a_report_whose_text_differs(bundles: Bundles,
                                                                   tmp_path: Path) -> None:
    members = read_members(bundles.private)
    del members["manifest.json"]
    members["brief.html"] = members["brief.html"].replace(b"Criteria, as pre-registered",
                                                          b"Criteria, as we now see them")
    edited = tmp_path / "edited.zip"
    edited.write_bytes(build_bundle(members))
    result = _trials("replicate", edited)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "brief.html: re-rendered text differs at line" in result.stdout
    assert "'Criteria, as we now see them'" in result.stdout


@pytest.mark.slow
def test_replicate_of_a_bundle_stripped_of_its_data_explains_why(bundles: Bundles,
                                                                  tmp_path: Path) -> None:
    members = {n: b for n, b in read_members(bundles.shared).items()
               if not n.startswith("data/") and n != "manifest.json"}
    stripped = tmp_path / "stripped.zip"
    stripped.write_bytes(build_bundle(members))
    result = _trials("replicate", stripped)
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "holds no data/ although the protocol allows sharing" in result.stdout
    assert "brief.html: not in the bundle" in result.stdout


def test_replicate_refuses_a_folder_in_use(tmp_path: Path) -> None:
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(build_bundle({"results.json": b"{}\n", "decision.json": b"{}\n"}))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me", encoding="utf-8")
    _one_error_line(_trials("replicate", bundle, "--out", tmp_path / "busy"), "not an empty")
    assert (tmp_path / "busy" / "x").read_text(encoding="utf-8") == "keep me"


# --------------------------------------------------------------------------- comparisons


def test_first_difference_names_the_key_path() -> None:
    a = {"estimates": [{"ci": [1.0, 2.0]}], "look": "final"}
    assert first_difference(a, json.loads(json.dumps(a))) is None
    b = {"estimates": [{"ci": [1.0, 2.5]}], "look": "final"}
    assert first_difference(a, b).startswith("estimates[0].ci[1] (bundle 2.0, re-run 2.5)")
    assert first_difference(a, {"estimates": a["estimates"]}) == "look (only in the bundle)"
    assert first_difference([1], [1, 2]).startswith("<top> (length 1 in the bundle, 2")
    assert first_difference({"x": 1}, {"x": 1.0}) is not None  # 1 and 1.0 print differently


def test_same_values_in_other_bytes_are_reported_as_a_layout_difference() -> None:
    same = compare_json_bytes("r.json", b'{"a": 1}\n', b'{"a": 1}\n')
    assert same.identical and same.line() == "r.json: identical"
    layout = compare_json_bytes("r.json", b'{"a": 1}\n', b'{"a":1}\n')
    assert not layout.identical and "bytes only" in layout.detail


def test_html_text_ignores_styles_and_the_renderer() -> None:
    from reports.render import OFFLINE

    page = (f"<html><head><style>p{{color:red}}</style></head><body><h2 id=\"c\">Criteria"
            '<a class="anchor-link" href="#c">&#182;</a></h2><p>Decision:  GO</p>'
            '<p>See <a href="#c">the criteria</a>.</p>'
            f"<p>Decision:  GO</p>"
            f"<table><tr><td>a</td><td>1</td></tr></table><p><em>Rendered by {OFFLINE}.</em>"
            "</p></body></html>")
    again = page.replace(OFFLINE, "Quarto 1.6.40")
    assert html_text(page) == html_text(again)
    assert html_text(page)[:3] == ["Criteria", "Decision: GO", "See the criteria."]
    assert "p{color" not in " ".join(html_text(page))


def test_validate_tests_folder_is_found_in_a_source_checkout() -> None:
    from trials.validate import find_tests_dir

    found = find_tests_dir()
    assert found is not None and (found / "reference" / "README.md").exists()

