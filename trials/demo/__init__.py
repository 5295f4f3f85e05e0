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
    interim: RunResult | None = None


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


def write_interim_cut(data: str | Path, planned_analysed: int,
                      fraction: float = 0.5) -> tuple[Path, dict[str, Path]]:
    """The data as they stood when ``fraction`` of the planned primary outcomes were in.

    Writes ``data/interim/`` beside the full data: visits completed by the cut-off date, the
    escalations of those visits' flags, sessions and outages that began by then, and the adverse
    events of the participants enrolled by then. Clinicians rate the companion only at the end.
    """
    import math

    import pandas as pd

    data = Path(data)
    folder = data.parent / "interim"
    folder.mkdir(parents=True, exist_ok=True)
    visits = pd.read_csv(data, dtype=str, keep_default_na=False, na_values=[""])
    when = pd.to_datetime(visits["completed_at"])
    week12 = when[visits["week"] == "12"].sort_values()
    target = min(max(1, math.ceil(fraction * planned_analysed)), len(week12))
    cutoff = week12.iloc[target - 1]
    cut = visits[when <= cutoff]
    cut.to_csv(folder / data.name, index=False)
    full = demo_logs(data)
    keys = set(zip(cut["participant_id"], cut["week"], strict=True))
    people = set(cut["participant_id"])
    logs = {k: pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
            for k, p in full.items() if k != "clinician_ratings"}
    esc = logs["escalations"]
    logs["escalations"] = esc[[(p, w) in keys for p, w in zip(esc["participant_id"],
                                                              esc["week"], strict=True)]]
    eng = logs["engagement"]
    logs["engagement"] = eng[pd.to_datetime(eng["session_start"]) <= cutoff]
    ae = logs["adverse_events"]
    logs["adverse_events"] = ae[ae["participant_id"].isin(people)]
    down = logs["downtime"]
    logs["downtime"] = down[pd.to_datetime(down["start"]) <= cutoff]
    paths = {}
    for kind, frame in logs.items():
        paths[kind] = folder / f"{kind}.csv"
        frame.to_csv(paths[kind], index=False)
    return folder / data.name, paths


def run_demo(out: str | Path, n: int = 400, seed: int = 20261127) -> DemoResult:
    """Simulate the study, lock its protocol, run the interim look on the data as they stood at
    half the information, then the final analysis: decisions, brief and bundles.

    ``out`` is replaced only when everything succeeded.
    """
    from trials.protocol import load_protocol
    from trials.simulate import write_operating_characteristics

    with staged_directory(out) as stage:
        protocol, data = write_demo_study(stage / "study", n=n, seed=seed)
        spec = load_protocol(protocol)
        if spec.simulation is not None:
            write_operating_characteristics(protocol)  # design stage: before the lock
        lock_protocol(protocol)
        if spec.group_sequential is not None and len(spec.design.looks) > 1:
            planned = spec.group_sequential.planned_analysed or spec.design.planned_size
            first = spec.design.looks[0]
            cut, cut_logs = write_interim_cut(data, planned, first.information_fraction)
            # an interim look renders only the monitoring report (see run_study)
            run_study(protocol, [cut], stage / f"run-{first.id}", look=first.id, logs=cut_logs)
        run_study(protocol, [data], stage / "run", logs=demo_logs(data))
    final = Path(out).resolve()
    run_dir = final / "run"
    from trials.decision import Decision
    from trials.io import read_json

    decision = Decision.from_dict(read_json(run_dir / "decision.json"))
    result = RunResult(run_dir, read_json(run_dir / "results.json"), decision,
                       run_dir / "brief.html", run_dir / "bundle.zip")
    interim = None
    interim_dirs = sorted(p for p in final.glob("run-*") if p.is_dir())
    if interim_dirs:
        d = interim_dirs[0]
        interim = RunResult(d, read_json(d / "results.json"),
                            Decision.from_dict(read_json(d / "decision.json")),
                            d / "monitoring.html", d / "bundle.zip")
    return DemoResult(final, final / "study" / "protocol.yaml",
                      final / "study" / "data" / "demo.csv", result, interim)
