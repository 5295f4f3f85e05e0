"""Protocol sections for the model families beyond ANCOVA: per-model options, named prior sets,
prior sensitivity, multiplicity, subgroup shrinkage and the fairness panel.

``analyses[].options`` is validated against the options class of the analysis's ``model``
(:data:`MODEL_OPTIONS`), so an error names the field, e.g. ``analyses.2.options.covariance``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trials.protocol_base import Finite, Identifier, _Spec

# --------------------------------------------------------------------------- model options


class MmrmOptions(_Spec):
    """Mixed model for repeated measures over the outcome's post-baseline visits."""

    covariance: Literal[
        "unstructured", "compound_symmetry", "heterogeneous_compound_symmetry", "ar1",
        "heterogeneous_ar1", "toeplitz", "heterogeneous_toeplitz",
    ] = "unstructured"
    method: Literal["reml", "ml"] = "reml"
    df: Literal["satterthwaite", "kenward_roger", "residual"] = "satterthwaite"
    visits: tuple[int, ...] | None = Field(
        None, description="Post-baseline visits in the model (default: every scheduled visit of "
        "the outcome after its baseline visit).")
    lkj_eta: float = Field(2.0, gt=0, description="LKJ prior on the visit correlation "
                           "(engine: bayesian).")


class TippingPointOptions(_Spec):
    """Delta-adjusted (missing-not-at-random) sensitivity: ``delta`` is added to the imputed
    outcomes of ``arm`` and the analysis repeated over the grid."""

    deltas: tuple[Finite, ...] = Field(min_length=2)
    arm: Literal["experimental", "comparator", "both"] = "experimental"


class ImputationOptions(_Spec):
    """Multiple imputation by chained equations, pooled by Rubin's rules."""

    m: int = Field(20, ge=2, le=1000)
    iterations: int = Field(10, ge=1, le=200)
    method: Literal["pmm", "norm"] = "pmm"
    auxiliary_visits: tuple[int, ...] = Field(
        (), description="Other visits of the same outcome used only in the imputation models.")
    auxiliary: tuple[str, ...] = Field(
        (), description="Participant columns used only in the imputation models.")
    by_arm: bool = True
    seed: int = 0
    tipping_point: TippingPointOptions | None = None


class BinaryOptions(_Spec):
    summary: Literal["risk_difference", "risk_ratio", "odds_ratio"] = "risk_difference"


class CountOptions(_Spec):
    family: Literal["poisson", "negative_binomial"] = "poisson"
    exposure: str | None = Field(None, description="Participant column with the exposure "
                                 "(e.g. days of follow-up); enters as log offset.")


class GeeOptions(_Spec):
    family: Literal["gaussian", "binomial", "poisson"] = "gaussian"
    correlation: Literal["independence", "exchangeable", "unstructured", "ar1"] = "exchangeable"
    se: Literal["robust", "mancl_derouen", "kauermann_carroll", "model"] = "robust"
    visits: tuple[int, ...] | None = None


class ClusterOptions(_Spec):
    method: Literal["mixed", "gee"] = "mixed"
    df: Literal["between_within", "satterthwaite", "kenward_roger", "residual"] = (
        "between_within")
    cluster_sd_prior: float = Field(5.0, gt=0, description="Half-normal prior sd of the "
                                    "cluster effects (engine: bayesian).")


class SteppedWedgeOptions(_Spec):
    df: Literal["between_within", "satterthwaite", "kenward_roger", "residual"] = (
        "between_within")


class NoOptions(_Spec):
    pass


MODEL_OPTIONS: dict[str, type[_Spec]] = {
    "ancova": NoOptions,
    "mmrm": MmrmOptions,
    "ancova_mi": ImputationOptions,
    "logistic": BinaryOptions,
    "count": CountOptions,
    "gee": GeeOptions,
    "cluster": ClusterOptions,
    "stepped_wedge": SteppedWedgeOptions,
}
ModelName = Literal["ancova", "mmrm", "ancova_mi", "logistic", "count", "gee", "cluster",
                    "stepped_wedge"]
# Which model families have a Bayesian engine.
BAYESIAN_MODELS = frozenset({"ancova", "mmrm", "logistic", "count", "cluster"})
ModelOptions = (MmrmOptions | ImputationOptions | BinaryOptions | CountOptions | GeeOptions
                | ClusterOptions | SteppedWedgeOptions | NoOptions)


# --------------------------------------------------------------------------- priors


PriorSetName = Literal["sceptical", "weakly_informative", "enthusiastic"]


class PriorSets(_Spec):
    """Named prior sets built from the estimand's clinically important difference and a stated
    outcome standard deviation (Spiegelhalter, Freedman & Parmar 1994): *sceptical* is centred on
    no effect with 5% probability beyond the CID, *enthusiastic* is centred on the CID with 5%
    probability of harm, *weakly informative* is centred on no effect with sd = outcome sd."""

    outcome_sd: float = Field(gt=0, allow_inf_nan=False)
    sensitivity: tuple[PriorSetName, ...] = Field(
        ("sceptical", "weakly_informative", "enthusiastic"),
        description="Prior sets refitted for the prior-sensitivity table.")


# --------------------------------------------------------------------------- multiplicity


class Multiplicity(_Spec):
    """Family-wise error control of the secondary hypotheses, applied by the decision engine:
    criteria of ``kind: secondary`` on these analyses read the adjusted p-value."""

    method: Literal["holm", "hochberg", "fixed_sequence", "bonferroni"]
    alpha: float = Field(0.05, gt=0, lt=1)
    hypotheses: tuple[Identifier, ...] = Field(
        min_length=1, description="Frequentist analyses in the family; for fixed_sequence, in "
        "testing order.")


# --------------------------------------------------------------------------- fairness


class SubgroupAnalysis(_Spec):
    """Pre-specified subgroup effects of one analysis (interaction models), shown as a forest
    plot next to their Bayesian hierarchical shrinkage."""

    analysis: Identifier
    shrinkage: bool = True
    draws: int = Field(1000, ge=50)
    tune: int = Field(1000, ge=50)
    chains: int = Field(2, ge=1)
    seed: int = 0


class Fairness(_Spec):
    """Subgroup effects and equity measures (attrition, engagement, red flags, adverse events)
    across the protocol's ``subgroups``."""

    subgroup_effects: tuple[SubgroupAnalysis, ...] = ()
    min_cell: int | None = Field(
        None, ge=1, description="Smallest subgroup-by-arm size reported (default 10; never "
        "below the privacy small-cell threshold).")

    @model_validator(mode="after")
    def _check(self) -> Fairness:
        ids = [s.analysis for s in self.subgroup_effects]
        if len(set(ids)) != len(ids):
            raise ValueError("fairness.subgroup_effects: each analysis at most once")
        return self
