"""Rendering a report: Quarto when its CLI is on PATH, otherwise the offline path.

The offline path executes the same ``.qmd`` as a notebook (nbclient) and writes one
self-contained HTML file: markdown through nbconvert's markdown filter, figures inlined as data
URIs with their ``fig-alt`` text, ``output: asis`` cells treated as markdown as Quarto does, and
Pandoc fenced divs (``::: {.class}``) turned into ``<div class="class">``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from traitlets import default

from reports.qmd import Cell, QmdDocument, validate_qmd
from trials.errors import TrialsError
from trials.io import write_text_atomic

KERNEL_NAME = "trials-python"
OFFLINE = "the offline renderer (nbclient + nbconvert; Quarto CLI not found)"


class ReportError(TrialsError):
    pass


@dataclass(frozen=True)
class Rendered:
    source: Path
    html: Path
    renderer: str
    pdf: Path | None = None


def template_text(name: str) -> str:
    return resources.files("reports").joinpath("templates", f"{name}.qmd").read_text("utf-8")


def render_report(run_dir: str | Path, name: str = "brief") -> Rendered:
    """Copy the template into ``run_dir`` beside the results files and render it there."""
    run_dir = Path(run_dir)
    text = template_text(name)
    validate_qmd(text, f"{name}.qmd")
    source = write_text_atomic(run_dir / f"{name}.qmd", text)
    quarto = shutil.which("quarto")
    if quarto:
        return _render_quarto(quarto, source)
    return _render_offline(source)


def render_reports(run_dir: str | Path, names: Sequence[str]) -> list[Rendered]:
    """Render several reports of one run directory at once (one kernel or Quarto process
    each, up to the cores available); the results are in the order of ``names``."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(len(names), os.cpu_count() or 1))
    if workers == 1:
        return [render_report(run_dir, name) for name in names]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda name: _render_in_thread(run_dir, name), names))


def _render_in_thread(run_dir: str | Path, name: str) -> Rendered:
    """Render in a worker thread, then close the event loop nbclient opened for the thread
    (an unclosed loop would otherwise be reported when the thread's objects are collected)."""
    from jupyter_core.utils import ensure_event_loop

    try:
        return render_report(run_dir, name)
    finally:
        loop = ensure_event_loop()
        if not loop.is_running() and not loop.is_closed():
            loop.close()


def _render_quarto(quarto: str, source: Path) -> Rendered:
    version = subprocess.run([quarto, "--version"], capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, TRIALS_RENDERER=f"Quarto {version}")
    done = subprocess.run([quarto, "render", source.name, "--to", "html"], cwd=source.parent,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReportError(f"{source}: quarto render failed: {done.stderr.strip().splitlines()[-1]}")
    pdf = None
    done = subprocess.run([quarto, "render", source.name, "--to", "typst"], cwd=source.parent,
                          env=env, capture_output=True, text=True)
    if done.returncode == 0 and source.with_suffix(".pdf").exists():
        pdf = source.with_suffix(".pdf")
    return Rendered(source, source.with_suffix(".html"), f"Quarto {version}", pdf)


@contextmanager
def this_python_kernel() -> Iterator[dict[str, Any]]:
    """Keyword arguments for :class:`nbclient.NotebookClient` whose kernel is this very
    interpreter, whatever kernelspecs the machine has, so reports and notebooks run with the
    environment that the bundle records. The client owns and shuts down the kernel."""
    with tempfile.TemporaryDirectory(prefix="trials-kernel-") as tmp:
        spec = Path(tmp) / KERNEL_NAME
        spec.mkdir()
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "trials (this interpreter)", "language": "python",
        }), encoding="utf-8")

        class ThisPythonKernelManager(AsyncKernelManager):
            @default("kernel_spec_manager")
            def _this_python_specs(self) -> KernelSpecManager:
                return KernelSpecManager(kernel_dirs=[tmp], ensure_native_kernel=False)

        yield {"kernel_name": KERNEL_NAME, "kernel_manager_class": ThisPythonKernelManager}


