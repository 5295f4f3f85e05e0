"""Vectorised scoring of an instrument's items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from outcomes.instruments import Instrument


def score_instrument(items: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """Score item responses row by row.

    Parameters
    ----------
    items
        One column per item, in item order (``n_items`` columns), values in the item range or
        missing. The caller's frame is not modified.
    instrument
        The instrument definition.

    Returns
    -------
    pandas.DataFrame
        Same index as ``items`` with columns ``total`` (float, missing when too many items are
        missing), ``n_missing``, ``prorated`` (bool) and ``band`` (severity label or missing).

    Notes
    -----
    With :math:`m \\le` ``max_missing`` items missing out of :math:`k`, the total is
    :math:`\\lfloor k \\bar{x} + 1/2 \\rfloor` where :math:`\\bar{x}` is the mean of the answered
    items; with no item missing this is the plain sum.
    """
    if items.shape[1] != instrument.n_items:
        raise ValueError(f"{instrument.name}: expected {instrument.n_items} item columns, "
                         f"got {items.shape[1]}")
    values = items.to_numpy(dtype=float, na_value=np.nan)
    n_missing = np.isnan(values).sum(axis=1)
    answered = instrument.n_items - n_missing
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(values, axis=1) / answered
    total = np.floor(mean * instrument.n_items + 0.5)
    total[n_missing > instrument.max_missing] = np.nan
    bands = np.full(len(total), None, dtype=object)
    for b in instrument.bands:
        bands[(total >= b.low) & (total <= b.high)] = b.label
    return pd.DataFrame(
        {
            "total": total,
            "n_missing": n_missing.astype(int),
            "prorated": (n_missing > 0) & (n_missing <= instrument.max_missing),
            "band": pd.Series(bands, index=items.index, dtype="object"),
        },
        index=items.index,
    )
