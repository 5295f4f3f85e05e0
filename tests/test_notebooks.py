"""The worked examples in ``notebooks/`` run top to bottom and are committed without outputs.

Each notebook is executed from a temporary copy, in a temporary working directory, with a kernel
running this very interpreter; the pseudonym key comes from the environment set in conftest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from reports.render import this_python_kernel

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name}: cell {i} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name}: cell {i} has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_top_to_bottom(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits the environment: its temporary folders (tempfile.mkdtemp in the
    # notebooks) then land under tmp_path and are cleaned up with it.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(copy, as_version=4)
    with this_python_kernel() as kernel:
        # The client starts, owns and shuts down the kernel, even when a cell fails.
        client = NotebookClient(nb, timeout=600,
                                resources={"metadata": {"path": str(work)}}, **kernel)
        client.execute()  # raises CellExecutionError naming the failing cell
    errors = [
        (i, out.get("ename"), out.get("evalue"))
        for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.output_type == "error"
    ]
    assert not errors, f"{path.name}: cells raised {errors}"