def _render_offline(source: Path) -> Rendered:
    doc = validate_qmd(source.read_text(encoding="utf-8"), source.name)
    nb = nbformat.v4.new_notebook()
    code_cells: list[tuple[Cell, int]] = []
    for cell in doc.cells:
        if cell.kind == "code":
            code_cells.append((cell, len(nb.cells)))
            nb.cells.append(nbformat.v4.new_code_cell(cell.source))
        else:
            nb.cells.append(nbformat.v4.new_markdown_cell(cell.source))
    # The kernel gets its own environment (this process's is left alone, so several reports
    # can render at once).
    env = {**os.environ, "TRIALS_RENDERER": OFFLINE}
    try:
        with this_python_kernel() as kernel:
            client = NotebookClient(nb, timeout=300, coalesce_streams=True, **kernel,
                                    resources={"metadata": {"path": str(source.parent)}})
            client.execute(stderr=subprocess.DEVNULL, env=env)
    except CellExecutionError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "cell failed"
        raise ReportError(f"{source}: a report cell failed: {last}") from None
    body = _body(doc, nb)
    html_path = write_text_atomic(source.with_suffix(".html"), _page(doc, body))
    return Rendered(source, html_path, OFFLINE)


_DIV_OPEN = re.compile(r"^:::+\s*\{(?P<attrs>[^}]*)\}\s*$")
_DIV_CLOSE = re.compile(r"^:::+\s*$")


def _markdown(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    out: list[str] = []
    chunk: list[str] = []

    def flush() -> None:
        if chunk:
            out.append(markdown2html_mistune("\n".join(chunk)))
            chunk.clear()

    for line in text.splitlines():
        m = _DIV_OPEN.match(line)
        if m:
            flush()
            classes = " ".join(a[1:] for a in m.group("attrs").split() if a.startswith("."))
            out.append(f'<div class="{html.escape(classes)}">')
        elif _DIV_CLOSE.match(line):
            flush()
            out.append("</div>")
        else:
            chunk.append(line)
    flush()
    return "\n".join(out)


def _body(doc: QmdDocument, nb: nbformat.NotebookNode) -> str:
    parts: list[str] = []
    code = iter(c for c in doc.cells if c.kind == "code")
    for nb_cell in nb.cells:
        if nb_cell.cell_type == "markdown":
            parts.append(_markdown(nb_cell.source))
            continue
        cell = next(code)
        if cell.options.get("include") is False:
            continue
        asis = cell.options.get("output") == "asis"
        alt = str(cell.options.get("fig-alt", ""))
        for output in nb_cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                text = output.text
                parts.append(_markdown(text) if asis else f"<pre>{html.escape(text)}</pre>")
            elif output.output_type in ("display_data", "execute_result"):
                data = output.get("data", {})
                if "image/png" in data:
                    parts.append(f'<figure><img src="data:image/png;base64,'
                                 f'{data["image/png"].strip()}" alt="{html.escape(alt)}">'
                                 f'<figcaption>{html.escape(alt)}</figcaption></figure>')
                elif "text/html" in data:
                    parts.append(data["text/html"])
                elif "text/markdown" in data:
                    parts.append(_markdown(data["text/markdown"]))
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:52rem;
margin:2rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.5}
h1{font-size:1.7rem;margin-bottom:.2rem}.subtitle{color:#555;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}figure{margin:1rem 0}img{max-width:100%}
figcaption{font-size:.85rem;color:#555}
.decision-banner{border-left:.5rem solid #555;background:#f5f5f5;padding:.6rem 1rem;
margin:1rem 0;font-size:1.05rem}
.decision-go{border-color:#009E73;background:#e8f6f1}
.decision-no-go{border-color:#D55E00;background:#fbeee6}
.decision-stop-for-harm{border-color:#A00000;background:#fbe6e6}
.decision-continue{border-color:#0072B2;background:#e6f0f8}
.decision-not-interpretable{border-color:#CC79A7;background:#f8edf3}
code{background:#f3f3f3;padding:0 .2rem}.anchor-link{display:none}
"""


def _page(doc: QmdDocument, body: str) -> str:
    fm = doc.front_matter
    title = html.escape(str(fm.get("title", "Report")))
    subtitle = fm.get("subtitle")
    sub = f'<p class="subtitle">{html.escape(str(subtitle))}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta name=\"generator\" content=\"trials: {OFFLINE}\">\n"
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{title}</h1>{sub}</header>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
