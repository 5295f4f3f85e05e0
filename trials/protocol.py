"""The protocol: a pre-registered study written down as data and validated by a typed schema.

Every field is documented in ``docs/protocol.md``. Criteria are structured records (target,
statistic, comparator, threshold, probability, look); no string from the protocol is ever
evaluated as code.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from outcomes.instruments import INSTRUMENTS, Instrument, get_instrument, instrument_from_dict
from trials.errors import ProtocolError
from trials.protocol_checks import check_models
from trials.protocol_models import Fairness, Multiplicity, PriorSets
from trials.protocol_sections import (  # noqa: F401  (re-exported for callers)
    AdverseEventLog,
    Analysis,
    Arm,
    BayesPrior,
    ClinicianRatings,
    Comparator,
    Criterion,
    CriterionKind,
    DataColumns,
    DecisionLabels,
    DecisionRules,
    Design,
    Diagnostics,
    Engagement,
    EscalationLog,
    Estimand,
    Finite,
    GroupSequential,
    HalfNormalPrior,
    Identifier,
    IntercurrentEvent,
    IntercurrentEventStrategy,
    Look,
    NormalPrior,
    Outcome,
    Privacy,
    RedFlag,
    Reliability,
    Responder,
    ResponderKind,
    Safety,
    Sampler,
    Simulation,
    SimulationScenario,
    Statistic,
    Treatment,
    Variable,
    _Spec,
)

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
    group_sequential: GroupSequential | None = None
    priors: PriorSets | None = None
    multiplicity: Multiplicity | None = None
    fairness: Fairness | None = None
    simulation: Simulation | None = None
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
            for lk in a.looks or ():
                if lk not in looks:
                    raise _ref(f"analyses.{i}.looks", lk, looks)
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
                runs_at = analyses[c.analysis].looks
                if runs_at is not None and (c.look or self.design.final_look) not in runs_at:
                    raise ValueError(f"criteria.{i}.look: analysis {c.analysis!r} is not run at "
                                     f"look {c.look or self.design.final_look!r}")
                engine = analyses[c.analysis].engine
                if c.statistic == Statistic.posterior_probability and engine != "bayesian":
                    raise ValueError(f"criteria.{i}.statistic: posterior_probability needs a "
                                     f"bayesian analysis, {c.analysis!r} is {engine}")
                if c.statistic == Statistic.p_value and engine != "frequentist":
                    raise ValueError(f"criteria.{i}.statistic: p_value needs a frequentist "
                                     f"analysis, {c.analysis!r} is {engine}")
        gs = self.group_sequential
        if gs is not None:
            if gs.analysis not in analyses:
                raise _ref("group_sequential.analysis", gs.analysis, analyses)
            if analyses[gs.analysis].engine != "frequentist":
                raise ValueError("group_sequential.analysis: must name a frequentist analysis "
                                 "(its Z statistic is monitored)")
            if len(self.design.looks) < 2:
                raise ValueError("group_sequential: design.looks needs at least two looks")
        if self.simulation is not None and gs is None:
            raise ValueError("simulation: needs a group_sequential section to simulate")
        for s in self.subgroups:
            if s not in self.data.participant_columns + self.design.strata:
                raise ValueError(f"subgroups: {s!r} is not a participant column or stratum")
        check_models(self)
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

    def analyses_at(self, look: str) -> tuple[Analysis, ...]:
        """The analyses the protocol runs at ``look``."""
        return tuple(a for a in self.analyses if a.looks is None or look in a.looks)

    def criteria_at(self, look: str) -> tuple[Criterion, ...]:
        final = self.design.final_look
        return tuple(c for c in self.criteria if (c.look or final) == look)

    def canonical(self) -> dict[str, Any]:
        """The protocol as plain data, fields left at their defaults omitted: the form that is
        locked and hashed. Omitting defaults keeps existing locks valid when a later version of
        `trials` adds an optional section or field."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    def sha256(self) -> str:
        """SHA-256 of the canonical protocol: comments, layout and defaults written out in the
        YAML do not count."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unique(where: str, ids: list[str], n: int) -> None:
    if len(set(ids)) != n:
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{where}: duplicate id {dupes}")


def _ref(field: str, value: object, known: Any) -> ValueError:
    return ValueError(f"{field}: {value!r} is not one of {sorted(map(str, known))}")


def parse_protocol(data: Any, source: str = "<protocol>") -> Protocol:
    """Validate plain data as a protocol; errors name the source and the field.

    A ``design.type`` of a quasi-experimental design gives a
    :class:`~trials.quasi_protocol.QuasiProtocol` (same lock, audit and bundle contract).
    """
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: the protocol must be a YAML mapping")
    from trials.quasi_protocol import QUASI_DESIGNS, QuasiProtocol

    design = data.get("design")
    kind = QuasiProtocol if (isinstance(design, dict)
                             and design.get("type") in QUASI_DESIGNS) else Protocol
    try:
        return kind.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        raise ProtocolError(f"{source}: {_first_error(exc)}") from None


_UNION_TAG = re.compile(r"^([A-Z][A-Za-z]*|literal\[.*|function-.*)$")


def _first_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        # Union members appear in pydantic's location as their class or literal name
        # ("BayesPrior", "literal['sceptical', ...]"); a protocol field path never has them.
        loc = ".".join(str(p) for p in err["loc"] if not _UNION_TAG.match(str(p)))
        msg = err["msg"].removeprefix("Value error, ")
        if loc and msg.startswith("options."):
            lines.append(f"{loc}.{msg}")
        elif loc and msg.startswith(loc.split(".")[-1] + ":"):
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
