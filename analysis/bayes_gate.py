"""The diagnostics gate, the sampler call and the posterior summary shared by the Bayesian models.

Every Bayesian model family in :mod:`analysis` samples with :func:`run_sampler`, checks the
draws with :func:`apply_gate` and turns the draws of its treatment effect into an
:class:`~analysis.estimate.Estimate` with :func:`summarise_draws`, so the gate, the interval and
the posterior probabilities mean the same thing whatever the model. :class:`SamplerSettings` and
:class:`DiagnosticsGate` live here too (:mod:`analysis.bayes_ancova` re-exports them).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from analysis.estimate import Estimate, PosteriorProbability
from trials.errors import AnalysisError

_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings: draws and tuning steps per chain, chains, target acceptance, seed."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    seed: int = 20261127


@dataclass(frozen=True)
class DiagnosticsGate:
    """Thresholds a fit must meet to be reliable (see :func:`apply_gate`)."""

    max_rhat: float = 1.01
    min_ess_bulk: float = 400
    min_ess_tail: float = 400
    max_divergences: int = 0


@dataclass(frozen=True)
class BayesResult:
    """A Bayesian fit: the primary :class:`Estimate` and the posterior draws.

    ``tables`` holds any extra plain-data tables of the model (for example the effect at every
    visit); ``idata`` is the ArviZ ``InferenceData`` (``idata.to_netcdf(path)`` saves it).
    """

    estimate: Estimate
    idata: az.InferenceData
    tables: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not isinstance(self.tables, MappingProxyType):
            object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the estimate and the tables (the draws are saved separately as NetCDF)."""
        return {"estimate": self.estimate.to_dict(), "tables": dict(self.tables)}


def parallel_cores(chains: int) -> int:
    """Cores for ``chains`` chains: one a chain, at most the machine's, at least one."""
    return max(1, min(chains, os.cpu_count() or 1))


def run_sampler(model: Any, settings: SamplerSettings, *,
                cores: int | None = None) -> az.InferenceData:
    """Sample ``model`` with PyMC's NUTS under ``settings``.

    Parameters
    ----------
    model
        The ``pm.Model`` to sample.
    settings
        Draws, tuning, chains, target acceptance and seed.
    cores
        Worker processes; None runs the chains in parallel up to the cores available
        (:func:`parallel_cores`). A tiny model is quicker with ``cores=1``, since starting the
        workers costs more than parallel chains save.

    Notes
    -----
    Each chain has its own seed derived from ``settings.seed``, so the draws are the same
    whatever the number of cores.
    """
    import pymc as pm

    logging.getLogger("pymc").setLevel(logging.ERROR)
    with model, warnings.catch_warnings():
        # PyMC warns about short tuning and few draws; the gate judges the draws instead.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pymc\..*")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"pymc\..*")
        # Early in tuning a trajectory can leave the region where the log density is finite;
        # NUTS rejects it (and counts a divergence, which the gate sees).
        warnings.filterwarnings("ignore", r"(invalid value|overflow|divide by zero) encountered",
                                RuntimeWarning)
        return pm.sample(
            draws=settings.draws, tune=settings.tune, chains=settings.chains,
            cores=parallel_cores(settings.chains) if cores is None else int(cores),
            target_accept=settings.target_accept, random_seed=settings.seed, progressbar=False,
            compute_convergence_checks=False,
        )


