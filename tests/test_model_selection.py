"""Every model family a protocol can select runs end to end: protocol -> intake -> scoring ->
``trials.stages.fit_analyses``, on small simulated data (the demo's simulator, 96 participants).

These are integration tests, not reference tests: each family's numbers are checked against R in
its own ``test_reference_*`` module. Here the checks are that the protocol's choice reaches the
model (model name, covariance, df, family, summary), that the Estimate is finite and coherent,
and that ``Fits.extras`` carries what the reports read. Bad selections fail when the protocol is
read, in one line naming the field.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trials.data import read_data
from trials.demo.simulate import simulate_demo
from trials.errors import AnalysisError, ProtocolError
from trials.protocol import parse_protocol
from trials.stages import Fits, fit_analyses, score_outcomes

COVARIANCES = ("unstructured", "compound_symmetry", "heterogeneous_compound_symmetry", "ar1",
               "heterogeneous_ar1", "toeplitz", "heterogeneous_toeplitz")
# Few draws: these tests check the wiring, not the posterior (the gate is expected to fail).
SAMPLER = {"draws": 60, "tune": 60, "chains": 2, "seed": 11}


def base_protocol(**analysis: Any) -> dict[str, Any]:
    """A minimal two-arm PHQ-9 protocol with one analysis (``analysis`` overrides its fields)."""
    a = {"id": "a", "estimand": "primary", "engine": "frequentist", "model": "ancova",
         **analysis}
    return copy.deepcopy({
        "id": "SELECT", "title": "Model selection", "version": 1,
        "design": {"type": "parallel", "planned_size": 96,
                   "arms": [{"id": "usual_care", "label": "Usual care", "control": True},
                            {"id": "ai_cbt", "label": "Companion"}]},
        "data": {"participant": "participant_id", "arm": "arm", "visit": "week",
                 "participant_columns": ["practice", "severity_stratum", "days", "sessions",
                                         "period"]},
        "outcomes": [{"id": "phq9", "instrument": "PHQ-9", "visits": [0, 4, 8, 12],
                      "baseline_visit": 0}],
        "estimands": [{"id": "primary", "label": "PHQ-9 at week 12", "population": "all",
                       "variable": {"outcome": "phq9", "visit": 12, "measure": "score"},
                       "treatment": {"arm": "ai_cbt", "comparator": "usual_care"},
                       "clinically_important_difference": -2.0}],
        "analyses": [a],
        "criteria": [{"id": "benefit", "kind": "success", "analysis": "a",
                      "statistic": "ci_upper", "comparator": "<", "threshold": 0}],
    })


def responder(d: dict[str, Any], summary: str) -> dict[str, Any]:
    d["responders"] = [{"id": "resp", "kind": "response", "outcome": "phq9", "visit": 12}]
    d["estimands"][0].update(
        variable={"outcome": "phq9", "visit": 12, "measure": "responder", "responder": "resp"},
        summary=summary, clinically_important_difference=0.1)
    return d


def counts(d: dict[str, Any]) -> dict[str, Any]:
    d["estimands"][0].update(
        variable={"outcome": "phq9", "visit": 12, "measure": "count", "column": "sessions"},
        summary="rate_ratio", clinically_important_difference=0.2)
    return d


def clustered(d: dict[str, Any], design: str = "cluster") -> dict[str, Any]:
    d["design"]["type"] = design
    d["data"]["cluster"] = "practice"
    if design == "stepped_wedge":
        d["data"]["period"] = "period"
    return d


def bayesian(d: dict[str, Any], prior: str = "weakly_informative",
             posterior: bool = True) -> dict[str, Any]:
    d["analyses"][0].update(engine="bayesian", prior=prior, sampler=SAMPLER)
    d["priors"] = {"outcome_sd": 5.5, "sensitivity": ["sceptical", "enthusiastic"]}
    if posterior:  # ask for a posterior probability, so its wiring is checked too
        d["criteria"] = [{"id": "benefit", "kind": "success", "analysis": "a",
                          "statistic": "posterior_probability", "comparator": "<",
                          "threshold": 0, "probability": 0.9}]
    return d


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo's simulated PHQ-9 visits (96 participants) with participant-level ``days``
    (exposure), ``sessions`` (a count) and ``period``; in three layouts: individually
    randomised, randomised by practice, and a stepped wedge of practices over four periods."""
    folder = tmp_path_factory.mktemp("selection")
    rng = np.random.default_rng(20261127)
    visits = simulate_demo(n=96, seed=3)
    visits = visits[[c for c in visits.columns if not c.startswith(("gad7", "csq8", "sus"))]]
    ids = visits["participant_id"].unique()
    people = pd.DataFrame({"participant_id": ids, "days": rng.integers(60, 120, len(ids)),
                           "period": rng.integers(1, 5, len(ids))})
    people["sessions"] = rng.poisson(people["days"] / 10)
    parallel = visits.merge(people, on="participant_id")
    practices = sorted(parallel["practice"].unique())
    cluster = parallel.assign(arm=np.where(parallel["practice"].isin(practices[::2]),
                                           "ai_cbt", "usual_care"))
    crossover = {p: 2 + i % 3 for i, p in enumerate(practices)}  # periods 2, 3 or 4
    wedge = parallel.assign(arm=np.where(
        parallel["period"] >= parallel["practice"].map(crossover), "ai_cbt", "usual_care"))
    out = {}
    for name, frame in (("parallel", parallel), ("cluster", cluster), ("wedge", wedge)):
        out[name] = folder / f"{name}.csv"
        frame.to_csv(out[name], index=False)
    return out


