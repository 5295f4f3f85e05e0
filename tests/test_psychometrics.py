"""Alpha, omega, item missingness, floor and ceiling, and the per-group table.

Reference values come from tests/reference/psychometrics.R (R 4.2.2, psych 2.2.9) run on
tests/reference/psychometrics_items.csv (300 respondents x 9 items scored 0-3, 12 item
responses missing in 12 rows; listwise deletion leaves 288): ``psych::alpha`` raw_alpha and its
Feldt interval, ``psych::fa(nfactors = 1, fm = "ml")`` loadings, and omega total computed in R
from those loadings and psych's uniquenesses. The full-precision values are in
psychometrics.csv; the printed R output is psychometrics.out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pingouin
import pytest

from outcomes.psychometrics import (
    TABLE_COLUMNS,
    cronbach_alpha,
    floor_ceiling,
    item_missingness,
    mcdonald_omega,
    psychometrics_table,
)
from tests.conftest import REFERENCE

pytestmark = pytest.mark.reference

ITEMS = [f"item{j}" for j in range(1, 10)]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "psychometrics_items.csv")


@pytest.fixture(scope="module")
def ref() -> dict[str, float]:
    r = pd.read_csv(REFERENCE / "psychometrics.csv", keep_default_na=False)
    out = {}
    for row in r.itertuples():
        out[row.statistic if not row.item else f"{row.statistic}:{row.item}"] = float(row.value)
    return out


@pytest.fixture(scope="module")
def alpha(data):
    return cronbach_alpha(data[ITEMS])


@pytest.fixture(scope="module")
def omega(data):
    return mcdonald_omega(data[ITEMS])


# ---- against R psych -------------------------------------------------------------------------


def test_listwise_deletion_leaves_288(alpha, omega, ref):
    assert ref["n_complete"] == 288
    assert alpha.n == 288 and omega.n == 288
    assert alpha.n_items == 9


def test_alpha_matches_psych(alpha, ref):
    # psych::alpha(na.omit(x))$total$raw_alpha: the same closed-form formula, so 1e-10.
    assert alpha.alpha == pytest.approx(ref["raw_alpha"], abs=1e-10)


def test_alpha_feldt_interval_matches_psych(alpha, ref):
    # psych::alpha(...)$feldt (psych::alpha.ci): closed form with F quantiles, so 1e-10.
    assert alpha.ci_lower == pytest.approx(ref["feldt_lower_95"], abs=1e-10)
    assert alpha.ci_upper == pytest.approx(ref["feldt_upper_95"], abs=1e-10)


def test_alpha_interval_agrees_with_pingouins_rounded_interval(alpha, data):
    # pingouin rounds its interval to 3 decimals; on the same complete rows ours must round to
    # it. (Its own listwise option would use n = 300 for the F degrees of freedom.)
    _, rounded = pingouin.cronbach_alpha(data[ITEMS].dropna())
    assert [round(alpha.ci_lower, 3), round(alpha.ci_upper, 3)] == list(rounded)


def test_omega_matches_psych_fa_ml(omega, ref):
    # Omega total from psych::fa(fm = "ml") loadings and uniquenesses, computed in R.
    # Tolerance 1e-4: two ML optimisers stop at slightly different points (psych and
    # stats::factanal differ by 3e-7 here, see psychometrics.out).
    assert omega.omega == pytest.approx(ref["omega_total"], abs=1e-4)


@pytest.mark.parametrize("item", ITEMS)
def test_loadings_match_psych_fa_ml(omega, ref, item):
    # psych::fa(x, nfactors = 1, fm = "ml")$loadings; optimiser tolerance as for omega.
    assert omega.loadings[item] == pytest.approx(ref[f"loading:{item}"], abs=1e-4)
    assert omega.uniquenesses[item] == pytest.approx(ref[f"uniqueness:{item}"], abs=1e-4)


def test_ml_fit_converged_at_psychs_objective(omega, ref):
    assert omega.converged
    assert omega.objective == pytest.approx(ref["ml_objective"], abs=1e-6)


# ---- hand-worked alpha and failures ------------------------------------------------------------


def test_alpha_hand_worked_two_items():
    # A = 0,1,2,3 and B = 1,0,3,2: var(A) = var(B) = 5/3 (ddof 1); total A + B = 1,1,5,5 has
    # mean 3 and variance (4+4+4+4)/3 = 16/3. alpha = 2/1 * (1 - (10/3)/(16/3)) = 2 * 0.375
    # = 0.75. Feldt with n = 4, k = 2: F(3, 3) quantiles 15.4392 (0.975) and 1/15.4392
    # (0.025): lower = 1 - 0.25 * 15.4392 = -2.8598, upper = 1 - 0.25 / 15.4392 = 0.98381.
    a = cronbach_alpha(pd.DataFrame({"A": [0, 1, 2, 3], "B": [1, 0, 3, 2]}))
    assert a.alpha == pytest.approx(0.75, abs=1e-12)
    assert a.ci_lower == pytest.approx(-2.8598, abs=1e-4)
    assert a.ci_upper == pytest.approx(0.98381, abs=1e-5)
    assert a.n == 4


def test_alpha_uses_complete_rows_only():
    # The row with a missing B is dropped; the rest is the hand-worked example above.
    frame = pd.DataFrame({"A": [0, 1, 2, 3, 3], "B": [1, 0, 3, 2, np.nan]})
    a = cronbach_alpha(frame)
    assert (a.alpha, a.n) == (pytest.approx(0.75, abs=1e-12), 4)


def test_omega_refuses_identical_items():
    # Three identical items: the correlation matrix is all ones (singular).
    same = [0, 1, 2, 3, 1]
    with pytest.raises(ValueError, match="singular|positive definite"):
        mcdonald_omega(pd.DataFrame({"a": same, "b": same, "c": same}))


def test_omega_refuses_constant_item():
    with pytest.raises(ValueError, match="without variance"):
        mcdonald_omega(pd.DataFrame({"a": [0, 1, 2, 3], "b": [1, 0, 2, 3], "c": [2, 2, 2, 2]}))


def test_alpha_refuses_non_numeric_items():
    with pytest.raises(ValueError, match="item column 'b'"):
        cronbach_alpha(pd.DataFrame({"a": [0, 1], "b": ["x", "y"]}))


# ---- missingness and floor / ceiling (hand-worked) ---------------------------------------------


def test_item_missingness_hand_worked():
    items = pd.DataFrame({
        "a": [1, np.nan, 2, np.nan],   # 2 of 4 missing -> 0.5
        "b": [0, 1, 2, 3],             # 0 of 4         -> 0.0
        "c": [np.nan, 1, 1, 1],        # 1 of 4         -> 0.25
    })
    out = item_missingness(items)
    assert list(out.index) == ["a", "b", "c"]
    assert list(out["n"]) == [4, 4, 4]
    assert list(out["n_missing"]) == [2, 0, 1]
    assert list(out["share_missing"]) == [0.5, 0.0, 0.25]


def test_floor_ceiling_hand_worked():
    # Non-missing totals: 0, 0, 5, 27, 10, 27, 27, 3, 0 (n = 9); at 0: three -> 3/9;
    # at 27: three -> 3/9. The missing total is not in the denominator.
    totals = pd.Series([0, 0, 5, 27, np.nan, 10, 27, 27, 3, 0])
    fc = floor_ceiling(totals, minimum=0, maximum=27)
    assert fc.n == 9
    assert fc.floor_share == pytest.approx(1 / 3, abs=1e-12)
    assert fc.ceiling_share == pytest.approx(1 / 3, abs=1e-12)


def test_floor_ceiling_no_totals_and_out_of_range():
    fc = floor_ceiling(pd.Series([np.nan, np.nan]), 0, 27)
    assert fc.n == 0 and math.isnan(fc.floor_share) and math.isnan(fc.ceiling_share)
    with pytest.raises(ValueError, match="outside 0..27"):
        floor_ceiling(pd.Series([3, 28]), 0, 27)
    with pytest.raises(ValueError, match="below"):
        floor_ceiling(pd.Series([3]), 27, 0)


# ---- the per-group table ---------------------------------------------------------------------


def _table_frame(data: pd.DataFrame) -> pd.DataFrame:
    big = data[ITEMS].copy()
    big["arm"], big["visit"] = "ai_cbt", "week12"
    # Totals set by hand so floor and ceiling are known: the pattern 0, 27, 5, 10, 12, 27
    # repeated 50 times -> 50/300 at 0 (16.667%) and 100/300 at 27 (33.333%).
    big["total"] = np.tile([0, 27, 5, 10, 12, 27], 50)
    # 3 rows: below the small-cell threshold of 5.
    tiny = pd.DataFrame({c: [1, 2, 0] for c in ITEMS})
    tiny["arm"], tiny["visit"], tiny["total"] = "usual_care", "week12", [9, 18, 0]
    # 6 rows but only 2 with every item answered: alpha and omega withheld; 6 totals, one at
    # the floor (1/6 = 16.667%), none at the ceiling. Missing cells: 4 rows x 1 item = 4 of
    # 6 x 9 = 54 cells (7.407%); item1 is missing in 4 of 6 rows (66.667%).
    gappy = pd.DataFrame({c: [1, 2, 3, 0, 1, 2] for c in ITEMS}, dtype="float64")
    gappy.loc[2:5, "item1"] = np.nan
    gappy["arm"], gappy["visit"], gappy["total"] = "usual_care", "baseline", [0, 9, 12, 3, 6, 8]
    return pd.concat([big, tiny, gappy], ignore_index=True)


def test_psychometrics_table(data, ref):
    frame = _table_frame(data)
    before = frame.copy()
    table = psychometrics_table(frame, ITEMS, "total", by=["arm", "visit"], minimum=0,
                                maximum=27, small_cell_threshold=5)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    assert list(table.columns) == ["arm", "visit", *TABLE_COLUMNS]
    rows = {(r.arm, r.visit): r for r in table.itertuples(index=False)}
    assert list(rows) == [("ai_cbt", "week12"), ("usual_care", "baseline"),
                          ("usual_care", "week12")]

    big = rows[("ai_cbt", "week12")]
    assert (big.n, big.n_complete, big.too_small) == (300, 288, False)
    assert big.alpha == pytest.approx(ref["raw_alpha"], abs=1e-10)          # R psych
    assert big.alpha_ci_lower == pytest.approx(ref["feldt_lower_95"], abs=1e-10)
    assert big.omega == pytest.approx(ref["omega_total"], abs=1e-4)         # R psych fa ml
    # 12 of 300 x 9 = 2700 item cells missing (0.4444%); the worst item, item4, misses 5 of
    # 300 (1.6667%) -- both counted in psychometrics_items.csv.
    assert big.item_missing_pct == pytest.approx(100 * 12 / 2700, abs=1e-12)
    assert big.max_item_missing_pct == pytest.approx(100 * 5 / 300, abs=1e-12)
    assert big.floor_pct == pytest.approx(100 * 50 / 300, abs=1e-12)
    assert big.ceiling_pct == pytest.approx(100 * 100 / 300, abs=1e-12)
    assert big.notes == ""

    tiny = rows[("usual_care", "week12")]
    assert (tiny.n, tiny.too_small) == (3, True)
    for col in ("alpha", "alpha_ci_lower", "alpha_ci_upper", "omega", "item_missing_pct",
                "max_item_missing_pct", "floor_pct", "ceiling_pct"):
        assert math.isnan(getattr(tiny, col)), col

    gappy = rows[("usual_care", "baseline")]
    assert (gappy.n, gappy.n_complete, gappy.too_small) == (6, 2, False)
    assert math.isnan(gappy.alpha) and math.isnan(gappy.omega)
    assert "2 complete respondents < 5" in gappy.notes
    assert gappy.item_missing_pct == pytest.approx(100 * 4 / 54, abs=1e-12)
    assert gappy.max_item_missing_pct == pytest.approx(100 * 4 / 6, abs=1e-12)
    assert gappy.floor_pct == pytest.approx(100 / 6, abs=1e-12)
    assert gappy.ceiling_pct == 0.0


def test_psychometrics_table_without_groups_and_bad_columns(data):
    frame = data[ITEMS].assign(total=np.tile([0, 27, 5, 10, 12, 27], 50))
    table = psychometrics_table(frame, ITEMS, "total", by=[], minimum=0, maximum=27,
                                small_cell_threshold=5)
    assert len(table) == 1 and table.loc[0, "n"] == 300
    with pytest.raises(ValueError, match="columns not in frame: \\['arm', 'visit'\\]"):
        psychometrics_table(frame, ITEMS, "total", minimum=0, maximum=27,
                            small_cell_threshold=5)


def test_psychometrics_table_reports_unfittable_omega():
    # 6 complete rows, item c constant: alpha is computable, omega is not (noted, NaN).
    frame = pd.DataFrame({"a": [0, 1, 2, 3, 1, 2], "b": [1, 0, 3, 2, 2, 1],
                          "c": [2, 2, 2, 2, 2, 2], "g": "x"})
    frame["total"] = frame[["a", "b", "c"]].sum(axis=1)
    table = psychometrics_table(frame, ["a", "b", "c"], "total", by=["g"], minimum=0,
                                maximum=9, small_cell_threshold=5)
    row = table.iloc[0]
    assert row["g"] == "x"  # a one-column key is the value itself, not a tuple
    assert not math.isnan(row["alpha"])
    assert math.isnan(row["omega"])
    assert "omega not computed" in row["notes"] and "without variance" in row["notes"]
