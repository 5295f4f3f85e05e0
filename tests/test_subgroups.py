"""Subgroup effects and their shrinkage: behaviour, suppression, coverage by simulation.

Agreement with R is in test_reference_subgroups.py; here: small cells are suppressed and
labelled, awkward data (a subgroup that is also a covariate, a level present in one arm only,
missing subgroup values) are handled and said so, the within-level intervals cover the truth
at their nominal rate, and shrinkage pulls level effects towards their mean.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.shrinkage import ShrinkageSpec, shrink
from analysis.subgroups import SubgroupSpec, fit_subgroups
from trials.errors import AnalysisError


def make_frame(seed: int, n: int = 200, effects: dict[str, float] | None = None,
               probs: dict[str, float] | None = None) -> pd.DataFrame:
    effects = effects or {"a": -2.0, "b": -4.0}
    probs = probs or {k: 1 / len(effects) for k in effects}
    rng = np.random.default_rng(seed)
    treated = rng.integers(0, 2, n)
    sub = rng.choice(list(effects), size=n, p=list(probs.values()))
    baseline = rng.normal(18, 4, n)
    effect = np.array([effects[s] for s in sub])
    y = 3 + 0.6 * baseline + effect * treated + rng.normal(0, 3, n)
    return pd.DataFrame({"participant": [f"P{i}" for i in range(n)],
                         "arm": np.where(treated == 1, "ai", "uc"), "treated": treated,
                         "baseline": baseline, "y": y, "sub": sub})


def spec(*subs: str, **kw) -> SubgroupSpec:
    return SubgroupSpec("primary", "subgroups", subs, **kw)


def test_rows_hold_overall_then_each_level_in_order():
    r = fit_subgroups(make_frame(1, effects={"c": 0.0, "a": -1.0, "b": -2.0}), spec("sub"))
    assert [(row.variable, row.level) for row in r.rows] == [
        ("overall", "all"), ("sub", "a"), ("sub", "b"), ("sub", "c")]
    assert r.rows[0].estimate == r.estimate.estimate
    assert [t.variable for t in r.interactions] == ["sub"]
    assert r.interactions[0].df1 == 2


def test_categorical_subgroup_keeps_its_category_order():
    frame = make_frame(2, effects={"low": 0.0, "mid": -1.0, "high": -2.0})
    frame["sub"] = pd.Categorical(frame["sub"], categories=["low", "mid", "high", "unused"])
    r = fit_subgroups(frame, spec("sub"))
    assert [row.level for row in r.rows[1:]] == ["low", "mid", "high"]


def test_small_level_is_suppressed_with_warning_and_label():
    frame = make_frame(3, n=200, effects={"a": -2.0, "b": -3.0, "rare": -1.0},
                       probs={"a": 0.5, "b": 0.46, "rare": 0.04})
    r = fit_subgroups(frame, spec("sub", min_cell=10))
    rare = next(row for row in r.rows if row.level == "rare")
    assert rare.suppressed and rare.estimate is None and rare.se is None
    assert rare.ci_lower is None and rare.ci_upper is None and rare.p_value is None
    assert "too small to say anything" in rare.warning
    assert rare.n_exp is None and rare.n_exp_label == "<10"
    # the rare level still informs the interaction test
    assert r.interactions[0].levels_in_model == ("a", "b", "rare")


def test_suppressed_count_cannot_be_recovered_from_the_other_counts():
    frame = make_frame(4, n=200, effects={"a": -2.0, "b": -3.0, "rare": -1.0},
                       probs={"a": 0.5, "b": 0.46, "rare": 0.04})
    r = fit_subgroups(frame, spec("sub"))
    rows = [row for row in r.rows if row.variable == "sub"]
    for arm in ("n_exp", "n_ctl"):
        hidden = [row for row in rows if getattr(row, arm) is None]
        assert len(hidden) != 1  # one hidden count would follow from the arm total
    for row in rows:
        assert (row.n_exp is None) == (row.n_ctl is None) or 0 in (row.n_exp, row.n_ctl)


def test_level_with_an_empty_arm_is_left_out_of_the_model():
    frame = make_frame(5, n=200)
    extra = pd.DataFrame({"participant": ["X1", "X2", "X3"], "arm": "ai", "treated": 1,
                          "baseline": [15.0, 17.0, 20.0], "y": [10.0, 12.0, 13.0],
                          "sub": "only_ai"})
    r = fit_subgroups(pd.concat([frame, extra], ignore_index=True), spec("sub"))
    row = next(row for row in r.rows if row.level == "only_ai")
    assert row.suppressed and row.n_ctl == 0 and row.n_ctl_label == "0"
    assert r.interactions[0].levels_in_model == ("a", "b")
    assert any("only_ai" in w and "left out" in w for w in r.warnings)


def test_subgroup_that_is_also_a_covariate_is_not_entered_twice():
    frame = make_frame(6)
    r = fit_subgroups(frame, spec("sub", covariates=("baseline", "sub")))
    plain = fit_subgroups(frame, spec("sub"))
    assert [row.estimate for row in r.rows[1:]] == pytest.approx(
        [row.estimate for row in plain.rows[1:]], abs=1e-10)


def test_missing_subgroup_values_are_excluded_and_counted():
    frame = make_frame(7)
    frame.loc[:4, "sub"] = None
    r = fit_subgroups(frame, spec("sub"))
    assert any("5 participant(s)" in w for w in r.warnings)
    levels = r.rows[1:]
    assert sum(row.n_exp + row.n_ctl for row in levels) == len(frame) - 5


def test_input_frame_is_not_mutated_and_result_is_json_safe():
    frame = make_frame(8)
    before = frame.copy()
    r = fit_subgroups(frame, spec("sub"))
    pd.testing.assert_frame_equal(frame, before)
    json.dumps(r.to_dict(), allow_nan=False)
    assert list(r.to_frame().columns)[:4] == ["variable", "level", "n_exp", "n_ctl"]


def test_missing_column_names_it():
    with pytest.raises(AnalysisError, match="gender"):
        fit_subgroups(make_frame(9), spec("gender"))


def test_intervals_cover_and_interaction_test_holds_its_size():
    """60 small trials, 3 levels with a common effect -3: 180 within-level 95% intervals cover
    it at 95% +- about 3 binomial SDs, and the interaction test (null true) rejects at about
    5%."""
    hits = total = rejections = 0
    common = {"a": -3.0, "b": -3.0, "c": -3.0}
    for seed in range(60):
        r = fit_subgroups(make_frame(1000 + seed, n=90, effects=common), spec("sub", min_cell=1))
        for row in r.rows[1:]:
            hits += row.ci_lower <= common[row.level] <= row.ci_upper
            total += 1
        rejections += r.interactions[0].p < 0.05
    assert total == 180
    assert 0.90 <= hits / total <= 0.995
    assert rejections <= 9  # 3 expected; P(X > 9) is about 0.001 under the null


# ------------------------------------------------------------------ shrinkage
ROWS = [
    {"variable": "overall", "level": "all", "estimate": -3.0, "se": 0.5, "suppressed": False},
    {"variable": "age", "level": "18-25", "estimate": -0.5, "se": 1.0, "suppressed": False},
    {"variable": "age", "level": "26-45", "estimate": -3.0, "se": 0.8, "suppressed": False},
    {"variable": "age", "level": "46+", "estimate": -6.0, "se": 1.2, "suppressed": False},
    {"variable": "gender", "level": "female", "estimate": -3.2, "se": 0.7, "suppressed": False},
    {"variable": "gender", "level": "male", "estimate": -2.4, "se": 0.9, "suppressed": False},
    {"variable": "gender", "level": "other", "estimate": None, "se": None, "suppressed": True},
    {"variable": "imd", "level": "1", "estimate": -2.0, "se": 1.0, "suppressed": False},
]


@pytest.fixture(scope="module")
def shrunk():
    return shrink(ROWS, ShrinkageSpec(draws=1000, tune=1000, chains=2, seed=3))


def test_shrinkage_keeps_raw_and_shrunken_side_by_side(shrunk):
    assert [(r.variable, r.level) for r in shrunk.rows] == [
        ("age", "18-25"), ("age", "26-45"), ("age", "46+"), ("gender", "female"),
        ("gender", "male")]
    assert [r.raw_estimate for r in shrunk.rows] == [-0.5, -3.0, -6.0, -3.2, -2.4]
    assert any("imd" in w and "fewer than two" in w for w in shrunk.warnings)


def test_shrunken_effects_move_towards_the_variable_mean(shrunk):
    rows = {r.level: r for r in shrunk.rows}
    assert -3.0 > rows["46+"].shrunk_estimate > rows["46+"].raw_estimate
    assert -3.0 < rows["18-25"].shrunk_estimate < rows["18-25"].raw_estimate
    for r in shrunk.rows:
        assert r.shrunk_ci_lower < r.shrunk_estimate < r.shrunk_ci_upper


def test_tau_posterior_and_gate_are_reported(shrunk):
    names = [v.variable for v in shrunk.variables]
    assert names == ["age", "gender"]
    age = shrunk.variables[0]
    assert 0 < age.tau_ci_lower < age.tau_median < age.tau_ci_upper and not age.tau_fixed
    assert shrunk.reliable, shrunk.warnings
    assert set(shrunk.diagnostics) >= {"max_rhat", "min_ess_bulk", "divergences"}
    assert all(e.engine == "bayesian" and e.reliable for e in shrunk.estimates)
    json.dumps(shrunk.to_dict(), allow_nan=False)


def test_too_few_draws_fail_the_gate():
    result = shrink(ROWS, ShrinkageSpec(draws=30, tune=30, chains=2, seed=1))
    assert not result.reliable
    assert any("diagnostics gate failed" in w for w in result.warnings)
    assert not any(e.reliable for e in result.estimates)


def test_nothing_to_shrink_is_an_error():
    with pytest.raises(AnalysisError, match="two or more"):
        shrink(ROWS[-1:], ShrinkageSpec())