def fit(d: dict[str, Any], path: Path) -> Fits:
    protocol = parse_protocol(d, "selection.yaml")
    scored = score_outcomes(protocol, read_data([path], protocol).frame)
    return fit_analyses(protocol, scored)


def check_estimate(fits: Fits, model: str, engine: str = "frequentist") -> Any:
    est = fits.estimates["a"]
    assert (est.analysis, est.estimand, est.engine, est.model) == ("a", "primary", engine, model)
    for value in (est.estimate, est.std_error, est.ci_lower, est.ci_upper):
        assert math.isfinite(value)
    assert est.std_error > 0 and est.ci_lower < est.estimate < est.ci_upper
    assert est.n_analysed > 0 and set(est.n_by_arm) == {"ai_cbt", "usual_care"}
    if engine == "frequentist":
        assert est.p_value is not None and 0 <= est.p_value <= 1
    else:
        assert "max_rhat" in est.diagnostics and fits.posteriors["a"] is not None
    return est


# --------------------------------------------------------------------------- frequentist


@pytest.mark.parametrize("df", ["residual", "satterthwaite"])
@pytest.mark.parametrize("covariance", COVARIANCES)
def test_mmrm_each_covariance_and_df(data_files, covariance, df):
    d = base_protocol(model="mmrm", options={"covariance": covariance, "df": df},
                      covariates=["baseline", "severity_stratum"])
    fits = fit(d, data_files["parallel"])
    est = check_estimate(fits, "mmrm")
    assert est.details["covariance_structure"] == covariance
    assert est.details["df_method"] == df and est.details["visits"] == [4, 8, 12]
    assert est.diagnostics["converged"] is True
    assert {"lsmeans", "contrasts"} <= set(fits.extras["a"])


def test_mmrm_df_changes_the_interval_not_the_estimate(data_files):
    by_df = {df: fit(base_protocol(model="mmrm", options={"covariance": "unstructured",
                                                          "df": df}),
                     data_files["parallel"]).estimates["a"] for df in ("residual",
                                                                       "satterthwaite")}
    assert by_df["residual"].estimate == pytest.approx(by_df["satterthwaite"].estimate,
                                                       abs=1e-10)
    assert by_df["residual"].ci_lower != pytest.approx(by_df["satterthwaite"].ci_lower,
                                                       abs=1e-6)


def test_mmrm_visits_option_reaches_the_model(data_files):
    d = base_protocol(model="mmrm", options={"visits": [8, 12], "covariance": "ar1"})
    est = fit(d, data_files["parallel"]).estimates["a"]
    assert est.details["visits"] == [8, 12]


def test_ancova_mi_with_tipping_point(data_files):
    d = base_protocol(model="ancova_mi", options={
        "m": 5, "iterations": 3, "auxiliary_visits": [4, 8], "seed": 2,
        "tipping_point": {"deltas": [0, 1, 2, 3], "arm": "experimental"}})
    fits = fit(d, data_files["parallel"])
    est = fits.estimates["a"]
    assert est.engine == "frequentist" and math.isfinite(est.estimate)
    extra = fits.extras["a"]
    assert {"pooled", "per_imputation", "tipping_point"} <= set(extra)
    assert len(extra["per_imputation"]) == 5
    tp = extra["tipping_point"]
    assert [r["delta"] for r in tp["rows"]] == [0.0, 1.0, 2.0, 3.0] and "tipping_delta" in tp
    # delta 0 is the MAR analysis itself
    assert tp["rows"][0]["estimate"] == pytest.approx(est.estimate, abs=1e-10)


