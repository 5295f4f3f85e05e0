"""Pipeline stages from validated data to estimates: scoring, analysis datasets and fits, safety.

This is the one place that turns protocol sections into the specification objects of
``analysis`` and ``outcomes``; those packages never read the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from outcomes.safety import participant_flags, red_flag_visits
from outcomes.scoring import score_instrument
from trials.data import item_columns
from trials.protocol import Analysis, Protocol

# --------------------------------------------------------------------------- scoring


def score_outcomes(protocol: Protocol, intake_frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy scored data: ``participant, arm, visit``, participant-level columns, and per outcome
    ``<id>`` (total), ``<id>_band``, ``<id>_n_missing``, ``<id>_prorated``; per red flag
    ``flag_<id>`` (True / False / <NA> when the item was not answered)."""
    cols = protocol.data
    names = {cols.participant: "participant", cols.arm: "arm", cols.visit: "visit"}
    if cols.completed_at:
        names[cols.completed_at] = "completed_at"
    out = intake_frame.rename(columns=names)
    keep = ["participant", "arm", "visit"] + (["completed_at"] if cols.completed_at else [])
    keep += [c for c in out.columns if c in (*protocol.design.strata, *cols.participant_columns,
                                             *(c for c in (cols.cluster, cols.period) if c))
             and c not in keep]
    scored = out[keep].copy()
    for outcome in protocol.outcomes:
        inst = protocol.instrument(outcome.id)
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


def visit_spec(protocol: Protocol, analysis: Analysis) -> VisitEstimandSpec:
    est = protocol.estimand(analysis.estimand)
    outcome = protocol.outcome(est.variable.outcome)
    return VisitEstimandSpec(
        outcome=outcome.id, visit=est.variable.visit, baseline_visit=outcome.baseline_visit,
        measure=est.variable.measure, arm=est.treatment.arm, comparator=est.treatment.comparator,
    )


def analysis_frame(protocol: Protocol, scored: pd.DataFrame, analysis_id: str,
                   with_design_columns: bool = False) -> pd.DataFrame:
    """The one-row-per-participant frame an analysis is fitted to (with the cluster and period
    columns when ``with_design_columns``)."""
    analysis = protocol.analysis(analysis_id)
    extra = tuple(c for c in (protocol.data.cluster, protocol.data.period)
                  if c and with_design_columns and c not in analysis.covariates)
    return visit_frame(scored, visit_spec(protocol, analysis), (*analysis.covariates, *extra))


def bayes_spec(protocol: Protocol, analysis: Analysis) -> BayesAncovaSpec:
    assert analysis.prior is not None
    p = analysis.prior
    s = analysis.sampler
    g = analysis.diagnostics
    wanted = sorted({(c.comparator.value, c.threshold) for c in protocol.criteria
                     if c.analysis == analysis.id and c.probability is not None})
    if isinstance(p, str):  # a named prior set built from the estimand's CID
        from trials.fitting import prior_set
        prior = ancova_prior(prior_set(protocol, analysis, p))
    else:
        prior = Prior(p.treatment_effect.mean, p.treatment_effect.sd, p.coefficients.mean,
                      p.coefficients.sd, p.intercept.mean, p.intercept.sd, p.residual_sd.sd)
    return BayesAncovaSpec(
        estimand=analysis.estimand, analysis=analysis.id, covariates=analysis.covariates,
        interval_level=analysis.interval_level,
        prior=prior,
        sampler=SamplerSettings(**s.model_dump()) if s else SamplerSettings(),
        gate=DiagnosticsGate(**g.model_dump()) if g else DiagnosticsGate(),
        probabilities=tuple(wanted),
    )


def ancova_prior(prior_set: Any) -> Prior:
    """A named prior set (:class:`analysis.bayes_priors.PriorSet`) as Bayesian ANCOVA priors."""
    return Prior(prior_set.effect_mean, prior_set.effect_sd, 0.0, prior_set.coef_sd, 0.0,
                 prior_set.intercept_sd, prior_set.sigma_sd)


@dataclass(frozen=True)
class _AncovaPriorSetSpec:
    """A Bayesian ANCOVA spec whose ``prior`` is a named prior set, for the prior-sensitivity
    table (:func:`analysis.bayes_priors.prior_sensitivity` replaces ``prior``)."""

    base: BayesAncovaSpec
    prior: Any

    @property
    def estimand(self) -> str:
        return self.base.estimand

    @property
    def analysis(self) -> str:
        return self.base.analysis


def _fit_ancova_prior_set(frame: pd.DataFrame, spec: _AncovaPriorSetSpec) -> Any:
    from dataclasses import replace

    return fit_bayes_ancova(frame, replace(spec.base, prior=ancova_prior(spec.prior)))


def ancova_prior_sensitivity(protocol: Protocol, analysis: Analysis, frame: pd.DataFrame,
                             spec: BayesAncovaSpec) -> dict[str, Any]:
    from analysis.bayes_priors import prior_sensitivity
    from trials.fitting import prior_set

    assert protocol.priors is not None
    sets = [prior_set(protocol, analysis, name) for name in protocol.priors.sensitivity]
    wrapped = _AncovaPriorSetSpec(spec, sets[0])
    return prior_sensitivity(_fit_ancova_prior_set, frame, wrapped, sets).to_dict()


@dataclass(frozen=True)
class Fits:
    estimates: dict[str, Estimate]
    posteriors: dict[str, az.InferenceData] = field(default_factory=dict)
    # Per analysis: what its model family reports beside the Estimate (JSON-ready).
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)


def fit_analyses(protocol: Protocol, scored: pd.DataFrame, look: str | None = None) -> Fits:
    """Fit every analysis pre-specified for ``look`` (the final look by default); the key is the
    analysis id."""
    from trials.fitting import fit_model

    estimates: dict[str, Estimate] = {}
    posteriors: dict[str, az.InferenceData] = {}
    extras: dict[str, dict[str, Any]] = {}
    for analysis in protocol.analyses_at(look or protocol.design.final_look):
        if analysis.model != "ancova":
            out = fit_model(protocol, scored, analysis)
            estimates[analysis.id] = out.estimate
            if out.idata is not None:
                posteriors[analysis.id] = out.idata
            if out.extra:
                extras[analysis.id] = out.extra
            continue
        frame = analysis_frame(protocol, scored, analysis.id)
        if analysis.engine == "frequentist":
            estimates[analysis.id] = fit_ancova(
                frame, AncovaSpec(analysis.estimand, analysis.id, analysis.covariates,
                                  analysis.interval_level))
        else:
            spec = bayes_spec(protocol, analysis)
            result = fit_bayes_ancova(frame, spec)
            estimates[analysis.id] = result.estimate
            posteriors[analysis.id] = result.idata
            if analysis.prior_sensitivity:
                extras[analysis.id] = {"prior_sensitivity": ancova_prior_sensitivity(
                    protocol, analysis, frame, spec)}
    return Fits(estimates, posteriors, extras)


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
