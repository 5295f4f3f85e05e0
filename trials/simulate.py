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
from trials.protocol import Protocol, load_protocol
from trials.sequential import design_of


def oc_path(protocol_path: str | Path) -> Path:
    p = Path(protocol_path)
    return p.with_name(f"{p.stem}.oc.json")


def simulate_protocol(protocol: Protocol, *, trials: int | None = None, seed: int | None = None,
                      scheduler: Any = "synchronous", progress: bool = False,
                      engine: str | None = None) -> SimulationResults:
    gs, sim = protocol.group_sequential, protocol.simulation
    if gs is None or sim is None:
        raise TrialsError("simulate: the protocol needs group_sequential and simulation sections")
    fractions = tuple(lk.information_fraction for lk in protocol.design.looks)
    n_max = (gs.planned_analysed or protocol.design.planned_size) // 2
    spec = SimulationSpec(
        design_of(gs, fractions), direction=gs.direction,
        harm_events=HarmEventRule(z=sim.harm_event_z) if sim.harm_event_z else None)
    scenarios = [Scenario(s.name, s.effect, s.sd, n_max, dropout=s.dropout,
                          baseline_correlation=s.baseline_correlation, harm_rate=s.harm_rate)
                 for s in sim.scenarios]
    return run_simulation(spec, scenarios, trials or sim.trials,
                          sim.seed if seed is None else seed, engine=engine or sim.engine,
                          scheduler=scheduler, progress=progress)


def write_operating_characteristics(protocol_path: str | Path, *, scheduler: Any = "synchronous",
                                    progress: bool = False, **overrides: Any) -> Path:
    """Simulate and write ``<stem>.oc.json`` and ``<stem>.oc.png`` beside the protocol."""
    protocol = load_protocol(protocol_path)
    results = simulate_protocol(protocol, scheduler=scheduler, progress=progress, **overrides)
    target = oc_path(protocol_path)
    png = target.with_suffix(".png")
    alt = plot_operating_characteristics(results, png)
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
