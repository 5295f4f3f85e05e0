"""The protocol's sections: typed, frozen records validated on reading.

:mod:`trials.protocol` assembles them into the :class:`~trials.protocol.Protocol` and checks the
references between sections. Every field is documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from trials.protocol_base import Finite, Identifier, _Spec
from trials.protocol_models import (
    BAYESIAN_MODELS,
    MODEL_OPTIONS,
    ModelName,
    ModelOptions,
    PriorSetName,
)

# --------------------------------------------------------------------------- design


class Arm(_Spec):
    id: Identifier
    label: str
    control: bool = False
    ratio: int = Field(1, ge=1, description="Allocation weight of this arm (1:1 by default).")


class Look(_Spec):
    id: Identifier
    information_fraction: float = Field(gt=0, le=1)


class Design(_Spec):
    type: Literal["parallel", "cluster", "stepped_wedge"] = Field(
        "parallel", description="parallel: individually randomised; cluster: clusters "
        "randomised (data.cluster); stepped_wedge: clusters cross over at staggered periods "
        "(data.cluster and data.period).")
    arms: tuple[Arm, ...] = Field(min_length=2, max_length=2,
                                  description="v1 runs two-arm trials: one control arm.")
    strata: tuple[Identifier, ...] = ()
    planned_size: int = Field(gt=0)
    looks: tuple[Look, ...] = Field((Look(id="final", information_fraction=1.0),), min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Design:
        ids = [a.id for a in self.arms]
        if len(set(ids)) != len(ids):
            raise ValueError(f"arm ids must be unique, got {ids}")
        if sum(a.control for a in self.arms) != 1:
            raise ValueError("exactly one arm must have control: true")
        look_ids = [lk.id for lk in self.looks]
        if len(set(look_ids)) != len(look_ids):
            raise ValueError(f"look ids must be unique, got {look_ids}")
        fractions = [lk.information_fraction for lk in self.looks]
        increasing = all(a < b for a, b in zip(fractions, fractions[1:], strict=False))
        if not increasing or fractions[-1] != 1.0:
            raise ValueError("looks must be in strictly increasing information_fraction "
                             "ending at 1.0")
        return self

    @property
    def control_arm(self) -> Arm:
        return next(a for a in self.arms if a.control)

    @property
    def final_look(self) -> str:
        return self.looks[-1].id


class GroupSequential(_Spec):
    """Group-sequential monitoring of one frequentist analysis across the design's looks.

    At each look the analysis's Z statistic (benefit positive) is compared with boundaries
    computed by :mod:`designs.boundaries` at the information observed so far.
    """

    analysis: Identifier
    direction: Literal["lower", "higher"] = Field(
        "lower", description="Which sign of the estimate is benefit (lower: PHQ-9 falls).")
    alpha: float = Field(0.025, gt=0, lt=0.5, description="One-sided type-I error.")
    beta: float = Field(0.2, gt=0, lt=0.5)
    efficacy: Literal["OF", "P", "asOF", "asP", "asKD", "asHSD"] = "asOF"
    gamma_a: Finite | None = None
    futility: Literal["bsOF", "bsP", "bsKD", "bsHSD"] | None = None
    gamma_b: Finite | None = None
    binding_futility: bool = False
    harm_z: float | None = Field(None, gt=0, allow_inf_nan=False,
                                 description="Stop for harm when Z <= -harm_z.")
    planned_analysed: int | None = Field(
        None, gt=0, description="Participants expected with the primary outcome at the final "
        "look (information is counted as a share of it); design.planned_size by default.")

    @model_validator(mode="after")
    def _parameters(self) -> GroupSequential:
        if self.efficacy in ("asKD", "asHSD") and self.gamma_a is None:
            raise ValueError(f"gamma_a: efficacy {self.efficacy} needs its parameter")
        if self.futility in ("bsKD", "bsHSD") and self.gamma_b is None:
            raise ValueError(f"gamma_b: futility {self.futility} needs its parameter")
        if self.binding_futility and self.futility is None:
            raise ValueError("binding_futility: there is no futility boundary to bind")
        return self


class SimulationScenario(_Spec):
    name: Identifier
    effect: Finite = Field(description="True difference in the monitored outcome (its units).")
    sd: float = Field(gt=0, allow_inf_nan=False)
    dropout: float = Field(0.0, ge=0, lt=1)
    baseline_correlation: float = Field(0.0, ge=0, lt=1)
    accrual_rate: float | None = Field(None, gt=0, allow_inf_nan=False,
                                       description="Participants enrolled per week.")
    follow_up: float = Field(0.0, ge=0, allow_inf_nan=False,
                             description="Weeks from enrolment to the primary outcome.")
    harm_rate: tuple[float, float] = Field(
        (0.0, 0.0), description="Probability of a harm event per participant: control, "
        "experimental (used when harm_event_z is set).")


class Simulation(_Spec):
    """Operating characteristics of the group-sequential design, simulated before locking."""

    scenarios: tuple[SimulationScenario, ...] = Field(min_length=1)
    trials: int = Field(10000, ge=100)
    seed: int = 20261127
    engine: Literal["summary", "patient"] = "summary"
    harm_event_z: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="Also stop for harm when the harm-event difference has Z above this.")


# --------------------------------------------------------------------------- data layout


class DataColumns(_Spec):
    participant: str = "participant_id"
    arm: str = "arm"
    visit: str = "visit"
    item_pattern: str = Field(
        "{outcome}_{item}",
        description="Column name of an item; {outcome} is the outcome id, {item} its number.",
    )
    participant_columns: tuple[str, ...] = Field(
        (), description="Participant-level columns (demographics) that must be constant per ID."
    )
    cluster: str | None = Field(None, description="Cluster column (cluster and stepped-wedge "
                                "designs); participant-level.")
    period: str | None = Field(None, description="Period column (stepped-wedge designs); "
                               "participant-level.")
    completed_at: str | None = Field(
        None, description="Column with the date-time a visit's questionnaires were completed "
        "(needed to time escalations of red flags)."
    )

    @field_validator("item_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "{item}" not in v:
            raise ValueError("item_pattern must contain {item}")
        return v


# --------------------------------------------------------------------------- outcomes


class Outcome(_Spec):
    id: Identifier
    instrument: str = Field(description="A library instrument or one declared under "
                            "`instruments`.")
    visits: tuple[int, ...] = Field(min_length=1)
    baseline_visit: int | None = Field(
        None, description="Visit of the pre-randomisation measurement; none for measures taken "
        "only after treatment (satisfaction, usability).")

    @model_validator(mode="after")
    def _check(self) -> Outcome:
        if self.baseline_visit is not None and self.baseline_visit not in self.visits:
            raise ValueError(f"baseline_visit {self.baseline_visit} is not one of visits")
        if list(self.visits) != sorted(set(self.visits)):
            raise ValueError("visits must be increasing and unique")
        return self


# --------------------------------------------------------------------------- estimands (ICH E9(R1))


class IntercurrentEventStrategy(StrEnum):
    treatment_policy = "treatment_policy"
    hypothetical = "hypothetical"
    composite = "composite"
    while_on_treatment = "while_on_treatment"
    principal_stratum = "principal_stratum"


class IntercurrentEvent(_Spec):
    event: str
    strategy: IntercurrentEventStrategy
    note: str = ""


class Variable(_Spec):
    outcome: Identifier
    visit: int
    measure: Literal["score", "change", "responder", "count"] = "score"
    responder: Identifier | None = Field(
        None, description="measure: responder — the responder definition (see `responders`).")
    column: str | None = Field(
        None, description="measure: count — the participant column holding the count.")

    @model_validator(mode="after")
    def _check(self) -> Variable:
        if (self.measure == "responder") != (self.responder is not None):
            raise ValueError("responder is needed with, and only with, measure: responder")
        if (self.measure == "count") != (self.column is not None):
            raise ValueError("column is needed with, and only with, measure: count")
        return self


class Treatment(_Spec):
    arm: Identifier
    comparator: Identifier


class Estimand(_Spec):
    id: Identifier
    label: str
    population: str = Field(description="Analysis population, e.g. all randomised participants.")
    variable: Variable
    treatment: Treatment
    intercurrent_events: tuple[IntercurrentEvent, ...] = ()
    summary: Literal["difference_in_means", "risk_difference", "risk_ratio", "odds_ratio",
                     "rate_ratio"] = "difference_in_means"
    clinically_important_difference: Finite | None = Field(
        None, description="Smallest between-arm difference that matters, in outcome units, signed."
    )


# --------------------------------------------------------------------------- analyses


class NormalPrior(_Spec):
    distribution: Literal["normal"] = "normal"
    mean: Finite = 0.0
    sd: float = Field(gt=0, allow_inf_nan=False)


class HalfNormalPrior(_Spec):
    distribution: Literal["half_normal"] = "half_normal"
    sd: float = Field(gt=0, allow_inf_nan=False)


class BayesPrior(_Spec):
    """Priors of the Bayesian ANCOVA, on the outcome's own scale."""

    treatment_effect: NormalPrior = NormalPrior(mean=0.0, sd=10.0)
    coefficients: NormalPrior = NormalPrior(mean=0.0, sd=10.0)
    intercept: NormalPrior = NormalPrior(mean=0.0, sd=30.0)
    residual_sd: HalfNormalPrior = HalfNormalPrior(sd=10.0)


