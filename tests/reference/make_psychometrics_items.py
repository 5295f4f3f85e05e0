"""Generate the fixed psychometrics reference input ``tests/reference/psychometrics_items.csv``.

Stand-alone on purpose: uses only numpy and the standard library and does not
import anything from the ``trials`` package. The CSV it writes is the fixed
input for ``psychometrics.R``; this script is kept only for provenance.

Run from the repository root:

    python tests/reference/make_psychometrics_items.py

Simulated questionnaire (300 respondents x 9 items, each scored 0-3, PHQ-9-like):
  * one common factor: latent theta ~ N(0, 1); item j's continuous response is
    loading_j * theta + sqrt(1 - loading_j^2) * N(0, 1), with loadings between
    0.45 and 0.80 so the items are unequally good (alpha and omega then differ)
  * each continuous response is cut at item-specific thresholds into 0, 1, 2, 3
  * 12 item responses (in 12 different rows) are set missing (empty cell),
    completely at random, so 288 rows are complete
"""

import csv
import os

import numpy as np

SEED = 20240917
N = 300
LOADINGS = np.array([0.80, 0.75, 0.70, 0.65, 0.60, 0.55, 0.50, 0.70, 0.45])
# Cut points on the continuous response; shifted per item so floor and ceiling use differ.
BASE_CUTS = np.array([-0.3, 0.5, 1.2])
ITEM_SHIFT = np.array([0.0, -0.2, 0.1, 0.3, -0.1, 0.2, 0.4, -0.3, 0.0])
N_MISSING = 12

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "psychometrics_items.csv")


def main() -> None:
    rng = np.random.default_rng(SEED)
    k = len(LOADINGS)
    theta = rng.normal(size=N)
    noise = rng.normal(size=(N, k))
    latent = theta[:, None] * LOADINGS + noise * np.sqrt(1.0 - LOADINGS**2)
    items = np.empty((N, k), dtype=int)
    for j in range(k):
        items[:, j] = np.searchsorted(BASE_CUTS + ITEM_SHIFT[j], latent[:, j])

    rows = rng.choice(N, size=N_MISSING, replace=False)
    cols = rng.integers(0, k, size=N_MISSING)
    missing = np.zeros((N, k), dtype=bool)
    missing[rows, cols] = True

    with open(OUT, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["respondent"] + [f"item{j + 1}" for j in range(k)])
        for i in range(N):
            w.writerow(
                [f"R{i + 1:03d}"]
                + ["" if missing[i, j] else int(items[i, j]) for j in range(k)]
            )


if __name__ == "__main__":
    main()