def apply_gate(
    idata: az.InferenceData, var_names: Sequence[str], gate: DiagnosticsGate
) -> tuple[dict[str, Any], bool, tuple[str, ...]]:
    """Check convergence of ``var_names`` against the gate.

    Parameters
    ----------
    idata
        Posterior draws with ``sample_stats["diverging"]``.
    var_names
        The sampled parameters to check (unconstrained ones the sampler moves, not
        deterministic transforms with constant elements).
    gate
        Thresholds.

    Returns
    -------
    diagnostics, reliable, warnings
        ``diagnostics`` has ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``,
        ``draws`` and ``chains`` (plain python numbers); ``reliable`` is False when any
        criterion fails, and ``warnings`` then names each failed criterion.

    Notes
    -----
    Rank-normalised split R-hat and bulk/tail ESS (Vehtari et al. 2021, *Bayesian Analysis*
    16:667-718) as ArviZ computes them. Elements that are constant over every draw of every chain
    (such as the fixed diagonal of a correlation matrix) have no R-hat and are skipped; any other
    undefined R-hat or ESS fails the gate.
    """
    missing = [v for v in var_names if v not in idata.posterior]
    if missing:
        raise AnalysisError(f"diagnostics gate: no posterior variable {', '.join(missing)}")
    rhats, bulks, tails = [], [], []
    with warnings.catch_warnings():
        # ArviZ warns (RuntimeWarning) on constant elements; those are handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in var_names:
            x = idata.posterior[name]
            flat = x.to_numpy().reshape(x.shape[0], x.shape[1], -1)
            const = np.all(flat == flat[:1, :1, :], axis=(0, 1))
            if const.all():
                continue
            keep = ~const
            ds = idata.posterior[[name]]
            rhats.append(np.asarray(az.rhat(ds)[name], float).ravel()[keep])
            bulks.append(np.asarray(az.ess(ds, method="bulk")[name], float).ravel()[keep])
            tails.append(np.asarray(az.ess(ds, method="tail")[name], float).ravel()[keep])
    r = np.concatenate(rhats) if rhats else np.array([math.nan])
    b = np.concatenate(bulks) if bulks else np.array([math.nan])
    t = np.concatenate(tails) if tails else np.array([math.nan])
    # An undefined statistic counts as the worst value, so it can only fail the gate.
    rhat = math.inf if np.isnan(r).any() else float(r.max())
    ess_bulk = 0.0 if np.isnan(b).any() else float(b.min())
    ess_tail = 0.0 if np.isnan(t).any() else float(t.min())
    divergences = int(idata.sample_stats["diverging"].sum())
    failures = []
    if not rhat <= gate.max_rhat:
        failures.append(f"R-hat {rhat:.3f} > {gate.max_rhat}")
    if not ess_bulk >= gate.min_ess_bulk:
        failures.append(f"bulk ESS {ess_bulk:.0f} < {gate.min_ess_bulk:g}")
    if not ess_tail >= gate.min_ess_tail:
        failures.append(f"tail ESS {ess_tail:.0f} < {gate.min_ess_tail:g}")
    if divergences > gate.max_divergences:
        failures.append(f"{divergences} divergent transitions > {gate.max_divergences}")
    post = idata.posterior
    diagnostics = {
        "max_rhat": rhat if math.isfinite(rhat) else None,
        "min_ess_bulk": ess_bulk,
        "min_ess_tail": ess_tail,
        "divergences": divergences,
        "draws": int(post.sizes["chain"] * post.sizes["draw"]),
        "chains": int(post.sizes["chain"]),
    }
    warn = tuple(f"diagnostics gate failed: {f}" for f in failures)
    return diagnostics, not failures, warn


def posterior_probabilities(
    draws: np.ndarray, requested: Sequence[tuple[str, float]]
) -> tuple[PosteriorProbability, ...]:
    """P(effect comparator threshold) as the share of draws meeting it, for each request."""
    out = []
    for comparator, threshold in requested:
        if comparator not in _OPS:
            raise AnalysisError(f"probabilities: comparator {comparator!r} is not one of "
                                f"{sorted(_OPS)}")
        p = float(np.mean(_OPS[comparator](draws, threshold)))
        out.append(PosteriorProbability(comparator, float(threshold), p))
    return tuple(out)


