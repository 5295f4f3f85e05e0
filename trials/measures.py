"""Secondary measures of a run: responders, psychometrics, escalation timeliness, adverse events,
engagement and the AI model version.

Like :mod:`trials.stages`, each function turns a protocol section into plain arguments for
``outcomes`` and ``analysis`` and returns plain objects; small cells are suppressed later, in
:mod:`trials.summaries`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.ancova import AncovaSpec, fit_ancova
from analysis.escalation import escalation_estimates, escalation_summary
from analysis.estimate import Estimate
from analysis.events import adverse_events
from analysis.proportions import risk_difference
from outcomes import change
from outcomes.escalation import match_escalations
from outcomes.psychometrics import psychometrics_table
from outcomes.scoring import keyed_items
from trials.data import item_columns
from trials.errors import AnalysisError, DataError
from trials.protocol import Protocol, Responder, ResponderKind

LOG_KINDS = ("escalations", "engagement", "adverse_events", "downtime", "clinician_ratings")


def _log_given(cfg: Any, log: pd.DataFrame | None, section: str, what: str,
               option: str) -> bool:
    """Whether a configured section has its log; a missing required log is an error."""
    if log is not None:
        return True
    if cfg.required:
        raise DataError(f"{section}: the protocol requires {what} ({option} FILE)")
    return False


def _arms(protocol: Protocol) -> tuple[str, str]:
    control = protocol.design.control_arm.id
    experimental = next(a.id for a in protocol.design.arms if not a.control)
    return experimental, control


# --------------------------------------------------------------------------- responders


def _wide(scored: pd.DataFrame, outcome: str, visit: int | None) -> pd.Series:
    rows = scored.loc[scored["visit"] == visit, ["participant", outcome]]
    return rows.set_index("participant")[outcome]


def responder_indicator(protocol: Protocol, scored: pd.DataFrame, r: Responder) -> pd.Series:
    """Per participant: True / False, or <NA> when the definition cannot be applied."""
    people = pd.Index(scored["participant"].unique(), name="participant")
    inst = protocol.instrument(r.outcome)
    outcome = protocol.outcome(r.outcome)
    x1 = _wide(scored, r.outcome, outcome.baseline_visit).reindex(people)
    x2 = _wide(scored, r.outcome, r.visit).reindex(people)
    hib = inst.higher_is_better
    kind = r.kind
    if kind == ResponderKind.response:
        return change.response(x1, x2, r.fraction)
    if kind == ResponderKind.remission:
        return change.remission(x2, _need(r.threshold, 5.0 if inst.name.startswith("PHQ") else None,
                                          r, "threshold"))
    if kind == ResponderKind.caseness:
        return change.caseness(x2, _need(r.threshold, inst.caseness_threshold, r, "threshold"))
    if kind == ResponderKind.reliable_improvement:
        return change.reliable_improvement(x1, x2, _need(None, inst.reliable_change, r, "rci"),
                                           higher_is_better=hib)
    if kind == ResponderKind.reliable_deterioration:
        return change.reliable_deterioration(x1, x2, _need(None, inst.reliable_change, r, "rci"),
                                             higher_is_better=hib)
    if kind == ResponderKind.mcid:
        return change.mcid_responder(x1, x2, _need(r.mcid, None, r, "mcid"), higher_is_better=hib)
    # recovery and reliable recovery: paired depression and anxiety measures
    if r.paired_outcome is None:
        raise DataError(f"responders.{r.id}: {kind.value} needs paired_outcome")
    other = protocol.instrument(r.paired_outcome)
    y1 = _wide(scored, r.paired_outcome,
               protocol.outcome(r.paired_outcome).baseline_visit).reindex(people)
    y2 = _wide(scored, r.paired_outcome, r.visit).reindex(people)
    thresholds = {"depression_threshold": _need(None, inst.caseness_threshold, r, "threshold"),
                  "anxiety_threshold": _need(None, other.caseness_threshold, r, "threshold")}
    if kind == ResponderKind.recovery:
        return change.recovery(x1, x2, y1, y2, **thresholds)
    return change.reliable_recovery(
        x1, x2, y1, y2, **thresholds,
        depression_rci=_need(None, inst.reliable_change, r, "rci"),
        anxiety_rci=_need(None, other.reliable_change, r, "rci"))


def _need(value: float | None, default: float | None, r: Responder, what: str) -> float:
    out = value if value is not None else default
    if out is None:
        raise DataError(f"responders.{r.id}: {r.kind.value} needs a {what}; the instrument "
                        "defines none, so state it in the protocol")
    return float(out)


def responder_estimates(protocol: Protocol, scored: pd.DataFrame) -> dict[str, Estimate]:
    """Per definition: share of responders by arm and the risk difference (Newcombe)."""
    experimental, control = _arms(protocol)
    arm_of = scored.groupby("participant", sort=False)["arm"].first()
    out = {}
    for r in protocol.responders:
        ind = responder_indicator(protocol, scored, r).dropna()
        arm = arm_of.reindex(ind.index)
        x1 = int(ind[arm == experimental].sum())
        n1 = int((arm == experimental).sum())
        x0 = int(ind[arm == control].sum())
        n0 = int((arm == control).sum())
        if min(n1, n0) == 0:
            continue
        out[r.id] = risk_difference(x1, n1, x0, n0, estimand=r.id, analysis=r.id,
                                    arms=(experimental, control))
    return out


# --------------------------------------------------------------------------- psychometrics


def psychometrics(protocol: Protocol, items: pd.DataFrame, scored: pd.DataFrame) -> dict[str, Any]:
    """Alpha, omega, item missingness, floor and ceiling per outcome, arm and visit."""
    out: dict[str, Any] = {}
    k = protocol.privacy.small_cell_threshold
    for outcome in protocol.outcomes:
        inst = protocol.instrument(outcome.id)
        cols = item_columns(protocol, outcome.id)
        frame = keyed_items(items[cols], inst).assign(
            arm=scored["arm"].to_numpy(), visit=scored["visit"].to_numpy(),
            total=scored[outcome.id].to_numpy())
        frame = frame[frame["visit"].isin(outcome.visits) & frame[cols].notna().any(axis=1)]
        table = psychometrics_table(frame, cols, "total", ("arm", "visit"),
                                    minimum=inst.total_min, maximum=inst.total_max,
                                    small_cell_threshold=k)
        out[outcome.id] = table
    return out


# --------------------------------------------------------------------------- escalation


@dataclass(frozen=True)
class Escalation:
    summary: pd.DataFrame
    estimates: dict[str, Estimate]
    unmatched: int


def escalation_measures(protocol: Protocol, scored: pd.DataFrame,
                        log: pd.DataFrame | None) -> Escalation | None:
    """Match every red-flag visit to the escalation log and time clinician contact."""
    cfg = protocol.safety.escalation
    if cfg is None or not _log_given(cfg, log, "safety.escalation", "an escalation log",
                                     "--escalations"):
        return None
    flag_cols = [f"flag_{f.id}" for f in protocol.safety.red_flags]
    any_flag = scored[flag_cols].fillna(False).astype(bool).any(axis=1)
    flags = scored.loc[any_flag, ["participant", "arm", "visit", "completed_at"]]
    log = log.copy()
    log[cfg.visit] = pd.to_numeric(log[cfg.visit], errors="coerce").astype("Int64")
    flags = flags.assign(visit=flags["visit"].astype("Int64"))
    try:
        matched = match_escalations(
            flags, log, limit_hours=cfg.limit_hours, by="visit", participant="participant",
            arm="arm", visit="visit", flag_time="completed_at", log_participant=cfg.participant,
            log_visit=cfg.visit, contact_time=cfg.contact_time, outcome=cfg.outcome)
    except ValueError as exc:
        raise DataError(f"escalation log: {exc}") from None
    return Escalation(escalation_summary(matched),
                      escalation_estimates(matched), int(len(matched.unmatched_log)))


# --------------------------------------------------------------------------- adverse events


@dataclass(frozen=True)
class AdverseEventResult:
    by_arm: pd.DataFrame
    estimates: dict[str, Estimate] = field(default_factory=dict)


def adverse_event_measures(protocol: Protocol, scored: pd.DataFrame,
                           log: pd.DataFrame | None) -> AdverseEventResult | None:
    cfg = protocol.safety.adverse_events
    if cfg is None or not _log_given(cfg, log, "safety.adverse_events", "an adverse-event log",
                                     "--adverse-events"):
        return None
    experimental, control = _arms(protocol)
    arm_of = scored.groupby("participant", sort=False)["arm"].first()
    events = log.rename(columns={cfg.participant: "participant", cfg.term: "term",
                                 cfg.serious: "serious"})
    unknown = ~events["participant"].isin(arm_of.index)
    if unknown.any():
        raise DataError(f"adverse-event log: {int(unknown.sum())} row(s) name participants who "
                        "are not in the trial data")
    serious = events["serious"].astype(str).str.strip().str.lower()
    events = events.assign(arm=events["participant"].map(arm_of),
                           serious=serious.isin(["true", "1", "yes"]))
    denominators = {a: int((arm_of == a).sum()) for a in (experimental, control)}
    try:
        res = adverse_events(events, denominators, experimental=experimental, control=control,
                             level=cfg.interval_level)
    except ValueError as exc:
        raise DataError(f"adverse-event log: {exc}") from None
    return AdverseEventResult(res.by_arm, dict(res.estimates))


# --------------------------------------------------------------------------- engagement


@dataclass(frozen=True)
class EngagementResult:
    per_participant: pd.DataFrame
    by_version: pd.DataFrame
    estimates: dict[str, Estimate]


def engagement_measures(protocol: Protocol, scored: pd.DataFrame,
                        log: pd.DataFrame | None) -> EngagementResult | None:
    """Dose (sessions, active days, minutes), system reliability and the AI model version.

    Two exploratory analyses of the primary outcome follow the protocol's primary ANCOVA: the
    effect per 5 completed sessions within the experimental arm (dose-response; confounded by
    who chooses to engage, so never causal) and the effect of each AI version against the
    comparator (participants grouped by the version most of their sessions used).
    """
    cfg = protocol.engagement
    if cfg is None or not _log_given(cfg, log, "engagement", "an engagement log",
                                     "--engagement"):
        return None
    log = log.rename(columns={cfg.participant: "participant", cfg.session_start: "start"})
    failed = (log[cfg.failed].astype(str).str.lower().isin(["true", "1", "yes"])
              if cfg.failed else pd.Series(False, index=log.index))
    ok = log[~failed]
    start = pd.to_datetime(ok["start"], errors="coerce")
    per = pd.DataFrame({
        "sessions": ok.groupby("participant").size(),
        "active_days": start.dt.normalize().groupby(ok["participant"]).nunique(),
    })
    if cfg.duration_minutes:
        minutes = pd.to_numeric(ok[cfg.duration_minutes], errors="coerce")
        per["minutes"] = minutes.groupby(ok["participant"]).sum()
    if cfg.ai_version:
        per["ai_version"] = ok.groupby("participant")[cfg.ai_version].agg(
            lambda s: s.value_counts().sort_index().idxmax())
    people = scored.groupby("participant", sort=False)["arm"].first()
    per = per.reindex(people.index)
    per["arm"] = people
    per[["sessions", "active_days"]] = per[["sessions", "active_days"]].fillna(0)
    by_version = pd.DataFrame()
    if cfg.ai_version:
        by_version = pd.DataFrame({
            "sessions": log.groupby(cfg.ai_version).size(),
            "failed": failed.groupby(log[cfg.ai_version]).sum().astype(int),
        })
        by_version["failed_share"] = by_version["failed"] / by_version["sessions"]
    return EngagementResult(per, by_version, _engagement_estimates(protocol, scored, per))


def _engagement_estimates(protocol: Protocol, scored: pd.DataFrame,
                          per: pd.DataFrame) -> dict[str, Estimate]:
    from trials.stages import analysis_frame

    primary = next((a for a in protocol.analyses if a.engine == "frequentist"), None)
    if primary is None:
        return {}
    experimental, control = _arms(protocol)
    frame = analysis_frame(protocol, scored, primary.id).set_index("participant")
    frame = frame.join(per[["sessions"] + (["ai_version"] if "ai_version" in per else [])])
    out: dict[str, Estimate] = {}
    arm_only = frame[frame["arm"] == experimental].reset_index()
    if arm_only["sessions"].nunique() > 1:
        dose = arm_only.assign(treated=arm_only["sessions"] / 5.0)  # effect per 5 sessions
        covs = tuple(c for c in primary.covariates
                     if c == "baseline" or dose[c].nunique() > 1)
        est = fit_ancova(dose, AncovaSpec(primary.estimand, "dose_per_5_sessions", covs,
                                          primary.interval_level))
        out["dose_per_5_sessions"] = _relabel(est, "dose_response_ancova",
                                              "exploratory: confounded by who engages")
    if "ai_version" in frame:
        versions = sorted(v for v in frame["ai_version"].dropna().unique())
        for version in versions:
            sub = frame[(frame["arm"] == control) | (frame["ai_version"] == version)]
            try:
                est = fit_ancova(sub.reset_index(), AncovaSpec(
                    primary.estimand, f"version_{version}", primary.covariates,
                    primary.interval_level))
            except AnalysisError:
                continue  # exploratory: a version with no analysable outcome is left out
            out[f"version_{version}"] = _relabel(
                est, "ancova_by_ai_version",
                f"exploratory: participants mostly on {version} against all of {control}")
    return out


def _relabel(est: Estimate, model: str, note: str) -> Estimate:
    from dataclasses import replace

    return replace(est, model=model, warnings=(*est.warnings, note))


def summarise_engagement(result: EngagementResult, k: int) -> dict[str, Any]:
    """Median and quartiles by arm; reliability by AI version; suppressed small cells."""
    from trials.privacy import suppress

    rows = []
    for arm, g in result.per_participant.groupby("arm", sort=True):
        s = g["sessions"]
        rows.append({"arm": arm, "participants": suppress(len(g), k),
                     "median_sessions": float(np.median(s)) if len(g) >= k else None,
                     "q1_sessions": float(s.quantile(0.25)) if len(g) >= k else None,
                     "q3_sessions": float(s.quantile(0.75)) if len(g) >= k else None,
                     "median_active_days": (float(g["active_days"].median())
                                            if len(g) >= k else None)})
    versions = [{"ai_version": str(v), "sessions": suppress(int(r["sessions"]), k),
                 "failed": suppress(int(r["failed"]), k),
                 "failed_share": float(r["failed_share"])
                 if not 0 < r["failed"] < k else None}
                for v, r in result.by_version.iterrows()]
    return {"by_arm": rows, "by_ai_version": versions}


# --------------------------------------------------------------------------- reliability


def reliability_measures(protocol: Protocol, log: pd.DataFrame | None) -> dict[str, Any] | None:
    """Downtime incidents within the service period: count, hours down and availability.

    Incidents are clipped to the period; overlapping incidents are merged so no minute of
    downtime counts twice.
    """
    cfg = protocol.reliability
    if cfg is None or not _log_given(cfg, log, "reliability", "a downtime log", "--downtime"):
        return None
    try:
        start = pd.to_datetime(log[cfg.start], errors="coerce", format="ISO8601")
        end = pd.to_datetime(log[cfg.end], errors="coerce", format="ISO8601")
        bad = start.isna() | end.isna() | (end < start)
        if bad.any():
            row = log.index[int(np.flatnonzero(bad.to_numpy())[0])]
            raise DataError(f"downtime log: row {row}: start and end must be date-times with "
                            "end not before start")
        p0, p1 = pd.Timestamp(cfg.period_start), pd.Timestamp(cfg.period_end)
        spans = sorted((max(a, p0), min(b, p1)) for a, b in zip(start, end, strict=True)
                       if b > p0 and a < p1)
    except (TypeError, ValueError) as exc:
        raise DataError("downtime log: mix of date-times with and without a time zone "
                        f"(use one style for the log and the period): {exc}") from None
    merged: list[list[pd.Timestamp]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    down = sum(((b - a).total_seconds() for a, b in merged), 0.0) / 3600
    total = (p1 - p0).total_seconds() / 3600
    return {"incidents": len(spans), "downtime_hours": down, "period_hours": total,
            "availability": 1 - down / total, "period_start": cfg.period_start,
            "period_end": cfg.period_end}


def clinician_rating_measures(protocol: Protocol,
                              log: pd.DataFrame | None) -> dict[str, Any] | None:
    """Clinicians' ratings scored on their instrument: n, mean, SD, median, quartiles."""
    from outcomes.scoring import score_instrument

    cfg = protocol.clinician_ratings
    if cfg is None or not _log_given(cfg, log, "clinician_ratings", "a ratings log",
                                     "--clinician-ratings"):
        return None
    inst = protocol.instrument_named(cfg.instrument)
    key = cfg.instrument.lower().replace("-", "")
    cols = [cfg.item_pattern.format(instrument=key, item=i) for i in range(1, inst.n_items + 1)]
    missing = [c for c in cols if c not in log.columns]
    if missing:
        raise DataError(f"clinician ratings log: column(s) {missing} missing")
    items = log[cols].apply(pd.to_numeric, errors="coerce")
    try:
        totals = score_instrument(items, inst)["total"].dropna()
    except ValueError as exc:
        raise DataError(f"clinician ratings log: {exc}") from None
    k = protocol.privacy.small_cell_threshold
    n = int(len(totals))
    enough = n >= k
    return {"instrument": inst.name, "clinicians": n if enough or n == 0 else f"<{k}",
            "mean": float(totals.mean()) if enough else None,
            "sd": float(totals.std(ddof=1)) if enough and n > 1 else None,
            "median": float(totals.median()) if enough else None,
            "q1": float(totals.quantile(0.25)) if enough else None,
            "q3": float(totals.quantile(0.75)) if enough else None,
            "range": [inst.total_min, inst.total_max], "higher_is_better": inst.higher_is_better}


