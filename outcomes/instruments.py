"""Instrument definitions as data: items, response range, missing-item rule, severity bands."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Band:
    label: str
    low: int
    high: int


@dataclass(frozen=True)
class Instrument:
    """One patient-reported instrument.

    ``max_missing`` items may be missing before the total is missing; with one or more (but at
    most ``max_missing``) items missing the total is prorated: the mean of the answered items
    times the number of items, rounded half up to an integer.
    """

    name: str
    n_items: int
    item_min: int
    item_max: int
    max_missing: int
    bands: tuple[Band, ...]
    caseness_threshold: int
    source: str

    @property
    def total_min(self) -> int:
        return self.n_items * self.item_min

    @property
    def total_max(self) -> int:
        return self.n_items * self.item_max

    @property
    def missing_rule(self) -> str:
        return (
            f"{self.name}: with up to {self.max_missing} of {self.n_items} items missing the total "
            f"is prorated (mean of answered items x {self.n_items}, rounded half up); with more "
            "missing the total is missing."
        )

    def band(self, total: int) -> str:
        for b in self.bands:
            if b.low <= total <= b.high:
                return b.label
        raise ValueError(f"{self.name}: total {total} outside {self.total_min}..{self.total_max}")


PHQ9 = Instrument(
    name="PHQ-9",
    n_items=9,
    item_min=0,
    item_max=3,
    max_missing=2,
    bands=(
        Band("minimal", 0, 4),
        Band("mild", 5, 9),
        Band("moderate", 10, 14),
        Band("moderately severe", 15, 19),
        Band("severe", 20, 27),
    ),
    caseness_threshold=10,
    source="Kroenke K, Spitzer RL, Williams JBW. The PHQ-9. J Gen Intern Med 2001;16:606-13.",
)

GAD7 = Instrument(
    name="GAD-7",
    n_items=7,
    item_min=0,
    item_max=3,
    max_missing=1,
    bands=(
        Band("minimal", 0, 4),
        Band("mild", 5, 9),
        Band("moderate", 10, 14),
        Band("severe", 15, 21),
    ),
    caseness_threshold=8,
    source="Spitzer RL, Kroenke K, Williams JBW, Lowe B. A brief measure for assessing "
    "generalized anxiety disorder: the GAD-7. Arch Intern Med 2006;166:1092-7.",
)

INSTRUMENTS: dict[str, Instrument] = {i.name: i for i in (PHQ9, GAD7)}


def get_instrument(name: str) -> Instrument:
    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise KeyError(f"unknown instrument {name!r}; known: {sorted(INSTRUMENTS)}") from None
