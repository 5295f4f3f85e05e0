"""Adverse and serious adverse events by arm; Clopper-Pearson exact intervals.

Reference: tests/reference/exact_binomial.R (R 4.2.2 stats::binom.test), whose
full-precision output is exact_binomial.csv. The arm comparison reuses
analysis.proportions.risk_difference, checked against R in test_reference_proportions.
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.events import adverse_events, clopper_pearson
from analysis.proportions import risk_difference
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

CASES = pd.read_csv(REFERENCE / "exact_binomial.csv").to_dict("records")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['x']}/{c['n']}@{c['level']}")
def test_clopper_pearson_matches_r(case):
    # R 4.2.2 stats::binom.test(x, n, conf.level = level)$conf.int
    lower, upper = clopper_pearson(int(case["x"]), int(case["n"]), float(case["level"]))
    assert lower == pytest.approx(case["lower"], abs=1e-10)
    assert upper == pytest.approx(case["upper"], abs=1e-10)


def test_clopper_pearson_boundaries_are_closed_form():
    # x = 0: upper = 1 - (alpha/2)^(1/n); x = n: lower = (alpha/2)^(1/n) (Clopper & Pearson 1934)
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** 0.1, abs=1e-12))
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** 0.1, abs=1e-12), 1.0)


@pytest.mark.parametrize(("x", "n", "level"), [(3, 2, 0.95), (-1, 5, 0.95), (1, 0, 0.95),
                                                (1.5, 5, 0.95), (1, 5, 1.0)])
def test_clopper_pearson_rejects_bad_input(x, n, level):
    with pytest.raises(ValueError):
        clopper_pearson(x, n, level)


# --------------------------------------------------------------------------- by arm

DENOMS = {"ai_cbt": 20, "usual_care": 25}


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant": ["p1", "p1", "p2", "p3", "p10", "p11", "p11"],
            "arm": ["ai_cbt"] * 4 + ["usual_care"] * 3,
            "serious": [False, False, True, False, False, False, False],
            "term": ["headache", "nausea", "headache", "insomnia", "headache", "headache",
                     "headache"],
        }
    )


@pytest.fixture
def result():
    return adverse_events(_events(), DENOMS, experimental="ai_cbt", control="usual_care")


def test_per_arm_table(result):
    t = result.by_arm.set_index(["event_type", "arm"])
    ai, uc = t.loc[("any", "ai_cbt")], t.loc[("any", "usual_care")]
    assert (ai["n"], ai["participants_with_event"], ai["n_events"]) == (20, 3, 4)
    assert (uc["n"], uc["participants_with_event"], uc["n_events"]) == (25, 2, 3)
    assert ai["proportion"] == pytest.approx(0.15) and uc["proportion"] == pytest.approx(0.08)
    assert ai["events_per_participant"] == pytest.approx(0.2)
    assert uc["events_per_participant"] == pytest.approx(0.12)
    assert (ai["ci_lower"], ai["ci_upper"]) == clopper_pearson(3, 20)
    sae_ai, sae_uc = t.loc[("serious", "ai_cbt")], t.loc[("serious", "usual_care")]
    assert (sae_ai["participants_with_event"], sae_ai["n_events"]) == (1, 1)
    assert (sae_uc["participants_with_event"], sae_uc["n_events"], sae_uc["ci_lower"]) == (0, 0,
                                                                                          0.0)
    assert set(t["population"]) == {"randomised"}


def test_estimates(result):
    ae, sae = result.estimates["ae_any"], result.estimates["sae_any"]
    assert (ae.analysis, ae.estimand, ae.engine, ae.model) == (
        "ae_any", "ae_any", "exact", "risk_difference_newcombe")
    assert ae.estimate == pytest.approx(0.15 - 0.08)
    ref = risk_difference(3, 20, 2, 25, estimand="ae_any", analysis="ae_any",
                          arms=("ai_cbt", "usual_care"))
    assert (ae.ci_lower, ae.ci_upper, ae.p_value) == (ref.ci_lower, ref.ci_upper, ref.p_value)
    assert dict(ae.n_by_arm) == DENOMS and ae.n_analysed == 45
    assert dict(ae.details["events"]) == {"ai_cbt": 3, "usual_care": 2}
    assert ae.details["n_events"] == {"ai_cbt": 4, "usual_care": 3}
    assert sae.estimate == pytest.approx(0.05)
    # 1 SAE among 45: the only other table is as likely or more, so p = P(SAE in ai_cbt) = 20/45
    assert sae.p_value == pytest.approx(20 / 45, rel=1e-12)
    assert sae.details["clopper_pearson"]["usual_care"][0] == 0.0


def test_by_term(result):
    t = result.by_term
    row = t[(t["event_type"] == "any") & (t["term"] == "headache") & (t["arm"] == "usual_care")]
    assert row[["participants_with_event", "n_events"]].iloc[0].tolist() == [2, 3]
    assert t[t["event_type"] == "serious"]["term"].tolist() == ["headache"]


def test_no_events_at_all():
    empty = _events().iloc[:0]
    r = adverse_events(empty, DENOMS, experimental="ai_cbt", control="usual_care",
                       population="exposed")
    assert r.estimates["ae_any"].estimate == 0.0 and r.estimates["ae_any"].p_value == 1.0
    assert r.by_arm["participants_with_event"].tolist() == [0, 0, 0, 0]
    assert r.population == "exposed" and r.by_term.empty


@pytest.mark.parametrize(
    ("edit", "denoms", "message"),
    [
        (lambda d: d.drop(columns="term"), DENOMS, "events lacks column(s) 'term'"),
        (lambda d: d.assign(serious=["yes"] * 7), DENOMS, "row 0: 'serious' must be True/False"),
        (lambda d: d.assign(arm=["ai_cbt"] * 6 + ["waitlist"]), DENOMS,
         "row 6: arm 'waitlist' has no denominator"),
        (lambda d: d.assign(participant=["p1"] * 7), DENOMS, "'p1' has events in more than one"),
        (lambda d: d, {"ai_cbt": 2, "usual_care": 25}, "3 participants with events but a "
                                                         "denominator of 2"),
        (lambda d: d, {"ai_cbt": 0, "usual_care": 25}, "must be a positive integer"),
        (lambda d: d, {"ai_cbt": 20}, "control arm 'usual_care' has no denominator"),
        (lambda d: d.assign(term=[None, *d["term"][1:]]), DENOMS, "row 0: 'term' is missing"),
    ],
    ids=["no-term", "serious-text", "unknown-arm", "two-arms", "too-many", "zero-denominator",
         "no-control", "missing-term"],
)
def test_invalid_inputs(edit, denoms, message):
    with pytest.raises(ValueError) as e:
        adverse_events(edit(_events()), denoms, experimental="ai_cbt", control="usual_care")
    assert message in str(e.value) and "\n" not in str(e.value)
