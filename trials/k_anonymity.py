"""k-anonymity of a released dataset: the smallest group of people sharing the same values of
the quasi-identifiers (age group, gender, ethnicity, deprivation, site...)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from trials.errors import PrivacyError


@dataclass(frozen=True)
class KAnonymity:
    """Equivalence classes of a dataset on its quasi-identifiers.

    ``smallest`` is the size of the smallest class (0 for a dataset without rows); ``below``
    lists the classes smaller than ``k``, one row each: the quasi-identifier values and ``size``.
    """

    k: int
    quasi_identifiers: tuple[str, ...]
    smallest: int
    n_classes: int
    below: pd.DataFrame

    @property
    def ok(self) -> bool:
        return self.below.empty


def k_anonymity(frame: pd.DataFrame, quasi_identifiers: Sequence[str], k: int, *,
                unit: str | None = None) -> KAnonymity:
    """How anonymous a released dataset is on ``quasi_identifiers``.

    Parameters
    ----------
    frame
        The dataset as released (not modified).
    quasi_identifiers
        Columns an outsider could link to other sources (age group, gender, practice, ...).
    k
        The smallest class size allowed.
    unit
        The column naming the person when a person has several rows (long format); classes then
        count distinct people, not rows.

    Notes
    -----
    A dataset is *k*-anonymous when every combination of quasi-identifier values that occurs is
    shared by at least *k* people. Missing values count as a value of their own.
    """
    if k < 1:
        raise PrivacyError(f"k-anonymity: k must be at least 1, not {k}")
    qi = list(dict.fromkeys(quasi_identifiers))
    missing = [c for c in [*qi, *([unit] if unit else [])] if c not in frame.columns]
    if missing:
        raise PrivacyError(f"k-anonymity: column(s) {', '.join(map(repr, missing))} not in "
                           "the dataset")
    people = frame[[*qi, unit]].drop_duplicates() if unit else frame[qi]
    if not qi:
        n = int(people[unit].nunique()) if unit else len(people)
        below = pd.DataFrame({"size": [n]}) if 0 < n < k else pd.DataFrame({"size": []})
        return KAnonymity(k, (), n, int(n > 0), below)
    if unit:
        sizes = people.groupby(qi, dropna=False, sort=True)[unit].nunique()
    else:
        sizes = people.groupby(qi, dropna=False, sort=True).size()
    sizes = sizes.rename("size").astype(int)
    classes = sizes.reset_index()
    below = classes[classes["size"] < k].reset_index(drop=True)
    smallest = int(sizes.min()) if len(sizes) else 0
    return KAnonymity(k, tuple(qi), smallest, len(sizes), below)
