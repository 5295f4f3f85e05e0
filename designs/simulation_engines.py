"""The two simulation engines, run on one chunk of trials of one scenario.

Both return a :class:`Tally` (counts and sums only, so chunks merge by addition) and share the
decision rule (:func:`designs.simulation_criteria.look_decisions`: the boundaries and the
protocol's criteria), the enrolment model and the harm-event model; they differ only in how the
estimate, its SE and degrees of freedom, and the benefit-positive Z at each look are obtained:

* ``"summary"``: the difference in means from its exact per-look increments (known SD);
* ``"patient"``: every participant's baseline and outcome, and the ANCOVA fitted at each look.

Enrolment model
---------------
Participants are randomised alternately to the two arms at ``accrual_rate`` per unit time and
each drops out (no outcome) with probability ``dropout``. In arm a, reaching n_k completers takes
C_ak = n_k + D_ak randomised participants, D_ak negative binomial (dropouts before the n_k-th
completer). Look k waits for both arms, so it is held at time
T_k = 2 max(C_ck, C_ek) / rate + follow_up, when follow-up has closed for
min(max(C_ck, C_ek), C_aK) participants of arm a (the population for harm events) and
``in_follow_up`` more per arm have been randomised (capped by C_aK: enrolment stops once the
final look's completers are randomised, so the final look has C_aK randomised in arm a).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri, stdtr

from designs.simulation_criteria import (
    CONTINUE,
    GO,
    NO_GO,
    STOP_EFFICACY,
    STOP_FOR_HARM,
    STOP_FUTILITY,
    look_decisions,
)
from designs.simulation_spec import LookPlan, Scenario

REASONS = ("efficacy", "futility", "harm", "final")
EFFICACY, FUTILITY, HARM, FINAL = range(4)
SUM_KEYS = ("est", "err2", "err4", "est_success", "enrolled_c", "enrolled_c2", "enrolled_e",
            "enrolled_e2", "enrolled_t2", "time", "time2")


@dataclass
class Tally:
    """Counts of trials stopping at each look for each reason, and running sums.

    ``counts[r, k]``: trials that stopped at look k for reason ``REASONS[r]`` (``"final"``: the
    last look reached without success or harm). ``sums``: of the estimate at stopping and its
    squared and fourth-power error, of the estimate over successful trials, of participants
    randomised per arm at stopping (and squares) and of the calendar time at stopping.
    """

    counts: np.ndarray
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SUM_KEYS, 0.0))

    @classmethod
    def empty(cls, looks: int) -> Tally:
        return cls(np.zeros((len(REASONS), looks), dtype=np.int64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def add(self, other: Tally) -> Tally:
        """A new tally of both (sums added in the order self, other)."""
        return Tally(self.counts + other.counts,
                     {k: self.sums[k] + other.sums[k] for k in SUM_KEYS})


def simulate_chunk(plan: LookPlan, scenario: Scenario, n_trials: int,
                   seed: np.random.SeedSequence, engine: str = "summary",
                   fitter: str = "closed_form") -> Tally:
    """Simulate ``n_trials`` trials of ``scenario`` and tally them (one Dask task).

    The generator is seeded by ``seed`` alone, and the draws are made in a fixed order
    (outcomes, then dropouts, then harm events), so a chunk gives the same tally wherever and
    whenever it runs.
    """
    rng = np.random.default_rng(seed)
    if engine == "summary":
        estimate, se, df, z = summary_statistics(plan, scenario, n_trials, rng)
    else:
        estimate, se, df, z = patient_statistics(plan, scenario, n_trials, rng, fitter)
    closed, enrolled, time = enrolment(plan, scenario, n_trials, rng)
    harm_z = harm_event_z(scenario, closed, rng) if plan.harm_event_z is not None else None
    look, reason = apply_rules(plan, z, harm_z, estimate, se, df)
    return tally(plan, scenario, look, reason, estimate, enrolled, time)


def summary_statistics(plan: LookPlan, scenario: Scenario, m: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Estimate, SE, degrees of freedom (infinite: known SD) and benefit-positive Z at each
    look (trial, look) from exact independent increments.

    Notes
    -----
    With n_k completers per arm and residual SD :math:`\\sigma_e`, the sum of paired
    differences :math:`U_k = \\sum_{i \\le n_k} (y_{ei} - y_{ci})` has independent increments
    :math:`U_k - U_{k-1} \\sim N(\\theta \\Delta_k, 2 \\sigma_e^2 \\Delta_k)`,
    :math:`\\Delta_k = n_k - n_{k-1}`; :math:`\\hat\\theta_k = U_k / n_k` and
    :math:`Z_k = s \\hat\\theta_k / (\\sigma_e \\sqrt{2 / n_k})` with s the direction sign:
    the canonical joint distribution of Jennison & Turnbull (2000, sec. 3.1), known variance.
    """
    n = np.asarray(plan.completers, dtype=float)
    inc = np.diff(n, prepend=0.0)
    sigma = scenario.residual_sd
    draws = rng.standard_normal((m, n.size))
    estimate = np.cumsum(scenario.effect * inc + sigma * np.sqrt(2.0 * inc) * draws, axis=1) / n
    se = np.broadcast_to(sigma * np.sqrt(2.0 / n), estimate.shape)
    return estimate, se, np.broadcast_to(math.inf, estimate.shape), plan.sign * estimate / se


