"""REDCap exports (records + data dictionary) mapped to the long format of the protocol."""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trials.errors import DataError
from trials.tables import (
    _ROW,
    _SOURCE,
    _check_path,
    _first_line,
    _raise_problems,
)

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- REDCap

_DICTIONARY_HEADERS = {  # the data dictionary CSV's headers, and the API's metadata names
    "field": ("Variable / Field Name", "field_name"),
    "form": ("Form Name", "form_name"),
    "type": ("Field Type", "field_type"),
    "choices": ("Choices, Calculations, OR Slider Labels", "select_choices_or_calculations"),
    "validation": ("Text Validation Type OR Show Slider Number",
                   "text_validation_type_or_show_slider_number"),
    "min": ("Text Validation Min", "text_validation_min"),
    "max": ("Text Validation Max", "text_validation_max"),
}
_EVENT = "redcap_event_name"
_REPEAT_FORM = "redcap_repeat_instrument"
_DAG = "redcap_data_access_group"
_VISIT = "__visit__"
_LINE = "__line__"


@dataclass(frozen=True)
class _Field:
    name: str
    form: str
    type: str
    codes: tuple[str, ...]  # the allowed raw values of a coded field; () when not coded
    validation: str
    low: float | None
    high: float | None


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_csv_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and the line each row starts on (quoted cells may span lines)."""
    _check_path(path)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty")
            end = reader.line_num
            for row in reader:
                start, end = end + 1, reader.line_num
                if any(cell != "" for cell in row):
                    rows.append(row)
                    lines.append(start)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (export the CSV as UTF-8)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: cannot read as CSV ({_first_line(exc)})") from None
    return header, rows, lines


def _read_dictionary(path: Path) -> list[_Field]:
    header, rows, lines = _read_csv_rows(path)
    index = {h.strip().lower(): i for i, h in enumerate(header)}
    where: dict[str, int | None] = {
        key: next((index[n.lower()] for n in names if n.lower() in index), None)
        for key, names in _DICTIONARY_HEADERS.items()}
    missing = [_DICTIONARY_HEADERS[k][0] for k in ("field", "form", "type", "choices")
               if where[k] is None]
    if missing:
        raise DataError(f"{path}: not a REDCap data dictionary (no column "
                        f"{', '.join(map(repr, missing))})")

    def cell(row: list[str], key: str) -> str:
        i = where[key]
        return row[i].strip() if i is not None and i < len(row) else ""

    fields: list[_Field] = []
    problems: list[str] = []
    seen: set[str] = set()
    for row, line in zip(rows, lines, strict=True):
        name, kind = cell(row, "field"), cell(row, "type").lower()
        at = f"{path}: line {line}, field {name!r}"
        if not name:
            problems.append(f"{path}: line {line}: 'Variable / Field Name' is empty")
            continue
        if name in seen:
            problems.append(f"{at}: defined twice")
            continue
        seen.add(name)
        if kind == "descriptive":  # display text only; never exported
            continue
        codes: tuple[str, ...] = ()
        if kind in ("radio", "dropdown", "checkbox"):
            choices = [c.strip() for c in cell(row, "choices").split("|") if c.strip()]
            bad = [c for c in choices if "," not in c]
            if not choices or bad:
                problems.append(f"{at}: {kind} field needs choices written 'code, label | ...'"
                                + (f" (not {bad[0]!r})" if bad else ""))
            codes = tuple(c.split(",", 1)[0].strip() for c in choices if "," in c)
        elif kind in ("yesno", "truefalse"):
            codes = ("0", "1")
        low, high = _number(cell(row, "min")), _number(cell(row, "max"))
        if kind == "slider":
            low, high = (0.0 if low is None else low), (100.0 if high is None else high)
        fields.append(_Field(name, cell(row, "form"), kind, codes,
                             cell(row, "validation").lower(), low, high))
    if not fields and not problems:
        problems.append(f"{path}: the data dictionary defines no fields")
    _raise_problems(problems)
    return fields


def _checkbox_code(field: _Field, suffix: str) -> str | None:
    # REDCap names a checkbox column field___code, the code lower-cased and every character
    # other than a letter, digit or underscore written as '_' (so code -1 gives field____1).
    for code in field.codes:
        if re.sub(r"[^a-z0-9_]", "_", code.lower()) == suffix.lower():
            return code
    return None


def _bad_values(field: _Field, code: str | None,
                values: pd.Series) -> list[tuple[pd.Series, str]]:
    """Masks of the values the dictionary does not allow, each with the reason."""
    given = values.notna()
    if code is not None:  # one checkbox column: ticked or not
        return [(given & ~values.isin(["0", "1"]),
                 f"is not 0 or 1 (checkbox {field.name}, choice {code})")]
    if field.codes:
        return [(given & ~values.isin(field.codes),
                 f"is not a choice of {field.name} ({', '.join(field.codes)})")]
    if field.validation in ("integer", "int"):
        kind = "a whole number"
        pattern = r"[+-]?\d+"
    elif field.type == "slider" or (field.validation.startswith("number")
                                    and "comma" not in field.validation):
        kind, pattern = "a number", r"[+-]?(\d+\.?\d*|\.\d+)"
    else:
        return []
    text = values.where(given, "")
    not_number = given & ~text.astype(str).str.fullmatch(pattern)
    num = pd.to_numeric(text.where(given & ~not_number, None), errors="coerce")
    low = -math.inf if field.low is None else field.low
    high = math.inf if field.high is None else field.high
    outside = (num < low) | (num > high)
    span = "..".join("" if b is None else f"{b:g}" for b in (field.low, field.high))
    return [(not_number, f"is not {kind} ({field.name})"),
            (outside, f"is outside {field.name}'s validation range {span} in the dictionary")]


def read_redcap(records_csv: PathLike, dictionary_csv: PathLike, event_visits: Mapping[str, int],
                field_map: Mapping[str, str] | None = None, visit_column: str = "visit", *,
                forms: Sequence[str] | None = None,
                participant_fields: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a REDCap "export records" CSV (raw values) into one row per record and visit.

    Parameters
    ----------
    records_csv : str or PathLike
        The export in REDCap's flat (long) layout: the record ID field, ``redcap_event_name``,
        and when the project repeats forms or events ``redcap_repeat_instrument`` and
        ``redcap_repeat_instance``. Raw codes, not labels.
    dictionary_csv : str or PathLike
        The project's data dictionary CSV (or the API's metadata export as CSV).
    event_visits : mapping of str to int
        Unique event name (``baseline_arm_1``) to visit number. Several events may share a visit
        (the same visit in different REDCap arms).
    field_map : mapping of str to str, optional
        Output names: ``{"record_id": "participant_id"}``. A key may be the record ID field, any
        exported field, a checkbox field (renames all its ``field___code`` columns to
        ``name___code``) or one checkbox column.
    visit_column : str
        Name of the visit column added to the output (its values are the visit numbers as text).
    forms : sequence of str, optional
        Read only these forms (instruments); the default is every form. Use it to leave out
        repeating logs (adverse events, contacts) that do not belong to one visit.
    participant_fields : sequence of str, optional
        Fields to carry to every row of a record; the default infers them (see Notes).

    Returns
    -------
    DataFrame
        The record ID field, the visit column, then the fields in export order, every cell text,
        with ``__source__`` (the records file) and ``__row__`` (``"12, 13 (record CMP-0001,
        event week_4_arm_1)"``: the export's CSV lines, record and event).

    Notes
    -----
    The rules, in order:

    1. The record ID field is the first field of the data dictionary. Export columns must be
       dictionary fields, ``field___code`` columns of checkbox fields, form status
       (``form_complete``) or survey timestamps (``form_timestamp``), or ``redcap_*`` columns;
       anything else is reported (the export and dictionary do not belong together). Status,
       timestamps and ``redcap_*`` columns are used below and then left out, except
       ``redcap_data_access_group``, which is kept as data.
    2. Every value of a coded field is checked against the dictionary: radio and dropdown
       against their choice codes, yes/no and true/false against 0 and 1, each checkbox column
       against 0 and 1 (and its code against the field's choices), integer and number text
       fields and sliders for being numbers within the dictionary's validation min and max.
    3. Each row's ``redcap_event_name`` is mapped through ``event_visits``; an event it does not
       name is reported with the row's line.
    4. Checkboxes stay one 0/1 column per choice, under REDCap's own ``field___code`` names.
       REDCap writes 0 in every checkbox column of every row, even where the form was never
       filled in; a checkbox whose columns are all 0 is therefore made missing on a row where
       nothing else of its form is filled in and the form status is not Unverified or Complete.
    5. The rows of one record and visit (its event's row, rows of repeating instruments, further
       instances of a repeating event) are combined into one row: each field takes the value
       that those rows give; rows that give different values for the same field are reported,
       since one row per visit cannot hold both (leave such a form out with ``forms``).
    6. Participant-level fields are carried to every row of the record. By default they are the
       fields of each form that is filled in only on a record's first visit (lowest visit number)
       across the whole export, such as demographics or randomisation. An interim export in
       which a later-visit form has so far been filled in only at baseline would be taken as
       participant-level too: pass ``participant_fields`` to fix the set. A participant-level
       field with different values on different visits is reported.
    7. ``field_map`` renames columns; output names must be unique.

    Every problem is collected and reported at once (:class:`DataError` with ``problems``),
    one line each naming the file, line, record, event and column.
    """
    records_path, dictionary_path = Path(records_csv), Path(dictionary_csv)
    src = str(records_path)
    fields = _read_dictionary(dictionary_path)
    by_name = {f.name: f for f in fields}
    record_id = fields[0].name
    visits = _event_visits(event_visits)
    header, rows, lines = _read_csv_rows(records_path)
    problems: list[str] = []
    dup = sorted({c for c in header if header.count(c) > 1})
    problems += [f"{src}: column {c!r} appears more than once" for c in dup]
    for name in (record_id, _EVENT):
        if name not in header:
            why = ("the record ID field, the first in the data dictionary" if name == record_id
                   else "export a longitudinal project's records with their events")
            problems.append(f"{src}: column {name!r} is missing ({why})")
    _raise_problems(problems)

    form_names = list(dict.fromkeys(f.form for f in fields))
    kept = set(form_names if forms is None else forms)
    problems += [f"forms: {f!r} is not a form of {dictionary_path}" for f in
                 (forms or []) if f not in form_names]
    col_field: dict[str, _Field] = {}
    col_code: dict[str, str] = {}
    status: dict[str, str] = {}
    data_cols: list[str] = []
    for c in header:
        if c in (record_id, _EVENT):
            continue
        if c.startswith("redcap_"):
            if c == _DAG:
                data_cols.append(c)
            continue
        field = by_name.get(c)
        match = re.fullmatch(r"(.+?)___(.+)", c)
        if field is None and match and match.group(1) in by_name:
            field = by_name[match.group(1)]
            code = _checkbox_code(field, match.group(2)) if field.type == "checkbox" else None
            if code is None:
                problems.append(f"{src}: column {c!r}: {field.name} has no checkbox choice "
                                f"{match.group(2)!r} in {dictionary_path}")
                continue
            col_code[c] = code
        elif field is None:
            tail = re.fullmatch(r"(.+)_(complete|timestamp)", c)
            if tail and tail.group(1) in form_names:
                if tail.group(2) == "complete":
                    status[tail.group(1)] = c
                continue
            problems.append(f"{src}: column {c!r} is not a field of the data dictionary "
                            f"{dictionary_path}")
            continue
        if field.form in kept:
            col_field[c] = field
            data_cols.append(c)

    good = [i for i, r in enumerate(rows) if len(r) == len(header)]
    problems += [f"{src}: line {lines[i]} has {len(rows[i])} cells, the header has "
                 f"{len(header)}" for i in range(len(rows)) if len(rows[i]) != len(header)]
    raw = pd.DataFrame([rows[i] for i in good], columns=header, dtype=object)
    raw = raw.loc[:, ~raw.columns.duplicated()]
    raw = raw.where(raw != "", None)
    raw[_LINE] = [lines[i] for i in good]
    if _REPEAT_FORM in raw.columns:
        rep = raw[_REPEAT_FORM]
        for line, form in zip(raw[_LINE][rep.notna() & ~rep.isin(form_names)],
                              rep[rep.notna() & ~rep.isin(form_names)], strict=True):
            problems.append(f"{src}: line {line}, column {_REPEAT_FORM!r}: {form!r} is not a "
                            f"form of {dictionary_path}")
        raw = raw[rep.isna() | rep.isin(kept)]
    loc = [f"{src}: line {ln} (record {r!r}, event {e!r})"
           for ln, r, e in zip(raw[_LINE], raw[record_id], raw[_EVENT], strict=True)]
    locs = pd.Series(loc, index=raw.index, dtype=object)

    for where in locs[raw[record_id].isna()]:
        problems.append(f"{where}, column {record_id!r}: record ID is empty")
    event = raw[_EVENT]
    unknown = ~event.isin(list(visits))
    for where, ev in zip(locs[unknown], event[unknown], strict=True):
        problems.append(f"{where}, column {_EVENT!r}: "
                        + ("event is empty" if ev is None else f"unknown event {ev!r}")
                        + f" (event_visits maps {', '.join(visits) or 'no events'})")
    for c, field in col_field.items():
        for bad, why in _bad_values(field, col_code.get(c), raw[c]):
            for where, v in zip(locs[bad], raw[c][bad], strict=True):
                problems.append(f"{where}, column {c!r}: {v!r} {why}")
    _blank_unfilled_checkboxes(raw, col_field, col_code, status)

    raw = raw[raw[record_id].notna() & ~unknown].copy()
    raw[_VISIT] = raw[_EVENT].map(visits)
    merged, meta, conflicts = _combine_visits(raw, record_id, data_cols, src)
    problems += conflicts
    pl_cols, pl_problems = _participant_columns(merged, record_id, col_field, data_cols,
                                                participant_fields, by_name)
    problems += pl_problems
    for c in pl_cols:
        n_values = merged.groupby(record_id, sort=False)[c].nunique(dropna=True)
        for r in n_values.index[n_values > 1]:
            values = sorted(merged.loc[merged[record_id] == r, c].dropna().unique())
            problems.append(f"{src}: record {r!r}, column {c!r}: participant-level field "
                            f"differs between visits ({', '.join(map(repr, values))})")
        merged[c] = merged.groupby(record_id, sort=False)[c].transform("first")
    names, rename_problems = _output_names(record_id, data_cols, col_field, col_code,
                                           field_map, visit_column, src, by_name)
    problems += rename_problems
    _raise_problems(problems)

    out = pd.DataFrame({names[0]: merged[record_id].to_numpy(dtype=object),
                        visit_column: merged[_VISIT].map(lambda v: str(int(v)))
                        .to_numpy(dtype=object)})
    for c, name in zip(data_cols, names[2:], strict=True):
        out[name] = merged[c].to_numpy(dtype=object)
    out = out.astype("str")
    out[_SOURCE] = src
    out[_ROW] = meta.to_numpy(dtype=object)
    return out