class Sampler(_Spec):
    draws: int = Field(1000, ge=10)
    tune: int = Field(1000, ge=10)
    chains: int = Field(4, ge=1)
    target_accept: float = Field(0.9, gt=0, lt=1)
    seed: int = 20261127


class Diagnostics(_Spec):
    """Thresholds of the diagnostics gate: a fit outside them cannot support a GO."""

    max_rhat: float = 1.01
    min_ess_bulk: float = 400
    min_ess_tail: float = 400
    max_divergences: int = 0


class Analysis(_Spec):
    id: Identifier
    estimand: Identifier
    engine: Literal["frequentist", "bayesian"]
    model: ModelName = "ancova"
    options: ModelOptions | None = Field(
        None, description="Options of the model family (see trials.protocol_models).")
    purpose: Literal["primary", "sensitivity", "supportive"] = Field(
        "primary", description="How the reports present it: the primary analysis of its "
        "estimand, a sensitivity analysis, or a supportive one.")
    covariates: tuple[str, ...] = Field(
        ("baseline",),
        description="'baseline' is the outcome at its baseline visit; other names are columns.",
    )
    interval_level: float = Field(0.95, gt=0, lt=1)
    prior: BayesPrior | PriorSetName | None = Field(
        None, description="Explicit priors, or the name of a prior set built from `priors`.")
    prior_sensitivity: bool = Field(
        False, description="Refit under each of `priors.sensitivity` (engine: bayesian).")
    sampler: Sampler | None = None
    diagnostics: Diagnostics | None = None
    looks: tuple[Identifier, ...] | None = Field(
        None, description="Looks at which this analysis is run (every look by default).")

    @model_validator(mode="before")
    @classmethod
    def _parse_options(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        model = data.get("model", "ancova")
        kind = MODEL_OPTIONS.get(model) if isinstance(model, str) else None
        opts = data.get("options")
        if kind is None or isinstance(opts, kind) or (model == "ancova" and not opts):
            return data
        try:
            parsed = kind.model_validate(opts if opts is not None else {})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"options.{where}: {err['msg']} (model {model})") from None
        return {**data, "options": parsed}

    @model_validator(mode="after")
    def _check(self) -> Analysis:
        if self.engine == "frequentist" and (self.prior or self.sampler or self.prior_sensitivity):
            raise ValueError("prior, prior_sensitivity and sampler apply only to engine: bayesian")
        if self.engine == "bayesian":
            if self.prior is None:
                raise ValueError("engine: bayesian needs a stated prior")
            if self.model not in BAYESIAN_MODELS:
                raise ValueError(f"model {self.model} has no bayesian engine (bayesian models: "
                                 f"{', '.join(sorted(BAYESIAN_MODELS))})")
            if self.model != "ancova" and isinstance(self.prior, BayesPrior):
                raise ValueError(f"model {self.model}: name a prior set (sceptical, "
                                 "weakly_informative, enthusiastic) built from `priors`")
        return self

    @property
    def opts(self) -> Any:
        """The model's options, defaults filled in."""
        return self.options if self.options is not None else MODEL_OPTIONS[self.model]()


