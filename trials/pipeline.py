"""The pipeline that runs a study: protocol -> lock check -> intake -> scoring -> analyses ->
decision -> results files -> report -> bundle.

Each stage is a plain function returning a plain object, so a notebook can stop at any point and
inspect it. This module is the only place that turns protocol sections into the specification
objects of ``analysis`` and ``outcomes``: those packages never read the protocol.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import arviz as az
import pandas as pd

from analysis.ancova import AncovaSpec, fit_ancova
from analysis.bayes_ancova import (
    BayesAncovaSpec,
    DiagnosticsGate,
    Prior,
    SamplerSettings,
    fit_bayes_ancova,
)
from analysis.dataset import VisitEstimandSpec, visit_frame
from analysis.estimate import Estimate
from analysis.proportions import risk_difference
from outcomes.instruments import get_instrument
from outcomes.safety import participant_flags, red_flag_visits
from outcomes.scoring import score_instrument
from trials.audit import AuditLog, now
from trials.data import Intake, item_columns, read_data
from trials.decision import Decision, decide
from trials.errors import LockError, TrialsError
from trials.io import canonical_json, sha256_bytes, staged_directory, write_json_atomic
from trials.lock import StudyFiles, check_lock, lock_anchors, read_lock
from trials.privacy import load_or_create_key, pseudonymise, suppress
from trials.protocol import Analysis, Protocol, load_protocol

RESULTS_SCHEMA = "trials.results/1"


# --------------------------------------------------------------------------- scoring


def score_outcomes(protocol: Protocol, intake_frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy scored data: ``participant, arm, visit``, participant-level columns, and per outcome
    ``<id>`` (total), ``<id>_band``, ``<id>_n_missing``, ``<id>_prorated``; per red flag
    ``flag_<id>`` (True / False / <NA> when the item was not answered)."""
    cols = protocol.data
    out = intake_frame.rename(
        columns={cols.participant: "participant", cols.arm: "arm", cols.visit: "visit"}
    )
    keep = ["participant", "arm", "visit"]
    keep += [c for c in out.columns if c in (*protocol.design.strata, *cols.participant_columns)]
    scored = out[keep].copy()
    for outcome in protocol.outcomes:
        inst = get_instrument(outcome.instrument)
        items = out[item_columns(protocol, outcome.id)]
        s = score_instrument(items, inst)
        scheduled = out["visit"].isin(outcome.visits)
        scored[outcome.id] = s["total"].where(scheduled)
        scored[f"{outcome.id}_band"] = s["band"].where(scheduled)
        scored[f"{outcome.id}_n_missing"] = s["n_missing"].where(scheduled)
        scored[f"{outcome.id}_prorated"] = s["prorated"] & scheduled
    for flag in protocol.safety.red_flags:
        column = item_columns(protocol, flag.outcome)[flag.item - 1]
        scored[f"flag_{flag.id}"] = red_flag_visits(out[column], flag.at_least)
    return scored


# --------------------------------------------------------------------------- analyses


def _visit_spec(protocol: Protocol, analysis: Analysis) -> VisitEstimandSpec:
    est = protocol.estimand(analysis.estimand)
    outcome = protocol.outcome(est.variable.outcome)
    return VisitEstimandSpec(
        outcome=outcome.id, visit=est.variable.visit, baseline_visit=outcome.baseline_visit,
        measure=est.variable.measure, arm=est.treatment.arm, comparator=est.treatment.comparator,
    )


def analysis_frame(protocol: Protocol, scored: pd.DataFrame, analysis_id: str) -> pd.DataFrame:
    """The one-row-per-participant frame an analysis is fitted to."""
    analysis = protocol.analysis(analysis_id)
    return visit_frame(scored, _visit_spec(protocol, analysis), analysis.covariates)


