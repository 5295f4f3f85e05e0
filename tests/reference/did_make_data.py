"""Write the simulated panels for the DiD reference tests (seeded; run once, output committed).

Run from the repository root: ``.venv/bin/python tests/reference/did_make_data.py``.

did_panel.csv: 60 clinics x 10 months, staggered adoption in months 4, 6 and 8 (15 clinics each)
and 15 never-treated clinics; the effect grows with time since adoption and differs by cohort,
so TWFE is biased and Callaway-Sant'Anna is not. Outcome rounded to 6 decimals so that R and
Python read the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def staggered_panel(seed: int = 20261127, n_per_cohort: int = 15,
                    cohorts=(4, 6, 8), periods: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = [*cohorts, None]
    rows = []
    unit = 0
    time_fe = rng.normal(0, 1, periods)
    for g in groups:
        for _ in range(n_per_cohort):
            unit += 1
            alpha = rng.normal(0, 2)
            for t in range(1, periods + 1):
                effect = 0.0
                if g is not None and t >= g:
                    effect = (1.0 + 0.5 * (t - g)) * (1.0 + (8 - g) / 4)
                y = 10 + alpha + time_fe[t - 1] + effect + rng.normal(0, 1)
                rows.append({"unit": f"c{unit:02d}", "period": t, "y": round(y, 6),
                             "treated": int(g is not None and t >= g),
                             "first_treated": g, "region": f"r{(unit - 1) % 12:02d}"})
    return pd.DataFrame(rows).astype({"first_treated": "Int64"})


if __name__ == "__main__":
    staggered_panel().to_csv(HERE / "did_panel.csv", index=False)
