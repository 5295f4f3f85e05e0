"""Safety red flags on item responses (e.g. PHQ-9 item 9: thoughts of self-harm)."""

from __future__ import annotations

import pandas as pd


def red_flag_visits(item: pd.Series, at_least: int) -> pd.Series:
    """Flag each visit whose item response is at least ``at_least``.

    Returns a nullable boolean Series: True (flag), False (assessed, no flag) or <NA> (item not
    answered, so the visit could not be screened; counted separately, never as "no flag").
    """
    values = pd.to_numeric(item, errors="coerce")
    flags = pd.Series(pd.array(values >= at_least, dtype="boolean"), index=item.index)
    flags[values.isna()] = pd.NA
    return flags


def participant_flags(
    frame: pd.DataFrame, participant: str, flag: str
) -> pd.DataFrame:
    """Collapse visit-level flags to participants: ``flagged`` (any True), ``assessed`` (any
    answered visit) and ``n_flagged_visits``."""
    grouped = frame.groupby(participant, sort=True)[flag]
    out = pd.DataFrame(
        {
            "flagged": grouped.apply(lambda s: bool(s.fillna(False).any())),
            "assessed": grouped.apply(lambda s: bool(s.notna().any())),
            "n_flagged_visits": grouped.apply(lambda s: int(s.fillna(False).sum())),
        }
    )
    out["flagged"] = out["flagged"].astype(bool)
    return out


__all__ = ["participant_flags", "red_flag_visits"]
