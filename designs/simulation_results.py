"""Operating characteristics from simulated trials: frozen records built from merged tallies."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from designs.simulation_criteria import DECISIONS
from designs.simulation_engines import EFFICACY, FINAL, FUTILITY, HARM, Tally
from designs.simulation_spec import LookPlan, Scenario, SimulationSpec, _json_safe

PER_LOOK = ("stop_efficacy", "stop_futility", "stop_harm")
OVERALL = ("success", "stop_early", "stop_early_efficacy", "stop_early_futility",
           "stop_early_harm", "harm", "final_no_success")
EXPECTED = ("expected_completers_per_arm", "expected_completers_total",
            "expected_enrolled_control", "expected_enrolled_experimental",
            "expected_enrolled_total", "expected_duration", "mean_estimate", "bias", "rmse")


@dataclass(frozen=True)
class ScenarioResult:
    """Operating characteristics of one scenario, each with its Monte Carlo standard error.

    Probabilities are over all simulated trials: ``stop_*[k]`` of stopping at look k for that
    reason; ``success`` of stopping for efficacy at any look (power, or type-I error when the
    effect is null); ``stop_early*`` of stopping before the last look (for any or one reason);
    ``harm`` of stopping for harm at any look; ``final_no_success`` of reaching the last look
    without success or harm. Expected sizes count completers (the analysed) and participants
    randomised when the trial stopped; ``expected_duration`` is the calendar time of the
    stopping look (None without an accrual rate). ``mean_estimate``, ``bias`` and ``rmse`` are
    of the naive estimate (experimental minus control, outcome units) at the stopping look;
    ``mean_estimate_success`` averages it over successful trials (None when there are none).
    Every ``*_se`` field is the Monte Carlo SE of the field it names.

    The decision engine's outcomes: ``decisions[d][k]`` is the probability that look k decides
    ``d`` (one of :data:`~designs.simulation_criteria.DECISIONS`: ``go`` and ``no_go`` at the
    final look only, ``stop_efficacy`` and ``stop_futility`` at interim looks only,
    ``stop_for_harm`` at any look); ``go`` and ``no_go`` are P(GO) and P(NO-GO). In terms of
    the fields above, ``stop_efficacy`` is STOP-EFFICACY at interim looks and GO at the final
    one, ``success`` = P(GO) + P(STOP-EFFICACY), ``final_no_success`` = P(NO-GO) and ``harm``
    = P(STOP-FOR-HARM). ``information_fractions``, ``efficacy_z``, ``futility_z`` and
    ``harm_z`` are the boundaries applied at this scenario's looks (None: none).
    """

    scenario: Scenario
    n_trials: int
    completers_per_look: tuple[int, ...]
    stop_efficacy: tuple[float, ...]
    stop_efficacy_se: tuple[float, ...]
    stop_futility: tuple[float, ...]
    stop_futility_se: tuple[float, ...]
    stop_harm: tuple[float, ...]
    stop_harm_se: tuple[float, ...]
    success: float
    success_se: float
    stop_early: float
    stop_early_se: float
    stop_early_efficacy: float
    stop_early_efficacy_se: float
    stop_early_futility: float
    stop_early_futility_se: float
    stop_early_harm: float
    stop_early_harm_se: float
    harm: float
    harm_se: float
    final_no_success: float
    final_no_success_se: float
    expected_completers_per_arm: float
    expected_completers_per_arm_se: float
    expected_completers_total: float
    expected_completers_total_se: float
    expected_enrolled_control: float
    expected_enrolled_control_se: float
    expected_enrolled_experimental: float
    expected_enrolled_experimental_se: float
    expected_enrolled_total: float
    expected_enrolled_total_se: float
    expected_duration: float | None
    expected_duration_se: float | None
    mean_estimate: float
    mean_estimate_se: float
    bias: float
    bias_se: float
    rmse: float
    rmse_se: float
    mean_estimate_success: float | None
    go: float
    go_se: float
    no_go: float
    no_go_se: float
    decisions: dict[str, tuple[float, ...]]
    decisions_se: dict[str, tuple[float, ...]]
    information_fractions: tuple[float, ...] | None
    efficacy_z: tuple[float, ...]
    futility_z: tuple[float, ...]
    harm_z: tuple[float, ...] | None

    @classmethod
    def from_tally(cls, scenario: Scenario, plan: LookPlan, tally: Tally) -> ScenarioResult:
        """Probabilities, expectations and their Monte Carlo SEs from a merged tally.

        Notes
        -----
        A proportion p of N trials has SE :math:`\\sqrt{p(1-p)/N}`; a mean has SE
        :math:`\\sqrt{\\widehat{Var}/N}` with the plug-in variance; the RMSE's SE is the delta
        method :math:`SE(\\widehat{MSE}) / (2\\,RMSE)`.
        """
        counts, s, n = tally.counts, tally.sums, tally.n
        p = counts / n

        def prop(k: float) -> tuple[float, float]:
            k = float(k) / n
            return k, math.sqrt(max(k * (1.0 - k), 0.0) / n)

        def mean(total: float, squares: float) -> tuple[float, float]:
            mu = total / n
            return mu, math.sqrt(max(squares / n - mu * mu, 0.0) / n)

        def per_look(row: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
            return (tuple(float(v) for v in p[row]),
                    tuple(float(math.sqrt(v * (1.0 - v) / n)) for v in p[row]))

        sizes = np.asarray(plan.completers, dtype=float)
        stop_at = p.sum(axis=0)
        n_arm = float(stop_at @ sizes)
        n_arm_se = math.sqrt(max(float(stop_at @ sizes**2) - n_arm**2, 0.0) / n)
        early = counts[:, :-1]
        eff, fut, harm = per_look(EFFICACY), per_look(FUTILITY), per_look(HARM)
        mse = s["err2"] / n
        rmse = math.sqrt(mse)
        mse_se = math.sqrt(max(s["err4"] / n - mse * mse, 0.0) / n)
        mean_est = s["est"] / n
        bias = mean_est - scenario.effect
        bias_se = math.sqrt(max(mse - bias * bias, 0.0) / n)
        wins = int(counts[EFFICACY].sum())
        enr_c, enr_e = mean(s["enrolled_c"], s["enrolled_c2"]), mean(s["enrolled_e"],
                                                                   s["enrolled_e2"])
        enr_t = mean(s["enrolled_c"] + s["enrolled_e"], s["enrolled_t2"])
        duration = mean(s["time"], s["time2"]) if math.isfinite(s["time"]) else (None, None)
        values = {
            "stop_efficacy": eff[0], "stop_efficacy_se": eff[1],
            "stop_futility": fut[0], "stop_futility_se": fut[1],
            "stop_harm": harm[0], "stop_harm_se": harm[1],
            "expected_completers_per_arm": n_arm, "expected_completers_per_arm_se": n_arm_se,
            "expected_completers_total": 2 * n_arm, "expected_completers_total_se": 2 * n_arm_se,
            "expected_enrolled_control": enr_c[0], "expected_enrolled_control_se": enr_c[1],
            "expected_enrolled_experimental": enr_e[0],
            "expected_enrolled_experimental_se": enr_e[1],
            "expected_enrolled_total": enr_t[0], "expected_enrolled_total_se": enr_t[1],
            "expected_duration": duration[0], "expected_duration_se": duration[1],
            "mean_estimate": mean_est, "mean_estimate_se": bias_se, "bias": bias,
            "bias_se": bias_se, "rmse": rmse,
            "rmse_se": mse_se / (2.0 * rmse) if rmse > 0 else 0.0,
            "mean_estimate_success": s["est_success"] / wins if wins else None,
        }
        last = plan.looks - 1
        interim = np.arange(plan.looks) < last
        by_decision = {"go": np.where(interim, 0.0, p[EFFICACY]),
                       "no_go": np.where(interim, 0.0, p[FINAL]),
                       "stop_efficacy": np.where(interim, p[EFFICACY], 0.0),
                       "stop_futility": np.where(interim, p[FUTILITY], 0.0),
                       "stop_for_harm": p[HARM]}
        values["decisions"] = {d: tuple(float(v) for v in by_decision[d]) for d in DECISIONS}
        values["decisions_se"] = {d: tuple(float(math.sqrt(v * (1.0 - v) / n))
                                           for v in by_decision[d]) for d in DECISIONS}
        values.update(information_fractions=plan.information_fractions,
                      efficacy_z=plan.efficacy_z, futility_z=plan.futility_z,
                      harm_z=plan.outcome_harm_z)
        for name, k in (("success", counts[EFFICACY].sum()), ("stop_early", early.sum()),
                        ("stop_early_efficacy", early[EFFICACY].sum()),
                        ("stop_early_futility", early[FUTILITY].sum()),
                        ("stop_early_harm", early[HARM].sum()), ("harm", counts[HARM].sum()),
                        ("final_no_success", counts[FINAL].sum()),
                        ("go", counts[EFFICACY, last]), ("no_go", counts[FINAL, last])):
            values[name], values[f"{name}_se"] = prop(k)
        return cls(scenario=scenario, n_trials=n, completers_per_look=plan.completers, **values)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["scenario"] = self.scenario.to_dict()
        out["decisions"] = {d: list(v) for d, v in self.decisions.items()}
        out["decisions_se"] = {d: list(v) for d, v in self.decisions_se.items()}
        return _json_safe(out)

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows: ``quantity``, ``look`` (NA for the whole trial), ``value``, ``mc_se``."""
        rows: list[dict[str, Any]] = []
        for name in PER_LOOK:
            for k, (v, se) in enumerate(zip(getattr(self, name), getattr(self, f"{name}_se"),
                                            strict=True)):
                rows.append({"quantity": name, "look": k + 1, "value": v, "mc_se": se})
        for d in DECISIONS:
            for k, (v, se) in enumerate(zip(self.decisions[d], self.decisions_se[d],
                                            strict=True)):
                rows.append({"quantity": f"decision_{d}", "look": k + 1, "value": v,
                             "mc_se": se})
        for name in OVERALL + ("go", "no_go") + EXPECTED:
            rows.append({"quantity": name, "look": None, "value": getattr(self, name),
                         "mc_se": getattr(self, f"{name}_se")})
        rows.append({"quantity": "mean_estimate_success", "look": None,
                     "value": self.mean_estimate_success, "mc_se": None})
        frame = pd.DataFrame(rows)
        frame.insert(0, "effect", self.scenario.effect)
        frame.insert(0, "scenario", self.scenario.name)
        frame["look"] = frame["look"].astype("Int64")
        frame[["value", "mc_se"]] = frame[["value", "mc_se"]].astype(float)
        return frame


