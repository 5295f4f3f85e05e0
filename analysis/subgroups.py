"""Pre-specified subgroup effects: ANCOVA with a treatment-by-subgroup interaction.

For each subgroup variable, ``y ~ treated * C(subgroup) + covariates`` by ordinary least
squares; the treatment effect within each level is a linear combination of its coefficients,
and the interaction F-test compares the model with the one without the interaction. The rows
are forest-plot data; levels too small to say anything about are suppressed, never shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from analysis.ancova import AncovaSpec, complete_cases, fit_ancova, model_formula
from analysis.estimate import Estimate
from analysis.fairness import TOO_SMALL, level_order, suppression_pattern
from trials.errors import AnalysisError
from trials.privacy import suppress

OVERALL = "overall"
SUB = "_subgroup_level"


@dataclass(frozen=True)
class SubgroupSpec:
    """Pre-specified subgroup analyses of one estimand.

    A subgroup level with fewer than ``min_cell`` analysed participants in either arm gets no
    estimate and the warning "too small to say anything"; its counts are shown as
    ``"<min_cell"``.
    """

    estimand: str
    analysis: str
    subgroups: tuple[str, ...]
    covariates: tuple[str, ...] = ("baseline",)
    min_cell: int = 10
    interval_level: float = 0.95


@dataclass(frozen=True)
class SubgroupRow:
    """One line of a forest plot: the effect within one subgroup level (or overall).

    ``n_exp`` / ``n_ctl`` are None when the count is suppressed (below ``min_cell``, or withheld
    so that it cannot be recovered from the totals); ``n_exp_label`` / ``n_ctl_label`` are what
    a table shows (``"<10"``, ``"[c]"`` or the number).
    """

    variable: str
    level: str
    n_exp: int | None
    n_ctl: int | None
    estimate: float | None
    se: float | None
    ci_lower: float | None
    ci_upper: float | None
    p_value: float | None
    suppressed: bool
    warning: str | None
    n_exp_label: str
    n_ctl_label: str


@dataclass(frozen=True)
class InteractionTest:
    """F-test of the treatment-by-subgroup interaction (nested models)."""

    variable: str
    F: float | None
    df1: int
    df2: int
    p: float | None
    levels_in_model: tuple[str, ...]


@dataclass(frozen=True)
class SubgroupResult:
    estimate: Estimate  # the overall effect (all subgroups together)
    rows: tuple[SubgroupRow, ...]
    interactions: tuple[InteractionTest, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.to_dict(),
            "rows": [asdict(r) for r in self.rows],
            "interactions": [{**asdict(t), "levels_in_model": list(t.levels_in_model)}
                             for t in self.interactions],
            "warnings": list(self.warnings),
        }

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows])


def fit_subgroups(frame: pd.DataFrame, spec: SubgroupSpec) -> SubgroupResult:
    """Treatment effect overall and within each level of each pre-specified subgroup variable.

    Parameters
    ----------
    frame
        One row per participant with ``arm``, ``treated`` (1 experimental, 0 comparator),
        ``y``, the covariate columns and the subgroup columns (numeric subgroup columns such
        as an IMD quintile are treated as categories).
    spec
        What to fit.

    Notes
    -----
    For subgroup :math:`S` with levels :math:`1..K` (the first in sorted or categorical order
    is the reference),
    :math:`y_i = \\alpha + \\tau T_i + \\sum_{k>1} \\gamma_k [S_i = k]
    + \\sum_{k>1} \\delta_k T_i [S_i = k] + \\beta^\\top x_i + \\varepsilon_i`.
    The effect in level :math:`k` is :math:`\\tau + \\delta_k` (:math:`\\tau` in level 1) with
    standard error :math:`\\sqrt{L^\\top V L}` from the OLS covariance :math:`V`, a t interval
    and p on the residual degrees of freedom, as R's ``emmeans::contrast`` gives. The
    interaction test is the F statistic of the nested-model comparison (R's ``anova``) on
    :math:`K - 1` and the residual degrees of freedom. A subgroup variable that is also a
    covariate is left out of the covariates of its own model (it would be collinear). Each
    model uses the participants with ``y``, covariates and that subgroup present; levels with
    nobody in one arm cannot carry an interaction and are left out of that model with a
    warning. Levels with fewer than ``min_cell`` participants in either arm stay in the model
    (they inform the residual variance and the F-test) but their effect is not reported.
    """
    _check(frame, spec)
    overall = fit_ancova(frame, AncovaSpec(spec.estimand, spec.analysis, spec.covariates,
                                           spec.interval_level))
    exp_arm, ctl_arm = _arm_names(frame)
    rows = [SubgroupRow(OVERALL, "all", overall.n_by_arm.get(exp_arm, 0),
                        overall.n_by_arm.get(ctl_arm, 0), overall.estimate,
                        overall.std_error, overall.ci_lower, overall.ci_upper,
                        overall.p_value, False, None,
                        str(overall.n_by_arm.get(exp_arm, 0)),
                        str(overall.n_by_arm.get(ctl_arm, 0)))]
    interactions, warnings = [], list(overall.warnings)
    for var in spec.subgroups:
        var_rows, test, var_warnings = _one_variable(frame, spec, var)
        rows += var_rows
        interactions.append(test)
        warnings += var_warnings
    return SubgroupResult(overall, tuple(rows), tuple(interactions), tuple(warnings))


def _check(frame: pd.DataFrame, spec: SubgroupSpec) -> None:
    needed = ["arm", "treated", "y", *spec.covariates, *spec.subgroups]
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{spec.analysis}: missing column(s) {', '.join(missing)}")
    if not spec.subgroups:
        raise AnalysisError(f"{spec.analysis}: SubgroupSpec.subgroups is empty")
    if spec.min_cell < 1:
        raise AnalysisError(f"{spec.analysis}: SubgroupSpec.min_cell must be at least 1")


def _arm_names(frame: pd.DataFrame) -> tuple[str, str]:
    by = frame.groupby("arm")["treated"].first()
    exp, ctl = by.index[by == 1].tolist(), by.index[by == 0].tolist()
    if len(exp) != 1 or len(ctl) != 1:
        raise AnalysisError("subgroups: columns 'arm' and 'treated' must name exactly two arms")
    return str(exp[0]), str(ctl[0])


def _one_variable(frame: pd.DataFrame, spec: SubgroupSpec,
                  var: str) -> tuple[list[SubgroupRow], InteractionTest, list[str]]:
    covariates = tuple(c for c in spec.covariates if c != var)
    data, n_dropped = complete_cases(frame, (*covariates, var))
    warnings = []
    if n_dropped:
        warnings.append(f"{var}: {n_dropped} participant(s) without the outcome, a covariate "
                        "or the subgroup were excluded")
    levels = level_order(data[var])
    labels = [str(v) for v in levels]
    data[SUB] = data[var].map(dict(zip(levels, labels, strict=True)))
    counts = (data.groupby([SUB, "treated"]).size().unstack(fill_value=0)
              .reindex(index=labels, columns=[1, 0], fill_value=0))
    _, primary, mask = suppression_pattern(counts.to_numpy(), spec.min_cell)
    estimable = [lv for lv in labels if counts.loc[lv].min() > 0]
    if len(estimable) < len(labels):
        left_out = [lv for lv in labels if lv not in estimable]
        warnings.append(f"{var}: level(s) {', '.join(left_out)} have nobody in one arm and "
                        "were left out of the interaction model")
    fitted = data[data[SUB].isin(estimable)].copy()
    fitted[SUB] = pd.Categorical(fitted[SUB], categories=estimable)
    effects, test = _interaction_model(fitted, covariates, var, estimable, spec)

    rows = []
    for i, lv in enumerate(labels):
        n1, n0 = int(counts.loc[lv, 1]), int(counts.loc[lv, 0])
        small = min(n1, n0) < spec.min_cell
        eff = effects.get(lv) if not small else None
        warning = None
        if small:
            warning = (f"{TOO_SMALL}: fewer than {spec.min_cell} analysed participants in an "
                       "arm")
        elif eff is None:
            warning = "no estimate: the interaction model could not be fitted"
        rows.append(SubgroupRow(
            variable=var, level=lv,
            n_exp=None if mask[i, 0] else n1, n_ctl=None if mask[i, 1] else n0,
            estimate=None if eff is None else eff[0], se=None if eff is None else eff[1],
            ci_lower=None if eff is None else eff[2], ci_upper=None if eff is None else eff[3],
            p_value=None if eff is None else eff[4], suppressed=small or eff is None,
            warning=warning,
            n_exp_label=_label(n1, primary[i, 0], mask[i, 0], spec.min_cell),
            n_ctl_label=_label(n0, primary[i, 1], mask[i, 1], spec.min_cell),
        ))
    return rows, test, warnings


def _label(n: int, primary: bool, suppressed: bool, min_cell: int) -> str:
    if primary:
        return str(suppress(n, min_cell))
    return "[c]" if suppressed else str(n)


def _interaction_model(data: pd.DataFrame, covariates: tuple[str, ...], var: str,
                       levels: list[str], spec: SubgroupSpec
                       ) -> tuple[dict[str, tuple[float, ...]], InteractionTest]:
    if len(levels) < 2 or data["treated"].nunique() < 2:
        return ({}, InteractionTest(var, None, max(len(levels) - 1, 0), 0, None, tuple(levels)))
    base = model_formula(data, covariates) + f" + C({SUB})"
    try:
        full = smf.ols(base + f" + treated:C({SUB})", data=data).fit()
        reduced = smf.ols(base, data=data).fit()
    except Exception as exc:
        raise AnalysisError(f"{spec.analysis}: interaction model for '{var}' failed "
                            f"({exc})") from None
    names = list(full.params.index)
    if np.linalg.matrix_rank(full.model.exog) < len(names):
        raise AnalysisError(f"{spec.analysis}: interaction model for '{var}' is not "
                            "estimable (collinear covariates)")
    cov = full.cov_params().to_numpy()
    df = float(full.df_resid)
    tcrit = float(stats.t.ppf(1 - (1 - spec.interval_level) / 2, df))
    effects = {}
    for k, lv in enumerate(levels):
        weights = np.zeros(len(names))
        weights[names.index("treated")] = 1.0
        if k:
            weights[names.index(f"treated:C({SUB})[T.{lv}]")] = 1.0
        est = float(weights @ full.params.to_numpy())
        se = float(np.sqrt(weights @ cov @ weights))
        p = float(2 * stats.t.sf(abs(est / se), df))
        effects[lv] = (est, se, est - tcrit * se, est + tcrit * se, p)
    df1 = int(round(reduced.df_resid - full.df_resid))
    f = float(((reduced.ssr - full.ssr) / df1) / (full.ssr / df))
    p = float(stats.f.sf(f, df1, df))
    return effects, InteractionTest(var, f, df1, int(round(df)), p, tuple(levels))
