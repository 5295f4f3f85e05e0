"""Vectorised scoring of an instrument's items."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from outcomes.instruments import Instrument


def score_instrument(items: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """Score item responses row by row.

    Parameters
    ----------
    items
        One column per item, in item order (``n_items`` columns). Values are whole numbers in
        ``item_min..item_max`` as coded by the instrument (before reverse keying), or missing
        (NaN / None / ``pd.NA``). The caller's frame is not modified.
    instrument
        The instrument definition.

    Returns
    -------
    pandas.DataFrame
        Same index as ``items`` with columns ``total`` (float, the instrument's reported score;
        missing when more than ``max_missing`` items are missing), ``n_missing``, ``prorated``
        (bool) and ``band`` (severity label, or ``None`` when the total is missing or the
        instrument has no bands).

    Raises
    ------
    ValueError
        Wrong number of columns, or a value that is not a whole number in the item range; the
        message names the column, the value and the row.

    Notes
    -----
    Reverse-keyed items are replaced by ``item_min + item_max - x`` first. With :math:`m` of
    :math:`k` items missing (:math:`m \\le` ``max_missing``) and :math:`S` the sum of the
    :math:`k - m` answered keyed items, the raw sum is :math:`R = k S / (k - m)`, rounded to
    :math:`\\lfloor R + 1/2 \\rfloor` when ``prorate_rounding`` is ``"half_up"``; with nothing
    missing :math:`R = S` exactly. Then by method: ``sum`` gives :math:`R \\times` multiplier,
    ``mean`` gives :math:`S / (k - m) \\times` multiplier, ``sus`` gives
    :math:`(R - k \\cdot item_{min}) \\times 2.5` and ``conversion`` looks :math:`R` up in the
    table. A total belongs to the last band whose lower bound it reaches.
    """
    inst = instrument
    if items.shape[1] != inst.n_items:
        raise ValueError(f"{inst.name}: expected {inst.n_items} item columns, "
                         f"got {items.shape[1]}")
    x = keyed_items(items, inst).to_numpy()  # a new array: the caller's frame stays as it was

    missing = np.isnan(x)
    n_missing = missing.sum(axis=1)
    answered = inst.n_items - n_missing
    scorable = (n_missing <= inst.max_missing) & (answered > 0)
    total_keyed = np.where(missing, 0.0, x).sum(axis=1)
    safe_answered = np.where(answered > 0, answered, 1)
    # k * S / (k - m) with one division: an exact half stays exact before rounding half up.
    raw = total_keyed * inst.n_items / safe_answered
    if inst.prorate_rounding == "half_up":
        raw = np.floor(raw + 0.5)

    if inst.method == "sum":
        total = raw * inst.multiplier
    elif inst.method == "mean":
        total = total_keyed / safe_answered * inst.multiplier
    elif inst.method == "sus":
        total = (raw - inst.raw_min) * 2.5
    else:  # conversion
        table = np.array([score for _, score in inst.conversion], dtype=float)
        index = np.clip(raw, inst.raw_min, inst.raw_max).astype(int) - inst.raw_min
        total = table[index]
    total = np.where(scorable, total, np.nan)

    bands = np.full(len(total), None, dtype=object)
    if inst.bands:
        lows = np.array([b.low for b in inst.bands], dtype=float)
        labels = np.array([b.label for b in inst.bands], dtype=object)
        which = np.searchsorted(lows, np.where(scorable, total, lows[0]), side="right") - 1
        has_band = scorable & (which >= 0)
        bands[has_band] = labels[which[has_band]]
    return pd.DataFrame(
        {
            "total": total,
            "n_missing": n_missing.astype(int),
            "prorated": (n_missing > 0) & scorable,
            "band": pd.Series(bands, index=items.index, dtype="object"),
        },
        index=items.index,
    )


def keyed_items(items: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """Item responses with reverse-keyed items turned round (``item_min + item_max - x``), so
    that every item points the same way: the input to reliability statistics."""
    x = _item_values(items, instrument)
    if instrument.reverse_items:
        cols = [i - 1 for i in instrument.reverse_items]
        x[:, cols] = instrument.item_min + instrument.item_max - x[:, cols]
    return pd.DataFrame(x, index=items.index, columns=items.columns)


def _item_values(items: pd.DataFrame, inst: Instrument) -> np.ndarray:
    """Items as a fresh float array (NaN = missing); anything else out of place raises."""
    out = np.empty(items.shape, dtype=float)
    for j in range(items.shape[1]):
        col = items.iloc[:, j]
        name = items.columns[j]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            # Text, booleans and objects: only real numbers (or missing) are item responses.
            for row, v in col.items():
                if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                    continue
                if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
                    raise ValueError(f"{inst.name}: column {name!r}, row {row!r}: {v!r} is not "
                                     f"a number (items are whole numbers "
                                     f"{inst.item_min}..{inst.item_max}, missing as NaN)")
            col = pd.to_numeric(col.astype(object).where(col.notna(), np.nan))
        values = col.to_numpy(dtype=float, na_value=np.nan)
        given = ~np.isnan(values)
        bad = given & ((values < inst.item_min) | (values > inst.item_max)
                       | (values != np.floor(values)))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            v = values[k]
            shown = int(v) if np.isfinite(v) and v == np.floor(v) else float(v)
            raise ValueError(f"{inst.name}: column {name!r}, row {items.index[k]!r}: {shown!r} "
                             f"is not a whole number in {inst.item_min}..{inst.item_max} "
                             "(missing values must be NaN)")
        out[:, j] = values
    return out
