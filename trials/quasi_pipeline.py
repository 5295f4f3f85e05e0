"""The run of a quasi-experimental study: locked protocol -> intake and aggregation (DuckDB) ->
pre-specified estimators -> falsification checks -> decision -> results files -> report ->
bundle, written atomically like a randomised run (:mod:`trials.pipeline`).

Patient identifiers never leave intake: the estimators see unit x period cells (or, for a
regression discontinuity, the running variable and outcomes without identifiers), and every
shared table suppresses cells of fewer patients than the small-cell threshold.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trials.audit import AuditLog, now
from trials.decision import decide
from trials.errors import LockError
from trials.io import canonical_json, sha256_bytes, staged_directory, write_json_atomic
from trials.lock import StudyFiles, check_lock, lock_anchors, read_lock
from trials.quasi_fitting import fit_quasi, run_check
from trials.quasi_intake import PanelIntake, read_panel
from trials.quasi_protocol import QuasiProtocol

RESULTS_SCHEMA = "trials.quasi-results/1"


def run_quasi(protocol: QuasiProtocol, files: StudyFiles, data_paths: Sequence[str | Path],
              out_dir: str | Path, *, exploratory: bool = False, render: bool = True,
              bundle: bool = True) -> Any:
    """Run a locked quasi-experimental protocol; see :func:`trials.pipeline.run_study`."""
    from reports.render import render_report
    from trials.bundle import write_bundle
    from trials.pipeline import RunResult, _save_posterior, _version, environment_lock
    from trials.privacy_scan import check_run_directory

    lock: dict[str, Any] | None
    if exploratory:
        try:
            lock = check_lock(protocol, files)  # type: ignore[arg-type]
        except LockError:
            lock = None
    else:
        lock = check_lock(protocol, files)  # type: ignore[arg-type]
    audit = AuditLog(files.audit)
    audit.verify(lock_anchors(lock) if lock else (lock_anchors(read_lock(files))
                                                   if files.lock.exists() else []))
    started = now()
    intake = read_panel(protocol, data_paths)
    audit.append("data_load", {"protocol_id": protocol.id, "files": list(intake.sources),
                               "logs": []})
    fits, raw = {}, {}
    for i, a in enumerate(protocol.analyses):
        fits[a.id], raw[a.id] = fit_quasi(protocol, intake, a, f"analyses.{i}")
    checks = [run_check(protocol, intake, f, raw[f.analysis]) for f in protocol.falsification]
    estimates = {k: v.estimate for k, v in fits.items()}
    decision = decide(protocol, estimates, {}, look="final",  # type: ignore[arg-type]
                      exploratory=exploratory, falsification=checks)
    results = quasi_results(protocol, intake, fits, checks, exploratory)
    results["protocol_history"] = _history(protocol, lock, files)
    results_text = canonical_json(results)
    decision_text = canonical_json({"protocol": results["protocol"], **decision.to_dict()})
    with staged_directory(out_dir) as stage:
        (stage / "results.json").write_text(results_text, encoding="utf-8")
        (stage / "decision.json").write_text(decision_text, encoding="utf-8")
        stamp = "# EXPLORATORY run: not a confirmatory analysis\n" if exploratory else ""
        (stage / "environment.txt").write_text(stamp + environment_lock(), encoding="utf-8")
        for analysis_id, fit in fits.items():
            if fit.idata is not None:
                _save_posterior(fit.idata, stage / f"posterior_{analysis_id}.nc",
                                keep_data=False, exploratory=exploratory)
        rendered = [render_report(stage, "quasi")] if render else []
        report = rendered[0] if rendered else None
        head = audit.append("run", {
            "protocol_id": protocol.id, "protocol_version": protocol.version,
            "protocol_sha256": protocol.sha256(), "look": "final", "exploratory": exploratory,
            "results_sha256": sha256_bytes(results_text.encode()),
            "decision": decision.display_label,
        })
        write_json_atomic(stage / "run.json", {
            "started": started, "finished": now(), "trials_version": _version(),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "command": "trials run", "look": "final", "exploratory": exploratory,
            "protocol_file": files.protocol.name,
            "lock_version": lock["versions"][-1]["version"] if lock else None,
            "audit_head": head.to_dict(), "renderer": report.renderer if report else None,
            "reports": [r.html.name for r in rendered],
        })
        bundle_path = write_bundle(stage, files) if bundle else None
        check_run_directory(stage, protocol, data_paths, {})  # type: ignore[arg-type]
    run_dir = Path(out_dir).resolve()
    return RunResult(run_dir=run_dir, results=results, decision=decision,
                     report=(run_dir / report.html.name) if report else None,
                     bundle=(run_dir / bundle_path.name) if bundle_path else None)


def _history(protocol: QuasiProtocol, lock: dict[str, Any] | None,
             files: StudyFiles) -> dict[str, Any]:
    from trials.summaries import protocol_history

    return protocol_history(protocol,  # type: ignore[arg-type]
                            lock or (read_lock(files) if files.lock.exists() else None))


# --------------------------------------------------------------------------- results


def _suppress(n: int, k: int) -> int | str:
    return f"<{k}" if 0 < n < k else int(n)


def quasi_results(protocol: QuasiProtocol, intake: PanelIntake, fits: dict[str, Any],
                  checks: list[dict[str, Any]], exploratory: bool) -> dict[str, Any]:
    """The run's results as plain, deterministic data: no identifiers, small cells suppressed."""
    k = protocol.privacy.small_cell_threshold
    first = next(iter(intake.cells.values()))
    units = first.groupby("unit")["first_treated"].first()
    cohorts = units.fillna(-1).astype(int).value_counts().sort_index()
    trends = {}
    for o in protocol.outcomes:
        cells = intake.cells[o.id]
        cohort = cells["first_treated"].fillna(-1).astype(int)
        g = cells.assign(cohort=cohort, wy=cells["y"] * cells["weight"]).groupby(
            ["cohort", "period"], sort=True)
        agg = pd.DataFrame({"n": g["n"].sum(), "wy": g["wy"].sum(), "w": g["weight"].sum()})
        trends[o.id] = [
            {"cohort": None if c < 0 else int(c), "period": int(p),
             "n": _suppress(int(r.n), k), "mean": None if r.n < k else float(r.wy / r.w)}
            for (c, p), r in agg.iterrows()]
    small_cells = int((first["n"] < k).sum())
    return {
        "schema": RESULTS_SCHEMA,
        "protocol": {"id": protocol.id, "title": protocol.title, "version": protocol.version,
                     "sha256": protocol.sha256()},
        "look": "final",
        "exploratory": exploratory,
        "design": {"type": protocol.design.type, "intervention": protocol.design.intervention,
                   "comparison": protocol.design.comparison},
        "data": {"sources": list(intake.sources), "records": _suppress(intake.n_records, k),
                 "units": int(len(units)), "periods": int(first["period"].nunique()),
                 "cells": int(len(first)), "cells_below_threshold": small_cells,
                 "cohorts": [{"first_exposed": None if c < 0 else int(c), "units": int(n)}
                             for c, n in cohorts.items()]},
        "outcomes": [o.model_dump(mode="json") for o in protocol.outcomes],
        "estimands": [
            {**e.model_dump(mode="json"),
             "analyses": [a.id for a in protocol.analyses if a.estimand == e.id]}
            for e in protocol.estimands],
        "analyses": [{"id": a.id, "estimand": a.estimand, "model": a.model, "engine": a.engine,
                      "purpose": a.purpose, "options": dict(a.options)}
                     for a in protocol.analyses],
        "estimates": [fits[a.id].estimate.to_dict() for a in protocol.analyses],
        "analysis_details": {a.id: fits[a.id].extra for a in protocol.analyses},
        "falsification": checks,
        "trends": trends,
        "small_cell_threshold": k,
    }
