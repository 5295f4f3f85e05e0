"""Operating characteristics of a protocol's own group-sequential design, before it is locked.

The scenarios come from the protocol's ``simulation`` section; the design, looks and direction
from ``group_sequential`` and ``design.looks``. Results are written beside the protocol as
``<stem>.oc.json`` (deterministic for the seed, whatever the Dask workers) with a plot, recorded
in the audit log, and carried into every run's results and bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from designs.simulation import (
    HarmEventRule,
    Scenario,
    SimulationResults,
    SimulationSpec,
    plot_operating_characteristics,
    run_simulation,
)
from trials.audit import AuditLog
from trials.errors import TrialsError
from trials.io import canonical_json, read_json, sha256_bytes, write_text_atomic
from trials.lock import StudyFiles
from trials.protocol import Protocol, Simulation, SimulationScenario, load_protocol
from trials.sequential import design_of


def oc_path(protocol_path: str | Path) -> Path:
    p = Path(protocol_path)
    return p.with_name(f"{p.stem}.oc.json")


def load_scenarios(path: str | Path) -> tuple[SimulationScenario, ...]:
    """Scenarios from a YAML file: a list in the format of the protocol's simulation.scenarios."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrialsError(f"{path}: cannot read scenarios ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and "scenarios" in data:
        data = data["scenarios"]
    try:
        return tuple(TypeAdapter(list[SimulationScenario]).validate_python(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise TrialsError(f"{path}: {where}: {err['msg']}") from None


def simulate_protocol(protocol: Protocol, *, trials: int | None = None, seed: int | None = None,
                      scheduler: Any = "synchronous", progress: bool = False,
                      engine: str | None = None,
                      scenarios: tuple[SimulationScenario, ...] | None = None
                      ) -> SimulationResults:
    gs, sim = protocol.group_sequential, protocol.simulation
    if gs is None:
        raise TrialsError("simulate: the protocol needs a group_sequential section")
    if sim is None:
        if scenarios is None:
            raise TrialsError("simulate: the protocol has no simulation section; give --scenarios")
        sim = Simulation(scenarios=scenarios)
    elif scenarios is not None:
        sim = sim.model_copy(update={"scenarios": scenarios})
    fractions = tuple(lk.information_fraction for lk in protocol.design.looks)
    n_max = (gs.planned_analysed or protocol.design.planned_size) // 2
    spec = SimulationSpec(
        design_of(gs, fractions), direction=gs.direction,
        harm_events=HarmEventRule(z=sim.harm_event_z) if sim.harm_event_z else None)
    cases = [Scenario(s.name, s.effect, s.sd, n_max, dropout=s.dropout,
                      accrual_rate=s.accrual_rate, follow_up=s.follow_up,
                      baseline_correlation=s.baseline_correlation, harm_rate=s.harm_rate)
             for s in sim.scenarios]
    return run_simulation(spec, cases, trials or sim.trials,
                          sim.seed if seed is None else seed, engine=engine or sim.engine,
                          scheduler=scheduler, progress=progress)


def write_operating_characteristics(protocol_path: str | Path, *, scheduler: Any = "synchronous",
                                    progress: bool = False, **overrides: Any) -> Path:
    """Simulate and write ``<stem>.oc.json``, ``.oc.csv`` (the table) and ``.oc.png`` (the
    plot) beside the protocol."""
    protocol = load_protocol(protocol_path)
    results = simulate_protocol(protocol, scheduler=scheduler, progress=progress, **overrides)
    target = oc_path(protocol_path)
    png = target.with_suffix(".png")
    alt = plot_operating_characteristics(results, png)
    write_text_atomic(target.with_suffix(".csv"), results.summary().to_csv(index=False))
    text = canonical_json({
        "protocol": {"id": protocol.id, "version": protocol.version,
                     "sha256": protocol.sha256()},
        "summary": results.summary().to_dict("records"), "simulation": results.to_dict(),
        "plot": {"file": png.name, "alt": alt}})
    write_text_atomic(target, text)
    files = StudyFiles.beside(protocol_path)
    AuditLog(files.audit).append("simulate", {
        "protocol_id": protocol.id, "protocol_version": protocol.version,
        "results_sha256": sha256_bytes(text.encode()), "trials": results.to_dict()["n_trials"]})
    return target


def operating_characteristics(protocol_path: str | Path, protocol: Protocol) -> dict | None:
    """The simulated operating characteristics beside the protocol, if they match it."""
    path = oc_path(protocol_path)
    if not path.exists():
        return None
    doc = read_json(path)
    current = doc.get("protocol", {}).get("sha256") == protocol.sha256()
    return {"summary": doc["summary"], "protocol_version": doc["protocol"]["version"],
            "matches_protocol": current, "file": path.name}
