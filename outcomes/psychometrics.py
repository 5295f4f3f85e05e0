"""Reliability and score-distribution checks of a questionnaire: alpha, omega, missingness,
floor and ceiling, and a per-group table of all of them.

Alpha and omega use listwise deletion: a respondent with any item missing is left out of both
(the count used is reported as ``n``). Reference values: ``tests/reference/psychometrics.R``
(R psych ``alpha`` and ``fa(fm = "ml")``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pingouin
from scipy import optimize, stats

# Bounds on the uniquenesses in the ML search, as in R's factanal and psych::fa.
_PSI_LOWER = 0.005
_PSI_UPPER = 1.0


@dataclass(frozen=True)
class AlphaResult:
    """Cronbach's alpha with Feldt's confidence interval, from ``n`` complete respondents."""

    alpha: float
    ci_lower: float
    ci_upper: float
    level: float
    n: int
    n_items: int


@dataclass(frozen=True)
class OmegaResult:
    """McDonald's omega total from a one-factor maximum-likelihood fit.

    ``loadings`` and ``uniquenesses`` are indexed by item; ``converged`` is the optimiser's
    verdict and ``objective`` the ML discrepancy at the solution.
    """

    omega: float
    loadings: pd.Series
    uniquenesses: pd.Series
    n: int
    converged: bool
    objective: float


@dataclass(frozen=True)
class FloorCeiling:
    """Shares (0-1) of non-missing totals at the scale minimum and maximum."""

    n: int
    floor_share: float
    ceiling_share: float


def _numeric_items(items: pd.DataFrame, min_items: int) -> pd.DataFrame:
    if not isinstance(items, pd.DataFrame):
        raise TypeError("items must be a pandas DataFrame with one column per item")
    if items.shape[1] < min_items:
        raise ValueError(f"need at least {min_items} item columns, got {items.shape[1]}")
    out = {}
    for col in items.columns:
        try:
            out[col] = items[col].to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError):
            raise ValueError(f"item column {col!r}: values must be numeric or missing") from None
    return pd.DataFrame(out, index=items.index)


def _complete(items: pd.DataFrame, min_items: int, min_rows: int) -> pd.DataFrame:
    x = _numeric_items(items, min_items).dropna(axis=0, how="any")
    if len(x) < min_rows:
        raise ValueError(f"need at least {min_rows} respondents with every item answered, "
                         f"got {len(x)}")
    return x


def _constant_items(x: pd.DataFrame) -> list[str]:
    return [str(c) for c in x.columns if x[c].nunique() < 2]


def cronbach_alpha(items: pd.DataFrame, level: float = 0.95) -> AlphaResult:
    """Cronbach's alpha (via :func:`pingouin.cronbach_alpha`) with Feldt's interval.

    Parameters
    ----------
    items
        One column per item, one row per respondent; missing values allowed.
    level
        Confidence level of the interval.

    Returns
    -------
    AlphaResult

    Notes
    -----
    Rows with any missing item are removed first (listwise deletion). With :math:`k` items,
    item variances :math:`s_j^2` and total-score variance :math:`s_X^2`,

    .. math:: \\alpha = \\frac{k}{k - 1}\\Bigl(1 - \\frac{\\sum_j s_j^2}{s_X^2}\\Bigr).

    Feldt's interval (Feldt, Woodruff & Salih 1987) with :math:`n` complete respondents is
    :math:`1 - (1 - \\alpha) F_{1-q}` to :math:`1 - (1 - \\alpha) F_{q}`, where :math:`F_p` is
    the :math:`p` quantile of :math:`F(n - 1, (n - 1)(k - 1))` and :math:`q = (1 - level)/2`;
    this is R's ``psych::alpha.ci``. Pingouin computes the same interval but rounds it to three
    decimals, so the limits are recomputed here at full precision from pingouin's alpha. The
    rows are deleted before calling pingouin because its own listwise option keeps the
    pre-deletion row count in the F degrees of freedom.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    x = _complete(items, min_items=2, min_rows=2)
    n, k = x.shape
    if x.sum(axis=1).nunique() < 2:
        raise ValueError("total score has no variance among complete respondents")
    alpha, _rounded_ci = pingouin.cronbach_alpha(data=x, ci=level)
    alpha = float(alpha)
    q = (1.0 - level) / 2.0
    df1, df2 = n - 1, (n - 1) * (k - 1)
    lower = 1.0 - (1.0 - alpha) * float(stats.f.ppf(1.0 - q, df1, df2))
    upper = 1.0 - (1.0 - alpha) * float(stats.f.ppf(q, df1, df2))
    return AlphaResult(alpha=alpha, ci_lower=lower, ci_upper=upper, level=level, n=n, n_items=k)


