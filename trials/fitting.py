"""From a protocol analysis to a fitted model family: the analysis frame each family needs, its
specification object, and the fit.

This module (with :mod:`trials.stages`) is the only place that turns protocol sections into the
specification objects of :mod:`analysis`; the model families never read the protocol. Every
family returns an :class:`~analysis.estimate.Estimate`; what else a family reports (LS means,
imputation diagnostics, a tipping point, a prior-sensitivity table) goes to ``extra``, a
JSON-ready mapping the reports read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import arviz as az
import pandas as pd

from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings
from analysis.estimate import Estimate
from trials.errors import AnalysisError
from trials.protocol import Analysis, Protocol


@dataclass(frozen=True)
class FitOutput:
    estimate: Estimate
    idata: az.InferenceData | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- frames


def _arms(protocol: Protocol, analysis: Analysis) -> tuple[str, str]:
    t = protocol.estimand(analysis.estimand).treatment
    return t.arm, t.comparator


def _people(protocol: Protocol, scored: pd.DataFrame, analysis: Analysis) -> pd.DataFrame:
    """One row per participant of the two compared arms: participant, arm, treated and the
    participant-level columns (first non-missing value)."""
    arm, comparator = _arms(protocol, analysis)
    s = scored[scored["arm"].isin([arm, comparator])]
    cols = [c for c in dict.fromkeys((*protocol.design.strata, *protocol.data.participant_columns,
                                       *_cluster_columns(protocol))) if c in s.columns]
    people = s.groupby("participant", sort=True)[["arm", *cols]].first()
    people["treated"] = (people["arm"] == arm).astype(int)
    return people


def _cluster_columns(protocol: Protocol) -> tuple[str, ...]:
    return tuple(c for c in (protocol.data.cluster, protocol.data.period) if c)


def post_baseline_visits(protocol: Protocol, analysis: Analysis) -> tuple[int, ...]:
    est = protocol.estimand(analysis.estimand)
    outcome = protocol.outcome(est.variable.outcome)
    chosen = getattr(analysis.opts, "visits", None)
    return tuple(chosen or (v for v in outcome.visits if v != outcome.baseline_visit))


def long_frame(protocol: Protocol, scored: pd.DataFrame, analysis: Analysis) -> pd.DataFrame:
    """One row per participant and post-baseline visit (missing outcomes kept as NaN):
    participant, arm, treated, visit, y, baseline and the participant-level columns — the
    single-visit analysis frame (:func:`analysis.dataset.visit_frame`) stacked over visits."""
    from dataclasses import replace

    from analysis.dataset import visit_frame
    from trials.stages import visit_spec

    spec = visit_spec(protocol, analysis)
    columns = [c for c in dict.fromkeys((*protocol.design.strata,
                                         *protocol.data.participant_columns,
                                         *_cluster_columns(protocol))) if c in scored.columns]
    parts = [visit_frame(scored, replace(spec, visit=v), columns).assign(visit=v)
             for v in post_baseline_visits(protocol, analysis)]
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["participant", "visit"], kind="stable").reset_index(drop=True)


def participant_frame(protocol: Protocol, scored: pd.DataFrame, analysis: Analysis,
                      y: pd.Series) -> pd.DataFrame:
    """One row per participant with ``y`` given per participant (a responder indicator or a
    count) and the baseline of the estimand's outcome."""
    est = protocol.estimand(analysis.estimand)
    outcome = protocol.outcome(est.variable.outcome)
    people = _people(protocol, scored, analysis)
    if outcome.baseline_visit is not None:
        base = scored.loc[scored["visit"] == outcome.baseline_visit].groupby(
            "participant")[outcome.id].first()
        people["baseline"] = base.reindex(people.index).astype(float)
    people["y"] = pd.to_numeric(y.reindex(people.index), errors="coerce").astype(float)
    return people.reset_index()


