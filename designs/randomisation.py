"""Seeded, reproducible randomisation lists and their balance.

Methods: simple randomisation, permuted blocks with random block sizes (unstratified, stratified
lists generated in advance per stratum, and stratified in order of enrolment), and minimisation
(:mod:`designs.minimisation`). Every method returns an :class:`AllocationList`: a frozen record
that exports the concealed list for the unblinded statistician (:meth:`AllocationList.export_csv`)
and has a SHA-256 that :func:`record_allocation` writes to the study's audit log.

Concealment
-----------
The list is concealed only while the seed is. The code is public, so anyone who knows (or can
guess) the seed can regenerate the list: use :func:`new_seed` (63 random bits), keep the seed
with the list, and do not choose small memorable seeds for a real study.
"""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trials.audit import AuditHead, AuditLog
from trials.io import write_text_atomic

#: Stratum label of an unstratified list.
UNSTRATIFIED = "all"
#: Columns of :meth:`AllocationList.to_frame` and of the exported CSV (factor columns follow).
COLUMNS = ("seq", "stratum", "stratum_seq", "arm", "block_id", "block_size", "method", "seed")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Allocation:
    """One row of an allocation list.

    ``seq`` numbers the rows of the list from 1; ``stratum_seq`` numbers them from 1 within their
    stratum (the slot a site uses for its next participant in that stratum). ``block_id`` (unique
    within the list) and ``block_size`` are set by block methods only; ``levels`` holds the values
    of :attr:`AllocationList.factors` for this participant (as text).
    """

    seq: int
    stratum: str
    stratum_seq: int
    arm: str
    block_id: int | None = None
    block_size: int | None = None
    levels: tuple[str, ...] = ()


