"""Outcome measures: instrument definitions, scoring and safety red flags.

Outcomes know nothing of designs or analyses: they turn item responses into scores and flags.
The instrument library is data (``outcomes/library/*.yaml``); protocols may declare more.
"""

from outcomes.instruments import (
    GAD7,
    INSTRUMENTS,
    PHQ9,
    Band,
    Instrument,
    get_instrument,
    instrument_from_dict,
    load_instrument_file,
    load_library,
)
from outcomes.safety import red_flag_visits
from outcomes.scoring import score_instrument

__all__ = [
    "GAD7",
    "INSTRUMENTS",
    "PHQ9",
    "Band",
    "Instrument",
    "get_instrument",
    "instrument_from_dict",
    "load_instrument_file",
    "load_library",
    "red_flag_visits",
    "score_instrument",
]