def with_auxiliaries(protocol: Protocol, scored: pd.DataFrame, analysis: Analysis,
                     frame: pd.DataFrame) -> pd.DataFrame:
    """Add the outcome at the auxiliary visits (``<outcome>_v<visit>``) for the imputation."""
    est = protocol.estimand(analysis.estimand)
    out = frame.copy()
    for v in analysis.opts.auxiliary_visits:
        at = scored.loc[scored["visit"] == v].groupby("participant")[est.variable.outcome].first()
        out[f"{est.variable.outcome}_v{v}"] = out["participant"].map(at).astype(float)
    return out


def auxiliary_names(protocol: Protocol, analysis: Analysis) -> tuple[str, ...]:
    est = protocol.estimand(analysis.estimand)
    return (tuple(f"{est.variable.outcome}_v{v}" for v in analysis.opts.auxiliary_visits)
            + tuple(analysis.opts.auxiliary))


# --------------------------------------------------------------------------- Bayesian settings


def sampler_and_gate(analysis: Analysis) -> tuple[SamplerSettings, DiagnosticsGate]:
    s = analysis.sampler
    g = analysis.diagnostics
    return (SamplerSettings(**s.model_dump()) if s else SamplerSettings(),
            DiagnosticsGate(**g.model_dump()) if g else DiagnosticsGate())


def wanted_probabilities(protocol: Protocol, analysis: Analysis) -> tuple[tuple[str, float], ...]:
    return tuple(sorted({(c.comparator.value, c.threshold) for c in protocol.criteria
                         if c.analysis == analysis.id and c.probability is not None}))


def prior_set(protocol: Protocol, analysis: Analysis, name: str) -> Any:
    """A named prior set for this analysis's estimand (see :class:`PriorSets`)."""
    from analysis.bayes_priors import standard_prior_sets

    est = protocol.estimand(analysis.estimand)
    assert protocol.priors is not None and est.clinically_important_difference is not None
    cid = est.clinically_important_difference
    sets = standard_prior_sets(cid, protocol.priors.outcome_sd,
                               direction="lower" if cid < 0 else "higher")
    return next(p for p in sets if p.name == name)


# --------------------------------------------------------------------------- dispatch


