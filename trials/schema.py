"""A pandera schema generated from the protocol and its instrument definitions.

The schema checks every cell of the raw, text-valued intake frame: IDs present, arms and visits
known, participant-level values present, date-times readable, items whole numbers inside the
instrument's range and only at the outcome's visits. Every failure becomes one line naming the
file, row, column, value and rule. Cross-row rules (duplicate participant-visits, values that
must not change between visits) are checked in :mod:`trials.data`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from trials.protocol import Protocol

_SOURCE = "__source__"
_ROW = "__row__"


@dataclass(frozen=True)
class Rule:
    """A named rule and how a failure of it reads (``{value!r}`` is the offending cell)."""

    id: str
    text: Callable[[object], str]


def _numbers(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def _whole(s: pd.Series) -> pd.Series:
    num = _numbers(s)
    return num.notna() & (num == np.round(num))


def build_schema(protocol: Protocol, frame: pd.DataFrame,
                 columns: list[str]) -> tuple[pa.DataFrameSchema, dict[str, Rule]]:
    """The schema for ``frame`` (only ``columns`` that are present are checked).

    ``frame`` is needed because "an item is only given at its outcome's visits" compares each
    item cell with the same row's visit.
    """
    cols = protocol.data
    arms = [a.id for a in protocol.design.arms]
    all_visits = sorted({v for o in protocol.outcomes for v in o.visits})
    visit = _numbers(frame[cols.visit]) if cols.visit in frame else pd.Series(dtype=float)
    rules: dict[str, Rule] = {}

    def check(rule: Rule, fn: Callable[[pd.Series], pd.Series], ignore_na: bool = True) -> pa.Check:
        rules[rule.id] = rule
        return pa.Check(fn, name=rule.id, ignore_na=ignore_na)

    schema: dict[str, pa.Column] = {}
    schema[cols.participant] = pa.Column(str, nullable=False)
    rules["not_nullable"] = Rule("not_nullable", lambda v: "value is empty")
    schema[cols.arm] = pa.Column(str, check(
        Rule("known_arm", lambda v: f"unknown arm {v!r} (protocol arms: {', '.join(arms)})"),
        lambda s: s.isin(arms)), nullable=False)
    schema[cols.visit] = pa.Column(str, check(
        Rule("known_visit", lambda v: f"unknown visit {v!r} (protocol visits: "
                                      f"{', '.join(map(str, all_visits))})"),
        lambda s: _whole(s) & _numbers(s).isin(all_visits)), nullable=False)
    for c in dict.fromkeys((*protocol.design.strata, *cols.participant_columns)):
        schema[c] = pa.Column(str, nullable=False)
    if cols.completed_at:
        schema[cols.completed_at] = pa.Column(str, check(
            Rule("date_time", lambda v: f"{v!r} is not a date-time (ISO 8601, e.g. "
                                        "2026-03-04T14:30)"),
            lambda s: pd.to_datetime(s, errors="coerce", format="ISO8601").notna()),
            nullable=True)
    whole = Rule("whole_number", lambda v: f"{v!r} is not a whole number")
    known_visit = visit.isin(all_visits)
    for outcome in protocol.outcomes:
        inst = protocol.instrument(outcome.id)
        lo, hi = inst.item_min, inst.item_max
        in_range = Rule(f"{outcome.id}_item_range",
                        lambda v, n=inst.name, a=lo, b=hi: f"{v!r} outside {n} item range {a}..{b}")
        on_time = Rule(
            f"{outcome.id}_scheduled",
            lambda v, o=outcome: f"{o.id} is not scheduled at this visit "
                                 f"(visits {', '.join(map(str, o.visits))})")
        # Rows with an unknown visit are reported once, as such, not once per item.
        scheduled = visit.isin(outcome.visits) | ~known_visit
        for i in range(1, inst.n_items + 1):
            c = cols.item_pattern.format(outcome=outcome.id, item=i)
            schema[c] = pa.Column(str, [
                check(whole, _whole),
                check(in_range, lambda s, a=lo, b=hi: ~_whole(s) | _numbers(s).between(a, b)),
                check(on_time, lambda s, ok=scheduled, a=lo, b=hi:
                      ~_whole(s) | ~_numbers(s).between(a, b) | ok.reindex(s.index)),
            ], nullable=True)
    present = {c: v for c, v in schema.items() if c in columns}
    return pa.DataFrameSchema(present, strict=False, coerce=False), rules


def schema_problems(protocol: Protocol, data: pd.DataFrame, columns: list[str]) -> list[str]:
    """Validate every cell lazily and return one line per failure, in column then row order."""
    schema, rules = build_schema(protocol, data, columns)
    try:
        schema.validate(data, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return []
    order = {c: i for i, c in enumerate(schema.columns)}
    cases = cases[cases["index"].notna()].copy()
    cases["_col"] = cases["column"].map(order)
    cases["_rule"] = cases["check"].astype(str).map(
        {name: i for i, name in enumerate(["not_nullable", *rules])}).fillna(99)
    cases = cases.sort_values(["_col", "_rule", "index"], kind="stable")
    lines = []
    for _, case in cases.iterrows():
        idx = int(case["index"])
        where = f"{data.at[idx, _SOURCE]}: row {data.at[idx, _ROW]}"
        column = case["column"]
        rule_id = str(case["check"])
        if rule_id.startswith("not_nullable"):
            rule_id = "not_nullable"
            what = ("participant ID is empty" if column == protocol.data.participant
                    else "value is empty")
        else:
            rule = rules.get(rule_id)
            what = rule.text(case["failure_case"]) if rule else f"fails {rule_id}"
        lines.append(f"{where}, column {column!r}: {what} [rule {rule_id}]")
    return lines