def read_logs(paths: Mapping[str, Any], protocol: Protocol) -> dict[str, pd.DataFrame]:
    """Read the named logs (escalations, engagement, adverse_events) as text frames."""
    from trials.data import read_table

    unknown = set(paths) - set(LOG_KINDS)
    if unknown:
        raise DataError(f"unknown log kind(s) {sorted(unknown)}; use {', '.join(LOG_KINDS)}")
    frames = {kind: read_table(path) for kind, path in paths.items() if path is not None}
    for kind, frame in frames.items():
        need = [c for c in _log_columns(protocol, kind) if c not in frame.columns]
        if need:
            raise DataError(f"{paths[kind]}: column(s) {', '.join(map(repr, need))} missing "
                            f"from the {kind.replace('_', ' ')} log")
    return frames


def _log_columns(protocol: Protocol, kind: str) -> list[str]:
    """Columns the protocol says a log has (items of clinician ratings are checked later)."""
    esc, ae, eng = protocol.safety.escalation, protocol.safety.adverse_events, protocol.engagement
    rel, cr = protocol.reliability, protocol.clinician_ratings
    if kind == "escalations" and esc:
        return [esc.participant, esc.visit, esc.contact_time, esc.outcome]
    if kind == "adverse_events" and ae:
        return [ae.participant, ae.term, ae.serious]
    if kind == "engagement" and eng:
        optional = [eng.duration_minutes, eng.ai_version, eng.failed]
        return [eng.participant, eng.session_start, *[c for c in optional if c]]
    if kind == "downtime" and rel:
        return [rel.start, rel.end]
    if kind == "clinician_ratings" and cr:
        return [cr.clinician]
    return []