def bayes_spec(protocol: Protocol, analysis: Analysis) -> BayesAncovaSpec:
    assert analysis.prior is not None
    p = analysis.prior
    s = analysis.sampler
    g = analysis.diagnostics
    wanted = sorted({(c.comparator.value, c.threshold) for c in protocol.criteria
                     if c.analysis == analysis.id and c.probability is not None})
    return BayesAncovaSpec(
        estimand=analysis.estimand, analysis=analysis.id, covariates=analysis.covariates,
        interval_level=analysis.interval_level,
        prior=Prior(p.treatment_effect.mean, p.treatment_effect.sd, p.coefficients.mean,
                    p.coefficients.sd, p.intercept.mean, p.intercept.sd, p.residual_sd.sd),
        sampler=SamplerSettings(**s.model_dump()) if s else SamplerSettings(),
        gate=DiagnosticsGate(**g.model_dump()) if g else DiagnosticsGate(),
        probabilities=tuple(wanted),
    )


@dataclass(frozen=True)
class Fits:
    estimates: dict[str, Estimate]
    posteriors: dict[str, az.InferenceData] = field(default_factory=dict)


def fit_analyses(protocol: Protocol, scored: pd.DataFrame) -> Fits:
    """Fit every pre-specified analysis; the key is the analysis id."""
    estimates: dict[str, Estimate] = {}
    posteriors: dict[str, az.InferenceData] = {}
    for analysis in protocol.analyses:
        frame = analysis_frame(protocol, scored, analysis.id)
        if analysis.engine == "frequentist":
            estimates[analysis.id] = fit_ancova(
                frame, AncovaSpec(analysis.estimand, analysis.id, analysis.covariates,
                                  analysis.interval_level))
        else:
            result = fit_bayes_ancova(frame, bayes_spec(protocol, analysis))
            estimates[analysis.id] = result.estimate
            posteriors[analysis.id] = result.idata
    return Fits(estimates, posteriors)


# --------------------------------------------------------------------------- safety


def safety_estimates(protocol: Protocol, scored: pd.DataFrame,
                     level: float = 0.95) -> dict[str, Estimate]:
    """Per red flag: difference in the share of participants flagged in the window,
    experimental minus control (Newcombe interval; Fisher's exact p)."""
    out: dict[str, Estimate] = {}
    control = protocol.design.control_arm.id
    experimental = [a.id for a in protocol.design.arms if not a.control][0]
    for flag in protocol.safety.red_flags:
        baseline = protocol.outcome(flag.outcome).baseline_visit
        window = scored if flag.window == "any" else scored[scored["visit"] != baseline]
        per = participant_flags(window, "participant", f"flag_{flag.id}")
        arms = scored.groupby("participant", sort=True)["arm"].first()
        per = per.join(arms)
        per = per[per["assessed"]]
        x1 = int(per.loc[per["arm"] == experimental, "flagged"].sum())
        n1 = int((per["arm"] == experimental).sum())
        x0 = int(per.loc[per["arm"] == control, "flagged"].sum())
        n0 = int((per["arm"] == control).sum())
        out[flag.id] = risk_difference(x1, n1, x0, n0, level=level, estimand=flag.id,
                                       analysis=flag.id, arms=(experimental, control))
    return out


# --------------------------------------------------------------------------- summaries


def _cell(n: int, threshold: int) -> int | str:
    return suppress(n, threshold)


