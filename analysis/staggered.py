"""Staggered adoption: Callaway & Sant'Anna (2021) group-time ATTs and their aggregations.

Without covariates each ATT(g,t) is a 2x2 difference-in-differences of unit means between the
cohort first treated in period g and a control group, so it is unbiased under heterogeneous and
dynamic effects where TWFE is not. Standard errors come from the influence functions (analytic)
or a multiplier bootstrap over clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.estimate import Estimate
from analysis.event_study import adoption_period
from trials.errors import AnalysisError

CONTROLS = ("never_treated", "not_yet_treated")


@dataclass(frozen=True)
class StaggeredSpec:
    """Group-time ATTs with never-treated or not-yet-treated controls (no covariates)."""

    estimand: str
    analysis: str
    control: str = "never_treated"
    cluster: str = "unit"
    interval_level: float = 0.95
    bootstrap: int = 0
    seed: int = 0


@dataclass(frozen=True)
class GroupTimeAtt:
    group: Any
    time: Any
    base: Any
    estimate: float
    std_error: float
    ci_lower: float
    ci_upper: float
    n_group: int
    n_control: int


@dataclass(frozen=True)
class EventTimeAtt:
    event_time: int
    estimate: float
    std_error: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class StaggeredPretrend:
    """Wald test that every pre-adoption ATT(g,t) is zero."""

    chi2: float
    df: int
    p_value: float


@dataclass(frozen=True)
class StaggeredResult:
    estimate: Estimate
    att_gt: tuple[GroupTimeAtt, ...]
    dynamic: tuple[EventTimeAtt, ...]
    pretrend: StaggeredPretrend | None

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(),
                "att_gt": [vars(r).copy() for r in self.att_gt],
                "dynamic": [vars(r).copy() for r in self.dynamic],
                "pretrend": None if self.pretrend is None else vars(self.pretrend).copy()}


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


def _wide(frame: pd.DataFrame, spec: StaggeredSpec) -> tuple[pd.DataFrame, pd.Series, list]:
    name = spec.analysis
    columns = list(dict.fromkeys(["unit", "period", "y", "treated", spec.cluster]))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{name}: panel has no column {missing[0]!r}")
    data = frame.loc[frame[["unit", "period", "y"]].notna().all(axis=1)].copy()
    if data.duplicated(["unit", "period"]).any():
        raise AnalysisError(f"{name}: more than one row per 'unit' and 'period'; aggregate "
                            "first (analysis.panel_data.aggregate_panel)")
    data["_first"] = adoption_period(data)
    wide = data.pivot(index="unit", columns="period", values="y").sort_index(axis=1)
    if wide.isna().any().any():
        raise AnalysisError(f"{name}: unbalanced panel; every 'unit' needs every 'period'")
    per_unit = data.groupby("unit").agg(first=("_first", "first"), cluster=(spec.cluster, "first"))
    return wide, per_unit, list(wide.columns)


def _interval(est: float, se: float, level: float) -> tuple[float, float]:
    z = stats.norm.ppf(0.5 + level / 2)
    return float(est - z * se), float(est + z * se)


def fit_staggered(frame: pd.DataFrame, spec: StaggeredSpec) -> StaggeredResult:
    """Callaway-Sant'Anna group-time average treatment effects and aggregations.

    Parameters
    ----------
    frame
        A balanced panel, one row per ``unit`` and ``period``, with ``y`` and either
        ``first_treated`` (adoption period; missing when never treated) or a ``treated``
        indicator that switches on once. Aggregate patient rows to cells first.
    spec
        Control group, clustering, interval level and bootstrap settings.

    Notes
    -----
    For cohort :math:`g` and period :math:`t` with base period :math:`b = g-1` when
    :math:`t \\ge g` and :math:`b = t-1` otherwise (did's ``base_period = "varying"``; "-1"
    means the previous period in the data),
    :math:`ATT(g,t) = \\bar{\\Delta}_{G=g} - \\bar{\\Delta}_{C}`,
    :math:`\\Delta_i = Y_{it} - Y_{ib}`, with :math:`C` the never treated, or the never treated
    and units with :math:`G > \\max(t, b)`, :math:`G \\ne g` (not yet treated).
    Influence function :math:`\\psi_i = \\frac{N}{n_g} 1_{G=g}(\\Delta_i - \\bar\\Delta_g) -
    \\frac{N}{n_C} 1_{C}(\\Delta_i - \\bar\\Delta_C)`; analytic variance
    :math:`\\sum_c (\\sum_{i \\in c} \\psi_i)^2 / N^2` over clusters :math:`c` (units by default,
    when it is :math:`s^2_g/n_g + s^2_C/n_C` with divisor-n variances). Aggregations weight
    ATT(g,t) by cohort size: ``simple`` over all post-adoption cells (the reported
    ``estimate``), ``dynamic`` :math:`\\theta(e)` over cells with :math:`t - g = e`; their
    influence functions include the estimated weights, as in the did package. With
    ``bootstrap = B > 0``, SEs are the interquartile range of B multiplier-bootstrap draws
    (Mammen weights per cluster) over 1.349. Intervals are normal. Units treated in the first
    period have no pre-period and are dropped. Units count equally (no weights).
    """
    name = spec.analysis
    if spec.control not in CONTROLS:
        raise AnalysisError(f"{name}: control must be one of {', '.join(CONTROLS)}")
    if spec.bootstrap < 0:
        raise AnalysisError(f"{name}: bootstrap must be 0 or a positive number of draws")
    wide, per_unit, periods = _wide(frame, spec)
    position = {p: i for i, p in enumerate(periods)}
    first = per_unit["first"]
    unknown = first.notna() & ~first.isin(periods) & (pd.to_numeric(first, errors="coerce")
                                                      <= max(periods))
    if unknown.any():
        raise AnalysisError(f"{name}: 'first_treated' of unit {unknown.idxmax()!r} is not a period")
    # Adoption after the last period is as good as never treated within this panel.
    gpos = first.map(position).astype(float)
    warnings: list[str] = []
    always = gpos == 0
    if always.any():
        warnings.append(f"{int(always.sum())} unit(s) treated in the first period were dropped")
        keep = ~always.to_numpy()
        wide, per_unit, gpos = wide.loc[keep], per_unit.loc[keep], gpos.loc[keep]
    Y = wide.to_numpy(float)
    G = gpos.to_numpy()
    never = np.isnan(G)
    if spec.control == "never_treated" and not never.any():
        raise AnalysisError(f"{name}: no never-treated units; use control = 'not_yet_treated'")
    N = len(G)
    cohorts = sorted(int(g) for g in np.unique(G[~never]))
    if not cohorts:
        raise AnalysisError(f"{name}: no unit adopts treatment within the panel")
    cells, psi = [], []
    for g in cohorts:
        ing = G == g
        for t in range(1, len(periods)):
            b = g - 1 if t >= g else t - 1
            inc = never.copy()
            if spec.control == "not_yet_treated":
                inc |= (G > max(t, b)) & (G != g)
            if not inc.any():
                continue
            dy = Y[:, t] - Y[:, b]
            mg, mc = dy[ing].mean(), dy[inc].mean()
            n_g, n_c = int(ing.sum()), int(inc.sum())
            psi.append(N / n_g * ing * (dy - mg) - N / n_c * inc * (dy - mc))
            cells.append((g, t, b, float(mg - mc), n_g, n_c))
    if not cells:
        raise AnalysisError(f"{name}: no group-time cell has a control group")
    att = np.array([c[3] for c in cells])
    Psi = np.column_stack(psi)
    p_g = {g: float(np.mean(G == g)) for g in cohorts}
    ind = {g: (G == g).astype(float) for g in cohorts}

    def aggregate(selected: list[int]) -> tuple[float, np.ndarray]:
        pg = np.array([p_g[cells[k][0]] for k in selected])
        S = pg.sum()
        w = pg / S
        ipg = np.column_stack([ind[cells[k][0]] - p_g[cells[k][0]] for k in selected])
        wif = ipg / S - np.outer(ipg.sum(axis=1), pg) / S**2
        return float(w @ att[selected]), Psi[:, selected] @ w + wif @ att[selected]

    post = [k for k, c in enumerate(cells) if c[1] >= c[0]]
    simple, psi_simple = aggregate(post)
    events = sorted({c[1] - c[0] for c in cells})
    dyn = [aggregate([k for k, c in enumerate(cells) if c[1] - c[0] == e]) for e in events]
    all_psi = np.column_stack([Psi, psi_simple, *[d[1] for d in dyn]])
    _, cl = np.unique(per_unit["cluster"].to_numpy(), return_inverse=True)
    n_clusters = int(cl.max()) + 1
    summed = np.zeros((n_clusters, all_psi.shape[1]))
    np.add.at(summed, cl, all_psi)
    if spec.bootstrap:
        rng = np.random.default_rng(spec.seed)
        golden = (1 + np.sqrt(5)) / 2
        # Mammen's two-point weights: mean 0, variance 1, third moment 1.
        v = np.where(rng.random((spec.bootstrap, n_clusters)) < golden / np.sqrt(5),
                     1 - golden, golden)
        draws = v @ summed / N
        q75, q25 = np.quantile(draws, [0.75, 0.25], axis=0)
        se_all = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    else:
        se_all = np.sqrt((summed**2).sum(axis=0)) / N
    level = spec.interval_level
    att_gt = []
    for (g, t, b, est, n_g, n_c), se in zip(cells, se_all[: len(cells)], strict=True):
        lo, hi = _interval(est, float(se), level)
        att_gt.append(GroupTimeAtt(_plain(periods[g]), _plain(periods[t]), _plain(periods[b]),
                                   est, float(se), lo, hi, n_g, n_c))
    dynamic = []
    for e, (est, _), se in zip(events, dyn, se_all[len(cells) + 1:], strict=True):
        lo, hi = _interval(est, float(se), level)
        dynamic.append(EventTimeAtt(int(e), est, float(se), lo, hi))
    pre = [k for k, c in enumerate(cells) if c[1] < c[0]]
    pretrend = None
    if pre:
        V = summed[:, pre].T @ summed[:, pre] / N**2
        rank = int(np.linalg.matrix_rank(V))
        chi2 = float(att[pre] @ np.linalg.pinv(V) @ att[pre])
        pretrend = StaggeredPretrend(chi2, rank, float(stats.chi2.sf(chi2, rank)))
        if pretrend.p_value < 0.05:
            warnings.append(f"pre-trend test rejects parallel trends (p = {pretrend.p_value:.3g})")
    se_simple = float(se_all[len(cells)])
    lo, hi = _interval(simple, se_simple, level)
    p_value = float(2 * stats.norm.sf(abs(simple / se_simple))) if se_simple > 0 else None
    if n_clusters < 30:
        warnings.append(f"only {n_clusters} clusters: influence-function SEs may be too small")
    estimate = Estimate(
        estimand=spec.estimand, analysis=name, engine="frequentist", model="did_cs",
        estimate=simple, std_error=se_simple, ci_lower=lo, ci_upper=hi, ci_level=level,
        p_value=p_value, n_analysed=N,
        n_by_arm={"ever_treated": int((~never).sum()), "never_treated": int(never.sum())},
        diagnostics={"n_clusters": n_clusters, "n_group_time_cells": len(cells),
                     "pretrend_p_value": None if pretrend is None else pretrend.p_value},
        warnings=tuple(warnings),
        details={"control": spec.control, "base_period": "varying",
                 "aggregation": "simple (cohort-size weighted over post-adoption cells)",
                 "se": f"multiplier bootstrap, {spec.bootstrap} draws, seed {spec.seed}"
                       if spec.bootstrap else "analytic influence function",
                 "cluster": spec.cluster, "cohorts": [_plain(periods[g]) for g in cohorts],
                 "n_units": N},
    )
    return StaggeredResult(estimate, tuple(att_gt), tuple(dynamic), pretrend)
