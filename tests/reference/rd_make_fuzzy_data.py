"""Simulate the fuzzy regression-discontinuity reference data (rd_fuzzy_data.csv).

Kept for provenance; the CSV is the fixed input of rd_reference.py and rd_lm.R. Uses only numpy
(seed 20261127): 1000 units, score ~ Uniform(-1, 1), cut-off 0; treatment take-up with
probability 0.2 below and 0.8 at or above the cut-off; covariate z ~ N(0, 1);
y = 1 + 0.8 score - 0.5 score^2 + 2 treated + 0.5 z + N(0, 1).
Run from the repository root: .venv/bin/python tests/reference/rd_make_fuzzy_data.py
"""

from pathlib import Path

import numpy as np

rng = np.random.default_rng(20261127)
n = 1000
score = rng.uniform(-1, 1, n)
treated = (rng.uniform(size=n) < np.where(score >= 0, 0.8, 0.2)).astype(int)
z = rng.normal(size=n)
y = 1 + 0.8 * score - 0.5 * score**2 + 2 * treated + 0.5 * z + rng.normal(size=n)
out = Path(__file__).with_name("rd_fuzzy_data.csv")
with out.open("w") as f:
    f.write("id,score,treated,z,y\n")
    for i in range(n):
        f.write(f"{i + 1},{score[i]:.15g},{treated[i]},{z[i]:.15g},{y[i]:.15g}\n")