def summarise(protocol: Protocol, intake: Intake, scored: pd.DataFrame, fits: Fits,
              safety: dict[str, Estimate], look: str, exploratory: bool) -> dict[str, Any]:
    """The run's results as plain, deterministic data (no times, no participant IDs)."""
    k = protocol.privacy.small_cell_threshold
    arms = [a.id for a in protocol.design.arms]
    people = scored.groupby("participant", sort=True).first()
    primary = protocol.estimands[0]
    at_primary = scored.loc[(scored["visit"] == primary.variable.visit)
                            & scored[primary.variable.outcome].notna()]
    analysed = next((e.n_by_arm for e in fits.estimates.values()
                     if e.estimand == primary.id and e.engine == "frequentist"), {})
    flow = {
        a: {
            "randomised": _cell(int((people["arm"] == a).sum()), k),
            "with_primary_outcome": _cell(int((at_primary["arm"] == a).sum()), k),
            "analysed_primary": _cell(int(analysed.get(a, 0)), k),
        }
        for a in arms
    }
    outcomes: dict[str, Any] = {}
    for outcome in protocol.outcomes:
        inst = get_instrument(outcome.instrument)
        rows = []
        for (arm, visit), g in scored.groupby(["arm", "visit"], sort=True):
            if visit not in outcome.visits:
                continue
            vals = g[outcome.id].dropna()
            small = len(vals) < k
            rows.append({"arm": arm, "visit": int(visit), "n": _cell(len(vals), k),
                         "mean": None if small else float(vals.mean()),
                         "sd": None if small or len(vals) < 2 else float(vals.std(ddof=1)),
                         "n_prorated": _cell(int(g[f"{outcome.id}_prorated"].sum()), k)})
        outcomes[outcome.id] = {"instrument": inst.name, "missing_rule": inst.missing_rule,
                                "source": inst.source, "by_arm_visit": rows}
    red_flags = []
    for flag in protocol.safety.red_flags:
        est = safety[flag.id]
        col = scored[f"flag_{flag.id}"]
        by_arm = {}
        for a in arms:
            in_arm = scored["arm"] == a
            by_arm[a] = {
                "participants_flagged": _cell(int(est.details["events"].get(a, 0)), k),
                "participants_assessed": _cell(int(est.n_by_arm.get(a, 0)), k),
                "flagged_visits_all": _cell(int(col[in_arm].fillna(False).sum()), k),
                "visits_not_screened": _cell(int(col[in_arm].isna().sum()), k),
            }
        red_flags.append({"id": flag.id, "label": flag.label, "window": flag.window,
                          "by_arm": by_arm, "estimate": _public_estimate(est, k)})
    return {
        "schema": RESULTS_SCHEMA,
        "protocol": {"id": protocol.id, "title": protocol.title, "version": protocol.version,
                     "sha256": protocol.sha256()},
        "look": look,
        "exploratory": exploratory,
        "data": {"sources": list(intake.sources),
                 "dropped_identifiers": list(intake.dropped_identifiers),
                 "participants": _cell(len(people), k), "rows": int(len(scored))},
        "arms": [{"id": a.id, "label": a.label, "control": a.control}
                 for a in protocol.design.arms],
        "flow": flow,
        "estimands": [
            {"id": e.id, "label": e.label, "population": e.population,
             "outcome": e.variable.outcome, "visit": e.variable.visit,
             "measure": e.variable.measure, "arm": e.treatment.arm,
             "comparator": e.treatment.comparator, "summary": e.summary,
             "intercurrent_events": [ie.model_dump(mode="json") for ie in e.intercurrent_events],
             "clinically_important_difference": e.clinically_important_difference,
             "analyses": [a.id for a in protocol.analyses if a.estimand == e.id]}
            for e in protocol.estimands
        ],
        "estimates": [_shared_estimate(fits.estimates[a.id], k) for a in protocol.analyses],
        "outcomes": outcomes,
        "safety": {"red_flags": red_flags},
        "fairness": fairness_panel(protocol, scored),
        "small_cell_threshold": k,
    }


def _public_estimate(est: Estimate, k: int) -> dict[str, Any]:
    """A safety estimate as shared: event counts of 1..k-1 suppressed, and with them every
    number from which they could be worked back (shares, difference, interval)."""
    d = est.to_dict()
    events = {a: _cell(v, k) for a, v in est.details["events"].items()}
    hidden = any(isinstance(v, str) for v in events.values())
    d["details"] = {"events": events,
                    "proportions": {a: None if hidden else p
                                    for a, p in est.details["proportions"].items()}}
    d["n_by_arm"] = {a: _cell(v, k) for a, v in est.n_by_arm.items()}
    if hidden:
        d.update(estimate=None, ci_lower=None, ci_upper=None, std_error=None)
        d["warnings"] = [*d["warnings"], "small cells: counts and the difference are suppressed "
                         "in shared outputs (the decision used the full data)"]
    d["suppressed"] = hidden
    return d


