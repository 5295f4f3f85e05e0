"""Instrument definitions as data: items, response range, reverse keys, missing-item rule,
scoring method, severity bands, caseness and reliable-change criteria, direction and source.

The built-in library is one YAML file per instrument in ``outcomes/library/``. A protocol can
declare further instruments in the same format (:func:`instrument_from_dict`), or a study can keep
one in its own file (:func:`load_instrument_file`). Every definition is validated when it is built;
a bad one raises ``ValueError`` with one line that names the file or protocol field.

Library format (keys of one YAML mapping)
-----------------------------------------
Required: ``name``, ``items`` (count), ``item_min``, ``item_max``, ``max_missing``, ``method``,
``higher_is_better``, ``source`` (a string, or a mapping with ``authors``, ``year``, ``title``,
``journal`` and optionally ``volume``, ``pages``, ``doi``).
Optional: ``full_name``, ``item_coding``, ``reverse_items`` (1-based), ``reported_score``,
``multiplier`` (``sum`` / ``mean`` only), ``conversion`` (raw sum -> score, ``conversion`` only),
``prorate_rounding`` (``half_up`` or ``none``), ``bands`` (list of ``{label, low, high}``),
``caseness_threshold``, ``reliable_change``, ``references`` (list of strings).

Methods: ``sum`` (sum of the keyed items x ``multiplier``), ``mean`` (mean of the answered keyed
items x ``multiplier``), ``sus`` (System Usability Scale: odd items score - 1, even items
5 - score, sum x 2.5) and ``conversion`` (raw sum looked up in a table, e.g. SWEMWBS).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

METHODS = ("sum", "mean", "sus", "conversion")
ROUNDING = ("half_up", "none")
_SUS_REVERSED = (2, 4, 6, 8, 10)


class InstrumentError(ValueError):
    """A definition problem in one field (``field``); the message is one line."""

    def __init__(self, fld: str, message: str, where: str = "") -> None:
        self.field = fld
        self.problem = message
        super().__init__(f"{where or 'instrument'}.{fld}: {message}")


@dataclass(frozen=True)
class Band:
    """A severity band; ``low`` and ``high`` are inclusive. A total that falls between two bands
    (possible only for fractional totals) belongs to the band whose ``low`` it last reached."""

    label: str
    low: float
    high: float


@dataclass(frozen=True)
class Instrument:
    """One patient-reported instrument, validated on construction.

    ``total`` is the instrument's standard reported score (see ``reported_score``). With one or
    more, but at most ``max_missing``, items missing the total is prorated: the mean of the
    answered (reverse-keyed) items times the number of items, rounded half up for integer-scored
    instruments unless ``prorate_rounding`` is ``"none"``; see :attr:`missing_rule`.
    """

    name: str
    n_items: int
    item_min: int
    item_max: int
    max_missing: int
    bands: tuple[Band, ...]
    caseness_threshold: float | None
    source: str
    reverse_items: tuple[int, ...] = ()
    reliable_change: float | None = None
    higher_is_better: bool = False
    method: str = "sum"
    conversion: tuple[tuple[int, float], ...] = ()
    multiplier: float = 1
    prorate_rounding: str | None = None
    reported_score: str = ""
    full_name: str = ""
    item_coding: str = ""
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.prorate_rounding is None:
            object.__setattr__(self, "prorate_rounding",
                               "none" if self.method == "mean" else "half_up")
        object.__setattr__(self, "reverse_items", tuple(sorted(self.reverse_items)))
        problem = _problem(self)
        if problem is not None:
            raise InstrumentError(problem[0], problem[1], where=self.name or "instrument")

    # ------------------------------------------------------------------ ranges
    @property
    def raw_min(self) -> int:
        """Smallest sum of the keyed items."""
        return self.n_items * self.item_min

    @property
    def raw_max(self) -> int:
        """Largest sum of the keyed items."""
        return self.n_items * self.item_max

    @property
    def total_min(self) -> float:
        return _tidy(self._score_of_raw(self.raw_min))

    @property
    def total_max(self) -> float:
        return _tidy(self._score_of_raw(self.raw_max))

    @property
    def integer_scored(self) -> bool:
        """True when every total is a whole number (sum of items, rounded when prorated)."""
        return (self.method in ("sum", "conversion") and self.prorate_rounding == "half_up"
                and float(self.multiplier).is_integer()
                and all(float(v).is_integer() for _, v in self.conversion))

    def _score_of_raw(self, raw: float) -> float:
        if self.method == "sum":
            return raw * self.multiplier
        if self.method == "mean":
            return raw / self.n_items * self.multiplier
        if self.method == "sus":
            return (raw - self.raw_min) * 2.5
        return dict(self.conversion)[int(raw)]

    # ------------------------------------------------------------------ wording
    @property
    def missing_rule(self) -> str:
        """The missing-item rule in one plain sentence."""
        k, m, name = self.n_items, self.max_missing, self.name
        if m == 0:
            return (f"{name}: all {k} items are needed; with any item missing the total is "
                    "missing (nothing is prorated).")
        rounding = ("rounded half up" if self.prorate_rounding == "half_up" else "not rounded")
        times = "" if self.multiplier == 1 else f" x {_tidy(self.multiplier)}"
        if self.method == "mean":
            how = f"is the mean of the answered items{times}"
        elif self.method == "sum":
            how = f"is prorated (mean of answered items x {k}, {rounding}){times}"
        elif self.method == "sus":
            how = (f"is prorated (mean of answered item contributions x {k}, {rounding}) "
                   "before x 2.5")
        else:
            how = (f"is prorated (mean of answered items x {k}, {rounding}) and then converted "
                   "with the table")
        return (f"{name}: with up to {m} of {k} items missing the total {how}; with more "
                "missing the total is missing.")

    # ------------------------------------------------------------------ interpretation
    def band(self, total: float) -> str | None:
        """Severity label of ``total`` (``None`` when the instrument has no bands)."""
        if not self.total_min <= total <= self.total_max:
            raise ValueError(f"{self.name}: total {total} outside "
                             f"{self.total_min}..{self.total_max}")
        label = None
        for b in self.bands:
            if total >= b.low:
                label = b.label
        return label

    def is_case(self, total: float) -> bool:
        """Whether ``total`` is at or beyond the caseness threshold (``>=`` when higher scores are
        worse, ``<=`` when higher scores are better)."""
        if self.caseness_threshold is None:
            raise ValueError(f"{self.name}: no caseness threshold is defined")
        if isinstance(total, float) and math.isnan(total):
            raise ValueError(f"{self.name}: a missing total has no caseness")
        if self.higher_is_better:
            return bool(total <= self.caseness_threshold)
        return bool(total >= self.caseness_threshold)

    def to_dict(self) -> dict[str, Any]:
        """The definition in the library format (``instrument_from_dict`` reads it back)."""
        d: dict[str, Any] = {
            "name": self.name, "full_name": self.full_name, "items": self.n_items,
            "item_min": self.item_min, "item_max": self.item_max,
            "item_coding": self.item_coding, "reverse_items": list(self.reverse_items),
            "method": self.method, "reported_score": self.reported_score,
            "multiplier": self.multiplier, "max_missing": self.max_missing,
            "prorate_rounding": self.prorate_rounding,
            "bands": [{"label": b.label, "low": b.low, "high": b.high} for b in self.bands],
            "caseness_threshold": self.caseness_threshold,
            "reliable_change": self.reliable_change, "higher_is_better": self.higher_is_better,
            "source": self.source, "references": list(self.references),
        }
        if self.conversion:
            d["conversion"] = dict(self.conversion)
        return d


def _tidy(x: float) -> float:
    """Whole numbers as ``int`` so that messages read 0..27, not 0.0..27.0."""
    return int(x) if float(x).is_integer() else float(x)


def _problem(inst: Instrument) -> tuple[str, str] | None:
    """The first semantic problem of a definition as (field, message), or None."""
    if not inst.name or not inst.name.strip():
        return "name", "must be a non-empty string"
    if inst.n_items < 1:
        return "items", f"{inst.n_items} but an instrument needs at least 1 item"
    if inst.item_max <= inst.item_min:
        return "item_max", f"{inst.item_max} is not above item_min {inst.item_min}"
    if not 0 <= inst.max_missing < inst.n_items:
        return "max_missing", f"{inst.max_missing} outside 0..{inst.n_items - 1}"
    if inst.method not in METHODS:
        return "method", f"unknown method {inst.method!r}; known: {', '.join(METHODS)}"
    if inst.prorate_rounding not in ROUNDING:
        return "prorate_rounding", (f"unknown rounding {inst.prorate_rounding!r}; known: "
                                    f"{', '.join(ROUNDING)}")
    if len(set(inst.reverse_items)) != len(inst.reverse_items):
        return "reverse_items", "lists an item twice"
    for i in inst.reverse_items:
        if not 1 <= i <= inst.n_items:
            return "reverse_items", f"item {i} is beyond the {inst.n_items} items (1-based)"
    if not (math.isfinite(inst.multiplier) and inst.multiplier > 0):
        return "multiplier", f"{inst.multiplier} must be a positive number"
    if inst.method in ("sus", "conversion") and inst.multiplier != 1:
        return "multiplier", f"does not apply to method {inst.method!r}"
    if inst.method == "mean" and inst.prorate_rounding != "none":
        return "prorate_rounding", "a mean is never rounded; use 'none'"
    if inst.method == "sus" and (inst.n_items, inst.item_min, inst.item_max) != (10, 1, 5):
        return "method", "'sus' needs 10 items scored 1..5"
    if inst.method == "sus" and inst.reverse_items != _SUS_REVERSED:
        return "reverse_items", "method 'sus' reverse-keys the even items: [2, 4, 6, 8, 10]"
    problem = _conversion_problem(inst)
    if problem is not None:
        return "conversion", problem
    problem = _bands_problem(inst)
    if problem is not None:
        return "bands", problem
    if inst.caseness_threshold is not None and not (
            math.isfinite(inst.caseness_threshold)
            and inst.total_min <= inst.caseness_threshold <= inst.total_max):
        return "caseness_threshold", (f"{inst.caseness_threshold} outside the total range "
                                      f"{inst.total_min}..{inst.total_max}")
    if inst.reliable_change is not None and not (
            math.isfinite(inst.reliable_change)
            and 0 < inst.reliable_change <= inst.total_max - inst.total_min):
        return "reliable_change", (f"{inst.reliable_change} must be above 0 and at most the "
                                   f"range {inst.total_max - inst.total_min}")
    if not inst.source or not inst.source.strip():
        return "source", "must name the reference (author, year, journal)"
    return None


def _conversion_problem(inst: Instrument) -> str | None:
    if inst.method != "conversion":
        return "only method 'conversion' takes a table" if inst.conversion else None
    if inst.prorate_rounding != "half_up":
        return "a table needs whole raw sums; prorate_rounding must be 'half_up'"
    raws = [r for r, _ in inst.conversion]
    expected = list(range(inst.raw_min, inst.raw_max + 1))
    if sorted(raws) != expected:
        missing = sorted(set(expected) - set(raws))
        extra = sorted(set(raws) - set(expected))
        if len(set(raws)) != len(raws):
            return "lists a raw score twice"
        if missing:
            return f"no score for raw sum {missing[0]} (needs every raw sum " \
                   f"{inst.raw_min}..{inst.raw_max})"
        return f"raw sum {extra[0]} outside {inst.raw_min}..{inst.raw_max}"
    values = [v for _, v in sorted(inst.conversion)]
    if not all(math.isfinite(v) for v in values):
        return "scores must be finite numbers"
    for (r0, v0), (r1, v1) in zip(sorted(inst.conversion), sorted(inst.conversion)[1:],
                                  strict=False):
        if v1 <= v0:
            return f"scores must increase with the raw sum ({r0} -> {v0}, {r1} -> {v1})"
    return None


def _bands_problem(inst: Instrument) -> str | None:
    if not inst.bands:
        return None
    labels = [b.label for b in inst.bands]
    if len(set(labels)) != len(labels):
        return "a label appears twice"
    for b in inst.bands:
        if not b.label or not str(b.label).strip():
            return "every band needs a label"
        if not (math.isfinite(b.low) and math.isfinite(b.high)) or b.high < b.low:
            return f"band {b.label!r}: high {b.high} below low {b.low}"
    first, last = inst.bands[0], inst.bands[-1]
    if first.low != inst.total_min or last.high != inst.total_max:
        return (f"must cover the total range {inst.total_min}..{inst.total_max} "
                f"(from {first.low} to {last.high})")
    for prev, nxt in zip(inst.bands, inst.bands[1:], strict=False):
        if nxt.low <= prev.high:
            return f"bands {prev.label!r} and {nxt.label!r} overlap or are out of order"
        # Every whole number in the range is a possible total: no gaps between bands.
        unit_steps = inst.method == "sum" and inst.multiplier == 1 and inst.integer_scored
        if unit_steps and nxt.low != prev.high + 1:
            return f"gap between {prev.label!r} (to {prev.high}) and {nxt.label!r} " \
                   f"(from {nxt.low})"
    return None


# --------------------------------------------------------------------------- reading definitions

_REQUIRED = ("name", "items", "item_min", "item_max", "max_missing", "method",
             "higher_is_better", "source")
_OPTIONAL = ("full_name", "item_coding", "reverse_items", "reported_score", "multiplier",
             "conversion", "prorate_rounding", "bands", "caseness_threshold", "reliable_change",
             "references")
_SOURCE_KEYS = ("authors", "year", "title", "journal", "volume", "pages", "doi")


def instrument_from_dict(d: Mapping[str, Any], source_name: str) -> Instrument:
    """Build and validate an instrument from a mapping in the library format.

    Parameters
    ----------
    d
        The definition, as a protocol declares it under ``instruments`` or as one library file
        holds it.
    source_name
        Where the mapping came from, used to locate problems: ``"instruments.0"`` gives messages
        such as ``instruments.0.item_max: 2 is not above item_min 3``.

    Raises
    ------
    ValueError
        One line naming ``source_name`` and the field.
    """
    return _from_mapping(d, lambda f: f"{source_name}.{f}" if f else source_name)


def load_instrument_file(path: str | Path) -> Instrument:
    """Read one instrument definition from a YAML file (library format).

    Raises
    ------
    ValueError
        One line naming the file (and the field when the problem is in one).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    d = _parse_yaml(text, str(path))
    return _from_mapping(d, lambda f: f"{path}: {f}" if f else str(path))