@pytest.mark.parametrize("summary", ["risk_difference", "risk_ratio", "odds_ratio"])
def test_logistic_each_summary(data_files, summary):
    fits = fit(responder(base_protocol(model="logistic"), summary), data_files["parallel"])
    est = check_estimate(fits, f"logistic_glm_{summary}")
    if summary != "risk_difference":
        assert est.estimate > 0  # a ratio
    assert set(fits.extras["a"]) == {"summaries"}


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_count_with_exposure(data_files, family):
    d = counts(base_protocol(model="count", options={"family": family, "exposure": "days"}))
    fits = fit(d, data_files["parallel"])
    est = check_estimate(fits, f"{family}_glm")
    assert est.estimate > 0  # a rate ratio
    assert "coefficients" in fits.extras["a"]


def test_count_exposure_enters_as_offset(data_files):
    """Doubling every participant's exposure leaves the rate ratio unchanged: the offset is a
    per-participant log(days), and a constant shift only moves the intercept."""
    def rate_ratio(days_factor: int) -> float:
        path = data_files["parallel"]
        frame = pd.read_csv(path)
        frame["days"] = frame["days"] * days_factor
        changed = path.with_name(f"days_x{days_factor}.csv")
        frame.to_csv(changed, index=False)
        d = counts(base_protocol(model="count", options={"family": "poisson",
                                                         "exposure": "days"}))
        return fit(d, changed).estimates["a"].estimate

    assert rate_ratio(2) == pytest.approx(rate_ratio(1), rel=1e-8)


@pytest.mark.parametrize(("value", "message"), [
    ("0", "a: column 'days' (exposure) must be > 0, participant 'CMP-0001' has 0"),
    ("abc", "a: column 'days': participant 'CMP-0001' has 'abc', not a number"),
])
def test_bad_exposure_is_one_line_naming_the_column(data_files, value, message):
    frame = pd.read_csv(data_files["parallel"], dtype=str)
    frame.loc[frame["participant_id"] == "CMP-0001", "days"] = value
    path = data_files["parallel"].with_name(f"days_{value}.csv")
    frame.to_csv(path, index=False)
    d = counts(base_protocol(model="count", options={"exposure": "days"}))
    with pytest.raises(AnalysisError) as info:
        fit(d, path)
    assert str(info.value) == message


@pytest.mark.parametrize("correlation", ["exchangeable", "ar1", "unstructured",
                                         "independence"])
def test_gee_parallel(data_files, correlation):
    d = base_protocol(model="gee", options={"correlation": correlation})
    fits = fit(d, data_files["parallel"])
    est = check_estimate(fits, f"gee_gaussian_{correlation}")
    assert {"coefficients", "std_errors", "working_correlation"} <= set(fits.extras["a"])
    # Every post-baseline visit is used, with visit and treatment-by-visit terms for the
    # visits other than the estimand's, so `treated` is the week-12 contrast.
    for term in ("visit_4", "treated_visit_4", "visit_8", "treated_visit_8"):
        assert f"Q('{term}')" in est.details["formula"]


def test_gee_estimates_the_estimands_visit_not_an_average(data_files):
    """The repeated-measures GEE targets the week-12 contrast, as the MMRM does; one treatment
    coefficient over weeks 4-12 (the earlier wiring) was about a third of an SE away."""
    mmrm = fit(base_protocol(model="mmrm"), data_files["parallel"]).estimates["a"]
    gee = fit(base_protocol(model="gee"), data_files["parallel"]).estimates["a"]
    assert abs(gee.estimate - mmrm.estimate) < 0.1 * mmrm.std_error


def test_gee_one_visit_independence_is_the_ancova_point_estimate(data_files):
    """GEE with independence working correlation and one row per participant solves the OLS
    normal equations: the same point estimate as the ANCOVA (the SE is the sandwich one)."""
    ancova = fit(base_protocol(), data_files["parallel"]).estimates["a"]
    d = base_protocol(model="gee", options={"correlation": "independence", "visits": [12]})
    gee = fit(d, data_files["parallel"]).estimates["a"]
    assert gee.estimate == pytest.approx(ancova.estimate, abs=1e-8)
    assert "visit_" not in gee.details["formula"]


