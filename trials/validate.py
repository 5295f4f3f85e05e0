"""``trials validate``: run the reference suite and report what matched, with the tolerances.

The reference suite is every test module marked ``pytestmark = pytest.mark.reference``: the
tests that compare the package with R (base R, psych, pwr, rpact) or with published tables and
worked examples. :func:`run_validation` runs them with pytest in a subprocess on this very
interpreter and the package's own ``tests/`` folder, reads the per-test outcomes from pytest's
JUnit XML, and writes ``validation.json`` and the rendered ``validation.html`` (an installation
and operational qualification anyone can run and read).

Each check's reference source is the first paragraph of its module's docstring; its tolerances are
read from the test's own assertions (``pytest.approx(abs=..., rel=...)``,
``numpy.testing.assert_allclose(atol=..., rtol=...)``, ``math.isclose``), following names to the
module constants and helper functions they come from, so the report states what the code checks
rather than what a list says it checks.
"""

from __future__ import annotations

import ast
import os
import platform
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from trials.audit import now
from trials.errors import TrialsError
from trials.io import write_json_atomic

MARKER = "reference"
SCHEMA = "trials.validation/1"
JUNIT = "validation-junit.xml"
LOG = "validation-pytest.txt"
# pytest.approx without abs= or rel= compares at these (pytest's documented defaults).
APPROX_DEFAULT = "rel 1e-6 (pytest.approx default)"
_TOLERANCE_KEYWORDS = {"abs": "abs", "rel": "rel", "atol": "abs", "rtol": "rel",
                       "abs_tol": "abs", "rel_tol": "rel"}
_CLOSE_CALLS = {"approx", "assert_allclose", "isclose", "allclose", "assert_almost_equal"}


class ValidationError(TrialsError):
    pass


# --------------------------------------------------------------------------- where the tests are


def find_tests_dir() -> Path | None:
    """The ``tests/`` folder beside the installed packages (a source checkout or an editable
    install); None when the package was installed without its tests (from a wheel)."""
    import trials

    tests = Path(trials.__file__).resolve().parent.parent / "tests"
    if (tests / "conftest.py").is_file() and (tests / "reference").is_dir():
        return tests
    return None


# --------------------------------------------------------------------------- modules and tolerances


@dataclass(frozen=True)
class ModuleInfo:
    """A reference test module: its source line, its docstring and each test's tolerances."""

    file: str  # relative to the project root, e.g. tests/test_events.py
    source: str
    docstring: str
    tolerances: dict[str, tuple[str, ...]]

    def module_tolerances(self) -> tuple[str, ...]:
        seen = dict.fromkeys(t for tols in self.tolerances.values() for t in tols)
        return tuple(sorted(seen, key=_tolerance_sort_key))


def _tolerance_sort_key(text: str) -> tuple[int, float, str]:
    kind, _, value = text.partition(" ")
    try:
        number = float(value)
    except ValueError:  # a name or an expression: sort after the numbers
        number = float("inf")
    return ({"abs": 0, "rel": 1}.get(kind, 2), number, text)


class _Tolerances:
    """Tolerances written in a module's assertions, per test function."""

    def __init__(self, tree: ast.Module, text: str) -> None:
        self.text = text
        self.constants = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                          for t in node.targets if isinstance(t, ast.Name)}
        self.functions: dict[str, ast.FunctionDef] = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                self.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        self.functions.setdefault(f"{node.name}::{item.name}", item)

    def _value(self, node: ast.expr, local: dict[str, ast.expr]) -> str:
        seen = 0
        while isinstance(node, ast.Name) and seen < 5:  # follow a name to what it holds
            found = local.get(node.id) or self.constants.get(node.id)
            if found is None:
                break
            node, seen = found, seen + 1
        return ast.get_source_segment(self.text, node) or ast.unparse(node)

    def of(self, name: str, seen: set[str] | None = None) -> tuple[str, ...]:
        func = self.functions.get(name)
        if func is None:
            return ()
        seen = (seen or set()) | {name}
        local = {t.id: n.value for n in ast.walk(func) if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)}
        found: list[str] = []
        for node in ast.walk(func):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else (
                node.func.id if isinstance(node.func, ast.Name) else "")
            if callee in _CLOSE_CALLS:
                given = [f"{_TOLERANCE_KEYWORDS[k.arg]} {self._value(k.value, local)}"
                         for k in node.keywords if k.arg in _TOLERANCE_KEYWORDS]
                given = [g for g in given if not g.endswith(" 0")]  # rtol=0 beside atol
                found += given or ([APPROX_DEFAULT] if callee == "approx" else [])
            elif callee in self.functions and callee not in seen:  # a module helper
                found += self.of(callee, seen)
        return tuple(dict.fromkeys(found))