def _ml_discrepancy(psi: np.ndarray, corr: np.ndarray) -> float:
    # Profile ML discrepancy for one factor given the uniquenesses (Joreskog 1967), as in
    # R's factanal and psych::fa: with S* = Psi^-1/2 R Psi^-1/2 and eigenvalues e_1 >= ...,
    # F = -sum_{j>1} (log e_j - e_j) - (p - 1), which is 0 for a perfect fit.
    scale = 1.0 / np.sqrt(psi)
    e = np.linalg.eigvalsh(corr * np.outer(scale, scale))[::-1][1:]
    return float(-(np.sum(np.log(e) - e)) - (corr.shape[0] - 1))


def _loadings(psi: np.ndarray, corr: np.ndarray) -> np.ndarray:
    scale = 1.0 / np.sqrt(psi)
    values, vectors = np.linalg.eigh(corr * np.outer(scale, scale))
    lam = np.sqrt(psi) * vectors[:, -1] * math.sqrt(max(values[-1] - 1.0, 0.0))
    return -lam if lam.sum() < 0 else lam


def _ml_gradient(psi: np.ndarray, corr: np.ndarray) -> np.ndarray:
    lam = _loadings(psi, corr)
    return (lam**2 + psi - np.diag(corr)) / psi**2


def mcdonald_omega(items: pd.DataFrame) -> OmegaResult:
    """McDonald's omega total from a one-factor maximum-likelihood factor analysis.

    Parameters
    ----------
    items
        One column per item (at least 3), one row per respondent; missing values allowed.

    Returns
    -------
    OmegaResult

    Notes
    -----
    Rows with any missing item are removed (listwise deletion) and the one-factor model
    :math:`R = \\lambda\\lambda^\\top + \\Psi` is fitted to the Pearson correlation matrix
    :math:`R` by maximum likelihood: the uniquenesses :math:`\\psi_j \\in [0.005, 1]` minimise
    the profile discrepancy
    :math:`F(\\Psi) = -\\sum_{j \\ge 2} (\\log e_j - e_j) - (p - 1)`, where :math:`e_j` are the
    eigenvalues of :math:`\\Psi^{-1/2} R \\Psi^{-1/2}` in decreasing order (L-BFGS-B with the
    analytic gradient, started at :math:`1/\\mathrm{diag}(R^{-1})`), and the loadings are
    :math:`\\lambda = \\Psi^{1/2} v_1 \\sqrt{\\max(e_1 - 1, 0)}` with :math:`v_1` the leading
    eigenvector, signed so that :math:`\\sum\\lambda \\ge 0`. This is the algorithm of R's
    ``factanal`` and ``psych::fa(fm = "ml")``. As in psych, the reported uniqueness is
    :math:`1 - \\lambda_j^2`. Then

    .. math:: \\omega = \\frac{(\\sum_j \\lambda_j)^2}{(\\sum_j \\lambda_j)^2 + \\sum_j \\psi_j}.

    (McDonald RP, *Test Theory: A Unified Treatment*, 1999.)
    """
    x = _complete(items, min_items=3, min_rows=3)
    constant = _constant_items(x)
    if constant:
        raise ValueError(f"items without variance among complete respondents: {constant}")
    corr = np.corrcoef(x.to_numpy(), rowvar=False)
    try:
        start = 1.0 / np.diag(np.linalg.inv(corr))
    except np.linalg.LinAlgError:
        raise ValueError("item correlation matrix is singular; omega cannot be fitted") from None
    if not np.all(np.isfinite(start)) or np.linalg.eigvalsh(corr)[0] <= 1e-10:
        raise ValueError("item correlation matrix is not positive definite "
                         f"({len(x)} complete respondents, {x.shape[1]} items)")
    start = np.clip(start, _PSI_LOWER, _PSI_UPPER)
    fit = optimize.minimize(
        _ml_discrepancy, start, args=(corr,), jac=_ml_gradient, method="L-BFGS-B",
        bounds=[(_PSI_LOWER, _PSI_UPPER)] * len(start),
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000},
    )
    lam = _loadings(fit.x, corr)
    psi = 1.0 - lam**2
    total = lam.sum() ** 2
    omega = float(total / (total + psi.sum()))
    return OmegaResult(
        omega=omega,
        loadings=pd.Series(lam, index=x.columns, name="loading"),
        uniquenesses=pd.Series(psi, index=x.columns, name="uniqueness"),
        n=len(x),
        converged=bool(fit.success),
        objective=float(fit.fun),
    )


