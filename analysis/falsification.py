"""Falsification (placebo) checks: one shared record and the ITS / synthetic-control checks.

A falsification check asks whether the design finds an "effect" where there should be none (a
fake interruption date inside the pre-period, a fake intervention date for a synthetic control).
Every design family reports its checks as the same :class:`FalsificationResult`, so the
decision and report code can list them without knowing the design.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from trials.errors import AnalysisError

if TYPE_CHECKING:
    from analysis.its import ItsSpec
    from analysis.synthetic_control import SyntheticControlSpec


@dataclass(frozen=True)
class FalsificationResult:
    """The outcome of one falsification check.

    ``passed`` is True when the check found no evidence against the design's assumptions;
    ``statistic``, ``p_value`` and ``threshold`` are the numbers behind that verdict (None when a
    check has no such number) and ``detail`` says in one plain sentence what was done.
    """

    check: str
    passed: bool
    statistic: float | None
    p_value: float | None
    threshold: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ERROR_LABELS = {"newey_west": "Newey-West", "ar1": "AR(1) GLS"}


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def its_placebo(frame: pd.DataFrame, spec: ItsSpec,
                placebo_interruptions: Sequence[int | str],
                alpha: float = 0.05) -> FalsificationResult:
    """Refit the ITS at fake interruption dates inside the pre-period.

    Parameters
    ----------
    frame
        The same frame :func:`analysis.its.fit_its` takes.
    spec
        The real analysis; only its interruption is replaced, so each placebo is fitted with
        the spec's own ``errors`` (Newey–West or AR(1) GLS), seasonality and covariates.
    placebo_interruptions
        Fake interruption periods, each strictly before ``spec.interruption``.
    alpha
        Family-wise significance level.

    Notes
    -----
    Only periods before the real interruption are used, so the real change cannot leak into a
    placebo fit. Each placebo fit tests the estimand the spec names (level, slope or the change
    at the horizon) with the t-test of :func:`analysis.its.fit_its` for the spec's ``errors``.
    With Newey–West errors the pre-period is often short enough (24–48 periods) for that test
    to be anti-conservative (about 0.10–0.14 per date at 0.05/3, so a three-date check raises a
    false alarm about 30% of the time); ``errors="ar1"`` with Satterthwaite degrees of freedom
    brings the false-alarm rate to about 0.05 with 48 pre-periods and 0.06–0.085 with 24–36
    (tests/reference/its_sc.md). With :math:`m` placebo dates a placebo counts as significant
    when :math:`p < \\alpha / m` (Bonferroni), and the check passes when none is.
    ``statistic`` is the number of significant placebos, ``p_value`` the Bonferroni-adjusted
    smallest p-value :math:`\\min(1, m\\,p_{(1)})`.
    """
    from analysis.its import fit_its, its_time_index

    if not placebo_interruptions:
        raise AnalysisError(f"{spec.analysis}: placebo_interruptions is empty")
    index = its_time_index(frame, spec)
    pre = frame.loc[index.time < index.t0]
    m = len(placebo_interruptions)
    p_values: list[float] = []
    for fake in placebo_interruptions:
        fake_index = its_time_index(frame, replace(spec, interruption=fake))
        if fake_index.t0 >= index.t0:
            raise AnalysisError(f"{spec.analysis}: placebo interruption {fake!r} is not before "
                                f"the interruption {spec.interruption!r}")
        placebo_spec = replace(spec, interruption=fake, analysis=f"{spec.analysis}_placebo")
        est = fit_its(pre, placebo_spec).estimate
        p_values.append(1.0 if est.p_value is None else est.p_value)
    n_sig = sum(p < alpha / m for p in p_values)
    p_adj = min(1.0, m * min(p_values))
    return FalsificationResult(
        check="its_placebo_interruption",
        passed=n_sig == 0,
        statistic=float(n_sig),
        p_value=p_adj,
        threshold=alpha,
        detail=(f"{n_sig} of {m} fake interruption(s) inside the pre-period showed a significant "
                f"{spec.effect} change at Bonferroni level {alpha:g}/{m} "
                f"(smallest p {min(p_values):.3g}; {_ERROR_LABELS.get(spec.errors, spec.errors)} "
                "errors)."),
    )


def sc_placebo_in_time(frame: pd.DataFrame, spec: SyntheticControlSpec,
                       fake_intervention: int | str, alpha: float = 0.05) -> FalsificationResult:
    """Refit the synthetic control with a fake intervention date inside the pre-period.

    Notes
    -----
    Only periods before the real intervention are used; the synthetic control is rebuilt from
    the periods before ``fake_intervention`` and its placebo-in-space p-value (rank of the
    treated unit's post/pre RMSPE ratio among all units, Abadie et al. 2010) is computed for the
    fake post-period. The check passes when that p-value is at least ``alpha``. ``statistic`` is
    the treated unit's post/pre RMSPE ratio in the fake post-period.
    """
    from analysis.synthetic_control import fit_synthetic_control, sc_periods

    periods, first_post = sc_periods(frame, spec.intervention, spec.analysis)
    _, fake_first = sc_periods(frame, fake_intervention, spec.analysis)
    if not fake_first < first_post:
        raise AnalysisError(f"{spec.analysis}: fake_intervention {fake_intervention!r} is not "
                            f"before the intervention {spec.intervention!r}")
    keep = frame["period"].map(dict(zip(periods.values, periods.index, strict=True))) < first_post
    placebo = fit_synthetic_control(
        frame.loc[keep.to_numpy()],
        replace(spec, intervention=fake_intervention, analysis=f"{spec.analysis}_placebo_time"))
    p = placebo.estimate.p_value
    ratio = placebo.rmspe_ratio
    return FalsificationResult(
        check="sc_placebo_in_time",
        passed=p is None or p >= alpha,
        statistic=_finite_or_none(ratio),
        p_value=p,
        threshold=alpha,
        detail=(f"With a fake intervention at {fake_intervention} the mean gap was "
                f"{placebo.estimate.estimate:.3g} and its placebo-in-space p-value "
                f"{'n/a' if p is None else f'{p:.3g}'} (pass when >= {alpha:g})."),
    )
