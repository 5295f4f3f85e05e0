"""Reading Quarto documents: front matter, markdown and code cells with ``#|`` options."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

_FENCE = re.compile(r"^```\{(?P<lang>[A-Za-z0-9_]+)[^}]*\}\s*$")
# Cell options this project's templates use; all are Quarto cell options.
KNOWN_OPTIONS = {"label", "echo", "output", "warning", "error", "include", "eval",
                 "fig-alt", "fig-cap", "tbl-cap", "fig-width", "fig-height"}


class QmdError(ValueError):
    pass


@dataclass(frozen=True)
class Cell:
    kind: str  # "markdown" or "code"
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class QmdDocument:
    front_matter: dict[str, Any]
    cells: tuple[Cell, ...]


def parse_qmd(text: str, name: str = "<qmd>") -> QmdDocument:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise QmdError(f"{name}: line 1: a Quarto document starts with YAML front matter '---'")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise QmdError(f"{name}: front matter is not closed by '---'") from None
    try:
        front = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 2}" if mark is not None else ""
        raise QmdError(f"{name}: front matter is not valid YAML{where} "
                       f"({getattr(exc, 'problem', None) or 'parse error'})") from None
    cells: list[Cell] = []
    buf: list[str] = []
    i = end + 1
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            buf.append(lines[i])
            i += 1
            continue
        if "".join(buf).strip():
            cells.append(Cell("markdown", "\n".join(buf).strip("\n")))
        buf = []
        start = i + 1
        j = start
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise QmdError(f"{name}: line {i + 1}: code cell is not closed by ```")
        body = lines[start:j]
        opts: dict[str, Any] = {}
        n_opt = 0
        for n_opt, ln in enumerate(body):  # noqa: B007
            if not ln.startswith("#|"):
                break
            try:
                parsed = yaml.safe_load(ln[2:].strip())
            except yaml.YAMLError:
                raise QmdError(f"{name}: line {start + n_opt + 1}: bad cell option") from None
            if not isinstance(parsed, dict):
                raise QmdError(f"{name}: line {start + n_opt + 1}: cell option must be key: value")
            opts.update(parsed)
        else:
            n_opt = len(body)
        if m.group("lang") != "python":
            raise QmdError(f"{name}: line {i + 1}: only python cells are supported")
        cells.append(Cell("code", "\n".join(body[n_opt:]), opts, i + 1))
        i = j + 1
    if "".join(buf).strip():
        cells.append(Cell("markdown", "\n".join(buf).strip("\n")))
    return QmdDocument(front, tuple(cells))


def validate_qmd(text: str, name: str = "<qmd>") -> QmdDocument:
    """Check what Quarto needs of our templates, so the source stays valid Quarto even where the
    CLI is absent: front matter with a title, html and typst formats, a jupyter engine, code
    cells with known ``#|`` options and unique labels."""
    doc = parse_qmd(text, name)
    fm = doc.front_matter
    for key in ("title", "format", "jupyter"):
        if key not in fm:
            raise QmdError(f"{name}: front matter: {key!r} is missing")
    if not isinstance(fm["format"], dict) or not {"html", "typst"} <= set(fm["format"]):
        raise QmdError(f"{name}: front matter: format must list html and typst")
    labels = []
    for cell in doc.cells:
        unknown = set(cell.options) - KNOWN_OPTIONS
        if unknown:
            raise QmdError(f"{name}: line {cell.line}: unknown cell option(s) {sorted(unknown)}")
        if "label" in cell.options:
            labels.append(cell.options["label"])
        if str(cell.options.get("label", "")).startswith("fig-") and "fig-alt" not in cell.options:
            raise QmdError(f"{name}: line {cell.line}: figure cell needs fig-alt (alt text)")
    if len(labels) != len(set(labels)):
        raise QmdError(f"{name}: duplicate cell labels")
    return doc