def fit_model(protocol: Protocol, scored: pd.DataFrame, analysis: Analysis) -> FitOutput:
    """Fit one pre-specified analysis of a model family other than ANCOVA."""
    est = protocol.estimand(analysis.estimand)
    opts = analysis.opts
    bayes = analysis.engine == "bayesian"
    common = dict(estimand=analysis.estimand, analysis=analysis.id,
                  interval_level=analysis.interval_level)
    model = analysis.model
    if model == "mmrm":
        frame = long_frame(protocol, scored, analysis)
        if bayes:
            from analysis.bayes_longitudinal import LongitudinalSpec, fit_bayes_longitudinal
            sampler, gate = sampler_and_gate(analysis)
            spec = LongitudinalSpec(**common, visit=est.variable.visit,
                                    prior=prior_set(protocol, analysis, analysis.prior),
                                    covariates=analysis.covariates, lkj_eta=opts.lkj_eta,
                                    sampler=sampler, gate=gate,
                                    probabilities=wanted_probabilities(protocol, analysis))
            return _bayes(protocol, analysis, fit_bayes_longitudinal, frame, spec)
        from analysis.mmrm import MmrmSpec, fit_mmrm
        res = fit_mmrm(frame, MmrmSpec(**common, visit=est.variable.visit,
                                       covariance=opts.covariance, method=opts.method,
                                       df=opts.df, covariates=analysis.covariates))
        return FitOutput(res.estimate, extra=_extra(res, "lsmeans", "contrasts"))
    if model == "ancova_mi":
        return _fit_mi(protocol, scored, analysis)
    if model == "logistic":
        from trials.measures import responder_indicator
        r = next(r for r in protocol.responders if r.id == est.variable.responder)
        y = responder_indicator(protocol, scored, r).astype("Float64")
        frame = participant_frame(protocol, scored, analysis, y)
        if bayes:
            from analysis.bayes_glm import BayesBinarySpec, fit_bayes_binary
            sampler, gate = sampler_and_gate(analysis)
            spec = BayesBinarySpec(**common, prior=prior_set(protocol, analysis, analysis.prior),
                                   covariates=analysis.covariates, summary=est.summary,
                                   sampler=sampler, gate=gate,
                                   probabilities=wanted_probabilities(protocol, analysis))
            return _bayes(protocol, analysis, fit_bayes_binary, frame, spec)
        from analysis.glm import BinarySpec, fit_binary
        res = fit_binary(frame, BinarySpec(**common, covariates=analysis.covariates,
                                           summary=est.summary))
        return FitOutput(res.estimate, extra=_extra(res, "summaries"))
    if model == "count":
        people = _people(protocol, scored, analysis)
        frame = participant_frame(protocol, scored, analysis,
                                  _numbers(people, est.variable.column, analysis.id))
        if opts.exposure:
            exposure = _numbers(people, opts.exposure, analysis.id)
            if (exposure <= 0).any():
                raise AnalysisError(f"{analysis.id}: column {opts.exposure!r} (exposure) must be "
                                    f"> 0, participant {exposure.index[exposure <= 0][0]!r} "
                                    f"has {exposure[exposure <= 0].iloc[0]:g}")
            frame["exposure"] = frame["participant"].map(exposure)
        if bayes:
            from analysis.bayes_glm import BayesCountSpec, fit_bayes_count
            sampler, gate = sampler_and_gate(analysis)
            spec = BayesCountSpec(**common, prior=prior_set(protocol, analysis, analysis.prior),
                                  family=opts.family,
                                  exposure="exposure" if opts.exposure else None,
                                  covariates=analysis.covariates, sampler=sampler, gate=gate,
                                  probabilities=wanted_probabilities(protocol, analysis))
            return _bayes(protocol, analysis, fit_bayes_count, frame, spec)
        from analysis.glm import CountSpec, fit_count
        res = fit_count(frame, CountSpec(**common, family=opts.family,
                                         covariates=analysis.covariates,
                                         exposure="exposure" if opts.exposure else None))
        return FitOutput(res.estimate, extra=_extra(res))
    if model == "gee":
        from analysis.gee import GeeSpec, fit_gee
        frame, visit_terms = _visit_terms(long_frame(protocol, scored, analysis),
                                          est.variable.visit)
        groups = protocol.data.cluster if protocol.design.type != "parallel" else "participant"
        res = fit_gee(_rename_cluster(protocol, frame),
                      GeeSpec(**common, family=opts.family, correlation=opts.correlation,
                              groups="cluster" if groups != "participant" else groups,
                              time="visit", covariates=(*analysis.covariates, *visit_terms),
                              se=opts.se))
        return FitOutput(res.estimate, extra=_extra(res))
    if model in {"cluster", "stepped_wedge"}:
        from trials.stages import analysis_frame
        frame = _rename_cluster(protocol, analysis_frame(protocol, scored, analysis.id, True))
        if model == "cluster" and bayes:
            from analysis.bayes_hierarchical import BayesClusterSpec, fit_bayes_cluster
            sampler, gate = sampler_and_gate(analysis)
            spec = BayesClusterSpec(**common, prior=prior_set(protocol, analysis, analysis.prior),
                                    covariates=analysis.covariates,
                                    cluster_sd_prior=opts.cluster_sd_prior, sampler=sampler,
                                    gate=gate,
                                    probabilities=wanted_probabilities(protocol, analysis))
            return _bayes(protocol, analysis, fit_bayes_cluster, frame, spec)
        if model == "cluster":
            from analysis.cluster import ClusterSpec, fit_cluster
            res = fit_cluster(frame, ClusterSpec(**common, method=opts.method,
                                                 covariates=analysis.covariates, df=opts.df))
            return FitOutput(res.estimate, extra=_extra(res, "icc"))
        from analysis.cluster import SteppedWedgeSpec, fit_stepped_wedge
        res = fit_stepped_wedge(frame, SteppedWedgeSpec(
            **common, covariates=tuple(c for c in analysis.covariates), df=opts.df))
        return FitOutput(res.estimate, extra=_extra(res, "icc", "period_effects"))
    raise NotImplementedError(f"analyses {analysis.id}: model {model}")