@pytest.mark.parametrize(("method", "model"), [("mixed", "lmm_random_cluster_intercept"),
                                               ("gee", "gee_gaussian_exchangeable")])
def test_cluster_design(data_files, method, model):
    d = clustered(base_protocol(model="cluster", options={"method": method}))
    fits = fit(d, data_files["cluster"])
    check_estimate(fits, model)
    assert "icc" in fits.extras["a"]


def test_gee_in_a_cluster_design_groups_by_cluster(data_files):
    d = clustered(base_protocol(model="gee"))
    fits = fit(d, data_files["cluster"])
    est = check_estimate(fits, "gee_gaussian_exchangeable")
    assert est.details["groups"] == "cluster"  # the practices, not the participants
    assert fits.extras["a"]["working_correlation"]["structure"] == "exchangeable"


def test_stepped_wedge_design(data_files):
    d = clustered(base_protocol(model="stepped_wedge"), "stepped_wedge")
    fits = fit(d, data_files["wedge"])
    check_estimate(fits, "stepped_wedge_hussey_hughes")
    assert {"icc", "period_effects"} <= set(fits.extras["a"])


# --------------------------------------------------------------------------- bayesian


def test_bayesian_logistic(data_files):
    d = bayesian(responder(base_protocol(model="logistic"), "risk_difference"))
    est = check_estimate(fit(d, data_files["parallel"]), "logistic", "bayesian")
    assert est.probability("<", 0.0) is not None


def test_bayesian_count_with_prior_sensitivity(data_files):
    d = bayesian(counts(base_protocol(model="count", options={"exposure": "days"})))
    d["analyses"][0]["prior_sensitivity"] = True
    d["criteria"][0].update(comparator=">", threshold=1.0)
    fits = fit(d, data_files["parallel"])
    est = check_estimate(fits, "poisson", "bayesian")
    assert est.probability(">", 1.0) is not None
    rows = fits.extras["a"]["prior_sensitivity"]["rows"]
    assert [r["prior"] for r in rows] == ["sceptical", "enthusiastic"]  # priors.sensitivity
    assert all(r["probabilities"][0]["threshold"] == 1.0 for r in rows)


def test_bayesian_cluster(data_files):
    d = bayesian(clustered(base_protocol(model="cluster")))
    check_estimate(fit(d, data_files["cluster"]), "cluster_random_intercept", "bayesian")


def test_bayesian_ancova_named_prior_set_with_sensitivity(data_files):
    d = bayesian(base_protocol(model="ancova"), prior="sceptical")
    d["analyses"][0]["prior_sensitivity"] = True
    fits = fit(d, data_files["parallel"])
    est = check_estimate(fits, "ancova", "bayesian")
    assert est.probability("<", 0.0) is not None
    rows = fits.extras["a"]["prior_sensitivity"]["rows"]
    assert [r["prior"] for r in rows] == ["sceptical", "enthusiastic"]
    # The enthusiastic prior is centred on the CID (-2), the sceptical one on no effect.
    assert [r["prior_mean"] for r in rows] == [0.0, -2.0]


@pytest.mark.slow
def test_bayesian_mmrm(data_files):
    d = bayesian(base_protocol(model="mmrm"), prior="sceptical")
    fits = fit(d, data_files["parallel"])
    check_estimate(fits, "mmrm", "bayesian")


# --------------------------------------------------------------------------- bad selections


