"""Write the simulated MMRM reference inputs (tests/reference/mmrm_sim_data.csv, mmrm_bench_data.csv).

Run from the repository root: ``.venv/bin/python tests/reference/mmrm_make_data.py``. The CSVs
are the fixed inputs of the R references (mmrm_sim.R, mmrm_bench.R); do not regenerate them
without rerunning those scripts. numpy only, seeds 20261127 and 20261128.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def simulate(n: int, weeks: list[int], seed: int, dropout: float, intermittent: float,
             extra_covariates: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = len(weeks)
    treated = np.zeros(n, dtype=int)
    treated[rng.permutation(n)[: n // 2]] = 1
    baseline = np.round(rng.normal(20.0, 4.0, n), 1)
    sd = np.linspace(4.0, 6.0, t)
    corr = np.array([[0.75 ** abs(i - j) * (0.9 if i != j else 1.0) for j in range(t)]
                     for i in range(t)])
    sigma = corr * np.outer(sd, sd)
    err = rng.multivariate_normal(np.zeros(t), sigma, size=n)
    w = np.asarray(weeks, dtype=float)
    mu = 20.0 - 0.5 * w[None, :] + 0.6 * (baseline[:, None] - 20.0)
    mu = mu - treated[:, None] * 2.5 * w[None, :] / w[-1]
    cols: dict[str, np.ndarray] = {}
    if extra_covariates:
        age = np.round(rng.uniform(18, 65, n))
        site = rng.choice(np.array(["A", "B", "C"]), n)
        mu = mu + 0.04 * (age[:, None] - 40) + np.select(
            [site == "B", site == "C"], [1.0, -1.5], 0.0)[:, None]
        cols = {"age": age, "site": site}
    y = np.round(mu + err, 2)
    # monotone dropout, more likely after a high (bad) score: missing at random
    for v in range(1, t):
        p = dropout * (1 + (y[:, v - 1] > np.nanmedian(y[:, v - 1])))
        drop = (rng.uniform(size=n) < p) & ~np.isnan(y[:, v - 1])
        y[drop, v:] = np.nan
    if intermittent:
        hole = rng.uniform(size=(n, t)) < intermittent
        y[hole] = np.nan
    rows = []
    for i in range(n):
        for v in range(t):
            row = {"participant": f"P{i + 1:04d}",
                   "arm": "ai_cbt" if treated[i] else "usual_care",
                   "treated": int(treated[i]), "visit": weeks[v], "y": y[i, v],
                   "baseline": baseline[i]}
            row.update({k: c[i] for k, c in cols.items()})
            rows.append(row)
    frame = pd.DataFrame(rows)
    if extra_covariates:
        # three participants without age: the analysis must drop them with a warning
        frame.loc[frame["participant"].isin(["P0007", "P0100", "P0201"]), "age"] = np.nan
    return frame


def main() -> None:
    sim = simulate(240, [2, 4, 8, 12], 20261127, 0.05, 0.03, extra_covariates=True)
    sim.to_csv(HERE / "mmrm_sim_data.csv", index=False, na_rep="")
    bench = simulate(2000, [1, 2, 4, 8, 12], 20261128, 0.022, 0.0, extra_covariates=False)
    bench.to_csv(HERE / "mmrm_bench_data.csv", index=False, na_rep="")


if __name__ == "__main__":
    main()
