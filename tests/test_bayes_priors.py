"""Named prior sets and the prior-sensitivity table.

Source: the sceptical and enthusiastic priors of Spiegelhalter, Freedman & Parmar (1994,
*J R Stat Soc A* 157:357-416, section 3.1): a sceptical prior centred at no effect puts 5% of
its mass beyond the clinically important difference, an enthusiastic prior centred at that
difference puts 5% on the harmful side of zero. The tail probabilities are checked with
``scipy.stats.norm``, independently of the code that sets the prior SDs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings
from analysis.bayes_glm import BayesBinarySpec, fit_bayes_binary
from analysis.bayes_priors import PriorSet, prior_sensitivity, standard_prior_sets
from trials.errors import AnalysisError

pytestmark = pytest.mark.reference

REF = Path(__file__).parent / "reference"


def by_name(sets):
    return {p.name: p for p in sets}


@pytest.mark.parametrize("cid", [3.0, -3.0])
def test_sceptical_prior_puts_five_percent_beyond_the_cid_lower_is_better(cid):
    s = by_name(standard_prior_sets(cid, 6.0, direction="lower"))["sceptical"]
    assert s.effect_mean == 0.0
    # scipy.stats.norm: P(effect < -3) under the sceptical prior
    assert stats.norm.cdf(-3.0, s.effect_mean, s.effect_sd) == pytest.approx(0.05, abs=1e-12)


def test_enthusiastic_prior_puts_five_percent_on_the_harmful_side_lower_is_better():
    e = by_name(standard_prior_sets(3.0, 6.0, direction="lower"))["enthusiastic"]
    assert e.effect_mean == -3.0
    # scipy.stats.norm: P(effect > 0) under the enthusiastic prior
    assert stats.norm.sf(0.0, e.effect_mean, e.effect_sd) == pytest.approx(0.05, abs=1e-12)


def test_prior_sets_when_higher_is_better():
    sets = by_name(standard_prior_sets(0.5, 1.0, direction="higher"))
    s, e = sets["sceptical"], sets["enthusiastic"]
    # scipy.stats.norm tail probabilities
    assert stats.norm.sf(0.5, s.effect_mean, s.effect_sd) == pytest.approx(0.05, abs=1e-12)
    assert stats.norm.cdf(0.0, e.effect_mean, e.effect_sd) == pytest.approx(0.05, abs=1e-12)
    assert e.effect_mean == 0.5


def test_weakly_informative_prior_is_centred_at_zero_with_the_outcome_sd():
    sets = standard_prior_sets(3.0, 6.0)
    assert [p.name for p in sets] == ["sceptical", "weakly_informative", "enthusiastic"]
    w = sets[1]
    assert (w.effect_mean, w.effect_sd) == (0.0, 6.0)
    assert all((p.coef_sd, p.intercept_sd, p.sigma_sd) == (60.0, 60.0, 12.0) for p in sets)


@pytest.mark.parametrize("kwargs, match", [
    ({"cid": 0.0, "outcome_sd": 6.0}, "cid"),
    ({"cid": 3.0, "outcome_sd": -1.0}, "outcome_sd"),
    ({"cid": 3.0, "outcome_sd": 6.0, "direction": "up"}, "direction"),
    ({"cid": -3.0, "outcome_sd": 6.0, "direction": "higher"}, "harm"),
])
def test_standard_prior_sets_reject_bad_input(kwargs, match):
    with pytest.raises(AnalysisError, match=match):
        standard_prior_sets(**kwargs)


def test_prior_set_rejects_a_non_positive_sd():
    with pytest.raises(AnalysisError, match="effect_sd"):
        PriorSet("mine", 0.0, 0.0, 1.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def sensitivity():
    # 60 participants per arm of the logistic reference data: few enough that the prior matters
    data = pd.read_csv(REF / "bayes_glm_data.csv").rename(columns={"response": "y"})
    data = data.groupby("arm", group_keys=False).head(60)
    spec = BayesBinarySpec(
        "response", "bayes_logistic",
        PriorSet("placeholder", 0.0, 1.0, 10.0, 10.0, 10.0), ("baseline",),
        summary="odds_ratio",
        sampler=SamplerSettings(draws=300, tune=300, chains=2, seed=5),
        gate=DiagnosticsGate(max_rhat=1.05, min_ess_bulk=100, min_ess_tail=100),
        probabilities=((">", 1.0), (">", 2.0)))
    # log-odds scale: a CID of log OR 1.0, "outcome SD" 2.5 for the weak prior
    sets = standard_prior_sets(1.0, 2.5, direction="higher")
    return prior_sensitivity(fit_bayes_binary, data, spec, sets), sets


def test_sensitivity_orders_posterior_means_sceptical_weak_enthusiastic(sensitivity):
    table, _ = sensitivity
    means = [r.posterior_mean for r in table.rows]
    assert [r.prior for r in table.rows] == ["sceptical", "weakly_informative", "enthusiastic"]
    assert means[0] < means[1] < means[2]  # higher odds ratio is benefit


def test_sensitivity_rows_carry_prior_interval_probabilities_and_gate(sensitivity):
    table, sets = sensitivity
    for row, prior in zip(table.rows, sets, strict=True):
        assert (row.prior_mean, row.prior_sd) == (prior.effect_mean, prior.effect_sd)
        assert row.ci_lower < row.posterior_mean < row.ci_upper and row.ci_level == 0.95
        assert [(c, t) for c, t, _ in row.probabilities] == [(">", 1.0), (">", 2.0)]
        assert row.reliable
    p_benefit = [r.probabilities[0][2] for r in table.rows]
    assert p_benefit[0] <= p_benefit[1] <= p_benefit[2]


def test_sensitivity_table_is_json_safe_and_tabular(sensitivity):
    table, _ = sensitivity
    data = json.loads(json.dumps(table.to_dict()))
    assert data["rows"][0]["probabilities"][0] == {
        "comparator": ">", "threshold": 1.0,
        "probability": table.rows[0].probabilities[0][2]}
    frame = table.to_frame()
    assert list(frame.index) == ["sceptical", "weakly_informative", "enthusiastic"]
    assert "P(> 2)" in frame.columns


def test_sensitivity_rejects_repeated_names():
    p = PriorSet("same", 0.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(AnalysisError, match="repeat"):
        prior_sensitivity(fit_bayes_binary, pd.DataFrame(), None, [p, p])