# --------------------------------------------------------------------------- safety


class RedFlag(_Spec):
    id: Identifier
    label: str
    outcome: Identifier
    item: int = Field(ge=1)
    at_least: int = Field(1, ge=0)
    window: Literal["post_baseline", "any"] = "post_baseline"


class EscalationLog(_Spec):
    """Every red flag must be escalated to a clinician; the log records when contact was made."""

    limit_hours: float = Field(24.0, gt=0, allow_inf_nan=False)
    required: bool = True
    participant: str = "participant_id"
    visit: str = "visit"
    contact_time: str = "contact_time"
    outcome: str = "outcome"


class AdverseEventLog(_Spec):
    required: bool = True
    participant: str = "participant_id"
    term: str = "term"
    serious: str = "serious"
    interval_level: float = Field(0.95, gt=0, lt=1)


class Safety(_Spec):
    red_flags: tuple[RedFlag, ...] = ()
    escalation: EscalationLog | None = None
    adverse_events: AdverseEventLog | None = None

    @model_validator(mode="after")
    def _reserved(self) -> Safety:
        reserved = {"missed_escalations", "escalation_within_limit", "ae_any", "sae_any"}
        for i, f in enumerate(self.red_flags):
            if f.id in reserved:
                raise ValueError(f"red_flags.{i}.id: {f.id!r} is reserved for a safety measure")
        return self

    def measure_ids(self) -> set[str]:
        """Ids a harm criterion may name under ``safety``."""
        ids = {f.id for f in self.red_flags}
        if self.escalation is not None:
            ids |= {"missed_escalations", "escalation_within_limit"}
        if self.adverse_events is not None:
            ids |= {"ae_any", "sae_any"}
        return ids


