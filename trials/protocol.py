"""The protocol: a pre-registered study written down as data and validated by a typed schema.

Every field is documented in ``docs/protocol.md``. Criteria are structured records (target,
statistic, comparator, threshold, probability, look); no string from the protocol is ever
evaluated as code.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from outcomes.instruments import INSTRUMENTS, Instrument, get_instrument, instrument_from_dict
from trials.errors import ProtocolError

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$", max_length=64)]
# A number that must be finite: a NaN threshold could never be met and would silently switch
# a rule off.
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    type: Literal["parallel"] = "parallel"
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
    measure: Literal["score", "change"] = "score"


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
    summary: Literal["difference_in_means"] = "difference_in_means"
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
    model: Literal["ancova"] = "ancova"
    covariates: tuple[str, ...] = Field(
        ("baseline",),
        description="'baseline' is the outcome at its baseline visit; other names are columns.",
    )
    interval_level: float = Field(0.95, gt=0, lt=1)
    prior: BayesPrior | None = None
    sampler: Sampler | None = None
    diagnostics: Diagnostics | None = None

    @model_validator(mode="after")
    def _check(self) -> Analysis:
        if self.engine == "frequentist" and (self.prior or self.sampler):
            raise ValueError("prior and sampler apply only to engine: bayesian")
        if self.engine == "bayesian" and self.prior is None:
            raise ValueError("engine: bayesian needs a stated prior")
        return self


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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DecisionRules(_Spec):
    labels: DecisionLabels = DecisionLabels()


# --------------------------------------------------------------------------- protocol


class Protocol(_Spec):
    schema_version: Literal[1] = 1
    id: Identifier
    title: str
    version: int = Field(ge=1)
    description: str = ""
    design: Design
    data: DataColumns = DataColumns()
    outcomes: tuple[Outcome, ...] = Field(min_length=1)
    estimands: tuple[Estimand, ...] = Field(min_length=1)
    analyses: tuple[Analysis, ...] = Field(min_length=1)
    subgroups: tuple[str, ...] = ()
    instruments: tuple[dict[str, Any], ...] = Field(
        (), description="User-defined instruments, in the library's format.")
    responders: tuple[Responder, ...] = ()
    engagement: Engagement | None = None
    reliability: Reliability | None = None
    clinician_ratings: ClinicianRatings | None = None
    safety: Safety = Safety()
    privacy: Privacy = Privacy()
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    decision: DecisionRules = DecisionRules()
    _declared: dict[str, Instrument] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_references(self) -> Protocol:
        arms = {a.id for a in self.design.arms}
        outcomes = {o.id: o for o in self.outcomes}
        estimands = {e.id: e for e in self.estimands}
        analyses = {a.id: a for a in self.analyses}
        flags = self.safety.measure_ids()
        looks = {lk.id for lk in self.design.looks}
        declared = {}
        for i, d in enumerate(self.instruments):
            try:
                inst = instrument_from_dict(d, f"instruments.{i}")
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            declared[inst.name] = inst
        for i, o in enumerate(self.outcomes):
            if o.instrument not in declared and o.instrument not in INSTRUMENTS:
                raise ValueError(f"outcomes.{i}.instrument: {o.instrument!r} is neither a library "
                                 f"instrument ({', '.join(sorted(INSTRUMENTS))}) nor declared "
                                 "under instruments")
        self._declared = declared
        cr = self.clinician_ratings
        if cr is not None and cr.instrument not in declared and cr.instrument not in INSTRUMENTS:
            raise ValueError(f"clinician_ratings.instrument: {cr.instrument!r} is neither a "
                             "library instrument nor declared under instruments")
        _unique("outcomes", [o.id for o in self.outcomes], len(self.outcomes))
        _unique("estimands", [e.id for e in self.estimands], len(self.estimands))
        _unique("analyses", [a.id for a in self.analyses], len(self.analyses))
        _unique("criteria", [c.id for c in self.criteria], len(self.criteria))
        for i, e in enumerate(self.estimands):
            where = f"estimands.{i}"
            if e.variable.outcome not in outcomes:
                raise _ref(f"{where}.variable.outcome", e.variable.outcome, outcomes)
            if e.variable.visit not in outcomes[e.variable.outcome].visits:
                raise _ref(f"{where}.variable.visit", e.variable.visit,
                           outcomes[e.variable.outcome].visits)
            for fld in ("arm", "comparator"):
                value = getattr(e.treatment, fld)
                if value not in arms:
                    raise _ref(f"{where}.treatment.{fld}", value, arms)
            if e.treatment.arm == e.treatment.comparator:
                raise ValueError(f"{where}.treatment: arm and comparator must differ")
        for i, a in enumerate(self.analyses):
            if a.estimand not in estimands:
                raise _ref(f"analyses.{i}.estimand", a.estimand, estimands)
            est_outcome = outcomes[estimands[a.estimand].variable.outcome]
            needs_baseline = ("baseline" in a.covariates
                              or estimands[a.estimand].variable.measure == "change")
            if needs_baseline and est_outcome.baseline_visit is None:
                raise ValueError(f"analyses.{i}.covariates: outcome {est_outcome.id!r} has no "
                                 "baseline_visit, so 'baseline' (or a change score) is not "
                                 "available")
            allowed = tuple(dict.fromkeys(("baseline", *self.design.strata,
                                           *self.data.participant_columns)))
            for cov in a.covariates:
                if cov not in allowed:
                    raise _ref(f"analyses.{i}.covariates", cov, allowed)
        _unique("safety.red_flags", [f.id for f in self.safety.red_flags],
                len(self.safety.red_flags))
        for i, f in enumerate(self.safety.red_flags):
            if f.outcome not in outcomes:
                raise _ref(f"safety.red_flags.{i}.outcome", f.outcome, outcomes)
            inst = self.instrument(f.outcome)
            if f.item > inst.n_items:
                raise ValueError(f"safety.red_flags.{i}.item: {f.item} but {inst.name} has "
                                 f"{inst.n_items} items")
            if not inst.item_min <= f.at_least <= inst.item_max:
                raise ValueError(f"safety.red_flags.{i}.at_least: {f.at_least} outside the "
                                 f"{inst.name} item range {inst.item_min}..{inst.item_max}")
        responders = {r.id for r in self.responders}
        _unique("responders", [r.id for r in self.responders], len(self.responders))
        for i, r in enumerate(self.responders):
            for fld in ("outcome", "paired_outcome"):
                value = getattr(r, fld)
                if value is None:
                    continue
                if value not in outcomes:
                    raise _ref(f"responders.{i}.{fld}", value, outcomes)
                if r.visit not in outcomes[value].visits:
                    raise _ref(f"responders.{i}.visit", r.visit, outcomes[value].visits)
            if r.kind == ResponderKind.mcid and r.mcid is None:
                raise ValueError(f"responders.{i}.mcid: kind mcid needs mcid")
        if self.safety.escalation is not None and self.data.completed_at is None:
            raise ValueError("data.completed_at: safety.escalation needs the column with the "
                             "time each questionnaire was completed")
        for i, c in enumerate(self.criteria):
            if c.analysis is not None and c.analysis not in analyses:
                raise _ref(f"criteria.{i}.analysis", c.analysis, analyses)
            if c.safety is not None and c.safety not in flags:
                raise _ref(f"criteria.{i}.safety", c.safety, flags)
            if c.responder is not None and c.responder not in responders:
                raise _ref(f"criteria.{i}.responder", c.responder, responders)
            if c.look is not None and c.look not in looks:
                raise _ref(f"criteria.{i}.look", c.look, looks)
            if c.analysis is not None:
                engine = analyses[c.analysis].engine
                if c.statistic == Statistic.posterior_probability and engine != "bayesian":
                    raise ValueError(f"criteria.{i}.statistic: posterior_probability needs a "
                                     f"bayesian analysis, {c.analysis!r} is {engine}")
                if c.statistic == Statistic.p_value and engine != "frequentist":
                    raise ValueError(f"criteria.{i}.statistic: p_value needs a frequentist "
                                     f"analysis, {c.analysis!r} is {engine}")
        for s in self.subgroups:
            if s not in self.data.participant_columns + self.design.strata:
                raise ValueError(f"subgroups: {s!r} is not a participant column or stratum")
        return self

    # ------------------------------------------------------------------ lookups
    def instrument(self, outcome_id: str) -> Instrument:
        """The instrument definition of an outcome (declared ones first, then the library)."""
        return self.instrument_named(self.outcome(outcome_id).instrument)

    def instrument_named(self, name: str) -> Instrument:
        return self._declared[name] if name in self._declared else get_instrument(name)

    def outcome(self, outcome_id: str) -> Outcome:
        return next(o for o in self.outcomes if o.id == outcome_id)

    def estimand(self, estimand_id: str) -> Estimand:
        return next(e for e in self.estimands if e.id == estimand_id)

    def analysis(self, analysis_id: str) -> Analysis:
        return next(a for a in self.analyses if a.id == analysis_id)

    def criteria_at(self, look: str) -> tuple[Criterion, ...]:
        final = self.design.final_look
        return tuple(c for c in self.criteria if (c.look or final) == look)

    def canonical(self) -> dict[str, Any]:
        """The protocol as plain data with every default filled in (the thing that is hashed)."""
        return self.model_dump(mode="json", by_alias=True)

    def sha256(self) -> str:
        """SHA-256 of the canonical protocol: comments and layout of the YAML do not count."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unique(where: str, ids: list[str], n: int) -> None:
    if len(set(ids)) != n:
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{where}: duplicate id {dupes}")


def _ref(field: str, value: object, known: Any) -> ValueError:
    return ValueError(f"{field}: {value!r} is not one of {sorted(map(str, known))}")


def parse_protocol(data: Any, source: str = "<protocol>") -> Protocol:
    """Validate plain data as a protocol; errors name the source and the field."""
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: the protocol must be a YAML mapping")
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"{source}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if loc and msg.startswith(loc.split(".")[-1] + ":"):
            lines.append(msg)
        else:
            lines.append(f"{loc}: {msg}" if loc else msg)
    # Only the first: pydantic adds follow-on errors (e.g. a tuple's length after a bad item)
    # that would make a count misleading.
    return lines[0]


class _DuplicateKeyError(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: with plain YAML the last one
    silently wins, which could change a locked rule unnoticed."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise _DuplicateKeyError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read protocol ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKeyError as exc:
        raise ProtocolError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "parse error"
        raise ProtocolError(f"{path}:{where} invalid YAML ({problem})") from None
    return parse_protocol(data, str(path))