@dataclass(frozen=True)
class Measures:
    """Everything beyond the pre-specified analyses and red flags, for one run."""

    responders: dict[str, Estimate] = field(default_factory=dict)
    psychometrics: dict[str, pd.DataFrame] = field(default_factory=dict)
    escalation: Escalation | None = None
    adverse_events: AdverseEventResult | None = None
    engagement: EngagementResult | None = None
    reliability: dict[str, Any] | None = None
    clinician_ratings: dict[str, Any] | None = None

    def safety_estimates(self) -> dict[str, Estimate]:
        """Measures a harm criterion may name under ``safety``."""
        out: dict[str, Estimate] = {}
        if self.escalation is not None:
            out.update(self.escalation.estimates)
        if self.adverse_events is not None:
            out.update(self.adverse_events.estimates)
        return out


def compute_measures(protocol: Protocol, items: pd.DataFrame, scored: pd.DataFrame,
                     logs: Mapping[str, pd.DataFrame]) -> Measures:
    return Measures(
        responders=responder_estimates(protocol, scored),
        psychometrics=psychometrics(protocol, items, scored),
        escalation=escalation_measures(protocol, scored, logs.get("escalations")),
        adverse_events=adverse_event_measures(protocol, scored, logs.get("adverse_events")),
        engagement=engagement_measures(protocol, scored, logs.get("engagement")),
        reliability=reliability_measures(protocol, logs.get("downtime")),
        clinician_ratings=clinician_rating_measures(protocol, logs.get("clinician_ratings")),
    )
