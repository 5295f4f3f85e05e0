"""The bundled demo study: simulate, lock, run, report and bundle, deterministically."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from trials.io import staged_directory
from trials.lock import lock_protocol
from trials.pipeline import RunResult, run_study

from .simulate import simulate_demo, simulate_demo_logs


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
    """Write the demo protocol, its simulated visit data and its logs into ``study_dir``.

    The protocol is not locked. Returns (protocol, visit data); the logs sit beside the data
    (see :func:`demo_logs`).
    """
    study = Path(study_dir)
    (study / "data").mkdir(parents=True, exist_ok=True)
    protocol = study / "protocol.yaml"
    protocol.write_text(demo_protocol_text(), encoding="utf-8")
    data = study / "data" / "demo.csv"
    visits = simulate_demo(n=n, seed=seed)
    visits.to_csv(data, index=False)
    for kind, frame in simulate_demo_logs(visits, seed=seed).items():
        frame.to_csv(study / "data" / f"{kind}.csv", index=False)
    return protocol, data


def demo_logs(data: str | Path) -> dict[str, Path]:
    """The demo's escalation, engagement and adverse-event logs beside its visit data."""
    folder = Path(data).parent
    from trials.measures import LOG_KINDS

    return {kind: folder / f"{kind}.csv" for kind in LOG_KINDS}


def run_demo(out: str | Path, n: int = 400, seed: int = 20261127) -> DemoResult:
    """Simulate the study, lock its protocol, run it, render the brief and write the bundle.

    ``out`` is replaced only when everything succeeded.
    """
    with staged_directory(out) as stage:
        protocol, data = write_demo_study(stage / "study", n=n, seed=seed)
        lock_protocol(protocol)
        run_study(protocol, [data], stage / "run", logs=demo_logs(data))
    final = Path(out).resolve()
    run_dir = final / "run"
    from trials.decision import Decision
    from trials.io import read_json

    decision = Decision.from_dict(read_json(run_dir / "decision.json"))
    result = RunResult(run_dir, read_json(run_dir / "results.json"), decision,
                       run_dir / "brief.html", run_dir / "bundle.zip")
    return DemoResult(final, final / "study" / "protocol.yaml",
                      final / "study" / "data" / "demo.csv", result)
