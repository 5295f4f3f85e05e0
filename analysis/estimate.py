"""The ``Estimate``: one frozen record for every fitted estimand, whatever the engine.

Decision and report code read only this record and never branch on the backend.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any

import pandas as pd

_COMPARATORS = {"<", "<=", ">", ">="}


@dataclass(frozen=True)
class PosteriorProbability:
    """P(effect ``comparator`` threshold) under the posterior."""

    comparator: str
    threshold: float
    probability: float

    def __post_init__(self) -> None:
        if self.comparator not in _COMPARATORS:
            raise ValueError(f"comparator must be one of {sorted(_COMPARATORS)}")


@dataclass(frozen=True)
class Estimate:
    """A fitted estimand.

    ``estimate`` is experimental arm minus comparator (or a posterior mean); the interval is at
    ``ci_level`` (a confidence interval for frequentist engines, an equal-tailed credible
    interval for Bayesian ones). ``reliable`` is False when the fit failed its diagnostics gate;
    such an estimate cannot support a GO.
    """

    estimand: str
    analysis: str
    engine: str
    model: str
    estimate: float
    std_error: float
    ci_lower: float
    ci_upper: float
    ci_level: float
    p_value: float | None = None
    posterior_probabilities: tuple[PosteriorProbability, ...] = ()
    n_analysed: int = 0
    n_by_arm: MappingProxyType[str, int] = field(default_factory=lambda: MappingProxyType({}))
    diagnostics: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    reliable: bool = True
    warnings: tuple[str, ...] = ()
    details: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        for name in ("n_by_arm", "diagnostics", "details"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))
        pps = tuple(
            p if isinstance(p, PosteriorProbability) else PosteriorProbability(**p)
            for p in self.posterior_probabilities
        )
        object.__setattr__(self, "posterior_probabilities", pps)
        object.__setattr__(self, "warnings", tuple(self.warnings))

    # ------------------------------------------------------------------ access
    def probability(self, comparator: str, threshold: float) -> float | None:
        """The stored posterior probability P(effect comparator threshold), if computed."""
        for p in self.posterior_probabilities:
            if p.comparator == comparator and math.isclose(p.threshold, threshold):
                return p.probability
        return None

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("n_by_arm", "diagnostics", "details"):
            out[name] = dict(out[name])
        out["posterior_probabilities"] = [asdict(p) for p in self.posterior_probabilities]
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # ------------------------------------------------------------------ display
    def to_frame(self) -> pd.DataFrame:
        """One row: the numbers a reader compares across analyses."""
        return pd.DataFrame(
            [
                {
                    "estimand": self.estimand,
                    "analysis": self.analysis,
                    "engine": self.engine,
                    "model": self.model,
                    "estimate": self.estimate,
                    "std_error": self.std_error,
                    "ci_lower": self.ci_lower,
                    "ci_upper": self.ci_upper,
                    "ci_level": self.ci_level,
                    "p_value": self.p_value,
                    "n_analysed": self.n_analysed,
                    "reliable": self.reliable,
                }
            ]
        ).set_index("analysis")

    def summary(self) -> EstimateSummary:
        return EstimateSummary(self)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


@dataclass(frozen=True)
class EstimateSummary:
    """A readable view of an :class:`Estimate` (text and HTML)."""

    estimate: Estimate

    def lines(self) -> list[str]:
        e = self.estimate
        level = f"{e.ci_level:.0%}"
        out = [
            f"{e.analysis} ({e.engine} {e.model}) for estimand {e.estimand}",
            f"  estimate {e.estimate:.3f}  SE {e.std_error:.3f}  "
            f"{level} interval [{e.ci_lower:.3f}, {e.ci_upper:.3f}]",
        ]
        if e.p_value is not None:
            out.append(f"  p-value {e.p_value:.4g}")
        for p in e.posterior_probabilities:
            out.append(f"  P(effect {p.comparator} {p.threshold:g}) = {p.probability:.4f}")
        out.append(f"  n analysed {e.n_analysed} " +
                   " ".join(f"{k}={v}" for k, v in e.n_by_arm.items()))
        if e.diagnostics:
            out.append("  diagnostics " + ", ".join(f"{k}={_fmt(v)}"
                                                    for k, v in e.diagnostics.items()))
        if not e.reliable:
            out.append("  UNRELIABLE: failed its diagnostics gate; cannot support GO")
        out += [f"  warning: {w}" for w in e.warnings]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