def _visit_terms(frame: pd.DataFrame, visit: int) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Visit and treatment-by-visit indicators for every visit but the estimand's.

    With several visits, one treatment coefficient would estimate an effect averaged over the
    visits, not the estimand's; with these terms ``treated`` is the contrast at ``visit`` (the
    reference), as in the MMRM.
    """
    others = [v for v in sorted(frame["visit"].unique()) if v != visit]
    if not others:
        return frame, ()
    out = frame.copy()
    names: list[str] = []
    for v in others:
        at = (out["visit"] == v).astype(float)
        out[f"visit_{v}"] = at
        out[f"treated_visit_{v}"] = at * out["treated"]
        names += [f"visit_{v}", f"treated_visit_{v}"]
    return out, tuple(names)


def _numbers(people: pd.DataFrame, column: str, analysis_id: str) -> pd.Series:
    """A participant column as floats (participant columns are read as text); a value that is
    not a number is a one-line error naming the column, not a silently dropped participant."""
    raw = people[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = values.isna() & raw.notna()
    if bad.any():
        raise AnalysisError(f"{analysis_id}: column {column!r}: participant "
                            f"{bad.index[bad][0]!r} has {raw[bad].iloc[0]!r}, not a number")
    return values


def _rename_cluster(protocol: Protocol, frame: pd.DataFrame) -> pd.DataFrame:
    names = {}
    if protocol.data.cluster and protocol.data.cluster in frame.columns:
        names[protocol.data.cluster] = "cluster"
    if protocol.data.period and protocol.data.period in frame.columns:
        names[protocol.data.period] = "period"
    return frame.rename(columns=names)


def _bayes(protocol: Protocol, analysis: Analysis, fit: Any, frame: pd.DataFrame,
           spec: Any) -> FitOutput:
    res = fit(frame, spec)
    extra: dict[str, Any] = {}
    if analysis.prior_sensitivity:
        from analysis.bayes_priors import prior_sensitivity
        assert protocol.priors is not None
        sets = [prior_set(protocol, analysis, name) for name in protocol.priors.sensitivity]
        extra["prior_sensitivity"] = prior_sensitivity(fit, frame, spec, sets).to_dict()
    return FitOutput(res.estimate, res.idata, extra)


def _extra(result: Any, *keep: str) -> dict[str, Any]:
    """The JSON-ready parts of a result other than its Estimate."""
    d = result.to_dict()
    d.pop("estimate", None)
    return {k: v for k, v in d.items() if not keep or k in keep}


def _fit_mi(protocol: Protocol, scored: pd.DataFrame, analysis: Analysis) -> FitOutput:
    from analysis.imputation import ImputationSpec, fit_mi_ancova
    from trials.stages import analysis_frame

    opts = analysis.opts
    frame = with_auxiliaries(protocol, scored, analysis,
                             analysis_frame(protocol, scored, analysis.id))
    spec = ImputationSpec(estimand=analysis.estimand, analysis=analysis.id, m=opts.m,
                          iterations=opts.iterations, method=opts.method,
                          auxiliary=auxiliary_names(protocol, analysis),
                          covariates=analysis.covariates, by_arm=opts.by_arm, seed=opts.seed,
                          interval_level=analysis.interval_level)
    res = fit_mi_ancova(frame, spec)
    extra = _extra(res)
    if opts.tipping_point is not None:
        from analysis.tipping import TippingSpec, tipping_point
        est = protocol.estimand(analysis.estimand)
        cid = est.clinically_important_difference
        tp = tipping_point(frame, TippingSpec(
            estimand=analysis.estimand, analysis=analysis.id,
            deltas=tuple(opts.tipping_point.deltas), arm=opts.tipping_point.arm,
            threshold=0.0, direction="lower" if (cid or -1) < 0 else "higher", imputation=spec))
        extra["tipping_point"] = tp.to_dict()
    return FitOutput(res.estimate, extra=extra)
