"""Rubin's rules: combine one scalar estimate from each of m completed (imputed) data sets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from trials.errors import AnalysisError

# mice floors lambda here so that the Barnard-Rubin df stays finite when B = 0.
_LAMBDA_FLOOR = 1e-4


@dataclass(frozen=True)
class Pooled:
    """A scalar pooled by Rubin's rules (names as in ``mice::pool``).

    ``within`` is the mean within-imputation variance (ubar), ``between`` the between-imputation
    variance (b), ``total`` = ubar + (1 + 1/m) b, ``riv`` the relative increase in variance due to
    nonresponse, ``lambda_`` the proportion of the total variance due to nonresponse and ``fmi``
    the fraction of missing information. ``df`` is Barnard & Rubin's (1999) small-sample degrees
    of freedom (Rubin's 1987 large-sample df when ``df_complete`` is None).
    """

    m: int
    estimate: float
    within: float
    between: float
    total: float
    se: float
    df: float
    riv: float
    lambda_: float
    fmi: float
    df_complete: float | None

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Interval ``estimate ± t_{df, (1+level)/2} · se``."""
        if not 0 < level < 1:
            raise AnalysisError(f"interval level must be in (0, 1), got {level}")
        if self.se == 0:
            return (self.estimate, self.estimate)
        q = float(stats.t.ppf(0.5 + level / 2, self.df))
        return (self.estimate - q * self.se, self.estimate + q * self.se)

    @property
    def p_value(self) -> float:
        """Two-sided p-value of the Wald t test of estimate = 0 on ``df``."""
        if self.se == 0:
            return 0.0 if self.estimate != 0 else 1.0
        return float(2 * stats.t.sf(abs(self.estimate / self.se), self.df))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["p_value"] = self.p_value
        return out


def barnard_rubin_df(m: int, between: float, total: float,
                     df_complete: float | None = None) -> float:
    """Degrees of freedom of the pooled estimate (as ``mice:::barnard.rubin``).

    Notes
    -----
    With :math:`\\lambda = (1 + 1/m) B / T` (floored at 1e-4, as mice does),
    :math:`\\nu_{old} = (m - 1)/\\lambda^2` (Rubin 1987). Given the complete-data degrees of
    freedom :math:`\\nu_{com}`, :math:`\\nu_{obs} = \\frac{\\nu_{com} + 1}{\\nu_{com} + 3}
    \\nu_{com}(1 - \\lambda)` and :math:`\\nu = \\nu_{old}\\nu_{obs}/(\\nu_{old} + \\nu_{obs})`
    (Barnard & Rubin 1999).
    """
    lam = (1 + 1 / m) * between / total if total > 0 else 0.0
    lam = max(lam, _LAMBDA_FLOOR)
    df_old = (m - 1) / lam**2
    if df_complete is None or math.isinf(df_complete):
        return float(df_old)
    df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
    return float(df_old * df_obs / (df_old + df_obs))


def pool(estimates: Sequence[float], variances: Sequence[float],
         df_complete: float | None = None) -> Pooled:
    """Pool m estimates and their squared standard errors by Rubin's rules.

    Parameters
    ----------
    estimates
        :math:`\\hat Q_j`, one per completed data set.
    variances
        :math:`U_j`, the complete-data variance of each estimate (squared standard error).
    df_complete
        Complete-data residual degrees of freedom (``n - k``); None for large samples.

    Returns
    -------
    Pooled

    Notes
    -----
    :math:`\\bar Q = m^{-1}\\sum_j \\hat Q_j`, :math:`\\bar U = m^{-1}\\sum_j U_j`,
    :math:`B = (m-1)^{-1}\\sum_j (\\hat Q_j - \\bar Q)^2`, :math:`T = \\bar U + (1 + 1/m)B`;
    :math:`r = (1 + 1/m)B/\\bar U`, :math:`\\lambda = (1 + 1/m)B/T` and
    :math:`\\gamma = (r + 2/(\\nu + 3))/(r + 1)` (the fraction of missing information as
    ``mice::pool`` computes it; Rubin 1987, Van Buuren 2018 section 2.3). The degrees of
    freedom :math:`\\nu` are from :func:`barnard_rubin_df`.
    """
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(variances, dtype=float)
    m = q.size
    if m < 2 or u.size != m:
        raise AnalysisError(f"pool: need m >= 2 estimates with one variance each (got {m}, "
                            f"{u.size})")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(u)) and np.all(u >= 0)):
        raise AnalysisError("pool: estimates and variances must be finite, variances >= 0")
    if df_complete is not None and not df_complete > 0:
        raise AnalysisError(f"pool: df_complete must be positive, got {df_complete}")
    qbar = float(q.mean())
    ubar = float(u.mean())
    b = float(q.var(ddof=1))
    t = ubar + (1 + 1 / m) * b
    df = barnard_rubin_df(m, b, t, df_complete)
    riv = (1 + 1 / m) * b / ubar if ubar > 0 else math.inf
    lam = (1 + 1 / m) * b / t if t > 0 else 0.0
    fmi = (riv + 2 / (df + 3)) / (riv + 1) if math.isfinite(riv) else 1.0
    return Pooled(m=m, estimate=qbar, within=ubar, between=b, total=t, se=math.sqrt(t), df=df,
                  riv=riv, lambda_=lam, fmi=fmi,
                  df_complete=None if df_complete is None else float(df_complete))
