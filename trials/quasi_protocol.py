"""The protocol of a quasi-experimental study: difference-in-differences (incl. event studies and
staggered adoption), interrupted time series, regression discontinuity and synthetic control.

Same contract as the randomised protocol (:mod:`trials.protocol`): one YAML file, validated with
errors that name the field, locked by the SHA-256 of its canonical form, criteria as structured
data. What differs is the data model: rows are patients (or unit-period cells) of units (clinics,
services) observed over periods, and the design names how exposure to the intervention arises.
Falsification checks are pre-specified here too; a failed check turns a GO into NOT INTERPRETABLE.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, model_validator

from trials.protocol_base import Finite, Identifier, _Spec
from trials.protocol_sections import (
    BayesPrior,
    Criterion,
    CriterionKind,
    DecisionRules,
    Diagnostics,
    Privacy,
    Safety,
    Sampler,
    Statistic,
)

QuasiDesignType = Literal["difference_in_differences", "interrupted_time_series",
                          "regression_discontinuity", "synthetic_control"]
QUASI_DESIGNS = frozenset(QuasiDesignType.__args__)  # type: ignore[attr-defined]


class QuasiDesign(_Spec):
    type: QuasiDesignType
    intervention: str = Field(description="What was switched on, in plain words.")
    comparison: str = Field("", description="Who or what the comparison is, in plain words.")
    strata: tuple[str, ...] = ()  # none: the shared privacy checks read this

    @property
    def final_look(self) -> str:
        return "final"  # one analysis, at the end


class QuasiData(_Spec):
    """Columns of the input. ``level: patient`` rows are aggregated to unit x period cells
    (DuckDB) before fitting where the estimator allows; ``level: unit_period`` rows are cells."""

    level: Literal["patient", "unit_period"] = "patient"
    unit: str = Field(description="Unit of exposure (clinic, service, region).")
    period: str = Field(description="Integer period (e.g. month index) of each row.")
    adoption: str | None = Field(None, description="Unit-level column: first exposed period "
                                 "(empty for never exposed); difference-in-differences.")
    running: str | None = Field(None, description="Running variable (regression "
                                "discontinuity).")
    received: str | None = Field(None, description="Treatment actually received (fuzzy RD).")
    participant: str = Field("participant_id", description="Patient identifier (patient "
                             "level); never leaves intake.")
    covariates: tuple[str, ...] = ()
    participant_columns: tuple[str, ...] = ()


class QuasiOutcome(_Spec):
    id: Identifier
    label: str
    column: str
    kind: Literal["continuous", "binary"] = "continuous"
    higher_is_better: bool = False
    unit_label: str = ""


class QuasiEstimand(_Spec):
    id: Identifier
    label: str
    population: str
    outcome: Identifier
    summary: Literal["difference_in_means", "risk_difference"] = "difference_in_means"
    clinically_important_difference: Finite | None = None


QuasiModel = Literal["did", "event_study", "staggered_did", "its", "rd", "synthetic_control"]
_MODELS_FOR = {
    "difference_in_differences": {"did", "event_study", "staggered_did"},
    "interrupted_time_series": {"its"},
    "regression_discontinuity": {"rd"},
    "synthetic_control": {"synthetic_control"},
}
_BAYESIAN = {"did", "its", "rd"}


class QuasiAnalysis(_Spec):
    id: Identifier
    estimand: Identifier
    engine: Literal["frequentist", "bayesian"] = "frequentist"
    model: QuasiModel
    purpose: Literal["primary", "sensitivity", "supportive"] = "primary"
    options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the estimator (see docs/quasi.md): e.g. "
        "leads/lags for event_study, control for staggered_did, interruption for its, cutoff "
        "and bandwidth for rd, treated_unit for synthetic_control.")
    interval_level: float = Field(0.95, gt=0, lt=1)
    prior: BayesPrior | None = None
    sampler: Sampler | None = None
    diagnostics: Diagnostics | None = None

    @model_validator(mode="after")
    def _check(self) -> QuasiAnalysis:
        if self.engine == "bayesian" and self.model not in _BAYESIAN:
            raise ValueError(f"model {self.model} has no bayesian engine")
        if self.engine == "bayesian" and self.prior is None:
            raise ValueError("engine: bayesian needs a stated prior")
        if self.engine == "frequentist" and (self.prior or self.sampler):
            raise ValueError("prior and sampler apply only to engine: bayesian")
        return self


FalsificationCheck = Literal["pre_trends", "placebo_dates", "placebo_units", "density",
                             "bandwidth_sensitivity", "covariate_balance", "placebo_cutoffs"]
_CHECKS_FOR = {
    "did": {"pre_trends", "placebo_dates"},
    "event_study": {"pre_trends"},
    "staggered_did": {"pre_trends"},
    "its": {"placebo_dates"},
    "rd": {"density", "bandwidth_sensitivity", "covariate_balance", "placebo_cutoffs"},
    # placebo_units is not a separate check: the placebo-in-space inference is the synthetic
    # control's own p-value (accepting it here only failed the run after the lock).
    "synthetic_control": {"placebo_dates"},
}
# Options each check reads (model-specific where they differ), and the ones it needs.
_CHECK_OPTIONS: dict[tuple[str, str], tuple[set[str], set[str]]] = {
    ("its", "placebo_dates"): ({"periods"}, {"periods"}),
    ("synthetic_control", "placebo_dates"): ({"period"}, {"period"}),
    ("rd", "covariate_balance"): ({"covariates"}, set()),
    ("rd", "bandwidth_sensitivity"): ({"multipliers"}, set()),
    ("rd", "placebo_cutoffs"): ({"cutoffs"}, {"cutoffs"}),
}


class Falsification(_Spec):
    """A pre-specified check of the design's assumptions; failing it makes the result not
    interpretable as an effect of the intervention."""

    id: Identifier
    analysis: Identifier
    check: FalsificationCheck
    alpha: float = Field(0.05, gt=0, lt=1)
    options: dict[str, Any] = Field(default_factory=dict, description="e.g. placebo periods, "
                                    "bandwidth multipliers, placebo cut-offs, covariates.")


class QuasiProtocol(_Spec):
    schema_version: Literal[1] = 1
    id: Identifier
    title: str
    version: int = Field(ge=1)
    description: str = ""
    design: QuasiDesign
    data: QuasiData
    outcomes: tuple[QuasiOutcome, ...] = Field(min_length=1)
    estimands: tuple[QuasiEstimand, ...] = Field(min_length=1)
    analyses: tuple[QuasiAnalysis, ...] = Field(min_length=1)
    falsification: tuple[Falsification, ...] = ()
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    privacy: Privacy = Privacy()
    decision: DecisionRules = DecisionRules()

    @model_validator(mode="after")
    def _cross_references(self) -> QuasiProtocol:
        outcomes = {o.id for o in self.outcomes}
        estimands = {e.id: e for e in self.estimands}
        analyses = {a.id: a for a in self.analyses}
        for name, ids in (("outcomes", [o.id for o in self.outcomes]),
                          ("estimands", list(estimands)), ("analyses", [a.id for a in
                                                                         self.analyses]),
                          ("falsification", [f.id for f in self.falsification]),
                          ("criteria", [c.id for c in self.criteria])):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name}: ids must be unique")
        for i, e in enumerate(self.estimands):
            if e.outcome not in outcomes:
                raise ValueError(f"estimands.{i}.outcome: {e.outcome!r} is not an outcome id")
        allowed = _MODELS_FOR[self.design.type]
        for i, a in enumerate(self.analyses):
            if a.estimand not in estimands:
                raise ValueError(f"analyses.{i}.estimand: {a.estimand!r} is not an estimand id")
            if a.model not in allowed:
                raise ValueError(f"analyses.{i}.model: {a.model} does not fit design.type "
                                 f"{self.design.type} (use {', '.join(sorted(allowed))})")
        needs = {"did": "adoption", "event_study": "adoption", "staggered_did": "adoption",
                 "rd": "running"}
        for i, a in enumerate(self.analyses):
            col = needs.get(a.model)
            if col and getattr(self.data, col) is None:
                raise ValueError(f"analyses.{i}.model: {a.model} needs data.{col}")
        for i, f in enumerate(self.falsification):
            if f.analysis not in analyses:
                raise ValueError(f"falsification.{i}.analysis: {f.analysis!r} is not an "
                                 "analysis id")
            model = analyses[f.analysis].model
            if f.check not in _CHECKS_FOR[model]:
                raise ValueError(f"falsification.{i}.check: {f.check} does not apply to model "
                                 f"{model} (use {', '.join(sorted(_CHECKS_FOR[model]))})")
            known, needed = _CHECK_OPTIONS.get((model, f.check), (set(), set()))
            for key in f.options:
                if key not in known:
                    raise ValueError(f"falsification.{i}.options.{key}: not an option of check "
                                     f"{f.check} (options: {', '.join(sorted(known)) or 'none'})")
            for key in sorted(needed - set(f.options)):
                raise ValueError(f"falsification.{i}.options.{key}: check {f.check} of model "
                                 f"{model} needs it")
        for i, c in enumerate(self.criteria):
            if c.analysis is None or c.analysis not in analyses:
                raise ValueError(f"criteria.{i}.analysis: a quasi-experimental criterion names "
                                 "one of the analyses")
            if c.look is not None:
                raise ValueError(f"criteria.{i}.look: quasi-experimental studies have one look")
            engine = analyses[c.analysis].engine
            if c.statistic == Statistic.posterior_probability and engine != "bayesian":
                raise ValueError(f"criteria.{i}.statistic: posterior_probability needs a "
                                 "bayesian analysis")
            if c.kind == CriterionKind.secondary:
                raise ValueError(f"criteria.{i}.kind: secondary claims need a multiplicity "
                                 "section, which quasi-experimental protocols do not have yet")
        self._check_options()
        return self

    def _check_options(self) -> None:
        """Build each analysis's specification now, so that an unknown or missing option (or a
        prior the model cannot honour) fails when the protocol is read, not after the lock."""
        from trials.errors import ProtocolError
        from trials.quasi_fitting import analysis_spec, bayes_spec

        for i, a in enumerate(self.analyses):
            try:
                if a.engine == "frequentist":
                    analysis_spec(self, a, f"analyses.{i}")
                else:
                    bayes_spec(self, a, f"analyses.{i}")
            except ProtocolError as exc:
                raise ValueError(str(exc)) from None

    # ------------------------------------------------------------------ shared interface
    # The lock, audit, bundle and privacy checks read these of any protocol.
    @property
    def safety(self) -> Safety:
        return Safety()

    @property
    def engagement(self) -> None:
        return None

    @property
    def clinician_ratings(self) -> None:
        return None

    def criteria_at(self, look: str) -> tuple[Criterion, ...]:
        return self.criteria if look == "final" else ()

    def estimand(self, estimand_id: str) -> QuasiEstimand:
        return next(e for e in self.estimands if e.id == estimand_id)

    def outcome(self, outcome_id: str) -> QuasiOutcome:
        return next(o for o in self.outcomes if o.id == outcome_id)

    def analysis(self, analysis_id: str) -> QuasiAnalysis:
        return next(a for a in self.analyses if a.id == analysis_id)

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    def sha256(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