def mcse_mean(draws_by_chain: np.ndarray) -> float:
    """Monte Carlo standard error of the posterior mean (ArviZ, from chains x draws)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = az.convert_to_dataset(np.asarray(draws_by_chain, float))
        value = float(az.mcse(ds)["x"])
    return value if math.isfinite(value) else 0.0


def summarise_draws(
    draws_by_chain: np.ndarray,
    *,
    estimand: str,
    analysis: str,
    model: str,
    interval_level: float,
    probabilities: Sequence[tuple[str, float]],
    gate_result: tuple[dict[str, Any], bool, tuple[str, ...]],
    data: pd.DataFrame | None = None,
    counts: tuple[Mapping[str, int], int] | None = None,
    warnings_: Sequence[str] = (),
    details: dict[str, Any] | None = None,
    extra_diagnostics: Mapping[str, Any] | None = None,
) -> Estimate:
    """The :class:`Estimate` of an effect from its draws (chains x draws).

    The numbers analysed come from ``data`` (one row a participant, with an ``arm`` column) or,
    when the rows are not participants (cell means, periods of a series), from
    ``counts = (n_by_arm, n_analysed)``; exactly one of the two is given. ``extra_diagnostics``
    are added after the gate's and the Monte Carlo SE of the effect.

    Notes
    -----
    Estimate = posterior mean; ``std_error`` = posterior SD; interval = equal-tailed
    ``interval_level`` credible interval (empirical quantiles of the pooled draws); each
    requested probability = the share of draws meeting it. All are on the scale of the draws
    given, which is the scale the model reports (for example a ratio, not its logarithm).
    """
    if not 0 < interval_level < 1:
        raise AnalysisError(f"{analysis}: interval_level must be in (0, 1), got {interval_level}")
    if (data is None) == (counts is None):
        raise AnalysisError(f"{analysis}: summarise_draws needs exactly one of data and counts")
    flat = np.asarray(draws_by_chain, float).ravel()
    diagnostics, reliable, gate_warn = gate_result
    diagnostics = {**diagnostics, "mcse_effect": mcse_mean(draws_by_chain),
                   **(extra_diagnostics or {})}
    tail = (1 - interval_level) / 2
    lo, hi = np.quantile(flat, [tail, 1 - tail])
    if data is not None:
        n_by_arm = {str(k): int(v) for k, v in data.groupby("arm", sort=True).size().items()}
        n_analysed = int(len(data))
    else:
        n_by_arm, n_analysed = dict(counts[0]), int(counts[1])
    return Estimate(
        estimand=estimand, analysis=analysis, engine="bayesian", model=model,
        estimate=float(flat.mean()), std_error=float(flat.std(ddof=1)),
        ci_lower=float(lo), ci_upper=float(hi), ci_level=interval_level,
        posterior_probabilities=posterior_probabilities(flat, probabilities),
        n_analysed=n_analysed, n_by_arm=n_by_arm, diagnostics=diagnostics,
        reliable=reliable, warnings=tuple(gate_warn) + tuple(warnings_),
        details=details or {},
    )


def chain_draws(idata: az.InferenceData, name: str) -> np.ndarray:
    """Draws of a scalar posterior variable as a (chains, draws) array."""
    return np.asarray(idata.posterior[name].to_numpy(), float)


def covariate_matrix(data: pd.DataFrame, covariates: Sequence[str]) -> tuple[np.ndarray,
                                                                            np.ndarray,
                                                                            list[str]]:
    """Centred, scaled covariate columns: (Z, scale, column names).

    Non-numeric covariates enter as treatment-coded indicators (first level in sorted order as
    reference), numeric ones linearly, as in :func:`analysis.ancova.model_formula`. Columns
    without variation are dropped. A coefficient ``b`` on the original column equals
    ``g / scale`` for the coefficient ``g`` on the scaled one, so a Normal(0, s) prior on ``b``
    is a Normal(0, s * scale) prior on ``g``.
    """
    cols = []
    for c in covariates:
        if c not in data.columns:
            raise AnalysisError(f"covariate column {c!r} is missing from the data")
        if pd.api.types.is_numeric_dtype(data[c]):
            cols.append(data[c].astype(float).rename(c))
        else:
            levels = sorted(data[c].astype(str).unique())
            for lev in levels[1:]:
                cols.append((data[c].astype(str) == lev).astype(float).rename(f"{c}[{lev}]"))
    if not cols:
        return np.zeros((len(data), 0)), np.zeros(0), []
    X = pd.concat(cols, axis=1)
    X = X.loc[:, X.std(ddof=0) > 0]
    scale = X.std(ddof=0).to_numpy(dtype=float)
    Z = ((X - X.mean()) / scale).to_numpy(dtype=float)
    return Z, scale, [str(c) for c in X.columns]


def brief(draws: np.ndarray, level: float) -> dict[str, float]:
    """Posterior mean, SD and equal-tailed interval of some draws, as plain floats."""
    flat = np.asarray(draws, float).ravel()
    lo, hi = np.quantile(flat, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(flat.mean()), "sd": float(flat.std(ddof=1)),
            "ci_lower": float(lo), "ci_upper": float(hi), "ci_level": float(level)}