@dataclass(frozen=True)
class SimulationResults:
    """Operating characteristics of a design under each scenario, and how they were made.

    ``to_dict()`` is deterministic for the same inputs and seed (it holds no timing and no
    worker count), so it can be compared byte for byte across runs and clusters.
    """

    spec: SimulationSpec
    scenarios: tuple[ScenarioResult, ...]
    engine: str
    fitter: str | None
    n_trials: int
    seed: int
    chunk_size: int

    def __getitem__(self, name: str) -> ScenarioResult:
        for result in self.scenarios:
            if result.scenario.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "fitter": self.fitter, "n_trials": self.n_trials,
                "seed": self.seed, "chunk_size": self.chunk_size, "spec": self.spec.to_dict(),
                "scenarios": [r.to_dict() for r in self.scenarios]}

    def to_frame(self) -> pd.DataFrame:
        """All scenarios' tidy rows (see :meth:`ScenarioResult.to_frame`)."""
        return pd.concat([r.to_frame() for r in self.scenarios], ignore_index=True)

    def summary(self) -> pd.DataFrame:
        """One row per scenario: the headline numbers (no per-look detail)."""
        cols = ("success", "success_se", "stop_early_efficacy", "stop_early_futility", "harm",
                "expected_completers_total", "expected_enrolled_total", "bias", "rmse", "go",
                "go_se", "no_go")
        return pd.DataFrame([{"scenario": r.scenario.name, "effect": r.scenario.effect,
                              **{c: getattr(r, c) for c in cols}} for r in self.scenarios])
