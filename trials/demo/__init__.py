"""The bundled demo study: simulate, lock, run, report and bundle, deterministically."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from trials.io import staged_directory
from trials.lock import lock_protocol
from trials.pipeline import RunResult, run_study

from .simulate import simulate_demo


def demo_protocol_text() -> str:
    return resources.files("trials.demo").joinpath("protocol.yaml").read_text("utf-8")


@dataclass(frozen=True)
class DemoResult:
    out: Path
    protocol: Path
    data: Path
    run: RunResult


def write_demo_study(
    study_dir: str | Path, n: int = 400, seed: int = 20261127
) -> tuple[Path, Path]:
    """Write the demo protocol and its simulated data into ``study_dir`` (not locked)."""
    study = Path(study_dir)
    (study / "data").mkdir(parents=True, exist_ok=True)
    protocol = study / "protocol.yaml"
    protocol.write_text(demo_protocol_text(), encoding="utf-8")
    data = study / "data" / "demo.csv"
    simulate_demo(n=n, seed=seed).to_csv(data, index=False)
    return protocol, data


def run_demo(out: str | Path, n: int = 400, seed: int = 20261127) -> DemoResult:
    """Simulate the study, lock its protocol, run it, render the brief and write the bundle.

    ``out`` is replaced only when everything succeeded.
    """
    with staged_directory(out) as stage:
        protocol, data = write_demo_study(stage / "study", n=n, seed=seed)
        lock_protocol(protocol)
        run_study(protocol, [data], stage / "run")
    final = Path(out).resolve()
    run_dir = final / "run"
    from trials.decision import Decision
    from trials.io import read_json

    decision = Decision.from_dict(read_json(run_dir / "decision.json"))
    result = RunResult(run_dir, read_json(run_dir / "results.json"), decision,
                       run_dir / "brief.html", run_dir / "bundle.zip")
    return DemoResult(final, final / "study" / "protocol.yaml",
                      final / "study" / "data" / "demo.csv", result)