def _event_visits(event_visits: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(event_visits, Mapping) or not event_visits:
        raise DataError("event_visits must map REDCap event names to visit numbers, e.g. "
                        "{'baseline_arm_1': 0}")
    out: dict[str, int] = {}
    for ev, visit in event_visits.items():
        if isinstance(visit, bool) or not isinstance(visit, int | np.integer):
            raise DataError(f"event_visits: visit of event {ev!r} must be a whole number, "
                            f"not {visit!r}")
        out[str(ev)] = int(visit)
    return out


def _blank_unfilled_checkboxes(raw: pd.DataFrame, col_field: dict[str, _Field],
                               col_code: dict[str, str], status: dict[str, str]) -> None:
    for form in dict.fromkeys(f.form for c, f in col_field.items() if c in col_code):
        cols = [c for c, f in col_field.items() if f.form == form]
        boxes = [c for c in cols if c in col_code]
        filled = raw[[c for c in cols if c not in col_code]].notna().any(axis=1)
        filled |= raw[boxes].eq("1").any(axis=1)
        if form in status:
            filled |= raw[status[form]].isin(["1", "2"])
        for name in dict.fromkeys(col_field[c].name for c in boxes):
            own = [c for c in boxes if col_field[c].name == name]
            unticked = raw[own].isin(["0", None]).all(axis=1)
            raw.loc[unticked & ~filled, own] = None


def _combine_visits(raw: pd.DataFrame, record_id: str, data_cols: list[str],
                    src: str) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    keys = [record_id, _VISIT]
    order = {r: i for i, r in enumerate(dict.fromkeys(raw[record_id]))}
    raw = raw.assign(__order__=raw[record_id].map(order))
    raw = raw.sort_values(["__order__", _VISIT, _LINE], kind="stable")
    groups = raw.groupby(keys, sort=False)
    problems: list[str] = []
    if data_cols:
        counts = groups[data_cols].nunique(dropna=True)
        for (r, v), row in counts[(counts > 1).any(axis=1)].iterrows():
            part = raw[(raw[record_id] == r) & (raw[_VISIT] == v)]
            at = ", ".join(map(str, part[_LINE]))
            for c in row.index[row > 1]:
                values = ", ".join(map(repr, dict.fromkeys(part[c].dropna())))
                problems.append(f"{src}: lines {at} (record {r!r}, visit {v}), column {c!r}: "
                                f"rows of one record and visit disagree ({values}); leave "
                                "repeating forms out with forms=[...]")
        merged = groups[data_cols].first().reset_index()
    else:
        merged = groups.size().reset_index()[keys]
    meta = groups.apply(lambda g: (f"{', '.join(map(str, g[_LINE]))} (record {g.name[0]}, "
                                   f"event {', '.join(dict.fromkeys(g[_EVENT]))})"),
                        include_groups=False) if len(raw) else pd.Series([], dtype=object)
    return merged, meta.reset_index(drop=True), problems


def _participant_columns(merged: pd.DataFrame, record_id: str, col_field: dict[str, _Field],
                         data_cols: list[str], participant_fields: Sequence[str] | None,
                         by_name: dict[str, _Field]) -> tuple[list[str], list[str]]:
    candidates = [c for c in data_cols if c in col_field and col_field[c].name != record_id]
    if participant_fields is not None:
        unknown = [f for f in participant_fields if f not in by_name and f != _DAG]
        chosen = set(participant_fields)
        cols = [c for c in data_cols if c == _DAG and c in chosen
                or c in col_field and col_field[c].name in chosen]
        return cols, [f"participant_fields: {f!r} is not a field of the data dictionary"
                      for f in unknown]
    first = merged[_VISIT] == merged.groupby(record_id, sort=False)[_VISIT].transform("min")
    cols = []
    for form in dict.fromkeys(col_field[c].form for c in candidates):
        own = [c for c in candidates if col_field[c].form == form]
        present = merged[own].notna().to_numpy()
        if present.any() and not present[~first.to_numpy()].any():
            cols += own
    return cols, []


def _output_names(record_id: str, data_cols: list[str], col_field: dict[str, _Field],
                  col_code: dict[str, str], field_map: Mapping[str, str] | None,
                  visit_column: str, src: str,
                  by_name: dict[str, _Field]) -> tuple[list[str], list[str]]:
    field_map = dict(field_map or {})
    rename: dict[str, str] = {}
    problems: list[str] = []
    for key, new in field_map.items():  # a checkbox field's name renames all its columns
        boxes = [c for c in data_cols if c in col_code and col_field[c].name == key]
        for c in boxes:
            rename[c] = f"{new}{c[len(key):]}"
        if not boxes and key != record_id and key not in data_cols:
            where = "a field of the data dictionary" if key not in by_name else f"in {src}"
            problems.append(f"field_map: {key!r} is not {where}")
    for key, new in field_map.items():
        if key == record_id or key in data_cols:
            rename[key] = new
    names = [rename.get(record_id, record_id), visit_column,
             *(rename.get(c, c) for c in data_cols)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{src}: output column {name!r} would appear more than once (check "
                        "field_map and visit_column)")
    return names, problems
