"""The second demo study: an AI triage assistant switched on in clinics at staggered dates,
evaluated as a quasi-experiment (difference-in-differences) with pre-specified criteria and
falsification checks. Simulate, lock, run, report and bundle, deterministically."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from trials.io import read_json, staged_directory
from trials.lock import lock_protocol
from trials.pipeline import RunResult, run_study

from .simulate import simulate_rollout

# The demo's seed. With 20261127 (the trial demo's seed) the recovery pre-trend check fails by
# chance (p = 0.032; the simulation has parallel trends, and each check has a 5% false-alarm
# rate), so that run is NOT INTERPRETABLE; tests/test_rollout_demo.py keeps that case too.
ROLLOUT_SEED = 20261128


def rollout_protocol_text() -> str:
    return resources.files("trials.demo_rollout").joinpath("protocol.yaml").read_text("utf-8")


def write_rollout_study(study_dir: str | Path, seed: int = ROLLOUT_SEED) -> tuple[Path, Path]:
    """Write the protocol (not locked) and the simulated patient records; (protocol, data)."""
    study = Path(study_dir)
    (study / "data").mkdir(parents=True, exist_ok=True)
    protocol = study / "protocol.yaml"
    protocol.write_text(rollout_protocol_text(), encoding="utf-8")
    data = study / "data" / "referrals.csv"
    simulate_rollout(seed=seed).to_csv(data, index=False)
    return protocol, data


def run_rollout_demo(out: str | Path, seed: int = ROLLOUT_SEED) -> RunResult:
    """Simulate, lock and run the rollout study; ``out`` is replaced only on success."""
    from trials.decision import Decision

    with staged_directory(out) as stage:
        protocol, data = write_rollout_study(stage / "study", seed=seed)
        lock_protocol(protocol)
        run_study(protocol, [data], stage / "run")
    run_dir = Path(out).resolve() / "run"
    return RunResult(run_dir, read_json(run_dir / "results.json"),
                     Decision.from_dict(read_json(run_dir / "decision.json")),
                     run_dir / "quasi.html", run_dir / "bundle.zip")