def load_library(directory: str | Path | None = None) -> dict[str, Instrument]:
    """All ``*.yaml`` definitions of a folder (default: the built-in library), by name."""
    if directory is None:
        base = resources.files("outcomes") / "library"
        entries = [(e.name, e.read_text(encoding="utf-8")) for e in base.iterdir()
                   if e.name.endswith(".yaml")]
        where = "outcomes/library/"
    else:
        folder = Path(directory)
        entries = [(p.name, p.read_text(encoding="utf-8")) for p in folder.glob("*.yaml")]
        where = f"{folder}/"
    library: dict[str, Instrument] = {}
    for fname, text in sorted(entries):
        label = where + fname
        inst = _from_mapping(_parse_yaml(text, label),
                             lambda f, _l=label: f"{_l}: {f}" if f else _l)
        if inst.name in library:
            raise ValueError(f"{label}: name {inst.name!r} is already defined by another file")
        library[inst.name] = inst
    return library


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses duplicate keys (a silent overwrite hides a typo)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_mapping)


def _parse_yaml(text: str, label: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{label}: not valid YAML ({line}{what})") from None


def _from_mapping(d: Any, where: Callable[[str], str]) -> Instrument:
    if not isinstance(d, Mapping):
        raise ValueError(f"{where('')}: expected a mapping of instrument fields, "
                         f"got {type(d).__name__}")
    unknown = [k for k in d if k not in _REQUIRED + _OPTIONAL]
    if unknown:
        raise ValueError(f"{where(str(unknown[0]))}: unknown field; known: "
                         f"{', '.join(_REQUIRED + _OPTIONAL)}")
    for k in _REQUIRED:
        if k not in d or d[k] is None:
            raise ValueError(f"{where(k)}: required field is missing")

    def fail(f: str, msg: str) -> ValueError:
        return ValueError(f"{where(f)}: {msg}")

    def integer(f: str) -> int:
        v = d[f]
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(f, f"{v!r} is not a whole number")
        return v

    def number(f: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise fail(f, f"{v!r} is not a finite number")
        return v  # type: ignore[return-value]

    def text(f: str, default: str = "") -> str:
        v = d.get(f, default)
        if v is None:
            return default
        if not isinstance(v, str):
            raise fail(f, f"{v!r} is not a string")
        return v

    if not isinstance(d["higher_is_better"], bool):
        raise fail("higher_is_better", f"{d['higher_is_better']!r} is not true or false")
    reverse = d.get("reverse_items") or []
    if not isinstance(reverse, list | tuple) or any(
            isinstance(i, bool) or not isinstance(i, int) for i in reverse):
        raise fail("reverse_items", f"{reverse!r} is not a list of item numbers")
    kwargs: dict[str, Any] = {
        "name": text("name"), "n_items": integer("items"), "item_min": integer("item_min"),
        "item_max": integer("item_max"), "max_missing": integer("max_missing"),
        "method": text("method"), "higher_is_better": d["higher_is_better"],
        "source": _source(d["source"], fail), "reverse_items": tuple(reverse),
        "bands": _bands(d.get("bands"), fail, number),
        "conversion": _conversion(d.get("conversion"), fail, number),
        "full_name": text("full_name"), "item_coding": text("item_coding"),
        "reported_score": text("reported_score"),
        "prorate_rounding": d.get("prorate_rounding"),
        "references": _references(d.get("references"), fail),
    }
    for f in ("caseness_threshold", "reliable_change"):
        kwargs[f] = None if d.get(f) is None else number(f, d[f])
    kwargs["multiplier"] = 1 if d.get("multiplier") is None else number("multiplier",
                                                                        d["multiplier"])
    if kwargs["prorate_rounding"] is not None and not isinstance(kwargs["prorate_rounding"], str):
        raise fail("prorate_rounding", f"{kwargs['prorate_rounding']!r} is not a string")
    try:
        return Instrument(**kwargs)
    except InstrumentError as exc:
        renamed = {"n_items": "items"}.get(exc.field, exc.field)
        raise fail(renamed, exc.problem) from None


def _source(v: Any, fail: Callable[[str, str], ValueError]) -> str:
    if isinstance(v, str):
        return v.strip()
    if not isinstance(v, Mapping):
        raise fail("source", "give a string or a mapping with authors, year, title, journal")
    unknown = [k for k in v if k not in _SOURCE_KEYS]
    if unknown:
        raise fail(f"source.{unknown[0]}", f"unknown field; known: {', '.join(_SOURCE_KEYS)}")
    for k in ("authors", "year", "title", "journal"):
        if v.get(k) in (None, ""):
            raise fail(f"source.{k}", "required field is missing")
    year = v["year"]
    if isinstance(year, bool) or not isinstance(year, int):
        raise fail("source.year", f"{year!r} is not a year")
    where = f"{v['journal']} {year}"
    if v.get("volume"):
        where += f";{v['volume']}" + (f":{v['pages']}" if v.get("pages") else "")
    elif v.get("pages"):
        where += f", pp. {v['pages']}"
    out = f"{v['authors']}. {str(v['title']).rstrip('.')}. {where}."
    if v.get("doi"):
        out += f" doi:{v['doi']}"
    return out


def _bands(v: Any, fail: Callable[[str, str], ValueError],
           number: Callable[[str, Any], float]) -> tuple[Band, ...]:
    if v is None:
        return ()
    if not isinstance(v, list | tuple):
        raise fail("bands", "give a list of {label, low, high}")
    out = []
    for i, b in enumerate(v):
        if not isinstance(b, Mapping) or set(b) != {"label", "low", "high"}:
            raise fail(f"bands.{i}", "give exactly label, low and high")
        if not isinstance(b["label"], str):
            raise fail(f"bands.{i}.label", f"{b['label']!r} is not a string")
        out.append(Band(b["label"], number(f"bands.{i}.low", b["low"]),
                        number(f"bands.{i}.high", b["high"])))
    return tuple(out)


def _conversion(v: Any, fail: Callable[[str, str], ValueError],
                number: Callable[[str, Any], float]) -> tuple[tuple[int, float], ...]:
    if v is None:
        return ()
    if not isinstance(v, Mapping):
        raise fail("conversion", "give a mapping raw sum -> score")
    out = []
    for raw, score in v.items():
        key = raw
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            key = int(raw)  # JSON keys are strings
        if isinstance(key, bool) or not isinstance(key, int):
            raise fail("conversion", f"raw sum {raw!r} is not a whole number")
        out.append((key, number(f"conversion.{raw}", score)))
    return tuple(sorted(out))


def _references(v: Any, fail: Callable[[str, str], ValueError]) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list | tuple) or not all(isinstance(r, str) for r in v):
        raise fail("references", "give a list of strings")
    return tuple(v)


# --------------------------------------------------------------------------- the built-in library

INSTRUMENTS: dict[str, Instrument] = load_library()
PHQ9 = INSTRUMENTS["PHQ-9"]
GAD7 = INSTRUMENTS["GAD-7"]


def get_instrument(name: str) -> Instrument:
    """A built-in instrument by name (e.g. ``"PHQ-9"``)."""
    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise KeyError(f"unknown instrument {name!r}; known: {sorted(INSTRUMENTS)}") from None
