"""Generate the fixed ANCOVA reference input ``tests/reference/ancova_data.csv``.

Stand-alone on purpose: uses only numpy and the standard library and does not
import anything from the ``trials`` package. The CSV it writes is the fixed
input for ``ancova_lm.R``; this script is kept only for provenance.

Run from the repository root:

    python tests/reference/make_ancova_data.py

Simulated design (240 participants):
  * arm: usual_care / ai_cbt, 1:1 permuted blocks of 4 within practice x stratum
  * practice: practice_A .. practice_F (40 participants each)
  * severity_stratum: moderate (baseline 10-19) / severe (baseline 20-27)
  * baseline: integer PHQ-9-like score 10..27
  * y: integer week-12 score 0..27 = 4 + 0.55*baseline - 2.5*(ai_cbt)
       + practice effect + stratum effect + N(0, 4^2), rounded and clipped
  * about 10% of y set missing (empty cell), completely at random
"""

import csv
import os

import numpy as np

SEED = 20240612
N = 240
PRACTICES = ["practice_A", "practice_B", "practice_C", "practice_D", "practice_E", "practice_F"]
PRACTICE_EFFECT = {
    "practice_A": 0.0,
    "practice_B": 1.5,
    "practice_C": -1.0,
    "practice_D": 2.0,
    "practice_E": -0.5,
    "practice_F": 0.8,
}
TREATMENT_EFFECT = -2.5
MISSING_FRACTION = 0.10

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ancova_data.csv")


def main() -> None:
    rng = np.random.default_rng(SEED)

    practice = np.repeat(PRACTICES, N // len(PRACTICES))
    rng.shuffle(practice)

    # Baseline: mixture so that roughly 55% moderate (10-19), 45% severe (20-27).
    severe = rng.random(N) < 0.45
    baseline = np.where(
        severe,
        rng.integers(20, 28, size=N),
        rng.integers(10, 20, size=N),
    )
    stratum = np.where(baseline >= 20, "severe", "moderate")

    # 1:1 permuted blocks of 4 within each practice x stratum cell.
    arm = np.empty(N, dtype=object)
    for p in PRACTICES:
        for s in ("moderate", "severe"):
            idx = np.flatnonzero((practice == p) & (stratum == s))
            n_blocks = int(np.ceil(len(idx) / 4))
            seq = np.concatenate(
                [rng.permutation(["usual_care", "usual_care", "ai_cbt", "ai_cbt"]) for _ in range(n_blocks)]
            )
            arm[idx] = seq[: len(idx)]

    mu = (
        4.0
        + 0.55 * baseline
        + TREATMENT_EFFECT * (arm == "ai_cbt")
        + np.array([PRACTICE_EFFECT[p] for p in practice])
        + 0.7 * (stratum == "severe")
    )
    y = np.clip(np.rint(mu + rng.normal(0.0, 4.0, size=N)), 0, 27).astype(int)

    n_missing = int(round(MISSING_FRACTION * N))
    missing = np.zeros(N, dtype=bool)
    missing[rng.choice(N, size=n_missing, replace=False)] = True

    with open(OUT, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["participant_id", "arm", "practice", "severity_stratum", "baseline", "y"])
        for i in range(N):
            w.writerow(
                [
                    f"P{i + 1:03d}",
                    arm[i],
                    practice[i],
                    stratum[i],
                    int(baseline[i]),
                    "" if missing[i] else int(y[i]),
                ]
            )


if __name__ == "__main__":
    main()
