"""Simulate the input data of the Bayesian model tests (bayes_*_data.csv), seed 20261127.

Uses numpy only; the CSVs are the fixed inputs (rerunning with another numpy version could
change them, so rerun bayes_reference.R afterwards if you regenerate). True values are in
bayes.md. Run from the repository root: `.venv/bin/python tests/reference/bayes_make_data.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def longitudinal(rng: np.random.Generator) -> pd.DataFrame:
    """160 participants x visits 1, 2, 3; effect -1, -2, -3; MAR dropout, 8 intermittent."""
    n = 160
    treated = np.repeat([0, 1], n // 2)
    baseline = rng.integers(10, 25, n).astype(float)
    sd = np.array([4.0, 4.5, 5.0])
    corr = np.array([[1.0, 0.6, 0.4], [0.6, 1.0, 0.6], [0.4, 0.6, 1.0]])
    cov = corr * np.outer(sd, sd)
    err = rng.multivariate_normal(np.zeros(3), cov, n)
    effect = np.array([-1.0, -2.0, -3.0])
    mean = np.array([14.0, 12.0, 11.0])
    slope = np.array([0.6, 0.5, 0.45])
    y = mean + treated[:, None] * effect + (baseline[:, None] - 17) * slope + err
    # Dropout after a visit depends on the value just observed (missing at random).
    for v in (1, 2):
        p = 1 / (1 + np.exp(-(-2.6 + 0.12 * (y[:, v - 1] - 12))))
        gone = (rng.uniform(size=n) < p) | np.isnan(y[:, v - 1])
        y[gone, v:] = np.nan
    # A few intermittent misses (visit 2 only), so that not every pattern is monotone.
    skip = rng.choice(np.flatnonzero(np.isfinite(y[:, 2])), 8, replace=False)
    y[skip, 1] = np.nan
    rows = []
    for i in range(n):
        for v in range(3):
            rows.append({"participant": f"P{i + 1:03d}",
                         "arm": "ai_cbt" if treated[i] else "usual_care",
                         "treated": int(treated[i]), "visit": v + 1,
                         "y": None if np.isnan(y[i, v]) else round(float(y[i, v]), 6),
                         "baseline": baseline[i],
                         "severity_stratum": "severe" if baseline[i] >= 20 else "moderate"})
    return pd.DataFrame(rows)


def binary_count(rng: np.random.Generator) -> pd.DataFrame:
    """400 participants: a 0/1 response (log OR 0.8) and a count with exposure (log RR -0.4)."""
    n = 400
    treated = np.repeat([0, 1], n // 2)
    baseline = rng.integers(10, 25, n).astype(float)
    site = rng.choice(["s1", "s2", "s3"], n)
    site_eff = pd.Series({"s1": 0.0, "s2": 0.3, "s3": -0.3})[site].to_numpy()
    eta = -0.6 + 0.8 * treated + 0.08 * (baseline - 17) + site_eff
    response = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    exposure = np.round(rng.uniform(0.5, 2.0, n), 3)
    mu = exposure * np.exp(0.7 - 0.4 * treated + 0.05 * (baseline - 17))
    size = 2.0  # NB2 overdispersion phi = 1 / size = 0.5
    count = rng.negative_binomial(size, size / (size + mu))
    return pd.DataFrame({"participant": [f"P{i + 1:03d}" for i in range(n)],
                         "arm": np.where(treated == 1, "ai_cbt", "usual_care"),
                         "treated": treated, "baseline": baseline, "site": site,
                         "response": response, "count": count, "exposure": exposure})


def cluster(rng: np.random.Generator) -> pd.DataFrame:
    """24 practices x 10 participants, practices randomised 1:1; effect -2.5, ICC 0.1."""
    k, m = 24, 10
    sd_u, sd_e = np.sqrt(0.1 * 25), np.sqrt(0.9 * 25)
    arm_of = np.repeat([0, 1], k // 2)
    u = rng.normal(0, sd_u, k)
    rows = []
    for j in range(k):
        for i in range(m):
            b = float(rng.integers(10, 25))
            y = 12 - 2.5 * arm_of[j] + 0.5 * (b - 17) + u[j] + rng.normal(0, sd_e)
            rows.append({"participant": f"C{j + 1:02d}-{i + 1:02d}", "cluster": f"C{j + 1:02d}",
                         "arm": "ai_cbt" if arm_of[j] else "usual_care",
                         "treated": int(arm_of[j]), "baseline": b, "y": round(y, 6)})
    return pd.DataFrame(rows)


def main() -> None:
    rng = np.random.default_rng(20261127)
    longitudinal(rng).to_csv(HERE / "bayes_long_data.csv", index=False)
    binary_count(rng).to_csv(HERE / "bayes_glm_data.csv", index=False)
    cluster(rng).to_csv(HERE / "bayes_cluster_data.csv", index=False)


if __name__ == "__main__":
    main()