def item_missingness(items: pd.DataFrame) -> pd.DataFrame:
    """Missing responses per item.

    Returns
    -------
    pandas.DataFrame
        One row per item (index: item names) with ``n`` (respondents), ``n_missing`` and
        ``share_missing`` (:math:`n_{missing} / n`, NaN when there are no respondents).
    """
    x = _numeric_items(items, min_items=1)
    n = len(x)
    n_missing = x.isna().sum(axis=0).astype(int)
    share = n_missing / n if n else pd.Series(np.nan, index=x.columns)
    return pd.DataFrame({"n": n, "n_missing": n_missing, "share_missing": share.astype(float)})


def floor_ceiling(totals: pd.Series, minimum: float, maximum: float) -> FloorCeiling:
    """Share of non-missing totals at the scale's floor (``minimum``) and ceiling (``maximum``).

    Notes
    -----
    :math:`\\#\\{x_i = \\min\\} / n` and :math:`\\#\\{x_i = \\max\\} / n` over the :math:`n`
    non-missing totals; both NaN when :math:`n = 0`. Totals outside the range are refused.
    """
    if not minimum < maximum:
        raise ValueError(f"minimum ({minimum}) must be below maximum ({maximum})")
    try:
        values = pd.Series(totals).to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError("totals: values must be numeric or missing") from None
    values = values[~np.isnan(values)]
    outside = values[(values < minimum) | (values > maximum)]
    if outside.size:
        raise ValueError(f"totals outside {minimum}..{maximum}: {sorted(set(outside.tolist()))}")
    n = int(values.size)
    if n == 0:
        return FloorCeiling(n=0, floor_share=math.nan, ceiling_share=math.nan)
    return FloorCeiling(
        n=n,
        floor_share=float(np.mean(values == minimum)),
        ceiling_share=float(np.mean(values == maximum)),
    )


TABLE_COLUMNS = (
    "n", "n_complete", "too_small", "alpha", "alpha_ci_lower", "alpha_ci_upper", "omega",
    "item_missing_pct", "max_item_missing_pct", "floor_pct", "ceiling_pct", "notes",
)