# --------------------------------------------------------------------------- engagement


class Engagement(_Spec):
    """Use of the intervention (dose) and the AI model version, from a session log."""

    required: bool = True
    participant: str = "participant_id"
    session_start: str = "session_start"
    duration_minutes: str | None = "duration_minutes"
    ai_version: str | None = "ai_version"
    failed: str | None = "failed"


class Reliability(_Spec):
    """System reliability: an incident log of service downtime, over a stated period."""

    required: bool = True
    start: str = "start"
    end: str = "end"
    period_start: str = Field(description="ISO date-time the service period starts.")
    period_end: str = Field(description="ISO date-time the service period ends.")

    @model_validator(mode="after")
    def _period(self) -> Reliability:
        import datetime as dt

        try:
            a = dt.datetime.fromisoformat(self.period_start)
            b = dt.datetime.fromisoformat(self.period_end)
        except ValueError:
            raise ValueError("period_start and period_end must be ISO date-times") from None
        if b <= a:
            raise ValueError("period_end must be after period_start")
        return self


class ClinicianRatings(_Spec):
    """Clinicians' ratings of the intervention on a (library or declared) instrument."""

    required: bool = True
    clinician: str = "clinician_id"
    instrument: str
    item_pattern: str = "{instrument}_{item}"

    @field_validator("item_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        import string

        names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        if "item" not in names or not names <= {"item", "instrument"}:
            raise ValueError("item_pattern must contain {item} and may contain {instrument}, "
                             "nothing else in braces")
        return v


# --------------------------------------------------------------------------- responders


class ResponderKind(StrEnum):
    response = "response"
    remission = "remission"
    caseness = "caseness"
    reliable_improvement = "reliable_improvement"
    reliable_deterioration = "reliable_deterioration"
    recovery = "recovery"
    reliable_recovery = "reliable_recovery"
    mcid = "mcid"


class Responder(_Spec):
    """A clinical change definition, reported by arm with a risk difference."""

    id: Identifier
    label: str = ""
    kind: ResponderKind
    outcome: Identifier
    paired_outcome: Identifier | None = Field(
        None, description="Second measure for recovery / reliable recovery (e.g. GAD-7).")
    visit: int
    threshold: Finite | None = Field(None, description="Remission or caseness cut-off; "
                                     "defaults to the instrument's.")
    mcid: Finite | None = Field(None, gt=0)
    fraction: float = Field(0.5, gt=0, lt=1, description="Reduction that counts as response.")


# --------------------------------------------------------------------------- privacy


class Privacy(_Spec):
    direct_identifiers: tuple[str, ...] = Field(
        (), description="Columns dropped at intake and never read further."
    )
    pseudonymise_ids: bool = True
    small_cell_threshold: int = Field(5, ge=1)
    share_analysis_dataset: bool = False
    controlled_access_dataset: bool = Field(
        False, description="Write the pseudonymised analysis data beside the run "
        "(controlled_data/), never into the bundle, for release under a data-sharing agreement; "
        "the bundle records their SHA-256 so `trials replicate --data` can re-run on them.")


# --------------------------------------------------------------------------- criteria


class Comparator(StrEnum):
    lt = "<"
    le = "<="
    gt = ">"
    ge = ">="

    @property
    def func(self) -> Callable[[float, float], bool]:
        return {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[
            self.value
        ]


class Statistic(StrEnum):
    estimate = "estimate"
    ci_lower = "ci_lower"
    ci_upper = "ci_upper"
    p_value = "p_value"
    posterior_probability = "posterior_probability"


class CriterionKind(StrEnum):
    success = "success"
    futility = "futility"
    harm = "harm"
    # A claim about a secondary estimand: reported with its (multiplicity-adjusted) result,
    # never part of the GO / NO-GO rule.
    secondary = "secondary"


class Criterion(_Spec):
    """One predefined rule. Exactly one of ``analysis`` or ``safety`` names what it reads.

    For ``statistic: posterior_probability`` the rule reads P(effect ``comparator`` threshold) and
    is met when that probability is at least ``probability``. Otherwise it is met when
    ``statistic comparator threshold`` holds.
    """

    id: Identifier
    kind: CriterionKind
    label: str = ""
    analysis: Identifier | None = None
    safety: Identifier | None = None
    responder: Identifier | None = None
    statistic: Statistic
    comparator: Comparator
    threshold: Finite
    probability: float | None = Field(None, gt=0, lt=1)
    look: Identifier | None = None

    @model_validator(mode="after")
    def _check(self) -> Criterion:
        if sum(x is not None for x in (self.analysis, self.safety, self.responder)) != 1:
            raise ValueError("name exactly one of analysis, safety or responder")
        if self.statistic == Statistic.posterior_probability and self.probability is None:
            raise ValueError("statistic posterior_probability needs probability")
        if self.statistic != Statistic.posterior_probability and self.probability is not None:
            raise ValueError("probability applies only to statistic posterior_probability")
        if self.analysis is None and self.statistic == Statistic.posterior_probability:
            raise ValueError("only bayesian analyses have a posterior_probability")
        return self


class DecisionLabels(_Spec):
    go: str = "GO"
    no_go: str = "NO-GO"
    stop_for_harm: str = "STOP-FOR-HARM"
    continue_: str = Field("CONTINUE", alias="continue")
    stop_efficacy: str = "STOP-EFFICACY"
    stop_futility: str = "STOP-FUTILITY"
    not_interpretable: str = "NOT INTERPRETABLE"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DecisionRules(_Spec):
    labels: DecisionLabels = DecisionLabels()
