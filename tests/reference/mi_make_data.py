"""Make tests/reference/mi_sim_data.csv: a simulated two-arm trial with MAR dropout.

Run from the repository root: ``.venv/bin/python tests/reference/mi_make_data.py``. Uses numpy
only (seed 20261127). Rerunning with another numpy version could change the data; if so, rerun
``Rscript tests/reference/mi_mice.R`` as well.

Design: 400 participants, 1:1 (``usual_care`` / ``ai_cbt``). ``baseline`` ~ N(18, 4^2), rounded;
``week4`` (an intermediate visit, the auxiliary) = 2 + 0.7 baseline - 1.5 treated + N(0, 3^2);
``y`` (week 12) = 1 + 0.3 baseline + 0.6 week4 - 1.5 treated + N(0, 3^2). ``y`` is missing with
probability logit^-1(-1.2 + 0.35 (week4 - 14) - 0.3 treated), i.e. missing at random given
``week4`` (participants who were doing badly at week 4 drop out). 20 baseline values are missing
completely at random, so that covariates are imputed too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

rng = np.random.default_rng(20261127)
n = 400
treated = np.repeat([0, 1], n // 2)
rng.shuffle(treated)
baseline = np.round(rng.normal(18, 4, n))
week4 = np.round(2 + 0.7 * baseline - 1.5 * treated + rng.normal(0, 3, n), 1)
y = np.round(1 + 0.3 * baseline + 0.6 * week4 - 1.5 * treated + rng.normal(0, 3, n), 1)
p_miss = 1 / (1 + np.exp(-(-1.2 + 0.35 * (week4 - 14) - 0.3 * treated)))
y[rng.uniform(size=n) < p_miss] = np.nan
baseline_obs = baseline.copy()
baseline_obs[rng.choice(n, 20, replace=False)] = np.nan
frame = pd.DataFrame({
    "participant": [f"P{i:03d}" for i in range(1, n + 1)],
    "arm": np.where(treated == 1, "ai_cbt", "usual_care"),
    "treated": treated,
    "baseline": baseline_obs,
    "week4": week4,
    "y": y,
})
frame.to_csv(Path(__file__).parent / "mi_sim_data.csv", index=False)
print(frame.isna().sum().to_dict(), frame.groupby("arm")["y"].apply(lambda s: s.isna().mean()))
