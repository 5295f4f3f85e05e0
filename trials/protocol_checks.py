"""Cross-references of the model-family sections (``analyses[].model`` and ``options``,
``priors``, ``multiplicity``, ``fairness``), checked when a protocol is read.

Each check raises ``ValueError`` with the protocol field in the message; pydantic turns it into
the one-line :class:`~trials.errors.ProtocolError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trials.protocol import Protocol
    from trials.protocol_sections import Analysis

# Which estimand measures each model family analyses.
_MEASURES = {
    "ancova": {"score", "change"},
    "mmrm": {"score", "change"},
    "ancova_mi": {"score", "change"},
    "gee": {"score", "change"},
    "cluster": {"score", "change"},
    "stepped_wedge": {"score", "change"},
    "logistic": {"responder"},
    "count": {"count"},
}
_SUMMARIES = {
    "logistic": {"risk_difference", "risk_ratio", "odds_ratio"},
    "count": {"rate_ratio"},
}


def check_models(p: Protocol) -> None:
    """Raise ``ValueError`` naming the field when a model does not fit its estimand or design."""
    estimands = {e.id: e for e in p.estimands}
    responders = {r.id for r in p.responders}
    participant = set(p.data.participant_columns) | set(p.design.strata)
    for i, e in enumerate(p.estimands):
        v = e.variable
        if v.responder is not None and v.responder not in responders:
            raise ValueError(f"estimands.{i}.variable.responder: {v.responder!r} is not among "
                             f"responders ({', '.join(sorted(responders)) or 'none declared'})")
        if v.column is not None and v.column not in participant:
            raise ValueError(f"estimands.{i}.variable.column: {v.column!r} is not a participant "
                             "column (data.participant_columns)")
    for i, a in enumerate(p.analyses):
        est = estimands[a.estimand]
        where = f"analyses.{i}"
        if est.variable.measure not in _MEASURES[a.model]:
            raise ValueError(f"{where}.model: {a.model} analyses measure "
                             f"{' or '.join(sorted(_MEASURES[a.model]))}, estimand {est.id!r} "
                             f"has measure {est.variable.measure}")
        wanted = _SUMMARIES.get(a.model, {"difference_in_means"})
        if est.summary not in wanted:
            raise ValueError(f"{where}.model: {a.model} gives {' or '.join(sorted(wanted))}, "
                             f"estimand {est.id!r} asks for {est.summary}")
        if a.model in {"cluster", "stepped_wedge"} and p.data.cluster is None:
            raise ValueError(f"{where}.model: {a.model} needs data.cluster")
        if a.model == "stepped_wedge" and (p.design.type != "stepped_wedge"
                                           or p.data.period is None):
            raise ValueError(f"{where}.model: stepped_wedge needs design.type stepped_wedge and "
                             "data.period")
        # Any other family would analyse clustered participants as independent (intervals too
        # narrow); a stepped wedge also confounds treatment with calendar time unless the
        # model has period effects.
        respects = ({"stepped_wedge"} if p.design.type == "stepped_wedge"
                    else {"cluster", "stepped_wedge", "gee"})
        if p.design.type in {"cluster", "stepped_wedge"} and a.model not in respects:
            raise ValueError(f"{where}.model: a {p.design.type} design needs a model that "
                             f"respects clustering ({' or '.join(sorted(respects))}), not "
                             f"{a.model}")
        opts = a.opts
        _check_options(p, a, where)
        outcome = p.outcome(est.variable.outcome)
        for fld in ("visits", "auxiliary_visits"):
            for visit in getattr(opts, fld, None) or ():
                if visit not in outcome.visits or visit == outcome.baseline_visit:
                    raise ValueError(f"{where}.options.{fld}: {visit} is not a post-baseline "
                                     f"visit of {outcome.id} ({list(outcome.visits)})")
        if a.model == "mmrm":
            visits = opts.visits or tuple(v for v in outcome.visits
                                          if v != outcome.baseline_visit)
            if est.variable.visit not in visits or len(visits) < 2:
                raise ValueError(f"{where}.options.visits: an MMRM needs at least two "
                                 f"post-baseline visits including the estimand's visit "
                                 f"{est.variable.visit}")
        if a.model == "gee" and opts.visits and est.variable.visit not in opts.visits:
            raise ValueError(f"{where}.options.visits: must include the estimand's visit "
                             f"{est.variable.visit}")
        if (a.model == "gee" and p.design.type == "parallel" and opts.visits
                and len(opts.visits) == 1 and opts.correlation != "independence"):
            # One observation per participant: no within-group correlation to estimate.
            raise ValueError(f"{where}.options.correlation: with one visit per participant "
                             f"there is no within-participant correlation; use independence, "
                             f"not {opts.correlation}")
        for col in getattr(opts, "auxiliary", ()) or ():
            if col not in participant:
                raise ValueError(f"{where}.options.auxiliary: {col!r} is not a participant "
                                 "column")
        exposure = getattr(opts, "exposure", None)
        if exposure is not None and exposure not in participant:
            raise ValueError(f"{where}.options.exposure: {exposure!r} is not a participant "
                             "column")
        if isinstance(a.prior, str) or a.prior_sensitivity:
            if p.priors is None:
                raise ValueError(f"{where}.prior: prior sets need a `priors` section "
                                 "(outcome_sd)")
            if est.clinically_important_difference is None:
                raise ValueError(f"{where}.prior: prior sets are built from estimand "
                                 f"{est.id!r}'s clinically_important_difference, which is "
                                 "not given")
    _check_multiplicity(p)
    _check_fairness(p)


def _check_options(p: Protocol, a: Analysis, where: str) -> None:
    """Options the schema accepts but the chosen engine or data cannot honour."""
    opts = a.opts
    if a.model == "mmrm" and a.engine == "frequentist" and opts.df == "kenward_roger":
        raise ValueError(f"{where}.options.df: kenward_roger is not implemented for mmrm; use "
                         "satterthwaite or residual")
    if a.model == "mmrm" and a.engine == "bayesian" and opts.covariance != "unstructured":
        # The Bayesian MMRM has one covariance model (LKJ); silently fitting it instead of
        # the protocol's structure would misreport the analysis.
        raise ValueError(f"{where}.options.covariance: the bayesian mmrm fits an unstructured "
                         f"covariance (LKJ prior), not {opts.covariance}")
    if a.model == "gee" and opts.family != "gaussian":
        raise ValueError(f"{where}.options.family: a gee analysis of a score or change gives a "
                         f"difference in means, which needs family gaussian, not {opts.family}")
    for fld in ("cluster", "period"):
        col = getattr(p.data, fld)
        needed = a.model in {"cluster", "stepped_wedge"} or (
            a.model == "gee" and fld == "cluster" and p.design.type != "parallel")
        # Intake keeps only the participant-level columns it is told about.
        kept = (*p.data.participant_columns, *p.design.strata)
        if needed and col is not None and col not in kept:
            raise ValueError(f"data.{fld}: {col!r} must also be listed in "
                             "data.participant_columns (one value per participant)")


def _check_multiplicity(p: Protocol) -> None:
    analyses = {a.id: a for a in p.analyses}
    m = p.multiplicity
    family = set(m.hypotheses) if m else set()
    if m is not None:
        if len(family) != len(m.hypotheses):
            raise ValueError("multiplicity.hypotheses: each analysis at most once")
        for j, h in enumerate(m.hypotheses):
            if h not in analyses:
                raise ValueError(f"multiplicity.hypotheses.{j}: {h!r} is not an analysis id")
            if analyses[h].engine != "frequentist":
                raise ValueError(f"multiplicity.hypotheses.{j}: {h!r} is bayesian; the family "
                                 "holds p-values")
    for i, c in enumerate(p.criteria):
        if c.kind.value != "secondary":
            continue
        if c.analysis is None or c.analysis not in family:
            raise ValueError(f"criteria.{i}.analysis: a secondary criterion must name an "
                             "analysis listed in multiplicity.hypotheses")
        if c.statistic.value != "p_value":
            raise ValueError(f"criteria.{i}.statistic: a secondary criterion reads the "
                             "multiplicity-adjusted p_value")


def _check_fairness(p: Protocol) -> None:
    f = p.fairness
    if f is None:
        return
    if not p.subgroups:
        raise ValueError("fairness: needs the protocol's subgroups")
    analyses = {a.id: a for a in p.analyses}
    for j, s in enumerate(f.subgroup_effects):
        a = analyses.get(s.analysis)
        if a is None:
            raise ValueError(f"fairness.subgroup_effects.{j}.analysis: {s.analysis!r} is not "
                             "an analysis id")
        if a.engine != "frequentist" or a.model not in {"ancova", "mmrm"}:
            raise ValueError(f"fairness.subgroup_effects.{j}.analysis: subgroup effects come "
                             "from interaction ANCOVA models; name a frequentist ancova or mmrm "
                             "analysis")
