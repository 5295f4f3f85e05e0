"""Generate the fixed simulated subgroup input ``tests/reference/subgroup_sim_data.csv``.

Stand-alone on purpose: uses only numpy and the standard library and does not import anything
from the ``trials`` package. The CSV it writes is the fixed input for ``subgroup_lm.R``; this
script is kept only for provenance (a different numpy could change the draws).

Run from the repository root:

    python tests/reference/subgroup_make_data.py

Simulated design (320 participants, 1:1 usual_care / ai_cbt by simple randomisation):
  * age_group 18-25 / 26-45 / 46+ with effects -1, -2.5, -4 (true effect modification)
  * gender female / male / non_binary, non_binary only 9 people (a small cell), 6 missing
  * imd_quintile 1..5 (integer), no effect modification
  * ethnicity Asian / Black / Mixed / White, plus Other: 3 people, all in ai_cbt
  * baseline integer 10..27; y = 4 + 0.55*baseline + age effect*ai_cbt + 0.4*imd + N(0, 4^2),
    rounded; about 8% of y missing completely at random
"""

import csv
import os

import numpy as np

SEED = 20261127
N = 320
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "subgroup_sim_data.csv")
AGE_EFFECT = {"18-25": -1.0, "26-45": -2.5, "46+": -4.0}


def main() -> None:
    rng = np.random.default_rng(SEED)
    arm = np.where(rng.random(N) < 0.5, "ai_cbt", "usual_care")
    age = rng.choice(list(AGE_EFFECT), size=N, p=[0.3, 0.45, 0.25])
    gender = rng.choice(["female", "male"], size=N, p=[0.6, 0.4]).astype(object)
    gender[rng.choice(N, size=9, replace=False)] = "non_binary"
    free = np.flatnonzero(gender != "non_binary")
    gender[rng.choice(free, size=6, replace=False)] = ""
    imd = rng.integers(1, 6, size=N)
    ethnicity = rng.choice(["Asian", "Black", "Mixed", "White"], size=N,
                           p=[0.12, 0.08, 0.06, 0.74]).astype(object)
    ethnicity[rng.choice(np.flatnonzero(arm == "ai_cbt"), size=3, replace=False)] = "Other"
    baseline = rng.integers(10, 28, size=N)
    effect = np.array([AGE_EFFECT[a] for a in age]) * (arm == "ai_cbt")
    y = np.rint(4 + 0.55 * baseline + effect + 0.4 * imd + rng.normal(0, 4, size=N))
    y = np.clip(y, 0, 27).astype(int).astype(object)
    y[rng.random(N) < 0.08] = ""
    with open(OUT, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["participant", "arm", "age_group", "gender", "imd_quintile", "ethnicity",
                    "baseline", "y"])
        for i in range(N):
            w.writerow([f"S{i + 1:03d}", arm[i], age[i], gender[i], int(imd[i]), ethnicity[i],
                        int(baseline[i]), y[i]])


if __name__ == "__main__":
    main()
