"""Named prior sets for the treatment effect and the prior-sensitivity table.

A Bayesian primary analysis is read next to the same model under a sceptical and an
enthusiastic prior (Spiegelhalter, Freedman & Parmar 1994, *J R Stat Soc A* 157:357-416): if the
conclusion survives the sceptic, the data, not the prior, carry it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd
from scipy import stats

from trials.errors import AnalysisError

# One-sided 5% tail: the sceptical and enthusiastic priors put 5% beyond their boundary.
_TAIL = 0.05


@dataclass(frozen=True)
class PriorSet:
    """Priors on the outcome's own scale (for logistic and count models, the linear predictor's).

    effect ~ Normal(effect_mean, effect_sd); other regression coefficients ~ Normal(0, coef_sd)
    (per unit of the covariate); intercept ~ Normal(0, intercept_sd); residual (or per-visit)
    SD ~ HalfNormal(sigma_sd).
    """

    name: str
    effect_mean: float
    effect_sd: float
    coef_sd: float
    intercept_sd: float
    sigma_sd: float

    def __post_init__(self) -> None:
        for f in ("effect_sd", "coef_sd", "intercept_sd", "sigma_sd"):
            value = getattr(self, f)
            if not (math.isfinite(value) and value > 0):
                raise AnalysisError(f"prior {self.name!r}: {f} must be a positive number, "
                                    f"got {value}")
        if not math.isfinite(self.effect_mean):
            raise AnalysisError(f"prior {self.name!r}: effect_mean must be finite")

    def describe(self) -> str:
        return (f"{self.name}: effect ~ Normal({self.effect_mean:g}, {self.effect_sd:g}); "
                f"coefficients ~ Normal(0, {self.coef_sd:g}); intercept ~ Normal(0, "
                f"{self.intercept_sd:g}); SD ~ HalfNormal({self.sigma_sd:g})")


def standard_prior_sets(cid: float, outcome_sd: float, *,
                        direction: str = "lower") -> tuple[PriorSet, ...]:
    """Sceptical, weakly informative and enthusiastic priors for the treatment effect.

    Parameters
    ----------
    cid
        The clinically important difference: its size, or the signed effect in the direction of
        benefit (for ``direction="lower"`` both 3 and -3 mean "3 points lower is important").
    outcome_sd
        The outcome's SD in the population studied (from the protocol or earlier trials).
    direction
        ``"lower"`` when lower outcome values are better (symptom scores), else ``"higher"``.

    Returns
    -------
    (sceptical, weakly_informative, enthusiastic)

    Notes
    -----
    With :math:`\\delta` the CID signed towards benefit and :math:`z = \\Phi^{-1}(0.95)`:

    - sceptical: :math:`N(0, |\\delta|/z)`, so that :math:`P(\\text{effect beyond } \\delta)
      = 0.05` (Spiegelhalter et al. 1994, section 3.1);
    - enthusiastic: :math:`N(\\delta, |\\delta|/z)`, so that the prior probability that the
      effect lies on the harmful side of 0 is 0.05;
    - weakly informative: :math:`N(0, \\sigma_y)`: an effect of one outcome SD (a standardised
      difference of 1, far above what psychological interventions achieve) is one prior SD away,
      so the prior rules out only implausible effects and lets the data dominate at any
      realistic sample size.

    The nuisance priors are shared and wide on the outcome's scale: coefficients
    :math:`N(0, 10\\sigma_y)`, intercept :math:`N(0, 10\\sigma_y)`, SDs
    :math:`HalfNormal(2\\sigma_y)`.
    """
    if direction not in ("lower", "higher"):
        raise AnalysisError(f"direction must be 'lower' or 'higher', got {direction!r}")
    if not (math.isfinite(cid) and cid != 0):
        raise AnalysisError(f"cid must be a non-zero number, got {cid}")
    if direction == "higher" and cid < 0:
        raise AnalysisError(f"cid {cid} points to harm when higher values are better")
    if not (math.isfinite(outcome_sd) and outcome_sd > 0):
        raise AnalysisError(f"outcome_sd must be a positive number, got {outcome_sd}")
    size = abs(cid)
    signed = -size if direction == "lower" else size
    sd = size / float(stats.norm.ppf(1 - _TAIL))
    nuisance = {"coef_sd": 10 * outcome_sd, "intercept_sd": 10 * outcome_sd,
                "sigma_sd": 2 * outcome_sd}
    return (
        PriorSet("sceptical", 0.0, sd, **nuisance),
        PriorSet("weakly_informative", 0.0, float(outcome_sd), **nuisance),
        PriorSet("enthusiastic", signed, sd, **nuisance),
    )


@dataclass(frozen=True)
class SensitivityRow:
    """One prior set's posterior summary of the treatment effect."""

    prior: str
    prior_mean: float
    prior_sd: float
    posterior_mean: float
    posterior_sd: float
    ci_lower: float
    ci_upper: float
    ci_level: float
    probabilities: tuple[tuple[str, float, float], ...]  # (comparator, threshold, probability)
    reliable: bool


