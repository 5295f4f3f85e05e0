"""Multiplicity adjustment against R 4.2.2 ``stats::p.adjust`` and an R hand computation.

Source: tests/reference/multiplicity_padjust.R (raw output multiplicity_padjust.out, values in
multiplicity_padjust.csv): ``p.adjust(p, "holm")``, ``"hochberg"`` and ``"bonferroni"`` for eight
families of p-values (with ties, capping at 1, a single hypothesis and ten random p-values); the
fixed-sequence adjusted p-values are computed by hand in R as ``cummax(p)`` in the testing order
(Westfall & Krishen 2001, *J Stat Plan Inference* 99:25-40), testing stopping at the first
hypothesis with p > alpha. No published worked example is reproduced for fixed sequence.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.multiplicity import MultiplicitySpec, adjust
from tests.conftest import REFERENCE
from trials.errors import AnalysisError

pytestmark = pytest.mark.reference

TOL = 1e-12  # the bar: equal to R p.adjust to 1e-12
REF = pd.read_csv(REFERENCE / "multiplicity_padjust.csv")
GROUPS = sorted({(f, m) for f, m in zip(REF["family"], REF["method"], strict=True)})


@pytest.fixture(scope="module", params=GROUPS, ids=lambda g: f"{g[0]}-{g[1]}")
def case(request):
    family, method = request.param
    ref = REF[(REF["family"] == family) & (REF["method"] == method)].sort_values("step")
    p = dict(zip(ref["hypothesis"], ref["raw_p"], strict=True))
    spec = MultiplicitySpec(method, alpha=float(ref["alpha"].iloc[0]),
                            order=tuple(ref["hypothesis"]))
    return adjust(p, spec), ref


def test_adjusted_p_values(case):
    res, ref = case
    for h, expected in zip(ref["hypothesis"], ref["adjusted_p"], strict=True):
        assert res.row(h).adjusted_p == pytest.approx(expected, abs=TOL)  # R p.adjust / cummax


def test_rejections(case):
    res, ref = case
    assert [res.row(h).rejected for h in ref["hypothesis"]] == list(ref["rejected"])  # R adj<=a


def test_tested_flags(case):
    res, ref = case
    assert [res.row(h).tested for h in ref["hypothesis"]] == list(ref["tested"])  # R by hand


def test_fixed_sequence_stop_step():
    ref = REF[(REF["family"] == "ties") & (REF["method"] == "fixed_sequence")]
    res = adjust(dict(zip(ref["hypothesis"], ref["raw_p"], strict=True)),
                 MultiplicitySpec("fixed_sequence", order=tuple(ref["hypothesis"])))
    assert res.stopped_at == "H5" and res.stopped_step == 5  # multiplicity_padjust.out
    assert [r.step for r in res.rows] == [1, 2, 3, 4, 5]


def test_fixed_sequence_order_matters():
    p = {"primary": 0.2, "secondary": 0.001}
    first = adjust(p, MultiplicitySpec("fixed_sequence", order=("primary", "secondary")))
    second = adjust(p, MultiplicitySpec("fixed_sequence", order=("secondary", "primary")))
    assert first.rejected == {"primary": False, "secondary": False}
    assert first.stopped_at == "primary" and not first.row("secondary").tested
    assert second.rejected == {"secondary": True, "primary": False}


def test_rows_follow_mapping_order_without_order():
    res = adjust({"b": 0.01, "a": 0.02}, MultiplicitySpec("holm"))
    assert [r.hypothesis for r in res.rows] == ["b", "a"]
    assert res.stopped_at is None and res.rows[0].step is None
    json.dumps(res.to_dict(), allow_nan=False)


@pytest.mark.parametrize("p, spec, message", [
    ({"a": 0.1}, MultiplicitySpec("sidak"), "method"),
    ({"a": 0.1}, MultiplicitySpec("holm", alpha=1.5), "alpha"),
    ({}, MultiplicitySpec("holm"), "no p-values"),
    ({"a": 1.2}, MultiplicitySpec("holm"), "'a'"),
    ({"a": float("nan")}, MultiplicitySpec("holm"), "'a'"),
    ({"a": 0.1, "b": 0.2}, MultiplicitySpec("fixed_sequence"), "order"),
    ({"a": 0.1, "b": 0.2}, MultiplicitySpec("holm", order=("a", "c")), "order"),
])
def test_bad_input_is_rejected(p, spec, message):
    with pytest.raises(AnalysisError, match=message):
        adjust(p, spec)