@dataclass(frozen=True)
class AllocationList:
    """A complete, reproducible allocation list.

    Attributes
    ----------
    method
        ``simple``, ``permuted_blocks``, ``stratified_permuted_blocks`` or ``minimisation``.
    seed
        Seed of the generator; the same inputs and seed give the same list (and SHA-256).
    arms, ratio
        Arm ids and integer allocation weights.
    allocations
        The rows, in list order.
    factors
        Names of the participant characteristics held in each row's ``levels`` (stratification
        columns or minimisation factors); empty for lists generated in advance.
    parameters
        Method settings as ``(name, value)`` pairs (block multiples, minimisation ``p``...).
    """

    method: str
    seed: int
    arms: tuple[str, ...]
    ratio: tuple[int, ...]
    allocations: tuple[Allocation, ...]
    factors: tuple[str, ...] = ()
    parameters: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        clash = set(self.factors) & set(COLUMNS)
        if clash:
            raise ValueError(f"factor name(s) {sorted(clash)} clash with list columns {COLUMNS}")
        for a in self.allocations:
            if a.arm not in self.arms:
                raise ValueError(f"allocation {a.seq}: arm {a.arm!r} is not one of {self.arms}")
            if len(a.levels) != len(self.factors):
                raise ValueError(f"allocation {a.seq}: {len(a.levels)} factor levels where "
                                 f"{len(self.factors)} factors were declared")

    def __len__(self) -> int:
        return len(self.allocations)

    def __iter__(self) -> Iterator[Allocation]:
        return iter(self.allocations)

    @property
    def arm_sequence(self) -> tuple[str, ...]:
        """The arms in list order."""
        return tuple(a.arm for a in self.allocations)

    def _rows(self) -> Iterator[list[Any]]:
        for a in self.allocations:
            yield [a.seq, a.stratum, a.stratum_seq, a.arm, a.block_id, a.block_size,
                   self.method, self.seed, *a.levels]

    def to_frame(self) -> pd.DataFrame:
        """One row per allocation: :data:`COLUMNS`, then one column per factor."""
        frame = pd.DataFrame(list(self._rows()), columns=[*COLUMNS, *self.factors])
        for col in ("block_id", "block_size"):
            frame[col] = frame[col].astype("Int64")
        return frame

    def to_csv_text(self) -> str:
        """The canonical CSV text: UTF-8, ``\\n`` line ends, empty cells for missing values."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([*COLUMNS, *self.factors])
        for row in self._rows():
            writer.writerow(["" if v is None else v for v in row])
        return buf.getvalue()

    def sha256(self) -> str:
        """SHA-256 of :meth:`to_csv_text`; equals the SHA-256 of the exported file."""
        return hashlib.sha256(self.to_csv_text().encode("utf-8")).hexdigest()

    def export_csv(self, path: str | Path) -> Path:
        """Write the concealed list (for the unblinded statistician) atomically to ``path``.

        The file's SHA-256 equals :meth:`sha256`, so it can be checked against the audit log.
        """
        return write_text_atomic(path, self.to_csv_text())

    def balance(self) -> BalanceSummary:
        """Counts per arm overall, by stratum and by factor level (see :func:`balance_summary`)."""
        factors = pd.DataFrame([a.levels for a in self.allocations], columns=list(self.factors))
        return balance_summary(self.arm_sequence, self.arms, self.ratio,
                               strata=[a.stratum for a in self.allocations],
                               factors=factors if self.factors else None)


# --------------------------------------------------------------------------- balance


@dataclass(frozen=True)
class BalanceSummary:
    """Counts per arm overall, by stratum and by factor level.

    ``by_stratum`` is indexed by stratum and ``by_factor`` by ``(factor, level)``; both have one
    column per arm and an ``imbalance`` column.

    Notes
    -----
    The imbalance of a set of counts :math:`n_k` under allocation ratio :math:`r_k` is
    :math:`\\max_k n_k / r_k - \\min_k n_k / r_k`: for 1:1 the largest minus the smallest count,
    and 0 whenever the counts are exactly in the ratio.
    """

    arms: tuple[str, ...]
    ratio: tuple[int, ...]
    overall: pd.Series
    by_stratum: pd.DataFrame
    by_factor: pd.DataFrame

    @property
    def overall_imbalance(self) -> float:
        return imbalance(self.overall.to_numpy(), self.ratio)

    @property
    def max_stratum_imbalance(self) -> float:
        return float(self.by_stratum["imbalance"].max()) if len(self.by_stratum) else 0.0

    @property
    def max_factor_imbalance(self) -> float:
        """Largest imbalance within any level of any factor (minimisation's target)."""
        return float(self.by_factor["imbalance"].max()) if len(self.by_factor) else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One long table: ``scope`` (``overall``, ``stratum`` or the factor), ``level``, counts."""
        overall = pd.DataFrame([self.overall.to_numpy()], columns=list(self.arms))
        overall.insert(0, "level", "all")
        overall.insert(0, "scope", "overall")
        overall["imbalance"] = self.overall_imbalance
        strata = self.by_stratum.reset_index(names="level")
        strata.insert(0, "scope", "stratum")
        factors = self.by_factor.reset_index(names=["scope", "level"])
        return pd.concat([overall, strata, factors], ignore_index=True)


def imbalance(counts: Sequence[float] | np.ndarray, ratio: Sequence[int]) -> float:
    """Ratio-scaled range of ``counts`` (see :class:`BalanceSummary`)."""
    scaled = np.asarray(counts, dtype=float) / np.asarray(ratio, dtype=float)
    return float(scaled.max() - scaled.min())


def _count_table(arm: pd.Series, by: pd.Series, arms: tuple[str, ...],
                 ratio: tuple[int, ...]) -> pd.DataFrame:
    pairs = pd.DataFrame({"by": by.to_numpy(), "arm": arm.to_numpy()})
    table = pairs.groupby(["by", "arm"]).size().unstack(fill_value=0)
    table = table.reindex(columns=list(arms), fill_value=0).astype(int)
    table.columns = pd.Index(list(arms))
    table.index = pd.Index(table.index.to_list(), dtype=object)
    table["imbalance"] = [imbalance(row, ratio) for row in table[list(arms)].to_numpy()]
    return table


def balance_summary(arm: Sequence[str], arms: Sequence[str], ratio: Sequence[int] | None = None,
                    strata: Sequence[str] | None = None,
                    factors: pd.DataFrame | None = None) -> BalanceSummary:
    """Balance of any allocation: a list's, or the arm column of a study's data.

    Parameters
    ----------
    arm
        The allocated arm of each participant.
    arms, ratio
        Arm ids (all are counted, even if empty) and the allocation ratio (1:1 by default).
    strata
        Stratum of each participant (optional).
    factors
        One column per factor, one row per participant in the order of ``arm`` (optional).
    """
    arms_t, ratio_t = _arms_ratio(arms, ratio)
    arm_s = pd.Series(list(arm), dtype=object)
    unknown = sorted(set(arm_s) - set(arms_t))
    if unknown:
        raise ValueError(f"arm values {unknown} are not among the arms {arms_t}")
    overall = arm_s.value_counts().reindex(list(arms_t), fill_value=0).astype(int)
    overall.name = "n"
    if strata is None:
        by_stratum = pd.DataFrame(columns=[*arms_t, "imbalance"])
    else:
        by_stratum = _count_table(arm_s, pd.Series(list(strata), dtype=object), arms_t, ratio_t)
    parts = []
    if factors is not None:
        if len(factors) != len(arm_s):
            raise ValueError(f"factors has {len(factors)} rows for {len(arm_s)} allocations")
        for name in factors.columns:
            levels = pd.Series(factors[name].astype(str).to_numpy(), dtype=object)
            table = _count_table(arm_s, levels, arms_t, ratio_t)
            table.index = pd.MultiIndex.from_product([[name], table.index])
            parts.append(table)
    by_factor = (pd.concat(parts) if parts
                 else pd.DataFrame(columns=[*arms_t, "imbalance"],
                                   index=pd.MultiIndex.from_tuples([], names=[None, None])))
    return BalanceSummary(arms_t, ratio_t, overall, by_stratum, by_factor)


# --------------------------------------------------------------------------- validation


def new_seed() -> int:
    """A fresh, unguessable seed (63 random bits) for a real study's list."""
    return secrets.randbits(63)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    return int(seed)


def _arms_ratio(arms: Sequence[str],
                ratio: Sequence[int] | None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    arms_t = tuple(str(a) for a in arms)
    if len(arms_t) < 2 or len(set(arms_t)) != len(arms_t):
        raise ValueError(f"arms must be at least two distinct ids, not {list(arms)}")
    ratio_t = tuple(ratio) if ratio is not None and len(ratio) else (1,) * len(arms_t)
    if len(ratio_t) != len(arms_t):
        raise ValueError(f"ratio {list(ratio_t)} has {len(ratio_t)} entries for "
                         f"{len(arms_t)} arms")
    if any(isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 1 for r in ratio_t):
        raise ValueError(f"ratio entries must be positive integers, not {list(ratio_t)}")
    return arms_t, tuple(int(r) for r in ratio_t)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")
    return int(n)


def _check_multiples(block_multiples: Sequence[int]) -> tuple[int, ...]:
    mult = tuple(block_multiples)
    if not mult or any(isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1
                       for m in mult):
        raise ValueError(f"block_multiples must be positive integers, not {list(mult)}")
    return mult


def stratum_label(columns: Sequence[str], key: Sequence[Any]) -> str:
    """Text label of a stratum, e.g. ``site=A|severity=severe``."""
    return "|".join(f"{c}={v}" for c, v in zip(columns, key, strict=True))


# --------------------------------------------------------------------------- methods


def simple_randomisation(n: int, arms: Sequence[str], ratio: Sequence[int] | None = None,
                         seed: int = 0) -> AllocationList:
    """Independent draws: each participant goes to arm ``k`` with probability ``r_k / sum(r)``.

    Balance is not enforced, so small trials can end noticeably unbalanced.
    """
    n, seed = _check_n(n), _check_seed(seed)
    arms_t, ratio_t = _arms_ratio(arms, ratio)
    rng = np.random.default_rng(seed)
    draws = rng.choice(len(arms_t), size=n, p=np.asarray(ratio_t) / sum(ratio_t))
    rows = tuple(Allocation(i, UNSTRATIFIED, i, arms_t[k]) for i, k in enumerate(draws, 1))
    return AllocationList("simple", seed, arms_t, ratio_t, rows)


def _blocks(rng: np.random.Generator, base: np.ndarray,
            multiples: tuple[int, ...]) -> Iterator[list[str]]:
    # Draw order (size, then permutation) is that of the original stratified_block_allocation:
    # the demo's data depend on it.
    while True:
        block = np.tile(base, int(rng.choice(multiples)))
        yield rng.permutation(block).tolist()


def _block_rows(n: int, rng: np.random.Generator, base: np.ndarray, multiples: tuple[int, ...],
                stratum: str, first_seq: int, first_block: int) -> list[Allocation]:
    rows: list[Allocation] = []
    block_id = first_block - 1
    for block in _blocks(rng, base, multiples):
        if len(rows) >= n:
            break
        block_id += 1
        for arm in block[: n - len(rows)]:
            k = len(rows) + 1
            rows.append(Allocation(first_seq + k - 1, stratum, k, arm, block_id, len(block)))
    return rows


def permuted_blocks(n: int, arms: Sequence[str], ratio: Sequence[int] | None = None,
                    block_multiples: Sequence[int] = (1, 2), seed: int = 0) -> AllocationList:
    """Permuted blocks with block sizes drawn at random from ``m * sum(ratio)``, ``m`` in
    ``block_multiples``.

    Every complete block holds exactly ``m * r_k`` participants of arm ``k``; the last block
    may be incomplete when ``n`` is not a whole number of blocks (its full size is recorded).
    """
    n, seed = _check_n(n), _check_seed(seed)
    arms_t, ratio_t = _arms_ratio(arms, ratio)
    mult = _check_multiples(block_multiples)
    base = np.repeat(np.asarray(arms_t, dtype=object), ratio_t)
    rows = _block_rows(n, np.random.default_rng(seed), base, mult, UNSTRATIFIED, 1, 1)
    return AllocationList("permuted_blocks", seed, arms_t, ratio_t, tuple(rows),
                          parameters=(("block_multiples", mult),))


def _stratum_rng(seed: int, stratum: str) -> np.random.Generator:
    # Each stratum's stream depends only on the seed and its label, so adding a stratum (a new
    # site) leaves the lists of the others unchanged.
    key = int.from_bytes(hashlib.sha256(stratum.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng([seed, key])


def stratified_permuted_blocks(sizes: Mapping[str, int], arms: Sequence[str],
                               ratio: Sequence[int] | None = None,
                               block_multiples: Sequence[int] = (1, 2),
                               seed: int = 0) -> AllocationList:
    """Lists generated in advance: one permuted-block list of ``sizes[s]`` slots per stratum.

    Rows are grouped by stratum in the order of ``sizes``; ``stratum_seq`` is the slot number.
    A stratum's list depends only on the seed and its label (not on the other strata).
    """
    seed = _check_seed(seed)
    arms_t, ratio_t = _arms_ratio(arms, ratio)
    mult = _check_multiples(block_multiples)
    base = np.repeat(np.asarray(arms_t, dtype=object), ratio_t)
    rows: list[Allocation] = []
    next_block = 1
    for stratum, size in sizes.items():
        label = str(stratum)
        part = _block_rows(_check_n(size), _stratum_rng(seed, label), base, mult, label,
                           len(rows) + 1, next_block)
        rows.extend(part)
        next_block = (part[-1].block_id or 0) + 1 if part else next_block
    return AllocationList("stratified_permuted_blocks", seed, arms_t, ratio_t, tuple(rows),
                          parameters=(("block_multiples", mult),))


def permuted_blocks_by_enrolment(strata: pd.DataFrame, arms: Sequence[str],
                                 ratio: Sequence[int] | None = None,
                                 block_multiples: Sequence[int] = (1, 2),
                                 seed: int = 0) -> AllocationList:
    """Stratified permuted blocks for units in order of enrolment (one row of ``strata`` each).

    The columns of ``strata`` define the strata; a new block is drawn for a stratum when its
    current block is used up. One generator serves all strata in enrolment order, exactly as
    :func:`stratified_block_allocation` (whose arms this list reproduces).
    """
    seed = _check_seed(seed)
    arms_t, ratio_t = _arms_ratio(arms, ratio)
    mult = _check_multiples(block_multiples)
    base = np.repeat(np.asarray(arms_t, dtype=object), ratio_t)
    rng = np.random.default_rng(seed)
    columns = [str(c) for c in strata.columns]
    pending: dict[tuple, tuple[int, int, list[str]]] = {}
    used: dict[tuple, int] = {}
    rows: list[Allocation] = []
    n_blocks = 0
    for seq, key in enumerate(strata.itertuples(index=False, name=None), 1):
        block_id, size, queue = pending.get(key, (0, 0, []))
        if not queue:
            n_blocks += 1
            queue = next(_blocks(rng, base, mult))
            block_id, size = n_blocks, len(queue)
        pending[key] = (block_id, size, queue[1:])
        used[key] = used.get(key, 0) + 1
        rows.append(Allocation(seq, stratum_label(columns, key), used[key], queue[0], block_id,
                               size, tuple(str(v) for v in key)))
    return AllocationList("stratified_permuted_blocks", seed, arms_t, ratio_t, tuple(rows),
                          factors=tuple(columns), parameters=(("block_multiples", mult),))


def stratified_block_allocation(
    strata: pd.DataFrame,
    arms: Sequence[str],
    ratio: Sequence[int] | None = None,
    block_multiples: Sequence[int] = (1, 2),
    seed: int = 0,
) -> pd.Series:
    """Allocate units in row order by permuted blocks within each stratum.

    The arms of :func:`permuted_blocks_by_enrolment` as a Series on ``strata.index`` (name
    ``arm``); the same inputs and seed give the same Series as every earlier version.

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
    alloc = permuted_blocks_by_enrolment(strata, arms, ratio, block_multiples, seed)
    # Arm ids are returned as given (not as text), as before.
    by_text = {str(a): a for a in arms}
    return pd.Series([by_text[a] for a in alloc.arm_sequence], index=strata.index,
                     dtype=object, name="arm")


# --------------------------------------------------------------------------- audit


def record_allocation(audit_log: AuditLog, allocation_list: AllocationList, *,
                      include_seed: bool = False) -> AuditHead:
    """Append one ``allocation_list`` entry (method, n, SHA-256 of the list) to the audit log.

    Individual allocations are never written to the audit log: it is read by blinded staff
    (investigators, outcome assessors, the trial team), and the arms, or the pattern of the
    blocks, would unblind them or let them predict the next allocation. The SHA-256 commits to
    the whole list without revealing it; at unblinding, anyone can check the exported list (or a
    list regenerated from the seed) against it.

    The seed is withheld unless ``include_seed`` is true, for the same reason: the code is
    public, so the seed regenerates the list. Pass ``include_seed=True`` only for an open-label
    study or once the study is unblinded.
    """
    details: dict[str, Any] = {
        "method": allocation_list.method,
        "n": len(allocation_list),
        "sha256": allocation_list.sha256(),
        "arms": list(allocation_list.arms),
        "ratio": list(allocation_list.ratio),
        "strata": len({a.stratum for a in allocation_list}),
        "seed": allocation_list.seed if include_seed else "withheld",
    }
    return audit_log.append("allocation_list", details)
