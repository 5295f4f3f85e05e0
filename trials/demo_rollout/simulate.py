"""Simulated data of the second demo: an AI triage assistant switched on in clinics at staggered
dates (a quasi-experiment, not a trial).

Thirty primary-care mental-health clinics are observed for 36 months. The service switches the
assistant on in three waves (months 13, 19 and 25; eight clinics each); six clinics have not
switched it on by the end and serve as the never-treated comparison. Each patient referred in a
month has the weeks from referral to first appointment and whether they recovered on PHQ-9 (below
caseness at discharge). Clinics differ in level, all share a seasonal pattern and a slow secular
trend, and the assistant's effect on waiting grows over the first months after switch-on (a
heterogeneous, dynamic effect: the case where two-way fixed effects is biased and Callaway and
Sant'Anna's estimator is not).

True effects (simulation truth, for the tests): waiting falls by 1.0 week at switch-on and by a
further 0.1 week per month, to 2.0 weeks after 10 months; recovery rises by 3 percentage points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WAVES = {13: 8, 19: 8, 25: 8}
NEVER = 6
MONTHS = 36


def effect_on_wait(months_since: np.ndarray) -> np.ndarray:
    """Simulation truth: change in weeks to first appointment, by months since switch-on."""
    e = -(1.0 + 0.1 * np.minimum(months_since, 10))
    return np.where(months_since >= 0, e, 0.0)


RECOVERY_EFFECT = 0.03


def simulate_rollout(seed: int = 20261128, patients_per_month: float = 22.0) -> pd.DataFrame:
    """Patient-level rows: patient_id, clinic, referral_month, go_live_month (empty when never),
    weeks_to_first_appointment, phq9_recovered (0/1), age_band, gender, imd_quintile."""
    rng = np.random.default_rng(seed)
    clinics = [f"clinic_{i:02d}" for i in range(1, 1 + sum(WAVES.values()) + NEVER)]
    go_live: list[float] = []
    for month, count in WAVES.items():
        go_live += [float(month)] * count
    go_live += [np.nan] * NEVER
    order = rng.permutation(len(clinics))  # waves are not in clinic-number order
    go_live_arr = np.asarray(go_live)[order]
    level = rng.normal(7.0, 1.2, len(clinics))  # clinic's usual wait (weeks)
    recovery_level = rng.normal(0.0, 0.25, len(clinics))  # on the log-odds scale
    rows = []
    pid = 0
    for c, clinic in enumerate(clinics):
        size = rng.uniform(0.7, 1.3)
        for month in range(1, MONTHS + 1):
            n = rng.poisson(patients_per_month * size)
            if n == 0:
                continue
            g = go_live_arr[c]
            since = month - g if np.isfinite(g) else -1.0
            season = 0.6 * np.sin(2 * np.pi * (month - 1) / 12)
            trend = 0.03 * month
            mean_wait = level[c] + season + trend + float(effect_on_wait(np.array([since]))[0])
            wait = np.clip(rng.gamma(9.0, mean_wait / 9.0, n) + rng.normal(0, 0.5, n), 0.3, None)
            logit = -0.45 + recovery_level[c] - 0.04 * (level[c] - 7.0)
            p = 1 / (1 + np.exp(-logit)) + (RECOVERY_EFFECT if since >= 0 else 0.0)
            recovered = rng.random(n) < p
            for i in range(n):
                pid += 1
                rows.append((f"P{seed % 1000:03d}{pid:06d}", clinic, month,
                             None if not np.isfinite(g) else int(g), round(float(wait[i]), 1),
                             int(recovered[i])))
    frame = pd.DataFrame(rows, columns=["patient_id", "clinic", "referral_month",
                                        "go_live_month", "weeks_to_first_appointment",
                                        "phq9_recovered"])
    frame["go_live_month"] = frame["go_live_month"].astype("Int64")
    n = len(frame)
    frame["age_band"] = rng.choice(["18-25", "26-40", "41-65", "66+"], n, p=[.2, .35, .35, .1])
    frame["gender"] = rng.choice(["female", "male", "other"], n, p=[.6, .38, .02])
    frame["imd_quintile"] = rng.integers(1, 6, n)
    return frame
