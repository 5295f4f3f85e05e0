"""Risk difference with Newcombe's hybrid score interval and Fisher's exact p.

Sources: Newcombe RG (1998) Stat Med 17:873-890, Table II (method 10), and
tests/reference/newcombe_rd.R (R 4.2.2, Wilson limits from prop.test, fisher.test), whose
full-precision output is newcombe_rd.csv.
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.proportions import risk_difference, wilson_interval
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

CASES = pd.read_csv(REFERENCE / "newcombe_rd.csv").to_dict("records")


def _rd(c):
    return risk_difference(int(c["x1"]), int(c["n1"]), int(c["x2"]), int(c["n2"]),
                           level=float(c["level"]), estimand="e", analysis="a")


def _case_id(c):
    return f"{c['x1']}/{c['n1']}-{c['x2']}/{c['n2']}@{c['level']}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_newcombe_interval_matches_r(case):
    est = _rd(case)
    assert est.estimate == pytest.approx(case["diff"], abs=1e-12)
    assert est.ci_lower == pytest.approx(case["lower"], abs=1e-10)
    assert est.ci_upper == pytest.approx(case["upper"], abs=1e-10)


@pytest.mark.parametrize("case", [c for c in CASES if c["level"] == 0.95],
                         ids=lambda c: f"{c['x1']}/{c['n1']}-{c['x2']}/{c['n2']}")
def test_fisher_p_matches_r(case):
    assert _rd(case).p_value == pytest.approx(case["fisher_p"], rel=1e-9)


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "lower", "upper"),
    [(56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090)],
)
def test_newcombe_published_table(x1, n1, x0, n0, lower, upper):
    # Newcombe (1998) Table II, method 10, to the 4 decimals printed there.
    est = risk_difference(x1, n1, x0, n0, estimand="e", analysis="a")
    assert round(est.ci_lower, 4) == lower
    assert round(est.ci_upper, 4) == upper


def test_wilson_interval_bounds_for_zero_events():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0
    assert 0 < hi < 1
