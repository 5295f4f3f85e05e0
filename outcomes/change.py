"""Clinical change definitions: response, remission, caseness, reliable change, recovery.

Every function is vectorised over pandas Series (array-likes are accepted and get a default
index) and returns a nullable ``boolean`` Series with the inputs' index. A missing input gives a
missing (``<NA>``) result, never ``False``, so that "could not be assessed" is never counted as
"did not change". Thresholds are plain arguments; the instrument definitions in
:mod:`outcomes.instruments` are where a caller finds them (for NHS Talking Therapies: PHQ-9
caseness 10 and reliable change 6 points, GAD-7 caseness 8 and reliable change 4 points).

Scores are "lower is better" symptom scores unless ``higher_is_better=True`` is passed where the
function offers it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# "At least" comparisons of a *change* (a difference of two scores, or a fraction of a score)
# allow this many points so that 0.3 * 10 == 3.0000000000000004 does not turn a reduction of
# exactly 3 points into a miss. Level comparisons of a score against a threshold use no slack.
_TOL = 1e-9

JT_LABELS = ("reliably improved", "no reliable change", "reliably deteriorated")


# ---- helpers -------------------------------------------------------------------------------


def _as_float(values: Any, name: str) -> pd.Series:
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    try:
        data = series.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: values must be numeric or missing") from None
    if np.isinf(data).any():
        raise ValueError(f"{name}: values must be finite or missing, found infinity")
    return pd.Series(data, index=series.index, name=series.name)


def _aligned(**named: Any) -> tuple[pd.Series, ...]:
    """Numeric float Series sharing one index; raises rather than silently realigning."""
    series = [_as_float(v, k) for k, v in named.items()]
    first_name, first = next(iter(named)), series[0]
    for name, s in zip(named, series, strict=True):
        if len(s) != len(first) or not s.index.equals(first.index):
            raise ValueError(f"{name}: index differs from {first_name}; align the inputs first")
    return tuple(series)


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _finite(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _boolean(values: np.ndarray, missing: np.ndarray, index: pd.Index, name: str) -> pd.Series:
    array = pd.arrays.BooleanArray(np.asarray(values, dtype=bool) & ~missing, missing.copy())
    return pd.Series(array, index=index, name=name)


def _improvement(baseline: pd.Series, follow_up: pd.Series, higher_is_better: bool) -> np.ndarray:
    change = follow_up.to_numpy() - baseline.to_numpy()
    return change if higher_is_better else -change


# ---- single-measure definitions --------------------------------------------------------------


def response(baseline: Any, follow_up: Any, fraction: float = 0.5) -> pd.Series:
    """Treatment response: a reduction of at least ``fraction`` of the baseline score.

    Parameters
    ----------
    baseline, follow_up
        Symptom scores (lower is better, floor 0), aligned on the same index.
    fraction
        Required proportional reduction, in (0, 1]; 0.5 is the usual "50% reduction".

    Returns
    -------
    pandas.Series
        Nullable boolean named ``response``; ``<NA>`` where either score is missing or the
        baseline is 0.

    Notes
    -----
    Response means :math:`x_1 - x_2 \\ge f\\,x_1`, equivalently :math:`x_2 \\le (1 - f)\\,x_1`,
    where :math:`x_1` is the baseline, :math:`x_2` the follow-up and :math:`f` the fraction.
    A baseline of 0 leaves no symptoms to reduce: the proportional change is 0/0, so the result
    is ``<NA>`` (not assessable), neither responder nor non-responder. Negative scores are
    refused: a proportional reduction needs a scale whose floor is 0.
    """
    if not 0 < float(fraction) <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    x1, x2 = _aligned(baseline=baseline, follow_up=follow_up)
    if (x1 < 0).any() or (x2 < 0).any():
        raise ValueError("response: scores must be >= 0 (a proportional reduction needs floor 0)")
    missing = (x1.isna() | x2.isna() | (x1 == 0)).to_numpy()
    met = (x1 - x2).to_numpy() >= float(fraction) * x1.to_numpy() - _TOL
    return _boolean(met, missing, x1.index, "response")


def remission(follow_up: Any, threshold: float) -> pd.Series:
    """Remission: follow-up score strictly below ``threshold`` (PHQ-9 < 5 by convention).

    Notes
    -----
    :math:`x_2 < t`. ``<NA>`` where the follow-up score is missing.
    """
    (x2,) = _aligned(follow_up=follow_up)
    threshold = _finite(threshold, "threshold")
    return _boolean(x2.to_numpy() < threshold, x2.isna().to_numpy(), x2.index, "remission")


def caseness(score: Any, threshold: float) -> pd.Series:
    """At caseness: score at or above ``threshold``.

    NHS Talking Therapies uses PHQ-9 >= 10 and GAD-7 >= 8.

    Notes
    -----
    :math:`x \\ge t`. ``<NA>`` where the score is missing.
    """
    (x,) = _aligned(score=score)
    threshold = _finite(threshold, "threshold")
    return _boolean(x.to_numpy() >= threshold, x.isna().to_numpy(), x.index, "caseness")


def reliable_improvement(
    baseline: Any, follow_up: Any, rci_points: float, higher_is_better: bool = False
) -> pd.Series:
    """Reliable improvement: improvement of at least ``rci_points`` points.

    NHS Talking Therapies criteria: PHQ-9 6 points, GAD-7 4 points.

    Notes
    -----
    With :math:`d = x_2 - x_1`, improvement is :math:`-d \\ge c` for lower-is-better scores and
    :math:`d \\ge c` for higher-is-better scores, :math:`c` the criterion in points.
    ``<NA>`` where either score is missing.
    """
    x1, x2 = _aligned(baseline=baseline, follow_up=follow_up)
    c = _positive(rci_points, "rci_points")
    met = _improvement(x1, x2, higher_is_better) >= c - _TOL
    return _boolean(met, (x1.isna() | x2.isna()).to_numpy(), x1.index, "reliable_improvement")


def reliable_deterioration(
    baseline: Any, follow_up: Any, rci_points: float, higher_is_better: bool = False
) -> pd.Series:
    """Reliable deterioration: worsening of at least ``rci_points`` points.

    Notes
    -----
    With :math:`d = x_2 - x_1`, deterioration is :math:`d \\ge c` for lower-is-better scores
    and :math:`-d \\ge c` for higher-is-better scores. ``<NA>`` where either score is missing.
    """
    x1, x2 = _aligned(baseline=baseline, follow_up=follow_up)
    c = _positive(rci_points, "rci_points")
    met = -_improvement(x1, x2, higher_is_better) >= c - _TOL
    return _boolean(met, (x1.isna() | x2.isna()).to_numpy(), x1.index, "reliable_deterioration")


def mcid_responder(
    baseline: Any, follow_up: Any, mcid: float, higher_is_better: bool = False
) -> pd.Series:
    """Improvement of at least the minimal clinically important difference (MCID).

    Notes
    -----
    Same rule as :func:`reliable_improvement` with :math:`c` the MCID in points: improvement
    :math:`\\ge` MCID in the direction of better health. ``<NA>`` where either score is missing.
    """
    x1, x2 = _aligned(baseline=baseline, follow_up=follow_up)
    c = _positive(mcid, "mcid")
    met = _improvement(x1, x2, higher_is_better) >= c - _TOL
    return _boolean(met, (x1.isna() | x2.isna()).to_numpy(), x1.index, "mcid_responder")


# ---- NHS Talking Therapies paired-measure definitions -----------------------------------------


def paired_reliable_improvement(
    depression_baseline: Any,
    depression_follow_up: Any,
    anxiety_baseline: Any,
    anxiety_follow_up: Any,
    *,
    depression_rci: float,
    anxiety_rci: float,
) -> pd.Series:
    """Reliable improvement on a depression and anxiety pair, as NHS Talking Therapies report.

    Notes
    -----
    Improved on at least one measure by its criterion and reliably deteriorated on neither.
    """
    return _paired_change(
        depression_baseline, depression_follow_up, anxiety_baseline, anxiety_follow_up,
        depression_rci, anxiety_rci, improvement=True,
    )


def paired_reliable_deterioration(
    depression_baseline: Any,
    depression_follow_up: Any,
    anxiety_baseline: Any,
    anxiety_follow_up: Any,
    *,
    depression_rci: float,
    anxiety_rci: float,
) -> pd.Series:
    """Reliable deterioration on a depression and anxiety pair, as NHS Talking Therapies report.

    Notes
    -----
    Deteriorated on at least one measure by its criterion and reliably improved on neither.
    """
    return _paired_change(
        depression_baseline, depression_follow_up, anxiety_baseline, anxiety_follow_up,
        depression_rci, anxiety_rci, improvement=False,
    )


def _paired_change(
    depression_baseline: Any, depression_follow_up: Any,
    anxiety_baseline: Any, anxiety_follow_up: Any,
    depression_rci: float, anxiety_rci: float, *, improvement: bool,
) -> pd.Series:
    d1, d2, a1, a2 = _aligned(
        depression_baseline=depression_baseline, depression_follow_up=depression_follow_up,
        anxiety_baseline=anxiety_baseline, anxiety_follow_up=anxiety_follow_up,
    )
    c_d = _positive(depression_rci, "depression_rci")
    c_a = _positive(anxiety_rci, "anxiety_rci")
    better_d = _improvement(d1, d2, higher_is_better=False)
    better_a = _improvement(a1, a2, higher_is_better=False)
    ri_d, rd_d = better_d >= c_d - _TOL, -better_d >= c_d - _TOL
    ri_a, rd_a = better_a >= c_a - _TOL, -better_a >= c_a - _TOL
    if improvement:
        met, name = (ri_d | ri_a) & ~rd_d & ~rd_a, "paired_reliable_improvement"
    else:
        met, name = (rd_d | rd_a) & ~ri_d & ~ri_a, "paired_reliable_deterioration"
    missing = (d1.isna() | d2.isna() | a1.isna() | a2.isna()).to_numpy()
    return _boolean(met, missing, d1.index, name)


def _recovery_parts(
    d1: pd.Series, d2: pd.Series, a1: pd.Series, a2: pd.Series,
    depression_threshold: float, anxiety_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    dt = _finite(depression_threshold, "depression_threshold")
    at = _finite(anxiety_threshold, "anxiety_threshold")
    case_before = (d1.to_numpy() >= dt) | (a1.to_numpy() >= at)
    case_after = (d2.to_numpy() >= dt) | (a2.to_numpy() >= at)
    incomplete = (d1.isna() | d2.isna() | a1.isna() | a2.isna()).to_numpy()
    return case_before & ~case_after, incomplete | ~case_before


def recovery(
    depression_baseline: Any,
    depression_follow_up: Any,
    anxiety_baseline: Any,
    anxiety_follow_up: Any,
    *,
    depression_threshold: float,
    anxiety_threshold: float,
) -> pd.Series:
    """Recovery as NHS Talking Therapies report it: from caseness to below caseness on both.

    Parameters
    ----------
    depression_baseline, depression_follow_up, anxiety_baseline, anxiety_follow_up
        First and last scores on the paired measures (for example PHQ-9 and GAD-7).
    depression_threshold, anxiety_threshold
        Caseness thresholds (NHS Talking Therapies: PHQ-9 10, GAD-7 8).

    Returns
    -------
    pandas.Series
        Nullable boolean named ``recovery``: ``True`` recovered, ``False`` at caseness at
        baseline and not recovered, ``<NA>`` not at caseness at baseline (excluded from the
        denominator) or any of the four scores missing.

    Notes
    -----
    With caseness :math:`C(d, a) = [d \\ge t_d] \\lor [a \\ge t_a]`, recovery is
    :math:`C(d_1, a_1) \\land \\lnot C(d_2, a_2)`, defined only where :math:`C(d_1, a_1)`.

    NHS Talking Therapies (formerly IAPT) report outcomes on a *paired* depression measure
    (PHQ-9) and anxiety measure (GAD-7, or an anxiety-disorder-specific measure) taken at the
    first and last contact of a finished course of treatment. Definitions implemented here
    (NHS England, *NHS Talking Therapies for anxiety and depression Manual*, outcome and
    recovery sections; NHS Digital, *NHS Talking Therapies data set / data handbook*, measure
    definitions; see also Gyani et al. 2013, Behav Res Ther 51:597-606):

    * caseness at a time point: depression >= its threshold OR anxiety >= its threshold;
    * recovery: at caseness at baseline AND not at caseness at follow-up (below the threshold
      on both measures);
    * reliable improvement: a reduction of at least the reliable-change criterion on at least
      one measure AND reliable deterioration on neither;
    * reliable deterioration: an increase of at least the criterion on at least one measure
      AND reliable improvement on neither (a mixed result counts as neither);
    * reliable recovery: recovery AND reliable improvement (as just defined).

    Participants not at caseness at baseline are outside the recovery denominators: their
    recovery and reliable recovery are ``<NA>``. A participant without all four scores is
    ``<NA>`` everywhere, since the reporting requires paired scores on both measures. The
    "finished a course of treatment (two or more attended treatment sessions)" condition of
    the national statistics is the caller's to apply when choosing the rows.
    """
    d1, d2, a1, a2 = _aligned(
        depression_baseline=depression_baseline, depression_follow_up=depression_follow_up,
        anxiety_baseline=anxiety_baseline, anxiety_follow_up=anxiety_follow_up,
    )
    met, missing = _recovery_parts(d1, d2, a1, a2, depression_threshold, anxiety_threshold)
    return _boolean(met, missing, d1.index, "recovery")


def reliable_recovery(
    depression_baseline: Any,
    depression_follow_up: Any,
    anxiety_baseline: Any,
    anxiety_follow_up: Any,
    *,
    depression_threshold: float,
    anxiety_threshold: float,
    depression_rci: float,
    anxiety_rci: float,
) -> pd.Series:
    """Reliable recovery as NHS Talking Therapies report it: recovery and reliable improvement.

    Parameters
    ----------
    depression_baseline, depression_follow_up, anxiety_baseline, anxiety_follow_up
        First and last scores on the paired measures (for example PHQ-9 and GAD-7).
    depression_threshold, anxiety_threshold
        Caseness thresholds (NHS Talking Therapies: PHQ-9 10, GAD-7 8).
    depression_rci, anxiety_rci
        Reliable-change criteria in points (NHS Talking Therapies: PHQ-9 6, GAD-7 4).

    Returns
    -------
    pandas.Series
        Nullable boolean named ``reliable_recovery``, ``<NA>`` where :func:`recovery` is.

    Notes
    -----
    :math:`\\text{recovery} \\land (RI_d \\lor RI_a) \\land \\lnot RD_d \\land \\lnot RD_a`, with
    :math:`RI` / :math:`RD` a change of at least the criterion down / up on that measure,
    defined only where the participant was at caseness at baseline. This is the NHS Talking
    Therapies "reliable recovery" (Manual and data handbook; Gyani et al. 2013, Behav Res Ther
    51:597-606); the full set of definitions and the handling of missing scores are in
    :func:`recovery`.
    """
    d1, d2, a1, a2 = _aligned(
        depression_baseline=depression_baseline, depression_follow_up=depression_follow_up,
        anxiety_baseline=anxiety_baseline, anxiety_follow_up=anxiety_follow_up,
    )
    recovered, missing = _recovery_parts(
        d1, d2, a1, a2, depression_threshold, anxiety_threshold
    )
    improved = paired_reliable_improvement(
        d1, d2, a1, a2, depression_rci=depression_rci, anxiety_rci=anxiety_rci
    ).to_numpy(dtype=bool, na_value=False)
    return _boolean(recovered & improved, missing, d1.index, "reliable_recovery")


# ---- Jacobson & Truax (1991) -------------------------------------------------------------------


def _check_sd_reliability(sd: float, reliability: float) -> tuple[float, float]:
    sd = _positive(sd, "sd")
    r = float(reliability)
    if not 0 <= r < 1:
        raise ValueError(f"reliability must be in [0, 1), got {reliability!r}")
    return sd, r


def standard_error_difference(sd: float, reliability: float) -> float:
    """Standard error of the difference between two scores, :math:`S_{diff}`.

    Notes
    -----
    Jacobson NS, Truax P (1991), J Consult Clin Psychol 59:12-19:
    :math:`S_E = s_1\\sqrt{1 - r_{xx}}` and
    :math:`S_{diff} = \\sqrt{2 S_E^2} = \\sqrt{2}\\, s_1 \\sqrt{1 - r_{xx}}`, with :math:`s_1`
    the standard deviation (usually of the pre-treatment or normative sample) and
    :math:`r_{xx}` the test-retest reliability.
    """
    sd, r = _check_sd_reliability(sd, reliability)
    return math.sqrt(2.0) * sd * math.sqrt(1.0 - r)


def reliable_change_threshold(sd: float, reliability: float, z: float = 1.96) -> float:
    """Smallest change in points that is reliable at the ``z`` criterion.

    Notes
    -----
    :math:`z \\cdot S_{diff} = z \\sqrt{2}\\, s_1 \\sqrt{1 - r_{xx}}`
    (Jacobson & Truax 1991); with SD 7.5 and :math:`r_{xx}` 0.88 it is 7.2 points.
    """
    return _positive(z, "z") * standard_error_difference(sd, reliability)


def jacobson_truax(
    baseline: Any,
    follow_up: Any,
    sd: float,
    reliability: float,
    *,
    higher_is_better: bool = False,
    z: float = 1.96,
) -> pd.DataFrame:
    """Jacobson-Truax reliable change index and classification, per participant.

    Parameters
    ----------
    baseline, follow_up
        Scores, aligned on the same index.
    sd, reliability
        Standard deviation and test-retest reliability that define :math:`S_{diff}`.
    higher_is_better
        Direction of better health; decides which sign of the RCI is an improvement.
    z
        Criterion for :math:`|RC|` (1.96: two-sided 5% under no true change).

    Returns
    -------
    pandas.DataFrame
        Index of the inputs, columns ``change`` (:math:`x_2 - x_1`), ``rci`` (float, NaN where a
        score is missing) and ``classification`` (categorical ``reliably improved``,
        ``no reliable change``, ``reliably deteriorated``; missing where a score is).

    Notes
    -----
    :math:`RC = (x_2 - x_1) / S_{diff}` with
    :math:`S_{diff} = \\sqrt{2}\\, s_1 \\sqrt{1 - r_{xx}}` (Jacobson NS, Truax P. Clinical
    significance: a statistical approach to defining meaningful change in psychotherapy
    research. J Consult Clin Psychol 1991;59:12-19). :math:`|RC| > z` is reliable change, an
    improvement when the sign points towards better health. The comparison is strict, as in
    the paper; :func:`reliable_improvement` instead applies a whole-point criterion with ``>=``.
    """
    x1, x2 = _aligned(baseline=baseline, follow_up=follow_up)
    z = _positive(z, "z")
    s_diff = standard_error_difference(sd, reliability)
    change = x2 - x1
    rci = change / s_diff
    toward_better = rci if higher_is_better else -rci
    labels = np.where(
        toward_better > z, JT_LABELS[0], np.where(toward_better < -z, JT_LABELS[2], JT_LABELS[1])
    ).astype(object)
    labels[rci.isna().to_numpy()] = None
    classification = pd.Categorical(labels, categories=list(JT_LABELS))
    return pd.DataFrame(
        {"change": change, "rci": rci, "classification": classification}, index=x1.index
    )


@dataclass(frozen=True)
class JTCutoffs:
    """Clinical-significance cut-offs of Jacobson & Truax (1991).

    ``a``: two SD beyond the clinical mean towards better health; ``b``: two SD of the normal
    mean towards the clinical side; ``c``: the point equally many SDs from both means. ``b`` and
    ``c`` are ``None`` without normative data. Jacobson & Truax prefer ``c`` when normative data
    exist and the two distributions overlap, ``b`` when they do not, and ``a`` when no norms
    are available.
    """

    a: float
    b: float | None
    c: float | None
    higher_is_better: bool

    def as_dict(self) -> dict[str, float | None]:
        return {"a": self.a, "b": self.b, "c": self.c}


def jt_cutoff(
    mean_clinical: float,
    sd_clinical: float,
    mean_normal: float | None = None,
    sd_normal: float | None = None,
    *,
    higher_is_better: bool = False,
) -> JTCutoffs:
    """Cut-offs a, b and c for clinically significant change (Jacobson & Truax 1991).

    Parameters
    ----------
    mean_clinical, sd_clinical
        Mean and SD of the clinical (dysfunctional) population.
    mean_normal, sd_normal
        Mean and SD of the functional (normative) population; give both or neither.
    higher_is_better
        Direction of better health.

    Returns
    -------
    JTCutoffs

    Notes
    -----
    With clinical :math:`(M_1, s_1)`, normative :math:`(M_0, s_0)` and lower scores better:

    * :math:`a = M_1 - 2 s_1`
    * :math:`b = M_0 + 2 s_0`
    * :math:`c = (s_0 M_1 + s_1 M_0) / (s_0 + s_1)`, the solution of
      :math:`(c - M_0)/s_0 = (M_1 - c)/s_1`

    With higher scores better the signs in ``a`` and ``b`` flip; ``c`` is the same. A post-
    treatment score beyond the cut-off, on the healthy side, has passed it.
    """
    m1 = _finite(mean_clinical, "mean_clinical")
    s1 = _positive(sd_clinical, "sd_clinical")
    sign = 1.0 if higher_is_better else -1.0
    a = m1 + sign * 2.0 * s1
    if mean_normal is None and sd_normal is None:
        return JTCutoffs(a=a, b=None, c=None, higher_is_better=higher_is_better)
    if mean_normal is None or sd_normal is None:
        raise ValueError("give both mean_normal and sd_normal, or neither")
    m0 = _finite(mean_normal, "mean_normal")
    s0 = _positive(sd_normal, "sd_normal")
    if (m0 - m1) * sign <= 0:
        side = "above" if higher_is_better else "below"
        raise ValueError(
            f"mean_normal ({m0}) must lie {side} mean_clinical ({m1}) for this direction"
        )
    b = m0 - sign * 2.0 * s0
    c = (s0 * m1 + s1 * m0) / (s0 + s1)
    return JTCutoffs(a=a, b=b, c=c, higher_is_better=higher_is_better)


__all__ = [
    "JT_LABELS",
    "JTCutoffs",
    "caseness",
    "jacobson_truax",
    "jt_cutoff",
    "mcid_responder",
    "paired_reliable_deterioration",
    "paired_reliable_improvement",
    "recovery",
    "reliable_change_threshold",
    "reliable_deterioration",
    "reliable_improvement",
    "reliable_recovery",
    "remission",
    "response",
    "standard_error_difference",
]
