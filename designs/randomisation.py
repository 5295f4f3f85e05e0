"""Randomisation lists. v1: stratified permuted blocks with random block sizes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def stratified_block_allocation(
    strata: pd.DataFrame,
    arms: Sequence[str],
    ratio: Sequence[int] | None = None,
    block_multiples: Sequence[int] = (1, 2),
    seed: int = 0,
) -> pd.Series:
    """Allocate units in row order by permuted blocks within each stratum.

    Parameters
    ----------
    strata
        One row per unit, in order of enrolment; the columns define the strata.
    arms, ratio
        Arm ids and integer allocation weights (1:1 by default).
    block_multiples
        Block sizes as multiples of ``sum(ratio)``, drawn at random for each new block so that
        the next allocation cannot be guessed from the block size.
    seed
        Seed of the generator: the same inputs and seed give the same list.
    """
    ratio = list(ratio or [1] * len(arms))
    base = np.repeat(np.asarray(arms, dtype=object), ratio)
    rng = np.random.default_rng(seed)
    out = pd.Series(index=strata.index, dtype=object, name="arm")
    pending: dict[tuple, list[str]] = {}
    keys = list(strata.itertuples(index=False, name=None))
    for idx, key in zip(strata.index, keys, strict=True):
        queue = pending.setdefault(key, [])
        if not queue:
            block = np.tile(base, int(rng.choice(block_multiples)))
            queue.extend(rng.permutation(block).tolist())
        out[idx] = queue.pop(0)
    return out