def patient_data(scenario: Scenario, m: int, n: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Baselines and outcomes of the first ``n`` completers per arm, shape (arm, trial, i).

    Arm 0 is control, arm 1 experimental. Baseline ~ N(0, sd^2); outcome = theta * arm +
    rho * baseline + sd * sqrt(1 - rho^2) * noise, so both have SD ``sd`` and correlation rho.
    """
    g = rng.standard_normal((2, 2, m, n))
    x = scenario.sd * g[0]
    arm = np.array([0.0, scenario.effect])[:, None, None]
    y = arm + scenario.baseline_correlation * x + scenario.residual_sd * g[1]
    return x, y


def patient_statistics(plan: LookPlan, scenario: Scenario, m: int, rng: np.random.Generator,
                       fitter: str = "closed_form"
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Estimate, SE, residual degrees of freedom and benefit-positive Z at each look (trial,
    look) from the ANCOVA on simulated participants.

    ``fitter="closed_form"`` solves the OLS from within-arm sums (vectorised over trials and
    looks); ``"statsmodels"`` fits :func:`analysis.ancova.fit_ancova` at every look (slow: for
    checking the closed form).

    Notes
    -----
    Model :math:`y = \\alpha + \\tau T + \\beta x + \\varepsilon` on the n_k completers per arm.
    With pooled within-arm sums of squares and products :math:`W_{xx}, W_{xy}, W_{yy}` and arm
    differences in means :math:`d_x, d_y`: :math:`\\hat\\beta = W_{xy} / W_{xx}`,
    :math:`\\hat\\tau = d_y - \\hat\\beta d_x`, :math:`s^2 = (W_{yy} - W_{xy}^2 / W_{xx}) / \\nu`
    with :math:`\\nu = 2 n_k - 3`, and :math:`SE^2 = s^2 (2 / n_k + d_x^2 / W_{xx})`. The t
    statistic is mapped to the Z scale through its p-value, :math:`Z = \\Phi^{-1}(F_\\nu(t))`,
    so the normal boundaries keep their level with an estimated variance.
    """
    n = np.asarray(plan.completers)
    x, y = patient_data(scenario, m, int(n[-1]), rng)
    if fitter == "statsmodels":
        estimate, se, df = _statsmodels_ancova(x, y, n)
    else:
        estimate, se, df = _closed_form_fit(x, y, n)
    return estimate, se, df, plan.sign * t_to_z(estimate / se, df)


def _closed_form_ancova(x: np.ndarray, y: np.ndarray,
                        n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate, t statistic and residual degrees of freedom (see :func:`patient_statistics`)."""
    estimate, se, df = _closed_form_fit(x, y, n)
    return estimate, estimate / se, df


def _closed_form_fit(x: np.ndarray, y: np.ndarray,
                     n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.concatenate(([0], n[:-1]))

    def cum(a: np.ndarray) -> np.ndarray:  # sums over the first n_k participants, (arm, m, K)
        return np.cumsum(np.add.reduceat(a, starts, axis=-1), axis=-1)

    sx, sy, sxx, sxy, syy = cum(x), cum(y), cum(x * x), cum(x * y), cum(y * y)
    nk = n.astype(float)
    wxx = (sxx - sx * sx / nk).sum(axis=0)
    wxy = (sxy - sx * sy / nk).sum(axis=0)
    wyy = (syy - sy * sy / nk).sum(axis=0)
    dx, dy = (sx[1] - sx[0]) / nk, (sy[1] - sy[0]) / nk
    slope = wxy / wxx
    estimate = dy - slope * dx
    df = 2.0 * nk - 3.0
    s2 = (wyy - wxy * slope) / df
    se = np.sqrt(s2 * (2.0 / nk + dx * dx / wxx))
    return estimate, se, np.broadcast_to(df, estimate.shape)


def _statsmodels_ancova(x: np.ndarray, y: np.ndarray,
                        n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    from analysis.ancova import AncovaSpec, fit_ancova

    spec = AncovaSpec(estimand="simulated", analysis="simulation")
    m, looks = x.shape[1], n.size
    estimate, se, df = np.empty((m, looks)), np.empty((m, looks)), np.empty((m, looks))
    for i in range(m):
        for k, nk in enumerate(n):
            arm = np.repeat([0, 1], nk)
            frame = pd.DataFrame({"y": np.concatenate((y[0, i, :nk], y[1, i, :nk])),
                                  "baseline": np.concatenate((x[0, i, :nk], x[1, i, :nk])),
                                  "treated": arm,
                                  "arm": np.where(arm == 1, "experimental", "control")})
            fit = fit_ancova(frame, spec)
            estimate[i, k], df[i, k] = fit.estimate, fit.diagnostics["df_resid"]
            se[i, k] = fit.std_error
    return estimate, se, df


def t_to_z(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """The standard-normal quantile of the t distribution function, accurate in both tails."""
    lower = ndtri(stdtr(df, -np.abs(t)))  # <= 0, from the smaller tail
    return np.where(t >= 0, -lower, lower)


def enrolment(plan: LookPlan, scenario: Scenario, m: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Participants with follow-up closed and randomised per arm (arm, trial, look), and the
    calendar time of each look (trial, look; NaN without an accrual rate). See the module
    notes."""
    n = np.asarray(plan.completers)
    inc = np.diff(n, prepend=0)
    if scenario.dropout > 0:
        dropped = rng.negative_binomial(inc, 1.0 - scenario.dropout, size=(2, m, n.size))
        needed = n + np.cumsum(dropped, axis=-1)
    else:
        needed = np.broadcast_to(n, (2, m, n.size))
    final = needed[..., -1:]
    closed = np.minimum(needed.max(axis=0), final)
    enrolled = np.minimum(closed + scenario.in_follow_up, final).astype(float)
    enrolled[..., -1] = final[..., 0]
    if scenario.accrual_rate is None:
        time = np.full((m, n.size), math.nan)
    else:
        time = 2.0 * needed.max(axis=0) / scenario.accrual_rate + scenario.follow_up
    return closed, enrolled, time


def harm_event_z(scenario: Scenario, closed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two-proportion z (experimental minus control) of harm events at each look (trial, look)."""
    p = np.asarray(scenario.harm_rate)[:, None, None]
    new = np.diff(closed, axis=-1, prepend=0)
    events = np.cumsum(rng.binomial(new, np.broadcast_to(p, new.shape)), axis=-1)
    prop = events / closed
    pooled = events.sum(axis=0) / closed.sum(axis=0)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / closed[0] + 1.0 / closed[1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (prop[1] - prop[0]) / se
    return np.where(se > 0, z, 0.0)


#: The reason a decision is tallied under: success (GO, STOP-EFFICACY), futility
#: (STOP-FUTILITY), harm (STOP-FOR-HARM) or the final look without success (NO-GO).
_REASON_OF = {GO: EFFICACY, STOP_EFFICACY: EFFICACY, STOP_FUTILITY: FUTILITY,
              STOP_FOR_HARM: HARM, NO_GO: FINAL}


def apply_rules(plan: LookPlan, z: np.ndarray, harm_z: np.ndarray | None,
                estimate: np.ndarray | None = None, se: np.ndarray | None = None,
                df: np.ndarray | float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Stopping look (0-based) and reason code of each trial; see :class:`LookPlan`.

    The decision at each look is :func:`~designs.simulation_criteria.look_decisions`; a trial
    stops at its first look whose decision is not CONTINUE (the final look always decides).
    ``estimate`` and ``se`` (trial, look) are needed when ``plan.rules`` has criteria.
    """
    m, looks = z.shape
    if estimate is None or se is None:
        estimate = se = np.full((m, looks), math.nan)
    dfs = np.broadcast_to(np.asarray(df, dtype=float), (m, looks))
    decision = np.empty((m, looks), dtype=np.int64)
    for k in range(looks):
        decision[:, k] = look_decisions(plan, k, estimate[:, k], se[:, k], dfs[:, k], z[:, k],
                                        None if harm_z is None else harm_z[:, k])
    stop = decision != CONTINUE
    look = np.argmax(stop, axis=1)
    chosen = decision[np.arange(m), look]
    reason = np.select([chosen == code for code in _REASON_OF],
                       list(_REASON_OF.values()), default=FINAL)
    return look, reason


def tally(plan: LookPlan, scenario: Scenario, look: np.ndarray, reason: np.ndarray,
          estimate: np.ndarray, enrolled: np.ndarray, time: np.ndarray) -> Tally:
    """Counts and sums of one chunk."""
    out = Tally.empty(plan.looks)
    np.add.at(out.counts, (reason, look), 1)
    rows = np.arange(look.size)
    est = estimate[rows, look]
    err2 = (est - scenario.effect) ** 2
    enr_c, enr_e = enrolled[0, rows, look], enrolled[1, rows, look]
    t = time[rows, look]
    values = {"est": est, "err2": err2, "err4": err2 * err2,
              "est_success": est[reason == EFFICACY], "enrolled_c": enr_c,
              "enrolled_c2": enr_c**2, "enrolled_e": enr_e, "enrolled_e2": enr_e**2,
              "enrolled_t2": (enr_c + enr_e) ** 2, "time": t, "time2": t**2}
    out.sums = {k: float(np.sum(values[k])) for k in SUM_KEYS}
    return out
