"""Bayesian hierarchical shrinkage of subgroup effects (normal-normal model, PyMC).

Raw subgroup effects are noisy, and the largest of several is biased away from the rest. Each
subgroup variable's level effects are partially pooled towards their common mean, by as much as
the data say the levels differ: the raw and shrunken estimates are reported side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import arviz as az
import numpy as np

from analysis.bayes_gate import DiagnosticsGate, SamplerSettings, apply_gate, run_sampler
from analysis.estimate import Estimate
from trials.errors import AnalysisError

OVERALL = "overall"


@dataclass(frozen=True)
class ShrinkageSpec:
    """Sampler settings and priors of the normal-normal hierarchical model.

    The priors are on the outcome's scale: ``mu ~ Normal(mu_prior_mean, mu_prior_sd)`` for the
    mean effect of a variable's levels and ``tau ~ HalfNormal(tau_prior_sd)`` for the
    between-level SD. With ``tau_fixed`` set, tau is that constant instead (a degenerate prior;
    ``tau_fixed=0`` pools completely). With only a handful of levels per variable the posterior
    of tau reaches down to zero, where NUTS needs small steps: hence the high
    ``target_accept``.
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 2
    seed: int = 0
    tau_prior_sd: float = 2.5
    mu_prior_mean: float = 0.0
    mu_prior_sd: float = 10.0
    tau_fixed: float | None = None
    target_accept: float = 0.99
    interval_level: float = 0.95
    # 100 effective draws per chain (Vehtari et al. 2021) for the default two chains.
    gate: DiagnosticsGate = DiagnosticsGate(min_ess_bulk=200, min_ess_tail=200)


@dataclass(frozen=True)
class ShrinkageRow:
    """Raw and shrunken effect of one subgroup level, side by side."""

    variable: str
    level: str
    raw_estimate: float
    raw_se: float
    raw_ci_lower: float | None
    raw_ci_upper: float | None
    shrunk_estimate: float
    shrunk_sd: float
    shrunk_ci_lower: float
    shrunk_ci_upper: float


@dataclass(frozen=True)
class VariablePosterior:
    """Posterior of the mean effect ``mu`` and the between-level SD ``tau`` of one variable."""

    variable: str
    n_levels: int
    mu_mean: float
    mu_ci_lower: float
    mu_ci_upper: float
    tau_mean: float
    tau_median: float
    tau_ci_lower: float
    tau_ci_upper: float
    tau_fixed: bool


@dataclass(frozen=True)
class ShrinkageResult:
    rows: tuple[ShrinkageRow, ...]
    variables: tuple[VariablePosterior, ...]
    estimates: tuple[Estimate, ...]  # one bayesian Estimate per shrunken level
    diagnostics: Mapping[str, Any]
    reliable: bool
    warnings: tuple[str, ...]
    idata: az.InferenceData | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [asdict(r) for r in self.rows],
            "variables": [asdict(v) for v in self.variables],
            "estimates": [e.to_dict() for e in self.estimates],
            "diagnostics": dict(self.diagnostics),
            "reliable": self.reliable,
            "warnings": list(self.warnings),
        }


def _get(row: Any, name: str, default: Any = None) -> Any:
    if isinstance(row, Mapping):
        return row.get(name, default)
    return getattr(row, name, default)