def _shared_estimate(est: Estimate, k: int) -> dict[str, Any]:
    d = est.to_dict()
    d["n_by_arm"] = {a: _cell(v, k) for a, v in est.n_by_arm.items()}
    return d


def fairness_panel(protocol: Protocol, scored: pd.DataFrame) -> list[dict[str, Any]]:
    """Randomised and retained (primary outcome observed) by subgroup level and arm, with small
    cells suppressed; a share is shown only when neither its numerator nor its complement is a
    small cell (otherwise the count could be worked back)."""
    k = protocol.privacy.small_cell_threshold
    primary = protocol.estimands[0]
    people = scored.groupby("participant", sort=True).first()
    has = scored.loc[(scored["visit"] == primary.variable.visit)
                     & scored[primary.variable.outcome].notna(), "participant"].unique()
    people["retained"] = people.index.isin(has)
    rows = []
    for var in protocol.subgroups:
        for (level, arm), g in people.groupby([var, "arm"], sort=True):
            n, r = len(g), int(g["retained"].sum())
            dropped = n - r
            show_share = n >= k and not (0 < r < k) and not (0 < dropped < k)
            rows.append({"subgroup": var, "level": str(level), "arm": arm,
                         "randomised": _cell(n, k),
                         "retained": _cell(r, k) if show_share else None,
                         "retention": float(r / n) if show_share else None,
                         "suppressed": not show_share, "too_small": n < k})
    return rows


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
) -> RunResult:
    """Run the locked protocol on the data and write the run directory atomically.

    Raises :class:`~trials.errors.LockError` when the protocol differs from its lock (unless
    ``exploratory``), :class:`~trials.errors.DataError` listing every data problem; in both
    cases nothing is written and an earlier run in ``out_dir`` is left as it was.
    """
    from reports.render import render_report  # reports sit after the decision in the flow
    from trials.bundle import write_bundle

    files = StudyFiles.beside(protocol_path)
    protocol = load_protocol(files.protocol)
    out_resolved = Path(out_dir).resolve()
    study_dir = files.protocol.resolve().parent
    if out_resolved == study_dir or out_resolved in study_dir.parents:
        raise TrialsError(f"--out {out_dir}: would replace the folder holding {files.protocol}; "
                          "choose a separate run directory")
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
    audit.append("data_load", {"protocol_id": protocol.id, "files": list(intake.sources)})
    frame = intake.frame.copy()
    if protocol.privacy.pseudonymise_ids:
        key = load_or_create_key(files.protocol.parent)
        frame[protocol.data.participant] = pseudonymise(frame[protocol.data.participant], key)
    scored = score_outcomes(protocol, frame)
    fits = fit_analyses(protocol, scored)
    safety = safety_estimates(protocol, scored)
    decision = decide(protocol, fits.estimates, safety, look=look, exploratory=exploratory)
    results = summarise(protocol, intake, scored, fits, safety, look, exploratory)
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
        report = render_report(stage, "brief") if render else None
        head = audit.append("run", {
            "protocol_id": protocol.id, "protocol_version": protocol.version,
            "protocol_sha256": protocol.sha256(), "look": look, "exploratory": exploratory,
            "results_sha256": sha256_bytes(results_text.encode()),
            "decision": decision.display_label,
        })
        run_meta = {
            "started": started, "finished": now(), "trials_version": _version(),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "command": "trials run", "look": look, "exploratory": exploratory,
            "protocol_file": files.protocol.name,
            "lock_version": lock["versions"][-1]["version"] if lock else None,
            "audit_head": head.to_dict(),
            "renderer": report.renderer if report else None,
        }
        write_json_atomic(stage / "run.json", run_meta)
        bundle_path = write_bundle(stage, files) if bundle else None
    run_dir = Path(out_dir).resolve()
    return RunResult(
        run_dir=run_dir, results=results, decision=decision,
        report=(run_dir / report.html.name) if report else None,
        bundle=(run_dir / bundle_path.name) if bundle_path else None,
    )


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
    "Fits", "RunResult", "analysis_frame", "fit_analyses", "run_study", "safety_estimates",
    "score_outcomes", "summarise",
]
