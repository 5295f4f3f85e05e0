"""Seeded, realistic data for the demo study (AI-guided CBT companion vs usual care).

Four hundred adults with PHQ-9 >= 10 in eight primary-care practices, randomised 1:1 by
stratified permuted blocks (practice x baseline severity). PHQ-9 at weeks 0/4/8/12 and GAD-7 at
weeks 0/12; monotone dropout that is higher for younger and more deprived participants;
occasional missing items; item-9 positives in both arms. The companion lowers PHQ-9 by about
1.8 points at week 12 relative to usual care (GAD-7 by about 1.8).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from designs.randomisation import stratified_block_allocation

ARMS = ("usual_care", "ai_cbt")
WEEKS = (0, 4, 8, 12)
TRUE_EFFECT = {4: -0.8, 8: -1.4, 12: -1.8}  # PHQ-9 points, companion minus usual care
USUAL_CARE_CHANGE = {4: -1.8, 8: -3.0, 12: -3.8}

# Relative propensity of each PHQ-9 item to carry symptom points; item 9 (self-harm) is rare.
PHQ9_WEIGHTS = np.array([1.2, 1.2, 1.1, 1.3, 0.9, 1.0, 0.9, 0.7, 0.12])
# Item 9 varies less between people than the other items: positives stay a minority.
PHQ9_NOISE = np.array([0.55] * 8 + [0.3])
GAD7_WEIGHTS = np.array([1.2, 1.0, 1.2, 1.0, 0.8, 1.0, 0.8])


def _distribute(totals: np.ndarray, weights: np.ndarray, rng: np.random.Generator,
                noise: float | np.ndarray = 0.55) -> np.ndarray:
    """Item responses (0..3) whose sum is close to each row's total.

    Every item follows the row's overall severity (so items correlate positively, as real
    questionnaire items do) scaled by the item's weight, plus independent item-level noise.
    """
    per_item = np.asarray(totals, dtype=float)[:, None] / len(weights)
    latent = per_item * (weights / weights.mean())[None, :]
    latent = latent + rng.normal(0, 1, size=latent.shape) * np.asarray(noise)
    return np.clip(np.round(latent), 0, 3).astype(int)


def simulate_demo(n: int = 400, seed: int = 20261127) -> pd.DataFrame:
    """Long-format demo data: one row per participant and visit, items as ``phq9_1``...

    The same ``n`` and ``seed`` give the same frame.
    """
    rng = np.random.default_rng(seed)
    practices = np.array([f"practice_{i:02d}" for i in range(1, 9)])
    practice = rng.choice(practices, size=n, p=[0.18, 0.16, 0.14, 0.12, 0.12, 0.1, 0.1, 0.08])
    age_group = rng.choice(["18-24", "25-34", "35-44", "45-54", "55-64", "65+"], size=n,
                           p=[0.14, 0.24, 0.2, 0.18, 0.14, 0.1])
    gender = rng.choice(["woman", "man", "non-binary", "prefer not to say"], size=n,
                        p=[0.6, 0.36, 0.025, 0.015])
    ethnicity = rng.choice(["White", "Asian", "Black", "Mixed", "Other"], size=n,
                           p=[0.78, 0.09, 0.05, 0.04, 0.04])
    imd = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.28, 0.24, 0.2, 0.16, 0.12])
    baseline = np.clip(np.round(rng.gamma(9.0, 0.6, size=n) + 10), 10, 27).astype(int)
    severity = np.where(baseline >= 15, "severe", "moderate")
    people = pd.DataFrame({
        "participant_id": [f"CMP-{i:04d}" for i in range(1, n + 1)],
        "practice": practice, "severity_stratum": severity, "age_group": age_group,
        "gender": gender, "ethnicity": ethnicity, "imd_quintile": imd,
    })
    people["arm"] = stratified_block_allocation(
        people[["practice", "severity_stratum"]], ARMS, seed=seed + 1).to_numpy()
    treated = (people["arm"] == "ai_cbt").to_numpy()

    # Latent trajectory: practice effect, person-level slope, visit noise.
    practice_effect = dict(zip(practices, rng.normal(0, 0.8, size=len(practices)), strict=True))
    p_eff = people["practice"].map(practice_effect).to_numpy()
    slope = rng.normal(1.0, 0.35, size=n)
    totals = {0: baseline}
    for week in WEEKS[1:]:
        mean = (baseline + slope * USUAL_CARE_CHANGE[week] + treated * TRUE_EFFECT[week]
                + 0.35 * p_eff - 0.15 * (baseline - 15))
        totals[week] = np.clip(np.round(mean + rng.normal(0, 3.6, size=n)), 0, 27).astype(int)
    gad = {0: np.clip(np.round(0.7 * baseline + rng.normal(0, 2.5, size=n)), 0, 21).astype(int)}
    gad_mean = gad[0] - 2.6 * slope - 1.8 * treated
    gad[12] = np.clip(np.round(gad_mean + rng.normal(0, 3.0, size=n)), 0, 21).astype(int)

    # Monotone dropout, more likely for younger and more deprived participants.
    risk = 0.055 + 0.03 * (age_group == "18-24") + 0.012 * (3 - imd)
    last_week = np.full(n, 12)
    for week in (12, 8, 4):
        last_week[rng.random(n) < risk] = min(week - 4, 12)
    rows = []
    for week in WEEKS:
        present = last_week >= week
        intermittent = (week > 0) & (rng.random(n) < 0.03)
        keep = present & ~intermittent
        phq_items = _distribute(totals[week][keep], PHQ9_WEIGHTS, rng, PHQ9_NOISE).astype(float)
        frame = people.loc[keep].copy()
        frame["week"] = week
        for j in range(9):
            frame[f"phq9_{j + 1}"] = phq_items[:, j]
        if week in gad:
            gad_items = _distribute(gad[week][keep], GAD7_WEIGHTS, rng).astype(float)
        else:
            gad_items = np.full((int(keep.sum()), 7), np.nan)
        for j in range(7):
            frame[f"gad7_{j + 1}"] = gad_items[:, j]
        rows.append(frame)
    data = pd.concat(rows, ignore_index=True)
    # Occasional missing items: one item on 2% of questionnaires, four items on 0.5%.
    phq_cols = [f"phq9_{j}" for j in range(1, 10)]
    u = rng.random(len(data))
    one = u < 0.02
    many = (u >= 0.02) & (u < 0.025)
    for i in np.flatnonzero(one):
        data.loc[i, rng.choice(phq_cols)] = np.nan
    for i in np.flatnonzero(many):
        data.loc[i, list(rng.choice(phq_cols, size=4, replace=False))] = np.nan
    data = data.sort_values(["participant_id", "week"], kind="stable").reset_index(drop=True)
    extra = np.random.default_rng(seed + 2)  # a separate stream: earlier columns stay as they were
    data["completed_at"] = _completion_times(data, extra)
    data = _add_experience_measures(data, extra)
    item_cols = (phq_cols + [f"gad7_{j}" for j in range(1, 8)]
                 + [f"csq8_{j}" for j in range(1, 9)] + [f"sus_{j}" for j in range(1, 11)])
    data[item_cols] = data[item_cols].astype("Int64")
    order = ["participant_id", "arm", "week", "completed_at", "practice", "severity_stratum",
             "age_group", "gender", "ethnicity", "imd_quintile", *item_cols]
    return data[order]


def _completion_times(data: pd.DataFrame, rng: np.random.Generator) -> pd.Series:
    """Enrolment spread over January to June 2026; each visit about ``week`` weeks later."""
    ids = data["participant_id"].unique()
    start = pd.Timestamp("2026-01-05 09:00")
    enrol = dict(zip(ids, start + pd.to_timedelta(rng.integers(0, 176, len(ids)), unit="D"),
                     strict=True))
    jitter = pd.to_timedelta(rng.integers(0, 11 * 60, len(data)), unit="min")
    delay = pd.to_timedelta(data["week"] * 7 + rng.integers(0, 4, len(data)) * (data["week"] > 0),
                            unit="D")
    when = data["participant_id"].map(enrol) + delay + jitter
    return when.dt.strftime("%Y-%m-%dT%H:%M")


def _add_experience_measures(data: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """CSQ-8 (satisfaction, both arms) and SUS (usability, companion arm) at week 12."""
    data = data.copy()
    at12 = (data["week"] == 12).to_numpy()
    ai = (data["arm"] == "ai_cbt").to_numpy()
    n = len(data)
    satisfaction = rng.normal(0.35 * ai, 0.8, size=n)
    for j in range(1, 9):
        level = np.clip(np.round(2.9 + satisfaction + rng.normal(0, 0.5, n)), 1, 4)
        data[f"csq8_{j}"] = np.where(at12, level, np.nan)
    usability = rng.normal(0, 0.7, size=n)
    for j in range(1, 11):
        positive = j % 2 == 1  # SUS odd items are positively worded
        centre = 3.9 if positive else 2.0
        sign = 1 if positive else -1
        level = np.clip(np.round(centre + sign * usability + rng.normal(0, 0.6, n)), 1, 5)
        data[f"sus_{j}"] = np.where(at12 & ai, level, np.nan)
    return data


def simulate_demo_logs(data: pd.DataFrame, seed: int = 20261127) -> dict[str, pd.DataFrame]:
    """Escalation, engagement and adverse-event logs consistent with the visit data.

    * escalations: every PHQ-9 item-9 flag at any visit; clinician contact after a lognormal
      delay (median about 5 hours), a few later than 24 hours;
    * engagement: companion sessions (more for people who improved: dose is confounded, as in
      real use), the AI model version in use (companion-1.4 until 2026-04-01, then 1.5), and
      failed sessions;
    * adverse events: any arm, about 12% of participants, some serious.
    """
    rng = np.random.default_rng(seed + 3)
    flagged = data[data["phq9_9"].fillna(0) >= 1]
    done = pd.to_datetime(flagged["completed_at"])
    delay_h = np.exp(rng.normal(np.log(5), 0.8, len(flagged)))
    contact = (done + pd.to_timedelta(np.round(delay_h * 60), unit="min"))
    contact_txt = contact.dt.strftime("%Y-%m-%dT%H:%M").to_numpy(dtype=object)
    outcome = rng.choice(["safety plan reviewed", "GP follow-up booked", "urgent referral",
                          "no further action"], size=len(flagged), p=[0.55, 0.3, 0.05, 0.1])
    escalations = pd.DataFrame({
        "participant_id": flagged["participant_id"].to_numpy(),
        "week": flagged["week"].to_numpy(), "contact_time": contact_txt, "outcome": outcome,
    })
    people = data.groupby("participant_id", sort=True).agg(
        arm=("arm", "first"), start=("completed_at", "first"))
    phq = data.assign(total=data[[f"phq9_{j}" for j in range(1, 10)]].sum(axis=1, min_count=9))
    wide = phq.pivot_table(index="participant_id", columns="week", values="total")
    improvement = (wide[0] - wide.get(12, wide[0])).reindex(people.index).fillna(0)
    rows = []
    for pid, person in people[people["arm"] == "ai_cbt"].iterrows():
        rate = np.exp(np.log(12) + 0.005 * (improvement[pid] - 3.5))
        n_sessions = int(rng.poisson(max(rate, 0.5)))
        start = pd.Timestamp(person["start"])
        offsets = np.sort(rng.uniform(0, 84, n_sessions))
        for k, off in enumerate(offsets, 1):
            when = start + pd.Timedelta(days=float(off))
            version = "companion-1.4" if when < pd.Timestamp("2026-04-01") else "companion-1.5"
            failed = bool(rng.random() < (0.05 if version == "companion-1.4" else 0.02))
            rows.append({"participant_id": pid, "session": k,
                         "session_start": when.strftime("%Y-%m-%dT%H:%M"),
                         "duration_minutes": 0 if failed else int(rng.gamma(4, 5)),
                         "ai_version": version, "failed": failed})
    engagement = pd.DataFrame(rows, columns=["participant_id", "session", "session_start",
                                             "duration_minutes", "ai_version", "failed"])
    ae_people = people.index[rng.random(len(people)) < 0.12]
    terms = ["headache", "sleep disturbance", "worsening low mood", "anxiety",
             "hospital admission (unrelated to study)"]
    ae_terms = rng.choice(terms, size=len(ae_people), p=[0.3, 0.25, 0.2, 0.17, 0.08])
    adverse = pd.DataFrame({
        "participant_id": ae_people, "term": ae_terms,
        "serious": [t.startswith("hospital") for t in ae_terms],
    })
    # Downtime: a handful of outages, one long one around the version change.
    outage_starts = pd.to_datetime(["2026-02-11T02:10", "2026-03-30T21:00", "2026-04-01T06:00",
                                    "2026-05-19T13:40", "2026-07-08T09:15"])
    hours = [0.5, 3.0, 6.5, 1.2, 0.8]
    downtime = pd.DataFrame({
        "start": outage_starts.strftime("%Y-%m-%dT%H:%M"),
        "end": (outage_starts + pd.to_timedelta(hours, unit="h")).strftime("%Y-%m-%dT%H:%M"),
        "description": ["database failover", "model deployment", "model deployment rollback",
                        "hosting incident", "certificate renewal"],
    })
    # Clinician ratings: two or three clinicians per practice, 1-5 on four items.
    clinicians = [f"GP-{i:02d}" for i in range(1, 21)]
    liking = rng.normal(0, 0.7, len(clinicians))
    ratings = pd.DataFrame({"clinician_id": clinicians})
    for j in range(1, 5):
        ratings[f"clinsat_{j}"] = np.clip(np.round(3.6 + liking + rng.normal(0, 0.5, 20)), 1, 5
                                          ).astype(int)
    return {"escalations": escalations, "engagement": engagement, "adverse_events": adverse,
            "downtime": downtime, "clinician_ratings": ratings}