def _inputs(rows: Iterable[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Reported (non-suppressed) level effects grouped by variable; variables with fewer than
    two such levels are left out with a warning."""
    by_var: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        var = str(_get(r, "variable"))
        if var == OVERALL or _get(r, "suppressed", False) or _get(r, "estimate") is None:
            continue
        se = _get(r, "se")
        if se is None or not np.isfinite(se) or se <= 0:
            raise AnalysisError(f"shrinkage: row {var}={_get(r, 'level')} needs a positive 'se'")
        by_var.setdefault(var, []).append({
            "variable": var, "level": str(_get(r, "level")),
            "estimate": float(_get(r, "estimate")), "se": float(se),
            "ci_lower": _get(r, "ci_lower"), "ci_upper": _get(r, "ci_upper")})
    kept, warn = [], []
    for var, items in by_var.items():
        if len(items) < 2:
            warn.append(f"{var}: fewer than two reported levels, nothing to shrink")
        else:
            kept += items
    return kept, warn


def shrink(rows: Iterable[Any], spec: ShrinkageSpec) -> ShrinkageResult:
    """Partially pool the level effects of each subgroup variable.

    Parameters
    ----------
    rows
        Forest-plot rows (:class:`analysis.subgroups.SubgroupRow` or mappings with
        ``variable, level, estimate, se, suppressed`` and optionally ``ci_lower, ci_upper``).
        The overall row and suppressed levels are ignored.
    spec
        Priors and sampler settings.

    Notes
    -----
    For the levels :math:`j` of one variable, :math:`\\hat y_j \\sim N(\\theta_j, s_j^2)` with
    :math:`s_j` the raw standard error taken as known, :math:`\\theta_j = \\mu + \\tau z_j`,
    :math:`z_j \\sim N(0, 1)` (non-centred, which samples well when :math:`\\tau` is small),
    :math:`\\mu \\sim N(m, s_\\mu^2)`, :math:`\\tau \\sim HalfNormal(s_\\tau)`. Every variable
    has its own :math:`\\mu` and :math:`\\tau`; all are sampled in one model. Given
    :math:`\\tau`, the posterior of :math:`\\theta_j` is normal with mean
    :math:`w_j \\hat y_j + (1 - w_j) E[\\mu]`, :math:`w_j = \\tau^2 / (\\tau^2 + s_j^2)`.
    The fit is unreliable when any parameter has R-hat above the gate, bulk or tail ESS below
    it, or more divergences than it allows (:func:`analysis.bayes_gate.apply_gate`).
    """
    items, warn = _inputs(rows)
    if not items:
        raise AnalysisError("shrinkage: no subgroup variable has two or more reported levels")
    if spec.tau_fixed is not None and spec.tau_fixed < 0:
        raise AnalysisError("shrinkage: ShrinkageSpec.tau_fixed must be >= 0")
    variables = list(dict.fromkeys(it["variable"] for it in items))
    group = np.array([variables.index(it["variable"]) for it in items])
    y = np.array([it["estimate"] for it in items])
    se = np.array([it["se"] for it in items])
    idata = _sample(y, se, group, len(variables), spec)
    names = [v for v in ("mu", "tau", "z") if v in idata.posterior]
    diag, reliable, gate_warn = apply_gate(idata, names, spec.gate)
    warn = [*gate_warn, *warn]

    tail = (1 - spec.interval_level) / 2
    theta = idata.posterior["theta"].to_numpy().reshape(-1, len(items))
    mu = idata.posterior["mu"].to_numpy().reshape(-1, len(variables))
    tau = (np.full_like(mu, spec.tau_fixed) if spec.tau_fixed is not None
           else idata.posterior["tau"].to_numpy().reshape(-1, len(variables)))
    out_rows, estimates = [], []
    for k, it in enumerate(items):
        lo, hi = np.quantile(theta[:, k], [tail, 1 - tail])
        row = ShrinkageRow(
            it["variable"], it["level"], it["estimate"], it["se"],
            None if it["ci_lower"] is None else float(it["ci_lower"]),
            None if it["ci_upper"] is None else float(it["ci_upper"]),
            float(theta[:, k].mean()), float(theta[:, k].std(ddof=1)), float(lo), float(hi))
        out_rows.append(row)
        estimates.append(_estimate(row, spec, diag, reliable))
    posts = []
    for v, var in enumerate(variables):
        mlo, mhi = np.quantile(mu[:, v], [tail, 1 - tail])
        tlo, thi = np.quantile(tau[:, v], [tail, 1 - tail])
        posts.append(VariablePosterior(
            var, int((group == v).sum()), float(mu[:, v].mean()), float(mlo), float(mhi),
            float(tau[:, v].mean()), float(np.median(tau[:, v])), float(tlo), float(thi),
            spec.tau_fixed is not None))
    return ShrinkageResult(tuple(out_rows), tuple(posts), tuple(estimates), diag,
                           reliable, tuple(warn), idata)


def _sample(y: np.ndarray, se: np.ndarray, group: np.ndarray, n_vars: int,
            spec: ShrinkageSpec) -> az.InferenceData:
    import pymc as pm

    with pm.Model() as model:
        mu = pm.Normal("mu", spec.mu_prior_mean, spec.mu_prior_sd, shape=n_vars)
        if spec.tau_fixed is None:
            tau = pm.HalfNormal("tau", spec.tau_prior_sd, shape=n_vars)[group]
        else:
            tau = float(spec.tau_fixed)
        z = pm.Normal("z", 0.0, 1.0, shape=len(y))
        theta = pm.Deterministic("theta", mu[group] + tau * z)
        pm.Normal("y", theta, se, observed=y)
    settings = SamplerSettings(draws=spec.draws, tune=spec.tune, chains=spec.chains,
                               target_accept=spec.target_accept, seed=spec.seed)
    # Chains run in parallel up to the cores available; the draws do not depend on it.
    return run_sampler(model, settings)


def _estimate(row: ShrinkageRow, spec: ShrinkageSpec, diag: dict[str, Any],
              reliable: bool) -> Estimate:
    tau = (f"tau = {spec.tau_fixed:g} (fixed)" if spec.tau_fixed is not None
           else f"tau ~ HalfNormal({spec.tau_prior_sd:g})")
    return Estimate(
        estimand=row.variable, analysis=f"{row.variable}={row.level}", engine="bayesian",
        model="hierarchical_shrinkage", estimate=row.shrunk_estimate, std_error=row.shrunk_sd,
        ci_lower=row.shrunk_ci_lower, ci_upper=row.shrunk_ci_upper,
        ci_level=spec.interval_level, diagnostics=diag, reliable=reliable,
        details={"raw_estimate": row.raw_estimate, "raw_se": row.raw_se,
                 "prior": f"mu ~ Normal({spec.mu_prior_mean:g}, {spec.mu_prior_sd:g}); {tau}",
                 "seed": spec.seed},
    )
