"""The rollout demo's decisions: GO at its seed, and an honest NOT INTERPRETABLE at a seed where
a falsification check fails by chance (the simulation has parallel trends; each check has a 5%
false-alarm rate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trials.demo_rollout import ROLLOUT_SEED, write_rollout_study
from trials.demo_rollout.simulate import effect_on_wait
from trials.lock import lock_protocol
from trials.pipeline import run_study


def _run(tmp_path: Path, seed: int):
    protocol, data = write_rollout_study(tmp_path / "study", seed=seed)
    lock_protocol(protocol)
    return run_study(protocol, [data], tmp_path / "run", render=False, bundle=False)


def _true_simple_att() -> float:
    """Callaway-Sant'Anna's simple aggregate under the simulation truth: the average effect
    over every treated clinic-month up to month 36, cohorts of equal size (8 clinics)."""
    effects = [effect_on_wait(__import__("numpy").arange(0, 37 - g, dtype=float))
               for g in (13, 19, 25)]
    cells = sum(len(e) for e in effects)
    return float(sum(e.sum() for e in effects) / cells)


def test_rollout_demo_says_go_and_covers_the_truth(tmp_path: Path) -> None:
    run = _run(tmp_path, ROLLOUT_SEED)
    assert run.decision.outcome == "go"
    assert all(f["passed"] for f in run.results["falsification"])
    est = {e["analysis"]: e for e in run.results["estimates"]}
    truth = _true_simple_att()
    assert truth == pytest.approx(-91.5 / 54)  # hand arithmetic in the module docstring above
    assert est["wait_cs"]["ci_lower"] < truth < est["wait_cs"]["ci_upper"]
    # TWFE is biased towards zero under effects that build up after switch-on
    assert est["wait_twfe"]["estimate"] > est["wait_cs"]["estimate"]
    assert est["recovery_cs"]["ci_lower"] < 0.03 < est["recovery_cs"]["ci_upper"]


def test_a_failed_pre_trend_check_makes_the_result_not_interpretable(tmp_path: Path) -> None:
    run = _run(tmp_path, 20261127)
    failed = [f for f in run.results["falsification"] if not f["passed"]]
    assert [f["id"] for f in failed] == ["recovery_pre_trends"]
    assert failed[0]["p_value"] == pytest.approx(0.032, abs=0.001)
    assert run.decision.outcome == "not_interpretable"
    assert "recovery_pre_trends" in run.decision.rationale
    # the criteria alone would have said GO
    assert all(c.met for c in run.decision.criteria if c.kind == "success")
