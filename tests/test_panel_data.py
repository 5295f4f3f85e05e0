"""DuckDB / SQL aggregation of patient-level panels to unit x period cells.

Cell means, counts and weights are checked against pandas ``groupby`` on the same rows, and the
aggregate-then-fit path against the patient-level TWFE fit (same estimate and cluster-robust SE).
Treatment derived in the database from a switch-on (adoption) column is checked against the
same comparison in pandas, for Parquet, CSV and SQLite sources.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.did import DidSpec, fit_did
from analysis.panel_data import aggregate_panel
from trials.errors import AnalysisError

KEYS = {"unit": "clinic", "period": "month", "outcome": "phq9", "treated": "ai_triage"}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 6000
    clinic = rng.integers(0, 20, n)
    month = rng.integers(1, 9, n)
    start = np.where(clinic % 3 == 0, 99, 3 + clinic % 4)
    on = (month >= start).astype(int)
    return pd.DataFrame({
        "clinic": [f"c{c:02d}" for c in clinic], "month": month,
        "phq9": 12 + 0.3 * (clinic % 5) - 0.1 * month - 1.2 * on + rng.normal(0, 4, n),
        "ai_triage": on, "age": rng.normal(40, 12, n), "w": rng.uniform(0.5, 2.0, n),
        "site": np.where(clinic < 10, "north", "south"),
        # switch-on month as service records hold it: missing when never, 12 = after the data
        "go_live": pd.array(np.where(start < 99, start, np.where(clinic % 2 == 0, -1, 12)),
                            dtype="Int64"),
    }).replace({"go_live": {-1: pd.NA}})


@pytest.fixture(scope="module")
def files(rows, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("panel")
    half = len(rows) // 2
    rows.iloc[:half].to_parquet(folder / "part1.parquet")
    rows.iloc[half:].to_parquet(folder / "part2.parquet")
    rows.to_csv(folder / "all.csv", index=False)
    import sqlalchemy as sa

    url = f"sqlite:///{folder / 'clinic.db'}"
    engine = sa.create_engine(url)
    rows.to_sql("visits", engine, index=False)
    engine.dispose()
    return {"parquet": str(folder / "*.parquet"), "csv": str(folder / "all.csv"), "sql": url}


@pytest.fixture(scope="module")
def expected(rows) -> pd.DataFrame:
    return (rows.groupby(["clinic", "month"], as_index=False)
            .agg(y=("phq9", "mean"), n=("phq9", "size"), age=("age", "mean"),
                 treated=("ai_triage", "first")))


@pytest.mark.parametrize("kind", ["parquet", "csv", "sql"])
def test_cell_means_match_pandas(files, expected, kind):
    extra = {"table": "visits"} if kind == "sql" else {}
    got = aggregate_panel(files[kind], covariates=("age",), **KEYS, **extra)
    assert np.allclose(got["y"], expected["y"], atol=1e-10, rtol=0)
    assert got["n"].tolist() == expected["n"].tolist()
    assert got["weight"].tolist() == expected["n"].astype(float).tolist()
    assert np.allclose(got["age"], expected["age"], atol=1e-10, rtol=0)
    assert got["treated"].tolist() == expected["treated"].tolist()


def test_weighted_means_and_weight_sums(files, rows):
    got = aggregate_panel(files["parquet"], weight="w", **KEYS)
    grouped = rows.assign(wy=rows["w"] * rows["phq9"]).groupby(["clinic", "month"])
    want = grouped["wy"].sum() / grouped["w"].sum()
    assert np.allclose(got["y"], want.to_numpy(), atol=1e-10, rtol=0)
    assert np.allclose(got["weight"], grouped["w"].sum().to_numpy(), atol=1e-9, rtol=0)


def test_where_filters_before_grouping(files, rows):
    got = aggregate_panel(files["parquet"], where="site = 'north'", **KEYS)
    assert set(got["unit"]) == set(rows.loc[rows["site"] == "north", "clinic"])
    assert got["n"].sum() == (rows["site"] == "north").sum()


def test_sql_query_source(files, rows):
    got = aggregate_panel(files["sql"], query="SELECT * FROM visits WHERE month <= 4", **KEYS)
    assert got["n"].sum() == (rows["month"] <= 4).sum()


def test_first_treated_is_the_first_treated_period(files, rows):
    got = aggregate_panel(files["parquet"], **KEYS).drop_duplicates("unit").set_index("unit")
    want = rows.loc[rows["ai_triage"] == 1].groupby("clinic")["month"].min()
    assert got["first_treated"].dropna().to_dict() == want.astype(float).to_dict()
    assert got["first_treated"].isna().sum() == rows["clinic"].nunique() - len(want)


def test_aggregate_then_fit_equals_patient_level_fit(files, rows):
    patient = rows.rename(columns={"clinic": "unit", "month": "period", "phq9": "y",
                                   "ai_triage": "treated"})
    a = fit_did(patient, DidSpec("e", "a")).estimate
    b = fit_did(aggregate_panel(files["parquet"], **KEYS), DidSpec("e", "a")).estimate
    assert (b.estimate, b.std_error, b.n_analysed) == pytest.approx(
        (a.estimate, a.std_error, a.n_analysed), abs=1e-10)


def test_treatment_varying_within_a_cell_is_refused(tmp_path, rows):
    bad = rows.copy()
    bad.loc[0, "ai_triage"] = 1 - bad.loc[0, "ai_triage"]
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(AnalysisError, match="'treated' varies within unit"):
        aggregate_panel(str(tmp_path / "bad.parquet"), **KEYS)


@pytest.mark.parametrize(("source", "extra", "message"), [
    ("panel.xlsx", {}, "expected a .parquet or .csv"),
    ("sqlite:///x.db", {}, "exactly one of table or query"),
    ("panel.parquet", {"table": "t"}, "only to SQL sources"),
])
def test_bad_sources_are_named(source, extra, message):
    with pytest.raises(AnalysisError, match=message):
        aggregate_panel(source, **KEYS, **extra)


def test_missing_column_is_reported(files):
    with pytest.raises(AnalysisError, match="panel source"):
        aggregate_panel(files["parquet"], **{**KEYS, "outcome": "gad7"})


def test_cells_feed_the_event_study_and_staggered_fits(files):
    from analysis.event_study import EventStudySpec, fit_event_study
    from analysis.staggered import StaggeredSpec, fit_staggered

    panel = aggregate_panel(files["parquet"], **KEYS)
    es = fit_event_study(panel, EventStudySpec("e", "a", leads=2, lags=2))
    cs = fit_staggered(panel, StaggeredSpec("e", "a"))
    # simulated effect -1.2 in every treated cell
    assert es.estimate.ci_lower < -1.2 < es.estimate.ci_upper
    assert cs.estimate.ci_lower < -1.2 < cs.estimate.ci_upper


# ---------------------------------------------------------------------------- adoption column
ADOPTION = {**{k: v for k, v in KEYS.items() if k != "treated"}, "adoption": "go_live"}


@pytest.mark.parametrize("kind", ["parquet", "csv", "sql"])
def test_adoption_derives_treatment_as_pandas_does(files, rows, kind):
    extra = {"table": "visits"} if kind == "sql" else {}
    got = aggregate_panel(files[kind], **ADOPTION, **extra)
    on = (rows["month"] >= rows["go_live"]).fillna(False).astype(int)
    want = (rows.assign(on=on).groupby(["clinic", "month"], as_index=False)
            .agg(y=("phq9", "mean"), n=("phq9", "size"), treated=("on", "first"),
                 first=("go_live", "first")))
    assert got["treated"].tolist() == want["treated"].tolist()
    assert got["n"].tolist() == want["n"].tolist()
    assert np.allclose(got["y"], want["y"], atol=1e-10, rtol=0)
    # first_treated is the recorded switch-on, also when it falls after the last month
    assert got["first_treated"].astype("Float64").tolist() == \
        want["first"].astype("Float64").tolist()


def test_adoption_and_treated_columns_give_the_same_cells(files):
    a = aggregate_panel(files["parquet"], **ADOPTION)
    b = aggregate_panel(files["parquet"], **KEYS)
    pd.testing.assert_frame_equal(a.drop(columns="first_treated"),
                                  b.drop(columns="first_treated"))
    seen = b["first_treated"].notna()
    assert a.loc[seen, "first_treated"].tolist() == b.loc[seen, "first_treated"].tolist()
    assert (a.loc[~seen, "first_treated"].dropna() == 12).all()


@pytest.mark.parametrize("extra", [{"treated": "ai_triage"}, {"adoption": None}])
def test_exactly_one_of_treated_and_adoption(files, extra):
    with pytest.raises(AnalysisError, match="exactly one of treated"):
        aggregate_panel(files["parquet"], **{**ADOPTION, **extra})


@pytest.mark.parametrize("value", [5, None])
def test_adoption_must_be_constant_within_a_unit(tmp_path, rows, value):
    bad = rows.copy()
    row = bad.index[bad["go_live"].notna()][0]
    bad.loc[row, "go_live"] = value if value != bad.loc[row, "go_live"] else 6
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(AnalysisError, match="'go_live' differs between rows of unit"):
        aggregate_panel(str(tmp_path / "bad.parquet"), **ADOPTION)


def test_demo_rollout_pretrend_is_no_longer_spurious(tmp_path):
    # trials.demo_rollout simulates parallel trends; 30 clinics with 51 pre-period ATT(g,t).
    # The former all-cell Wald test gave p ~ 1e-7 (waiting) and 1e-8 (recovery).
    from analysis.staggered import StaggeredSpec, fit_staggered
    from trials.demo_rollout.simulate import simulate_rollout

    simulate_rollout().to_parquet(tmp_path / "rollout.parquet")
    spec = StaggeredSpec("e", "a", control="not_yet_treated")
    p = {}
    for outcome in ("weeks_to_first_appointment", "phq9_recovered"):
        panel = aggregate_panel(str(tmp_path / "rollout.parquet"), unit="clinic",
                                period="referral_month", outcome=outcome,
                                adoption="go_live_month")
        pre = fit_staggered(panel, spec).pretrend
        assert (pre.event_times, pre.f_df_denominator) == ((-6, -5, -4, -3, -2, -1), 24)
        p[outcome] = pre.f_p_value
    # measured 0.515 and 0.032 (the recovery series has a chance dip at e = -1, z = -2.7)
    assert p["weeks_to_first_appointment"] > 0.2
    assert p["phq9_recovered"] > 0.01
