"""The last privacy gate of a run: a scan of every output for personal data, and a k-anonymity
check of a released dataset.

Direct identifiers are dropped at intake and participant IDs are pseudonymised, but a run's
outputs are only known to be free of personal data when they have been looked at. The scan reads
the bytes of every file (text after HTML entities are decoded; inside zip archives, member by
member; PNG text chunks, including the images embedded in HTML; the names, attributes and
string variables of NetCDF/HDF5 files as well as their raw bytes) and looks for

* the input's own identifier values: participant (and clinician) IDs when the protocol
  pseudonymises them, and every value of the protocol's ``privacy.direct_identifiers`` columns,
  collected from the raw input before intake drops them;
* e-mail addresses, UK and international telephone numbers, dates next to a word such as
  *birth*, *born* or *DOB*, and NHS-number-like ten-digit values passing the modulus-11 check.

The patterns are tuned so that a run's own outputs (SHA-256 digests, ISO timestamps, version
numbers, the digits of floats, base64 images) scan clean.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from trials.errors import PrivacyError
from trials.k_anonymity import KAnonymity, k_anonymity  # noqa: F401  (re-exported)
from trials.protocol import Protocol

KINDS = ("identifier", "email", "phone", "date_of_birth", "nhs_number")
_LABEL = {"identifier": "an identifier value from the input", "email": "an e-mail address",
          "phone": "a telephone number", "date_of_birth": "a date of birth",
          "nhs_number": "an NHS number"}

# Values too short or too generic to look for without flagging ordinary text and numbers.
_MIN_CHARS = 4
_MIN_DIGITS = 6  # an all-digit value needs at least this many digits
_PLACEHOLDERS = frozenset({"unknown", "missing", "none", "null", "not known", "not recorded",
                           "not available", "refused", "withheld"})
_MAX_CHARS = 200  # longer values are searched for by their opening words
_MAX_DEPTH = 3  # archives inside archives


# --------------------------------------------------------------------------- identifiers


@dataclass(frozen=True)
class Identifiers:
    """Identifier values to look for: each (lower-cased) value and the input column it came from.

    ``skipped`` counts values left out as too short or too generic to search for (fewer than
    four characters, all-digit values of fewer than six digits, placeholders such as
    ``unknown``).
    """

    values: Mapping[str, str] = field(default_factory=dict)
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.values)


def collect_identifiers(frames: Iterable[pd.DataFrame], columns: Iterable[str]) -> Identifiers:
    """The values of ``columns`` in the raw ``frames`` (columns a frame lacks are passed over).

    Dates are added in their ISO and day/month/year spellings and ten-digit numbers both with and
    without the usual 3-3-4 spacing, so that a value re-formatted on its way out is still found.
    """
    wanted = list(dict.fromkeys(columns))
    values: dict[str, str] = {}
    skipped: set[str] = set()
    for frame in frames:
        for column in wanted:
            if column not in frame.columns:
                continue
            for raw in frame[column].dropna().unique():
                for variant in _variants(_as_text(raw)):
                    if _searchable(variant):
                        values.setdefault(variant.lower(), column)
                    elif variant:
                        skipped.add(variant)
    return Identifiers(values, len(skipped - set(values)))


def input_identifiers(protocol: Protocol, data_paths: Sequence[str | Path],
                      log_paths: Mapping[str, str | Path] | None = None, *,
                      ids_are_pseudonyms: bool = False) -> Identifiers:
    """Identifier values in a study's raw inputs, read again before anything is dropped.

    Participant IDs (in the data and in every log) and clinician IDs are included when the
    protocol pseudonymises IDs, unless the inputs already hold pseudonyms (``ids_are_pseudonyms``:
    a re-run of a bundle's shared data); with ``pseudonymise_ids: false`` the protocol declares
    its IDs non-identifying and they may appear in outputs.
    """
    from trials.data import read_input  # the same reader intake uses, so the same raw values

    columns = list(protocol.privacy.direct_identifiers)
    if protocol.privacy.pseudonymise_ids and not ids_are_pseudonyms:
        columns.append(protocol.data.participant)
        for cfg in (protocol.safety.escalation, protocol.safety.adverse_events,
                    protocol.engagement):
            if cfg is not None and cfg.participant:
                columns.append(cfg.participant)
        if protocol.clinician_ratings is not None:
            columns.append(protocol.clinician_ratings.clinician)
    if not columns:
        return Identifiers()
    paths = [*data_paths, *(p for p in (log_paths or {}).values() if p is not None)]
    return collect_identifiers((read_input(p) for p in paths), columns)


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = " ".join(str(value).split())
    if len(text) > _MAX_CHARS:  # a long free-text value: its opening words are enough
        text = text[:_MAX_CHARS].rsplit(" ", 1)[0]
    return text


def _searchable(value: str) -> bool:
    if len(value) < _MIN_CHARS or value.lower() in _PLACEHOLDERS:
        return False
    return not (value.isdigit() and len(value) < _MIN_DIGITS)


def _variants(value: str) -> list[str]:
    out = [value]
    digits = re.sub(r"[\s-]", "", value)
    if digits.isdigit() and len(digits) == 10:
        out += [digits, f"{digits[:3]} {digits[3:6]} {digits[6:]}"]
    for fmt in _DATE_FORMATS if _DATE_SHAPE.fullmatch(value) else ():  # day first: UK data
        try:
            day = datetime.strptime(value, fmt)
        except ValueError:
            continue
        out += [day.strftime("%Y-%m-%d"), day.strftime("%d/%m/%Y")]
        break
    return list(dict.fromkeys(out))


_DATE_SHAPE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y",
                 "%m/%d/%Y")


# --------------------------------------------------------------------------- patterns

# Not inside a word, a number, a path or a base64 run; the same on the right, where a following
# ".5" or "-3" would make the match part of a longer number.
_LEFT = rb"(?<![A-Za-z0-9_.+/-])"
_RIGHT = rb"(?![A-Za-z0-9_]|[.-][0-9])"

_EMAIL = re.compile(
    rb"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    rb"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![A-Za-z0-9-])"
)
# "logo@2x.png" and "pkg@scope.js" are file names, not addresses.
_NOT_TLD = frozenset({b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"css", b"js",
                      b"mjs", b"map", b"json", b"html", b"txt", b"py", b"min", b"woff", b"ttf"})

# In binary files (compressed NetCDF chunks) random bytes form "ET@G.rz" about once in 30 MB;
# there an address needs two-character parts and a top-level domain people use.
_COMMON_TLD = frozenset(
    b"com org net edu gov mil int info biz name io co me app dev email online uk us eu ca au "
    b"nz ie de fr es it nl be ch at se no dk fi pl pt gr cz hu ro in jp cn kr sg hk za br mx "
    b"ar ru tr il ae nhs".split()
)


def _email_ok(m: re.Match[bytes], binary: bool) -> bool:
    tld = m.group(1).lower()
    if tld in _NOT_TLD:
        return False
    if not binary:
        return True
    local, _, domain = m.group(0).partition(b"@")
    one_case = m.group(1) in (tld, tld.upper())
    return (tld in _COMMON_TLD and one_case and len(local) >= 2
            and len(domain.split(b".")[0]) >= 2)


_PHONE = re.compile(
    _LEFT
    + rb"(?:(?P<cc>\+|00)(?P<code>[1-9]\d{0,2})[ -]?(?:\(0\)[ -]?)?|(?P<trunk>\(?0))"
    + rb"\(?\d{1,5}\)?(?:[ -]?\d{2,5}){1,4}"
    + _RIGHT
)
_NHS = re.compile(_LEFT + rb"\d{3}[ -]?\d{3}[ -]?\d{4}" + _RIGHT)
_BIRTH_WORD = re.compile(
    rb"(?i)(?<![a-z])(?:date[ _.-]?of[ _.-]?birth|birth[ _-]?date|birthday|born|d\.?o\.?b\.?)"
    rb"(?![a-z])"
)
_MONTHS = rb"jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec"
_DATE = re.compile(
    rb"(?i)(?<![0-9])(?:"
    rb"(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])"
    rb"|(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:(?:19|20)\d\d|\d\d)"
    rb"|(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s+(?:" + _MONTHS + rb")[a-z]*\.?,?\s+(?:19|20)\d\d"
    rb"|(?:" + _MONTHS + rb")[a-z]*\.?\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,?\s+(?:19|20)\d\d"
    rb")(?![0-9]|[T ]\d\d:)"  # a date followed by a time is a timestamp, not a birthday
)
_BIRTH_WINDOW = (40, 80)  # bytes before / after the word in which a date counts

_DATA_URI = re.compile(rb"data:image/(png|jpeg|gif|webp|svg\+xml)(?:;[^,;\"'\s]*)*;base64,"
                       rb"([A-Za-z0-9+/=\s]+)")


def _phone_ok(m: re.Match[bytes]) -> bool:
    digits = re.sub(rb"\D", b"", m.group(0))
    if m.group("trunk") is not None:  # UK national: 01/02/03/05/07/08 and 10 or 11 digits
        return 10 <= len(digits) <= 11 and digits[1:2] in (b"1", b"2", b"3", b"5", b"7", b"8")
    if m.group("cc") == b"00":
        if not re.search(rb"[ ()-]", m.group(0)):  # "0012345678" is a zero-padded number
            return False
        digits = digits[2:]
    if m.group("code") == b"44":
        national = digits[2:]
        if b"(0)" in m.group(0):
            national = national[1:]
        return 9 <= len(national) <= 10 and national[:1] in (b"1", b"2", b"3", b"5", b"7", b"8")
    return 8 <= len(digits) <= 15


def nhs_number_valid(digits: str | bytes) -> bool:
    """The NHS number modulus-11 check (weights 10..2 on the first nine digits)."""
    d = [int(c) for c in (digits.decode() if isinstance(digits, bytes) else digits)
         if str(c).isdigit()]
    if len(d) != 10 or len(set(d)) == 1:  # ten equal digits are placeholders
        return False
    check = 11 - sum(w * x for w, x in zip(range(10, 1, -1), d[:9], strict=True)) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == d[9]


def nhs_number_like(digits: str | bytes) -> bool:
    """A valid modulus-11 number in a range that is issued: England, Wales and the Isle of Man
    (400-499, 600-799 million), Northern Ireland (320-399 million), Scottish CHI numbers (which
    begin with the date of birth, DDMMYY) and the 999 test range. Random ten-digit integers pass
    the check one time in eleven; the ranges halve that again, so a run of ten digits written
    without the 3-3-4 spacing must also be in range."""
    text = re.sub(r"\D", "", digits.decode() if isinstance(digits, bytes) else digits)
    if not nhs_number_valid(text):
        return False
    head = int(text[:3])
    if 320 <= head <= 499 or 600 <= head <= 799 or head == 999:
        return True
    day, month = int(text[:2]), int(text[2:4])
    return 1 <= day <= 31 and 1 <= month <= 12


def _trie_regex(words: Iterable[bytes]) -> bytes:
    """One alternation for many literals, shared prefixes merged (linear scanning)."""
    root: dict[Any, Any] = {}
    for word in words:
        node = root
        for b in word:
            node = node.setdefault(b, {})
        node[None] = {}

    def build(node: dict[Any, Any]) -> bytes:
        end = None in node
        alts = [(rb"\s+" if k == 0x20 else re.escape(bytes([k]))) + build(child)
                for k, child in sorted((k, v) for k, v in node.items() if k is not None)]
        if not alts:
            return b""
        if len(alts) == 1 and not end:
            return alts[0]
        group = b"(?:" + b"|".join(alts) + b")"
        return group + b"?" if end else group

    return build(root)


# --------------------------------------------------------------------------- the scan


@dataclass(frozen=True)
class Finding:
    """Personal data found in an output: the file (``archive.zip::member`` inside archives),
    the kind (one of :data:`KINDS`), a short excerpt with every finding in it masked, the input
    column an identifier value came from, and the byte offset in the scanned view."""

    file: str
    kind: str
    excerpt: str
    column: str = ""
    offset: int = 0

    def describe(self) -> str:
        what = _LABEL[self.kind]
        return f"{what} (column {self.column!r})" if self.column else what


class _Matcher:
    def __init__(self, identifiers: Identifiers | Mapping[str, str] | Iterable[str] | None):
        if identifiers is None:
            values: Mapping[str, str] = {}
        elif isinstance(identifiers, Identifiers):
            values = identifiers.values
        elif isinstance(identifiers, Mapping):
            values = {str(k).lower(): str(v) for k, v in identifiers.items()}
        else:
            values = {str(v).lower(): "" for v in identifiers}
        self.columns = {" ".join(k.split()).encode(): v for k, v in values.items() if k.strip()}
        self.ids = None
        if self.columns:
            body = _trie_regex(sorted(self.columns))
            self.ids = re.compile(rb"(?i)(?<![A-Za-z0-9])(?:" + body + rb")(?![A-Za-z0-9])")

    def spans(self, data: bytes, binary: bool = False) -> list[tuple[int, int, str, str]]:
        """(start, end, kind, column) of everything found in ``data``."""
        found: list[tuple[int, int, str, str]] = []
        if self.ids is not None:
            for m in self.ids.finditer(data):
                key = b" ".join(m.group(0).lower().split())
                found.append((m.start(), m.end(), "identifier", self.columns.get(key, "")))
        for m in _EMAIL.finditer(data):
            if _email_ok(m, binary):
                found.append((m.start(), m.end(), "email", ""))
        for m in _PHONE.finditer(data):
            if _phone_ok(m):
                found.append((m.start(), m.end(), "phone", ""))
        for m in _NHS.finditer(data):
            spaced = not m.group(0).isdigit()  # "943 476 5919" is written as an NHS number
            if nhs_number_valid(m.group(0)) if spaced else nhs_number_like(m.group(0)):
                found.append((m.start(), m.end(), "nhs_number", ""))
        for w in _BIRTH_WORD.finditer(data):
            lo, hi = max(0, w.start() - _BIRTH_WINDOW[0]), w.end() + _BIRTH_WINDOW[1]
            for m in _DATE.finditer(data, lo, min(len(data), hi + 16)):  # whole dates only
                if m.start() < hi:
                    found.append((m.start(), m.end(), "date_of_birth", ""))
        return sorted(set(found))


def scan_for_personal_data(
    files: str | Path | Iterable[str | Path],
    identifiers: Identifiers | Mapping[str, str] | Iterable[str] | None = None,
) -> list[Finding]:
    """Every piece of personal data found in ``files``.

    Parameters
    ----------
    files
        A folder (scanned recursively, names reported relative to it) or file paths.
    identifiers
        Values to look for: an :class:`Identifiers` (see :func:`input_identifiers`), a mapping
        of value to the column it came from, or plain values. Matching ignores case and runs of
        white space, and a value must stand on its own (not inside a longer word or number).

    Returns
    -------
    list of Finding
        In file order, then by position; empty when the files scan clean.
    """
    matcher = _Matcher(identifiers)
    if isinstance(files, str | Path) and Path(files).is_dir():
        root = Path(files)
        named = [(p.relative_to(root).as_posix(), p) for p in sorted(root.rglob("*"))
                 if p.is_file()]
    else:
        paths = [files] if isinstance(files, str | Path) else list(files)
        named = [(str(p), Path(p)) for p in paths]
    findings: list[Finding] = []
    for name, path in named:
        findings += _scan_blob(name, path.read_bytes(), matcher, 0)
    return findings


def _scan_blob(name: str, data: bytes, matcher: _Matcher, depth: int) -> list[Finding]:
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06") and depth < _MAX_DEPTH:
        members = _zip_members(data)
        if members is not None:
            out = _scan_view(name, "\n".join(members).encode(), matcher)  # member names
            for member, body in members.items():
                out += _scan_blob(f"{name}::{member}", body, matcher, depth + 1)
            return out
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _scan_view(name, _png_text(data), matcher)  # metadata; pixels are not text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        out = _scan_view(name, data, matcher, binary=True)
        if data[:8] == b"\x89HDF\r\n\x1a\n":  # NetCDF-4: strings may sit in compressed chunks
            out += _scan_view(f"{name}::strings", _hdf5_strings(data), matcher)
        return out
    out = []
    images = list(_DATA_URI.finditer(data))
    for i, m in enumerate(images, 1):
        try:
            image = base64.b64decode(re.sub(rb"\s", b"", m.group(2)))
        except ValueError:
            continue
        out += _scan_blob(f"{name}::image{i}", image, matcher, depth + 1)
    if images:  # the base64 text itself is noise to the patterns; blank it, keeping offsets
        text = _DATA_URI.sub(lambda m: b" " * len(m.group(0)), data).decode("utf-8")
    if "&" in text:
        text = html.unescape(text)  # a name written as entities is still the name
    return _scan_view(name, text.encode("utf-8"), matcher) + out


def _scan_view(name: str, data: bytes, matcher: _Matcher, *, binary: bool = False
               ) -> list[Finding]:
    spans = matcher.spans(data, binary)
    if name.lower().endswith((".csv", ".tsv")):
        named: dict[tuple[int, int, str], str] = {}
        for s, e, k, c in [*spans, *_birth_column_spans(data)]:
            named[(s, e, k)] = c or named.get((s, e, k), "")  # one span, the column named
        spans = sorted((s, e, k, c) for (s, e, k), c in named.items())
    return [Finding(name, kind, _excerpt(data, start, end, spans), column, start)
            for start, end, kind, column in spans]


def _birth_column_spans(data: bytes) -> list[tuple[int, int, str, str]]:
    """Dates in a table column whose header names a birth date (too far from the header for the
    word-and-date window)."""
    lines = data.split(b"\n")
    header = lines[0].decode("utf-8", "replace")
    delimiter = "\t" if header.count("\t") > header.count(",") else ","
    names = next(csv.reader([header], delimiter=delimiter), [])
    wanted = [i for i, n in enumerate(names) if _BIRTH_WORD.fullmatch(n.strip().encode())]
    spans, offset = [], len(lines[0]) + 1
    for line in lines[1:] if wanted else []:
        cells = next(csv.reader([line.decode("utf-8", "replace")], delimiter=delimiter), [])
        for i in wanted:
            value = cells[i].strip().encode() if i < len(cells) else b""
            if value and _DATE.fullmatch(value):
                at = offset + max(line.find(value), 0)
                spans.append((at, at + len(value), "date_of_birth", names[i]))
        offset += len(line) + 1
    return spans


def _excerpt(data: bytes, start: int, end: int, spans: list[tuple[int, int, str, str]],
             width: int = 24) -> str:
    lo, hi = max(0, start - width), min(len(data), end + width)
    parts, pos = [], lo
    for s, e, kind, _ in spans:  # mask every finding in the window (even in part), not only
        if e <= pos or s >= hi:  # this one
            continue
        s = max(s, pos)
        parts += [_printable(data[pos:s]), f"[{kind}]"]
        pos = e
    parts.append(_printable(data[pos:hi]) if pos < hi else "")
    return "".join(parts)


def _printable(chunk: bytes) -> str:
    text = chunk.decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() and c != "\ufffd" else "." for c in text)


def _zip_members(data: bytes) -> dict[str, bytes] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError):
        return None


def _png_text(data: bytes) -> bytes:
    """The text chunks (tEXt, zTXt, iTXt) and EXIF of a PNG, decompressed."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        try:
            if kind == b"tEXt":
                out.append(body.replace(b"\0", b": ", 1))
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\0")
                out.append(key + b": " + zlib.decompress(rest[1:]))
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[:1] == b"\x01", rest[2:]
                text = rest.split(b"\0", 2)[-1]
                out.append(key + b": " + (zlib.decompress(text) if compressed else text))
            elif kind == b"eXIf":
                out.append(body)
        except zlib.error:
            out.append(body)
        if kind == b"IEND":
            break
    return b"\n".join(out)


def _hdf5_strings(data: bytes) -> bytes:
    """Names, attributes and string variables of an HDF5 (NetCDF-4) file."""
    import h5py
    import numpy as np

    out: list[str] = []

    def text(value: Any) -> str:
        flat = np.asarray(value, dtype=object).ravel()
        return " ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                        for v in flat)

    def visit(name: str, obj: Any) -> None:
        out.append(name)
        out.extend(f"{k}: {text(v)}" for k, v in obj.attrs.items())
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "SUO":
            value = np.asarray(obj[()])
            if value.dtype.kind == "S" and value.dtype.itemsize == 1 and value.ndim:
                # NetCDF char arrays: one string per row along the last (string) dimension
                value = np.array([b"".join(row) for row in value.reshape(-1, value.shape[-1])],
                                 dtype=object)
            out.append(text(value))

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            out.extend(f"{k}: {text(v)}" for k, v in f.attrs.items())
            f.visititems(visit)
    except (OSError, ValueError, TypeError, KeyError):
        pass  # the raw bytes were scanned anyway
    return "\n".join(out).encode("utf-8")


# --------------------------------------------------------------------------- the run gate

# Participant-level datasets a run releases when the protocol allows sharing them.
SHARED_DATASETS = ("analysis_dataset.csv", "shared_data/intake.csv")


def check_run_directory(run_dir: str | Path, protocol: Protocol,
                        data_paths: Sequence[str | Path],
                        log_paths: Mapping[str, str | Path] | None = None, *,
                        ids_are_pseudonyms: bool = False) -> None:
    """Raise :class:`PrivacyError` (one line naming the file and the kind) when any output in
    ``run_dir`` holds personal data, or when a released participant-level dataset
    (:data:`SHARED_DATASETS`) is less than ``privacy.small_cell_threshold``-anonymous on the
    participant-level columns (strata and ``data.participant_columns``).

    The pipeline calls this on the staged run directory, so a failure leaves nothing written.
    """
    run_dir = Path(run_dir)
    identifiers = input_identifiers(protocol, data_paths, log_paths,
                                    ids_are_pseudonyms=ids_are_pseudonyms)
    findings = scan_for_personal_data(run_dir, identifiers)
    if findings:
        first = min(findings, key=lambda f: "::" in f.file)  # a file of the run before a member
        more = f" (and {len(findings) - 1} more finding(s))" if len(findings) > 1 else ""
        raise PrivacyError(f"{first.file}: {first.describe()} found in the run's outputs{more}; "
                           "nothing was written")
    level = [*protocol.design.strata, *protocol.data.participant_columns]
    k = protocol.privacy.small_cell_threshold
    for name in SHARED_DATASETS:
        path = run_dir / name
        if not path.is_file():
            continue
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        qi = [c for c in dict.fromkeys(level) if c in frame.columns]
        unit = protocol.data.participant if protocol.data.participant in frame.columns else None
        result = k_anonymity(frame, qi, k, unit=unit)
        if not result.ok:
            raise PrivacyError(
                f"{name}: k-anonymity {result.smallest} is below the small-cell threshold {k} "
                f"on {', '.join(qi)} ({len(result.below)} of {result.n_classes} classes too "
                "small); nothing was written")


__all__ = [
    "KINDS", "SHARED_DATASETS", "Finding", "Identifiers", "KAnonymity", "check_run_directory",
    "collect_identifiers", "input_identifiers", "k_anonymity", "nhs_number_like",
    "nhs_number_valid",
    "scan_for_personal_data",
]