def _error(d: dict[str, Any]) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(d, "p.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def _with(edit: Any, **analysis: Any) -> dict[str, Any]:
    d = base_protocol(**analysis)
    edit(d)
    return d


def _secondary_outside_family(d: dict[str, Any]) -> None:
    d["analyses"] += [{"id": "b", "estimand": "primary", "engine": "frequentist"},
                      {"id": "c", "estimand": "primary", "engine": "frequentist"}]
    d["multiplicity"] = {"method": "holm", "hypotheses": ["b"]}
    d["criteria"].append({"id": "claim", "kind": "secondary", "analysis": "c",
                          "statistic": "p_value", "comparator": "<", "threshold": 0.05})


def _nothing(d: dict[str, Any]) -> None:
    pass


BAD = {
    "unknown covariance": (
        base_protocol(model="mmrm", options={"covariance": "banded"}),
        "p.yaml: analyses.0.options.covariance: "),
    "kenward-roger mmrm": (
        base_protocol(model="mmrm", options={"df": "kenward_roger"}),
        "p.yaml: analyses.0.options.df: kenward_roger is not implemented"),
    "unknown option": (
        base_protocol(model="count", options={"link": "log"}),
        "p.yaml: analyses.0.options.link: "),
    "model/measure mismatch": (
        base_protocol(model="logistic"),
        "p.yaml: analyses.0.model: logistic analyses measure responder"),
    "summary mismatch": (
        responder(base_protocol(model="logistic"), "rate_ratio"),
        "p.yaml: analyses.0.model: logistic gives"),
    "bayesian model without a bayesian engine": (
        bayesian(base_protocol(model="gee")),
        "p.yaml: analyses.0: model gee has no bayesian engine"),
    "bayesian mmrm with a structured covariance": (
        bayesian(base_protocol(model="mmrm", options={"covariance": "ar1"})),
        "p.yaml: analyses.0.options.covariance: the bayesian mmrm fits an unstructured"),
    "named prior without priors": (
        {**bayesian(base_protocol()), "priors": None},
        "p.yaml: analyses.0.prior: prior sets need a `priors` section"),
    "secondary criterion outside the family": (
        _with(_secondary_outside_family),
        "p.yaml: criteria.1.analysis: a secondary criterion must name an analysis listed in "
        "multiplicity.hypotheses"),
    "fairness without subgroups": (
        base_protocol() | {"fairness": {}}, "p.yaml: fairness: needs the protocol's subgroups"),
    "cluster model without data.cluster": (
        base_protocol(model="cluster"), "p.yaml: analyses.0.model: cluster needs data.cluster"),
    "ancova in a cluster design": (
        clustered(base_protocol()),
        "p.yaml: analyses.0.model: a cluster design needs a model that respects clustering"),
    "logistic in a cluster design": (
        clustered(responder(base_protocol(model="logistic"), "risk_difference")),
        "p.yaml: analyses.0.model: a cluster design needs a model that respects clustering"),
    "cluster model in a stepped wedge": (
        clustered(base_protocol(model="cluster"), "stepped_wedge"),
        "p.yaml: analyses.0.model: a stepped_wedge design needs a model that respects "
        "clustering (stepped_wedge)"),
    "stepped wedge without period": (
        clustered(base_protocol(model="stepped_wedge")),
        "p.yaml: analyses.0.model: stepped_wedge needs design.type stepped_wedge and "
        "data.period"),
    "cluster column not a participant column": (
        _with(lambda d: d["data"].update(cluster="site"), model="cluster") | {
            "design": {**base_protocol()["design"], "type": "cluster"}},
        "p.yaml: data.cluster: 'site' must also be listed in data.participant_columns"),
    "gee family that is not a difference in means": (
        base_protocol(model="gee", options={"family": "binomial"}),
        "p.yaml: analyses.0.options.family: a gee analysis of a score or change"),
    "gee visits without the estimand's visit": (
        base_protocol(model="gee", options={"visits": [4, 8]}),
        "p.yaml: analyses.0.options.visits: must include the estimand's visit 12"),
    "gee correlation with one visit per participant": (
        base_protocol(model="gee", options={"visits": [12], "correlation": "ar1"}),
        "p.yaml: analyses.0.options.correlation: with one visit per participant"),
    "exposure not a participant column": (
        counts(base_protocol(model="count", options={"exposure": "minutes"})),
        "p.yaml: analyses.0.options.exposure: 'minutes' is not a participant column"),
    "mmrm visit not post-baseline": (
        base_protocol(model="mmrm", options={"visits": [0, 12]}),
        "p.yaml: analyses.0.options.visits: 0 is not a post-baseline visit"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_selection_is_one_line_naming_the_field(case):
    d, start = BAD[case]
    assert _error(d).startswith(start)


def test_every_good_protocol_here_parses():
    for d in (base_protocol(), clustered(base_protocol(model="cluster")),
              clustered(base_protocol(model="stepped_wedge"), "stepped_wedge"),
              counts(base_protocol(model="count")), _with(_nothing, model="gee")):
        parse_protocol(d, "p.yaml")