def read_module(path: Path, root: Path) -> ModuleInfo:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    doc = ast.get_docstring(tree) or ""
    # The first paragraph: a first line may wrap mid-sentence.
    first = " ".join(doc.strip().split("\n\n", 1)[0].split()) or "(no docstring)"
    # Plain text: reStructuredText literals (``x``) and roles would be rendered as markup.
    first = re.sub(r"`+([^`]+)`+", r"\1", first)
    tols = _Tolerances(tree, text)
    tests = {name: tols.of(name) for name in tols.functions
             if name.rsplit("::", 1)[-1].startswith("test")}
    return ModuleInfo(path.relative_to(root).as_posix(), first, doc, tests)


# --------------------------------------------------------------------------- running pytest


@dataclass(frozen=True)
class Check:
    id: str
    file: str
    function: str
    outcome: str  # passed, failed, error, skipped
    duration: float
    message: str | None

    @property
    def matched(self) -> bool:
        return self.outcome == "passed"


def _testcases(junit: Path) -> Iterator[ET.Element]:
    try:
        tree = ET.parse(junit)
    except (OSError, ET.ParseError) as exc:
        raise ValidationError(f"{junit}: pytest wrote no readable JUnit XML ({exc})") from None
    yield from tree.getroot().iter("testcase")


