"""Frequentist ANCOVA (ordinary least squares, statsmodels) for a single-visit estimand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from analysis.estimate import Estimate
from trials.errors import AnalysisError


@dataclass(frozen=True)
class AncovaSpec:
    """ANCOVA of ``y`` on the treatment indicator and covariates.

    Covariates with a non-numeric dtype enter as categorical (treatment coding, first level in
    sorted order as reference); numeric ones enter linearly.
    """

    estimand: str
    analysis: str
    covariates: tuple[str, ...] = ("baseline",)
    interval_level: float = 0.95


def model_formula(frame: pd.DataFrame, covariates: Sequence[str]) -> str:
    terms = ["treated"]
    for c in covariates:
        numeric = pd.api.types.is_numeric_dtype(frame[c])
        terms.append(f"Q('{c}')" if numeric else f"C(Q('{c}'))")
    return "y ~ " + " + ".join(terms)


def complete_cases(frame: pd.DataFrame, covariates: Sequence[str]) -> tuple[pd.DataFrame, int]:
    cols = ["y", "treated", *covariates]
    keep = frame[cols].notna().all(axis=1)
    return frame.loc[keep].copy(), int((~keep).sum())


def fit_ancova(frame: pd.DataFrame, spec: AncovaSpec) -> Estimate:
    """Fit the ANCOVA and return the treatment effect as an :class:`Estimate`.

    Parameters
    ----------
    frame
        One row per participant with ``y``, ``treated`` (1 experimental, 0 comparator), ``arm``
        and the covariate columns (see :func:`analysis.dataset.visit_frame`).
    spec
        What to fit.

    Notes
    -----
    :math:`y_i = \\alpha + \\tau T_i + \\beta^\\top x_i + \\varepsilon_i` with
    :math:`\\varepsilon_i \\sim N(0, \\sigma^2)`; :math:`\\hat\\tau` with its t-based interval on
    the residual degrees of freedom, as R's ``lm`` and ``confint`` give. Participants with a
    missing outcome or covariate are excluded (complete cases, valid under missing at random
    given the covariates); the count is reported as a warning.
    """
    data, n_dropped = complete_cases(frame, spec.covariates)
    if data["treated"].nunique() < 2:
        raise AnalysisError(f"{spec.analysis}: needs participants with the outcome in both arms")
    formula = model_formula(data, spec.covariates)
    try:
        fit = smf.ols(formula, data=data).fit()
    except Exception as exc:
        raise AnalysisError(f"{spec.analysis}: model failed ({exc})") from None
    alpha = 1 - spec.interval_level
    lo, hi = fit.conf_int(alpha=alpha).loc["treated"]
    warnings: list[str] = []
    if n_dropped:
        warnings.append(f"{n_dropped} participant(s) without the outcome or a covariate were "
                        "excluded (complete-case analysis)")
    if fit.df_resid < 10:
        warnings.append(f"only {fit.df_resid:.0f} residual degrees of freedom")
    n_by_arm = {str(k): int(v) for k, v in data.groupby("arm", sort=True).size().items()}
    return Estimate(
        estimand=spec.estimand,
        analysis=spec.analysis,
        engine="frequentist",
        model="ancova",
        estimate=float(fit.params["treated"]),
        std_error=float(fit.bse["treated"]),
        ci_lower=float(lo),
        ci_upper=float(hi),
        ci_level=spec.interval_level,
        p_value=float(fit.pvalues["treated"]),
        n_analysed=int(fit.nobs),
        n_by_arm=n_by_arm,
        diagnostics={"df_resid": float(fit.df_resid), "residual_sd": float(np.sqrt(fit.scale)),
                     "r_squared": float(fit.rsquared)},
        warnings=tuple(warnings),
        details={"formula": formula, "n_excluded": n_dropped},
    )
