"""The pipeline that runs a study: protocol -> lock check -> intake -> scoring -> analyses ->
decision -> results files -> report -> bundle.

Each stage is a plain function returning a plain object (see :mod:`trials.stages` and
:mod:`trials.summaries`), so a notebook can stop at any point and inspect it.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az

from trials.audit import AuditLog, now
from trials.data import read_data
from trials.decision import Decision, decide
from trials.errors import LockError, TrialsError
from trials.io import (
    canonical_json,
    sha256_bytes,
    sha256_file,
    staged_directory,
    write_json_atomic,
)
from trials.lock import StudyFiles, check_lock, lock_anchors, read_lock
from trials.measures import compute_measures, read_logs
from trials.panels import equity_measures, multiplicity_adjustment, subgroup_effects
from trials.privacy import load_or_create_key, pseudonymise
from trials.protocol import Protocol, load_protocol
from trials.sequential import (
    monitor,
    monitored_completers,
    open_summary,
    recorded_fractions,
)
from trials.simulate import operating_characteristics
from trials.stages import (
    Fits,
    analysis_frame,
    bayes_spec,
    fit_analyses,
    safety_estimates,
    score_outcomes,
)
from trials.summaries import RESULTS_SCHEMA, fairness_panel, summarise

if TYPE_CHECKING:
    from trials.replicate import SharedInput

# --------------------------------------------------------------------------- environment


def environment_lock() -> str:
    """Exact versions of every installed distribution (``name==version``), sorted."""
    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            seen[name.lower()] = f"{name}=={dist.version}"
    head = f"# python {platform.python_version()} on {platform.platform()}\n"
    return head + "\n".join(seen[k] for k in sorted(seen)) + "\n"


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    results: dict[str, Any]
    decision: Decision
    report: Path | None
    bundle: Path | None


def run_study(
    protocol_path: str | Path,
    data_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    look: str | None = None,
    exploratory: bool = False,
    render: bool = True,
    bundle: bool = True,
    logs: Mapping[str, str | Path | None] | None = None,
    shared_input: SharedInput | None = None,
) -> RunResult:
    """Run the locked protocol on the data and write the run directory atomically.

    Raises :class:`~trials.errors.LockError` when the protocol differs from its lock (unless
    ``exploratory``), :class:`~trials.errors.DataError` listing every data problem; in both
    cases nothing is written and an earlier run in ``out_dir`` is left as it was. ``logs`` names
    the escalation, engagement and adverse-event logs (keys of :data:`trials.measures.LOG_KINDS`).
    ``shared_input`` marks a re-run of a bundle's shared data (:mod:`trials.replicate`): IDs are
    pseudonyms already, rows keep the shared order and the original files' provenance is reported.
    """
    from reports.render import render_reports  # reports sit after the decision in the flow
    from trials.bundle import write_bundle
    from trials.replicate import (
        CONTROLLED_DIR,
        SHARED_DIR,
        write_controlled_index,
        write_shared_data,
    )
    from trials.summaries import protocol_history

    files = StudyFiles.beside(protocol_path)
    protocol = load_protocol(files.protocol)
    out_resolved = Path(out_dir).resolve()
    study_dir = files.protocol.resolve().parent
    if out_resolved == study_dir or out_resolved in study_dir.parents:
        raise TrialsError(f"--out {out_dir}: would replace the folder holding {files.protocol}; "
                          "choose a separate run directory")
    from trials.quasi_protocol import QuasiProtocol
    if isinstance(protocol, QuasiProtocol):
        if look not in (None, "final"):
            raise LockError(f"{files.protocol}: a quasi-experimental study has one look, final")
        from trials.quasi_pipeline import run_quasi
        return run_quasi(protocol, files, data_paths, out_dir, exploratory=exploratory,
                         render=render, bundle=bundle)
    look = look or protocol.design.final_look
    if look not in {lk.id for lk in protocol.design.looks}:
        raise LockError(f"{files.protocol}: design.looks has no look {look!r}")
    audit = AuditLog(files.audit)
    lock: dict[str, Any] | None = None
    if exploratory:
        try:
            lock = check_lock(protocol, files)
        except LockError:
            lock = None
    else:
        lock = check_lock(protocol, files)
    audit.verify(lock_anchors(lock) if lock else (lock_anchors(read_lock(files))
                                                   if files.lock.exists() else []))
    started = now()
    intake = read_data(data_paths, protocol)
    log_paths = {k: v for k, v in (logs or {}).items() if v is not None}
    log_frames = read_logs(log_paths, protocol)
    log_sources = [{"log": k, "file": Path(v).name, "sha256": sha256_file(v)}
                   for k, v in sorted(log_paths.items())]
    audit.append("data_load", {"protocol_id": protocol.id, "files": list(intake.sources),
                               "logs": log_sources})
    if shared_input is not None:  # the key never enters a bundle: do not pseudonymise again
        intake = shared_input.restore(intake, protocol)
        log_sources = shared_input.log_sources
    frame = intake.frame.copy()
    if protocol.privacy.pseudonymise_ids and shared_input is None:
        key = load_or_create_key(files.protocol.parent)
        frame[protocol.data.participant] = pseudonymise(frame[protocol.data.participant], key)
        log_frames = {k: _pseudonymise_log(protocol, k, f, key) for k, f in log_frames.items()}
    scored = score_outcomes(protocol, frame)
    fits = fit_analyses(protocol, scored, look)
    measures = compute_measures(protocol, frame, scored, log_frames)
    safety = {**safety_estimates(protocol, scored), **measures.safety_estimates()}
    monitoring = monitor(protocol, fits.estimates, look,
                         earlier=recorded_fractions(audit.entries(), protocol),
                         completers=monitored_completers(protocol, scored))
    adjusted = multiplicity_adjustment(protocol, fits.estimates)
    decision = decide(protocol, fits.estimates, safety, look=look, exploratory=exploratory,
                      responders=measures.responders,
                      extra=monitoring.criteria if monitoring else (), adjusted=adjusted)
    results = summarise(protocol, intake, scored, fits, safety, look, exploratory, measures)
    results["analysis_details"] = fits.extras
    if adjusted is not None:
        results["multiplicity"] = adjusted
    if look == protocol.design.final_look and protocol.fairness is not None:
        results["subgroup_effects"] = subgroup_effects(protocol, scored)
        results["equity"] = equity_measures(
            protocol, scored, log_frames,
            measures.engagement.per_participant if measures.engagement else None)
    # An exploratory run of an edited protocol still reports the chain it departs from.
    results["protocol_history"] = protocol_history(
        protocol, lock or (read_lock(files) if files.lock.exists() else None))
    design_oc = operating_characteristics(files.protocol, protocol)
    if design_oc is not None:
        results["design"] = {"operating_characteristics": design_oc}
    if monitoring is not None:
        primary = protocol.estimands[0].variable
        results["monitoring"] = {
            "group_sequential": monitoring.to_dict(),
            "open": open_summary(scored, primary.outcome, primary.visit,
                                 protocol.privacy.small_cell_threshold),
        }
    results["data"]["logs"] = log_sources
    results_text = canonical_json(results)
    decision_doc = {"protocol": results["protocol"], **decision.to_dict()}
    decision_text = canonical_json(decision_doc)
    with staged_directory(out_dir) as stage:
        (stage / "results.json").write_text(results_text, encoding="utf-8")
        (stage / "decision.json").write_text(decision_text, encoding="utf-8")
        stamp = "# EXPLORATORY run: not a confirmatory analysis\n" if exploratory else ""
        (stage / "environment.txt").write_text(stamp + environment_lock(), encoding="utf-8")
        share = protocol.privacy.share_analysis_dataset
        for analysis_id, idata in fits.posteriors.items():
            _save_posterior(idata, stage / f"posterior_{analysis_id}.nc",
                            keep_data=share, exploratory=exploratory)
        if share:
            shared = scored.drop(columns=[c for c in scored.columns if c.endswith("_band")])
            shared.to_csv(stage / "analysis_dataset.csv", index=False)
            write_shared_data(stage / SHARED_DIR, protocol, frame, log_frames, intake.sources,
                              intake.dropped_identifiers, log_sources)
        elif protocol.privacy.controlled_access_dataset:
            # Outside the bundle: released only under a data-sharing agreement. The bundle
            # carries their hashes (controlled_data.json) so a re-run can prove it used them.
            folder = write_shared_data(stage / CONTROLLED_DIR, protocol, frame, log_frames,
                                       intake.sources, intake.dropped_identifiers, log_sources)
            write_controlled_index(stage, folder)
        # The final look gets the brief, the full report and the closed/open monitoring
        # report; an interim look only the monitoring report (nothing to brief or publish yet).
        names = (("brief", "full", "monitoring") if look == protocol.design.final_look
                 else ("monitoring",))
        rendered = render_reports(stage, names) if render else []
        report = rendered[0] if rendered else None
        head = audit.append("run", {
            "protocol_id": protocol.id, "protocol_version": protocol.version,
            "protocol_sha256": protocol.sha256(), "look": look, "exploratory": exploratory,
            "results_sha256": sha256_bytes(results_text.encode()),
            "decision": decision.display_label,
            "information_fraction": monitoring.observed_fraction if monitoring else None,
        })
        run_meta = {
            "started": started, "finished": now(), "trials_version": _version(),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "command": "trials run", "look": look, "exploratory": exploratory,
            "protocol_file": files.protocol.name,
            "lock_version": lock["versions"][-1]["version"] if lock else None,
            "audit_head": head.to_dict(),
            "renderer": report.renderer if report else None,
            "reports": [r.html.name for r in rendered],
        }
        write_json_atomic(stage / "run.json", run_meta)
        bundle_path = write_bundle(stage, files) if bundle else None
        # Last gate, still inside the stage: any personal data in any output (bundle members
        # included) or a shared dataset below k-anonymity raises PrivacyError; nothing is written.
        from trials.privacy_scan import check_run_directory
        check_run_directory(stage, protocol, data_paths, log_paths,
                            ids_are_pseudonyms=shared_input is not None)
    run_dir = Path(out_dir).resolve()
    return RunResult(
        run_dir=run_dir, results=results, decision=decision,
        report=(run_dir / report.html.name) if report else None,
        bundle=(run_dir / bundle_path.name) if bundle_path else None,
    )


def _pseudonymise_log(protocol: Protocol, kind: str, frame: Any, key: bytes) -> Any:
    cfg = {"escalations": protocol.safety.escalation,
           "adverse_events": protocol.safety.adverse_events,
           "engagement": protocol.engagement}.get(kind)
    if kind == "clinician_ratings" and protocol.clinician_ratings is not None:
        column = protocol.clinician_ratings.clinician  # staff IDs are pseudonymised too
    elif cfg is not None:
        column = cfg.participant
    else:
        return frame
    if column in frame.columns:
        frame = frame.assign(**{column: pseudonymise(frame[column], key)})
    return frame


def _save_posterior(idata: az.InferenceData, path: Path, *, keep_data: bool,
                    exploratory: bool) -> None:
    """Save the posterior as NetCDF. Participant-level data (the observed outcomes) are left out
    unless the protocol allows sharing the analysis dataset; creation times are dropped so the
    same seed gives the same file contents."""
    groups = [g for g in idata.groups() if keep_data or g not in ("observed_data", "constant_data")]
    idata = az.InferenceData(**{g: getattr(idata, g) for g in groups})
    if "sample_stats" in idata.groups():
        # Wall-clock timings differ between identical runs; they are not results.
        timing = [v for v in ("perf_counter_start", "perf_counter_diff", "process_time_diff")
                  if v in idata.sample_stats]
        idata.sample_stats = idata.sample_stats.drop_vars(timing)
    for group in idata.groups():
        ds = getattr(idata, group)
        for attr in ("created_at", "arviz_version", "inference_library_version",
                     "sampling_time"):
            ds.attrs.pop(attr, None)
        if exploratory:
            ds.attrs["trials_status"] = "EXPLORATORY"
    idata.to_netcdf(str(path))


def _version() -> str:
    try:
        return metadata.version("trials")
    except metadata.PackageNotFoundError:
        return "unknown"


__all__ = [
    "RESULTS_SCHEMA", "Fits", "RunResult", "analysis_frame", "bayes_spec", "fairness_panel",
    "fit_analyses", "run_study", "safety_estimates", "score_outcomes", "summarise",
]