def parse_junit(junit: Path) -> list[Check]:
    """Per-test outcomes from pytest's JUnit XML (``junit_family=xunit1``, which names the
    file of each test)."""
    checks = []
    for case in _testcases(junit):
        file = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        name = case.get("name", "")
        module = file[:-3].replace("/", ".") if file.endswith(".py") else file
        cls = case.get("classname", "")
        inner = cls[len(module) + 1:] if cls.startswith(module + ".") else ""
        function = (f"{inner}::" if inner else "") + name.split("[", 1)[0]
        outcome, message = "passed", None
        for tag in ("error", "failure", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                if tag == "skipped" and "xfail" in (child.get("type") or ""):
                    outcome = "xfailed"
                lines = (child.get("message") or child.text or "").strip().splitlines()
                message = lines[0][:300] if lines else None
                break
        checks.append(Check(f"{file}::{(inner + '::') if inner else ''}{name}", file, function,
                            outcome, round(float(case.get("time") or 0.0), 3), message))
    return checks


def run_reference_suite(tests_dir: Path, out: Path) -> tuple[list[Check], int, str]:
    """Run the ``reference``-marked tests; (checks, pytest exit code, pytest's last line)."""
    root = tests_dir.parent
    junit = out / JUNIT
    junit.unlink(missing_ok=True)
    # Only the modules that mark themselves are collected: faster, and a module that cannot be
    # imported here (say, a browser test without its browser) does not stop the suite.
    marked = re.compile(rf"^pytestmark\s*=.*\bmark\.{MARKER}\b", re.MULTILINE)
    modules = [str(p) for p in sorted(tests_dir.rglob("test_*.py"))
               if marked.search(p.read_text(encoding="utf-8", errors="replace"))]
    if not modules:
        raise ValidationError(f"{tests_dir}: no test carries the {MARKER!r} marker")
    cmd = [sys.executable, "-m", "pytest", *modules, "-m", MARKER, "-q",
           "-p", "no:cacheprovider", "--rootdir", str(root), "-o", "junit_family=xunit1",
           f"--junitxml={junit}"]
    # PYTEST_ADDOPTS (-k, -x, ...) or an outer pytest's variables must not change what runs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    (out / LOG).write_text(done.stdout + done.stderr, encoding="utf-8")
    lines = [ln for ln in (done.stdout + done.stderr).strip().splitlines() if ln.strip()]
    last = lines[-1].strip("= ") if lines else f"exit code {done.returncode}"
    if done.returncode == 5:
        raise ValidationError(f"{tests_dir}: no test carries the {MARKER!r} marker")
    if done.returncode not in (0, 1) and not junit.exists():
        raise ValidationError(f"pytest could not run the reference suite: {last}")
    return parse_junit(junit), done.returncode, last


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Validation:
    out: Path
    json: Path
    html: Path | None
    checks: tuple[Check, ...]
    pytest_exit: int
    renderer: str | None

    @property
    def matched(self) -> int:
        return sum(c.matched for c in self.checks)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and self.matched == len(self.checks) and self.pytest_exit == 0


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_document(checks: list[Check], modules: dict[str, ModuleInfo], *, started: str,
                   finished: str, pytest_exit: int, pytest_last: str,
                   tests_dir: Path) -> dict[str, Any]:
    by_file: dict[str, list[Check]] = {}
    for c in checks:
        by_file.setdefault(c.file, []).append(c)
    module_rows = []
    for file in sorted(by_file):
        info = modules.get(file)
        rows = by_file[file]
        module_rows.append({
            "file": file, "source": info.source if info else "(module not read)",
            "docstring": info.docstring if info else "",
            "checks": len(rows), "matched": sum(c.matched for c in rows),
            "tolerances": list(info.module_tolerances()) if info else [],
            "duration": round(sum(c.duration for c in rows), 3),
        })
    tests = []
    for c in checks:
        info = modules.get(c.file)
        tests.append({"id": c.id, "module": c.file,
                      "source": info.source if info else "(module not read)",
                      "outcome": c.outcome, "matched": c.matched, "duration": c.duration,
                      "tolerances": list(info.tolerances.get(c.function, ())) if info else [],
                      "message": c.message})
    matched = sum(c.matched for c in checks)
    return {
        "schema": SCHEMA,
        "started": started, "finished": finished,
        "command": "trials validate",
        "selection": f"pytest -m {MARKER} on the modules of {tests_dir.name}/ that set "
                     f"pytestmark = pytest.mark.{MARKER}",
        "trials_version": _version("trials"), "pytest_version": _version("pytest"),
        "python": platform.python_version(), "platform": platform.platform(),
        "interpreter": sys.executable,
        "pytest_exit_code": pytest_exit, "pytest_summary": pytest_last,
        "summary": {"checks": len(checks), "matched": matched,
                    "not_matched": len(checks) - matched, "modules": len(module_rows),
                    "all_matched": bool(checks) and matched == len(checks) and pytest_exit == 0},
        "modules": module_rows,
        "tests": tests,
    }


def run_validation(out: str | Path, *, tests_dir: Path | None = None,
                   render: bool = True) -> Validation:
    """Run the reference suite, write ``validation.json`` and render ``validation.html``.

    Parameters
    ----------
    out : path
        Folder for ``validation.json``, ``validation.qmd``, ``validation.html``, pytest's JUnit
        XML and its console output (created if needed; other files in it are left alone).
    tests_dir : path, optional
        The project's ``tests/`` folder (default: beside the installed package).
    render : bool
        Render the report (``reports.render``: Quarto if on PATH, otherwise offline HTML).

    Raises
    ------
    ValidationError
        When the tests are not installed, pytest is missing or nothing carries the marker. A
        reference that does not match is not an error here: it is reported (``Validation.ok``).
    """
    tests_dir = tests_dir or find_tests_dir()
    if tests_dir is None or not (tests_dir / "conftest.py").is_file():
        raise ValidationError("the reference tests are not installed with this package (a wheel "
                              "holds no tests/): run trials validate from a source checkout")
    try:
        import pytest  # noqa: F401  (the suite runs in a subprocess; fail early and clearly)
    except ImportError:
        raise ValidationError("pytest is not installed: pip install 'trials[test]'") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = tests_dir.parent
    started = now()
    checks, code, last = run_reference_suite(tests_dir, out)
    modules = {}
    for file in sorted({c.file for c in checks}):
        path = root / file
        if path.is_file():
            modules[file] = read_module(path, root)
    doc = build_document(checks, modules, started=started, finished=now(), pytest_exit=code,
                         pytest_last=last, tests_dir=tests_dir)
    path = write_json_atomic(out / "validation.json", doc)
    html, renderer = None, None
    if render:
        from reports.render import render_report

        rendered = render_report(out, "validation")
        html, renderer = rendered.html, rendered.renderer
    return Validation(out, path, html, tuple(checks), code, renderer)