@dataclass(frozen=True)
class PriorSensitivity:
    """The same model refitted under each prior set, in the order given."""

    estimand: str
    analysis: str
    rows: tuple[SensitivityRow, ...]

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["probabilities"] = [{"comparator": c, "threshold": t, "probability": p}
                                  for c, t, p in r.probabilities]
            rows.append(d)
        return {"estimand": self.estimand, "analysis": self.analysis, "rows": rows}

    def to_frame(self) -> pd.DataFrame:
        """One row per prior; one column per posterior probability, e.g. ``P(< -2)``."""
        records = []
        for r in self.rows:
            rec = {k: v for k, v in asdict(r).items() if k != "probabilities"}
            rec.update({f"P({c} {t:g})": p for c, t, p in r.probabilities})
            records.append(rec)
        return pd.DataFrame(records).set_index("prior")


def prior_sensitivity(fit_fn: Callable[[pd.DataFrame, Any], Any], frame: pd.DataFrame, spec: Any,
                      prior_sets: Sequence[PriorSet]) -> PriorSensitivity:
    """Refit ``fit_fn(frame, spec)`` with ``spec.prior`` replaced by each of ``prior_sets``.

    Parameters
    ----------
    fit_fn
        One of the Bayesian fit functions (``fit_bayes_longitudinal``, ``fit_bayes_binary``, ...).
    frame, spec
        As for ``fit_fn``; ``spec`` is a frozen dataclass with a ``prior`` field.
    prior_sets
        For example :func:`standard_prior_sets`. Names must be distinct.

    Notes
    -----
    The prior mean and SD reported are those of the effect on the scale the model puts its
    prior (the log-odds or log-rate-ratio for logistic and count models), whereas the posterior
    columns are on the reported scale of the estimate.
    """
    if not prior_sets:
        raise AnalysisError("prior_sensitivity: no prior sets given")
    names = [p.name for p in prior_sets]
    if len(set(names)) != len(names):
        raise AnalysisError(f"prior_sensitivity: prior set names repeat: {names}")
    if not hasattr(spec, "prior"):
        raise AnalysisError("prior_sensitivity: the spec has no 'prior' field")
    rows = []
    for prior in prior_sets:
        e = fit_fn(frame, replace(spec, prior=prior)).estimate
        rows.append(SensitivityRow(
            prior=prior.name, prior_mean=float(prior.effect_mean),
            prior_sd=float(prior.effect_sd), posterior_mean=e.estimate,
            posterior_sd=e.std_error, ci_lower=e.ci_lower, ci_upper=e.ci_upper,
            ci_level=e.ci_level,
            probabilities=tuple((p.comparator, p.threshold, p.probability)
                                for p in e.posterior_probabilities),
            reliable=e.reliable,
        ))
    return PriorSensitivity(spec.estimand, spec.analysis, tuple(rows))