def psychometrics_table(
    frame: pd.DataFrame,
    item_columns: Sequence[str],
    total_column: str,
    by: Sequence[str] = ("arm", "visit"),
    *,
    minimum: float,
    maximum: float,
    small_cell_threshold: int,
    level: float = 0.95,
) -> pd.DataFrame:
    """Reliability and distribution of one instrument per group (for example arm x visit).

    Parameters
    ----------
    frame
        Long data, one row per respondent and visit; not modified.
    item_columns
        The instrument's item columns.
    total_column
        The instrument's total score column (as scored, prorated or missing).
    by
        Grouping columns; an empty sequence gives one row for the whole frame.
    minimum, maximum
        Range of the total (for example ``instrument.total_min`` and ``total_max``).
    small_cell_threshold
        Groups with fewer rows than this get ``too_small = True`` and every statistic NaN.
    level
        Confidence level of alpha's interval.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, then ``n`` (rows), ``n_complete`` (rows with
        every item answered, used by alpha and omega), ``too_small``, ``alpha``,
        ``alpha_ci_lower``, ``alpha_ci_upper``, ``omega``, ``item_missing_pct`` (missing item
        responses as a percentage of all item cells), ``max_item_missing_pct`` (the worst
        item), ``floor_pct`` and ``ceiling_pct`` (percentages of non-missing totals) and
        ``notes`` (why a statistic is NaN in a group that is not too small).

    Notes
    -----
    Besides the group rule, each statistic is withheld (NaN, with a note) when its own base is
    below the threshold: alpha and omega when ``n_complete`` is, floor and ceiling when the
    number of non-missing totals is. Alpha or omega that cannot be computed (an item without
    variance, a singular correlation matrix) are NaN with the reason in ``notes``.
    """
    by = list(by)
    item_columns = list(item_columns)
    needed = [*by, *item_columns, total_column]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise ValueError(f"columns not in frame: {absent}")
    if int(small_cell_threshold) < 1:
        raise ValueError(f"small_cell_threshold must be >= 1, got {small_cell_threshold!r}")
    if by:
        groups = frame.groupby(by, sort=True, dropna=False, observed=True)
        # Grouping by a list yields tuple keys, even for one column.
        parts = [(key if isinstance(key, tuple) else (key,), g) for key, g in groups]
    else:
        parts = [((), frame)]
    rows = [
        {**dict(zip(by, key, strict=True)),
         **_group_row(g, item_columns, total_column, minimum, maximum,
                      int(small_cell_threshold), level)}
        for key, g in parts
    ]
    return pd.DataFrame(rows, columns=[*by, *TABLE_COLUMNS])


def _group_row(
    g: pd.DataFrame, item_columns: list[str], total_column: str,
    minimum: float, maximum: float, k: int, level: float,
) -> dict[str, object]:
    items = _numeric_items(g[item_columns], min_items=1)
    n, n_complete = len(g), int(items.notna().all(axis=1).sum())
    row: dict[str, object] = {name: math.nan for name in TABLE_COLUMNS}
    row.update(n=n, n_complete=n_complete, too_small=n < k, notes="")
    if n < k:
        return row
    notes = []
    missing = item_missingness(items)
    row["item_missing_pct"] = 100.0 * missing["n_missing"].sum() / (n * len(item_columns))
    row["max_item_missing_pct"] = 100.0 * float(missing["share_missing"].max())
    if n_complete < k:
        notes.append(f"alpha and omega withheld: {n_complete} complete respondents < {k}")
    else:
        try:
            a = cronbach_alpha(items, level=level)
            row.update(alpha=a.alpha, alpha_ci_lower=a.ci_lower, alpha_ci_upper=a.ci_upper)
        except ValueError as exc:
            notes.append(f"alpha not computed: {exc}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                o = mcdonald_omega(items)
            row["omega"] = o.omega
            if not o.converged:
                notes.append("omega: ML optimiser did not report convergence")
        except (ValueError, RuntimeWarning, np.linalg.LinAlgError) as exc:
            notes.append(f"omega not computed: {exc}")
    fc = floor_ceiling(g[total_column], minimum, maximum)
    if fc.n < k:
        notes.append(f"floor and ceiling withheld: {fc.n} non-missing totals < {k}")
    else:
        row.update(floor_pct=100.0 * fc.floor_share, ceiling_pct=100.0 * fc.ceiling_share)
    row["notes"] = "; ".join(notes)
    return row


__all__ = [
    "AlphaResult",
    "FloorCeiling",
    "OmegaResult",
    "TABLE_COLUMNS",
    "cronbach_alpha",
    "floor_ceiling",
    "item_missingness",
    "mcdonald_omega",
    "psychometrics_table",
]
