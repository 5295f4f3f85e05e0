"""Generate the fixed synthetic-control reference input ``tests/reference/sc_data.csv``.

Stand-alone on purpose: numpy and the standard library only, nothing from ``trials``. The CSV
is the fixed input for ``sc_quadprog.R``; this script is kept for provenance.

Run from the repository root:

    python tests/reference/sc_make_data.py

Simulated panel: 11 regions (``treated`` and ``donor_01`` .. ``donor_10``), periods 2001-2030,
intervention in 2021 (20 pre-periods, 10 post-periods). Donors follow a two-factor model
``y = 50 + 0.8 t + lambda_1i f_1t + lambda_2i f_2t + N(0, 1)`` with random walks f; the
treated unit is ``0.5 donor_02 + 0.3 donor_05 + 0.2 donor_09`` (noise-free, so those are its
true weights) plus N(0, 0.5^2) noise and a constant effect of +5 from 2021 on. Predictors
``x1`` (tracks the first loading) and ``x2`` (noise) are observed every period.
"""

import csv
import os

import numpy as np

SEED = 20261127
YEARS = list(range(2001, 2031))
N_DONORS = 10
TRUE_WEIGHTS = {"donor_02": 0.5, "donor_05": 0.3, "donor_09": 0.2}
EFFECT = 5.0
FIRST_POST = 2021


def main() -> None:
    rng = np.random.default_rng(SEED)
    T = len(YEARS)
    f = np.cumsum(rng.normal(0, 1, size=(2, T)), axis=1)
    donors = [f"donor_{i:02d}" for i in range(1, N_DONORS + 1)]
    lam = rng.normal(0, 1.5, size=(N_DONORS, 2))
    y = {}
    x1 = {}
    for i, name in enumerate(donors):
        y[name] = 50 + 0.8 * np.arange(T) + lam[i] @ f + rng.normal(0, 1, T)
        x1[name] = 10 + 2 * lam[i, 0] + rng.normal(0, 0.5, T)
    y["treated"] = sum(w * y[d] for d, w in TRUE_WEIGHTS.items()) + rng.normal(0, 0.5, T)
    y["treated"] = y["treated"] + EFFECT * (np.array(YEARS) >= FIRST_POST)
    x1["treated"] = sum(w * x1[d] for d, w in TRUE_WEIGHTS.items()) + rng.normal(0, 0.2, T)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sc_data.csv")
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["unit", "period", "y", "x1", "x2"])
        for name in ["treated", *donors]:
            x2 = rng.normal(5, 1, T)
            for t, year in enumerate(YEARS):
                out.writerow([name, year, f"{y[name][t]:.6f}", f"{x1[name][t]:.6f}",
                              f"{x2[t]:.6f}"])


if __name__ == "__main__":
    main()
