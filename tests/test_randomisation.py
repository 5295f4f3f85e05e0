"""Randomisation lists: reproducibility, block and stratum balance, minimisation (worked by hand),
ratios, concealed export and the audit entry."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import designs.randomisation as randomisation
import trials.io
from designs.minimisation import Minimisation, minimisation
from designs.randomisation import (
    COLUMNS,
    AllocationList,
    balance_summary,
    new_seed,
    permuted_blocks,
    permuted_blocks_by_enrolment,
    record_allocation,
    simple_randomisation,
    stratified_block_allocation,
    stratified_permuted_blocks,
)
from trials.audit import AuditLog
from trials.io import sha256_file

ARMS = ("control", "ai")


def participants(n: int, seed: int) -> pd.DataFrame:
    """Three factors with 2, 3 and 4 levels and unequal prevalences."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "sex": rng.choice(["F", "M"], n, p=[0.6, 0.4]),
        "age": rng.choice(["18-39", "40-64", "65+"], n, p=[0.3, 0.5, 0.2]),
        "site": rng.choice(["s1", "s2", "s3", "s4"], n, p=[0.4, 0.3, 0.2, 0.1]),
    })


def all_methods(seed: int) -> dict[str, AllocationList]:
    return {
        "simple": simple_randomisation(60, ARMS, seed=seed),
        "blocks": permuted_blocks(60, ARMS, block_multiples=(1, 2, 3), seed=seed),
        "stratified": stratified_permuted_blocks({"s1": 30, "s2": 30}, ARMS, seed=seed),
        "by_enrolment": permuted_blocks_by_enrolment(participants(60, 1)[["site"]], ARMS,
                                                     seed=seed),
        "minimisation": minimisation(participants(60, 1), ARMS, seed=seed),
    }


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_gives_identical_lists_and_hashes() -> None:
    first, again = all_methods(2024), all_methods(2024)
    for name in first:
        assert first[name] == again[name], name
        assert first[name].sha256() == again[name].sha256(), name


def test_different_seeds_give_different_lists() -> None:
    first, other = all_methods(2024), all_methods(2025)
    for name in first:
        assert first[name].arm_sequence != other[name].arm_sequence, name
        assert first[name].sha256() != other[name].sha256(), name


def test_legacy_stratified_block_allocation_is_unchanged() -> None:
    # Expected arms recorded from the original implementation (before the AllocationList
    # refactor); the demo's simulated data depend on them.
    strata = pd.DataFrame({"site": list("AABABBAABBAB"), "sev": list("xyxyxxyyxyxx")},
                          index=range(100, 112))
    arms = stratified_block_allocation(strata, ["c", "t"], seed=11)
    assert arms.tolist() == ["t", "t", "t", "t", "c", "t", "c", "c", "c", "c", "c", "t"]
    assert arms.name == "arm" and list(arms.index) == list(strata.index)
    arms = stratified_block_allocation(strata, ["c", "t"], ratio=[2, 1],
                                       block_multiples=(1, 2, 3), seed=5)
    assert arms.tolist() == ["c", "t", "t", "c", "c", "c", "c", "c", "t", "t", "c", "c"]
    full = permuted_blocks_by_enrolment(strata, ["c", "t"], ratio=[2, 1],
                                        block_multiples=(1, 2, 3), seed=5)
    assert list(full.arm_sequence) == arms.tolist()


def test_new_seed_is_large_and_fresh() -> None:
    seeds = {new_seed() for _ in range(5)}
    assert len(seeds) == 5 and all(0 <= s < 2**63 for s in seeds)
    assert len(permuted_blocks(8, ARMS, seed=max(seeds))) == 8


# --------------------------------------------------------------------------- blocks


def complete_blocks(alloc: AllocationList) -> dict[int, list[str]]:
    blocks: dict[int, list[str]] = {}
    sizes: dict[int, int] = {}
    for a in alloc:
        assert a.block_id is not None and a.block_size is not None
        blocks.setdefault(a.block_id, []).append(a.arm)
        sizes[a.block_id] = a.block_size
    return {b: arms for b, arms in blocks.items() if len(arms) == sizes[b]}


@pytest.mark.parametrize("ratio", [(1, 1), (2, 1)])
def test_permuted_blocks_balanced_at_end_of_every_complete_block(ratio: tuple[int, int]) -> None:
    multiples = (1, 2, 3)
    alloc = permuted_blocks(203, ARMS, ratio=ratio, block_multiples=multiples, seed=7)
    allowed = {m * sum(ratio) for m in multiples}
    assert {a.block_size for a in alloc} <= allowed
    assert len({a.block_size for a in alloc}) > 1  # block sizes really vary
    blocks = complete_blocks(alloc)
    for arms in blocks.values():
        m = len(arms) // sum(ratio)
        assert Counter(arms) == {arm: m * r for arm, r in zip(ARMS, ratio, strict=True)}
    # Running counts are exactly in the ratio whenever a block has just been completed.
    counts = Counter[str]()
    rows = list(alloc)
    for a, following in zip(rows, rows[1:] + [None], strict=True):
        counts[a.arm] += 1
        if following is None or following.block_id != a.block_id:
            if a.block_id in blocks:
                assert counts[ARMS[0]] * ratio[1] == counts[ARMS[1]] * ratio[0]


def test_stratified_lists_are_balanced_within_strata() -> None:
    sizes = {"site=1|severe": 40, "site=1|moderate": 37, "site=2|severe": 23}
    alloc = stratified_permuted_blocks(sizes, ARMS, block_multiples=(1, 2), seed=3)
    frame = alloc.to_frame()
    assert frame.groupby("stratum", sort=False).size().to_dict() == sizes
    assert frame.groupby("stratum")["stratum_seq"].max().to_dict() == sizes
    assert {a.block_size for a in alloc} <= {2, 4}
    # Blocks never span strata, and every complete block is balanced.
    assert (frame.groupby("block_id")["stratum"].nunique() == 1).all()
    for arms in complete_blocks(alloc).values():
        assert arms.count(ARMS[0]) == arms.count(ARMS[1])
    # Whatever the stratum's size, it is at most half a block out of balance.
    assert alloc.balance().max_stratum_imbalance <= 2


def test_stratum_list_does_not_depend_on_other_strata() -> None:
    alone = stratified_permuted_blocks({"B": 20}, ARMS, seed=9)
    with_a = stratified_permuted_blocks({"A": 13, "B": 20}, ARMS, seed=9)
    assert alone.arm_sequence == tuple(a.arm for a in with_a if a.stratum == "B")


def test_blocks_by_enrolment_balanced_within_strata() -> None:
    people = participants(300, 5)
    alloc = permuted_blocks_by_enrolment(people[["site", "sex"]], ARMS, seed=12)
    assert alloc.factors == ("site", "sex")
    assert {a.block_size for a in alloc} <= {2, 4}
    for arms in complete_blocks(alloc).values():
        assert arms.count(ARMS[0]) == arms.count(ARMS[1])
    summary = alloc.balance()
    assert len(summary.by_stratum) == 8
    assert summary.max_stratum_imbalance <= 2
    assert summary.by_stratum.loc["site=s1|sex=F", list(ARMS)].sum() == (
        (people["site"] == "s1") & (people["sex"] == "F")).sum()


# --------------------------------------------------------------------------- minimisation


def test_minimisation_worked_by_hand() -> None:
    # Two arms 1:1, factors sex (weight 1) and age (weight 2), p = 1: deterministic but for ties.
    # Previous allocations:  1 F young -> A;  2 M young -> B;  3 F old -> A.
    history = pd.DataFrame({"sex": ["F", "M", "F"], "age": ["young", "young", "old"],
                            "arm": ["A", "B", "A"]})
    spec = Minimisation(["A", "B"], ["sex", "age"], weights=[1, 2], p=1.0, seed=0)
    var = Minimisation(["A", "B"], ["sex", "age"], weights=[1, 2], measure="variance", p=1.0)

    # Participant 4, F young. Counts (A, B): sex=F (2, 0); age=young (1, 1).
    #   range:    to A: F (3,0) -> 3, young (2,1) -> 1; G_A = 1*3 + 2*1 = 5
    #             to B: F (2,1) -> 1, young (1,2) -> 1; G_B = 1*1 + 2*1 = 3   -> B
    #   variance (divisor 2, i.e. (a-b)^2/4):
    #             to A: 9/4 + 2 * 1/4 = 2.75;  to B: 1/4 + 2 * 1/4 = 0.75     -> B
    step = spec.next(history, {"sex": "F", "age": "young"})
    assert step.scores == {"A": 5.0, "B": 3.0}
    assert step.preferred == ("B",) and step.arm == "B" and step.seq == 4
    assert step.probabilities == {"A": 0.0, "B": 1.0}
    assert var.next(history, {"sex": "F", "age": "young"}).scores == {"A": 2.75, "B": 0.75}
    history.loc[3] = ["F", "young", "B"]

    # Participant 5, M old. Counts: sex=M (0, 1); age=old (1, 0).
    #   range:    to A: M (1,1) -> 0, old (2,0) -> 2; G_A = 0 + 2*2 = 4
    #             to B: M (0,2) -> 2, old (1,1) -> 0; G_B = 2 + 0   = 2      -> B
    #   (unweighted the two would tie at 2: the weight on age decides)
    #   variance: to A: 0 + 2 * 1 = 2;  to B: 1 + 0 = 1                      -> B
    step = spec.next(history, {"sex": "M", "age": "old"})
    assert step.scores == {"A": 4.0, "B": 2.0} and step.arm == "B"
    assert var.next(history, {"sex": "M", "age": "old"}).scores == {"A": 2.0, "B": 1.0}
    unweighted = Minimisation(["A", "B"], ["sex", "age"], p=1.0)
    assert unweighted.next(history, {"sex": "M", "age": "old"}).preferred == ("A", "B")
    history.loc[4] = ["M", "old", "B"]

    # Participant 6, M young. Counts: sex=M (0, 2); age=young (1, 2).
    #   range:    to A: M (1,2) -> 1, young (2,2) -> 0; G_A = 1 + 0   = 1      -> A
    #             to B: M (0,3) -> 3, young (1,3) -> 2; G_B = 3 + 2*2 = 7
    #   variance: to A: 1/4 + 0 = 0.25;  to B: 9/4 + 2 * 1 = 4.25            -> A
    step = spec.next(history, {"sex": "M", "age": "young"})
    assert step.scores == {"A": 1.0, "B": 7.0} and step.arm == "A"
    assert var.next(history, {"sex": "M", "age": "young"}).scores == {"A": 0.25, "B": 4.25}


def test_minimisation_first_participant_is_a_random_tie_break() -> None:
    spec = Minimisation(["A", "B"], ["sex"], p=1.0)
    empty = pd.DataFrame({"sex": [], "arm": []})
    step = spec.next(empty, {"sex": "F"})
    assert step.preferred == ("A", "B") and step.probabilities == {"A": 0.5, "B": 0.5}
    firsts = {minimisation(pd.DataFrame({"sex": ["F"]}), ["A", "B"], p=1.0, seed=s)
              .arm_sequence for s in range(20)}
    assert firsts == {("A",), ("B",)}


def test_minimisation_ratio_two_to_one_worked_by_hand() -> None:
    # Ratio 2:1, one factor, p = 1; counts are divided by the ratio before the range.
    #   1: counts (0,0). to A: (1/2, 0) -> 0.5;  to B: (0, 1) -> 1            -> A
    #   2: counts (1,0). to A: (1, 0)   -> 1;    to B: (1/2, 1) -> 0.5        -> B
    #   3: counts (1,1). to A: (1, 1)   -> 0;    to B: (1/2, 2) -> 1.5        -> A
    people = pd.DataFrame({"sex": ["F", "F", "F"]})
    alloc = minimisation(people, ["A", "B"], ratio=[2, 1], p=1.0, seed=0)
    assert alloc.arm_sequence == ("A", "B", "A")
    step = Minimisation(["A", "B"], ["sex"], ratio=[2, 1], p=1.0).next(
        pd.DataFrame({"sex": ["F", "F"], "arm": ["A", "B"]}), {"sex": "F"})
    assert step.scores == {"A": 0.0, "B": 1.5}


def test_minimisation_step_by_step_equals_whole_list() -> None:
    people = participants(40, 8)
    spec = Minimisation(ARMS, ["sex", "age", "site"], weights=[1, 1, 2], p=0.8, seed=77)
    whole = spec.allocate(people)
    history = pd.DataFrame(columns=["sex", "age", "site", "arm"])
    for i, row in people.iterrows():
        step = spec.next(history, row.to_dict())
        assert step.arm == whole.allocations[i].arm
        history.loc[len(history)] = [*row.to_list(), step.arm]
    # The list's own frame serves as the history.
    nxt = spec.next(whole.to_frame(), {"sex": "F", "age": "65+", "site": "s4"})
    assert nxt.seq == 41


def test_minimisation_balances_margins_far_better_than_simple() -> None:
    people = participants(500, 2026)
    mini = minimisation(people, ARMS, p=0.8, seed=1).balance()
    simple = simple_randomisation(500, ARMS, seed=1)
    simple_bal = balance_summary(simple.arm_sequence, ARMS, factors=people)
    # Seeded values: minimisation 3 at worst, simple randomisation 21.
    assert mini.max_factor_imbalance <= 4
    assert simple_bal.max_factor_imbalance >= 15
    assert mini.max_factor_imbalance * 4 < simple_bal.max_factor_imbalance
    assert mini.overall_imbalance <= 2


def test_minimisation_variance_measure_and_three_arms() -> None:
    people = participants(300, 4)
    alloc = minimisation(people, ["a", "b", "c"], measure="variance", seed=5)
    assert alloc.balance().max_factor_imbalance <= 4
    assert set(alloc.arm_sequence) == {"a", "b", "c"}


# --------------------------------------------------------------------------- ratio


def test_ratio_two_to_one_gives_about_twice_as_many_in_first_arm() -> None:
    people = participants(600, 6)
    lists = {
        "simple": simple_randomisation(600, ARMS, ratio=[2, 1], seed=4),
        "blocks": permuted_blocks(600, ARMS, ratio=[2, 1], seed=4),
        "minimisation": minimisation(people, ARMS, ratio=[2, 1], seed=4),
    }
    for name, alloc in lists.items():
        share = alloc.balance().overall[ARMS[0]] / 600
        # Within 3 binomial standard errors of 2/3 (simple randomisation; the others are closer).
        assert abs(share - 2 / 3) < 3 * np.sqrt(2 / 9 / 600), (name, share)
    for name in ("blocks", "minimisation"):
        n = lists[name].balance().overall
        assert 1.9 < n[ARMS[0]] / n[ARMS[1]] < 2.1, (name, n.to_dict())
    assert lists["blocks"].balance().overall.to_dict() == {ARMS[0]: 400, ARMS[1]: 200}
    # Minimisation keeps the 2:1 within every factor level too (ratio-scaled imbalance).
    assert lists["minimisation"].balance().max_factor_imbalance <= 3


# --------------------------------------------------------------------------- export, audit


def test_export_csv_has_expected_columns_and_hash(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = randomisation.write_text_atomic

    def spy(path, text):  # type: ignore[no-untyped-def]
        calls.append(Path(path))
        return real(path, text)

    monkeypatch.setattr(randomisation, "write_text_atomic", spy)
    alloc = minimisation(participants(25, 3), ARMS, seed=10)
    out = alloc.export_csv(tmp_path / "concealed" / "allocation.csv")
    assert calls == [out]
    assert sha256_file(out) == alloc.sha256()
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*COLUMNS, "sex", "age", "site"]
    assert len(rows) == 25
    assert [r["arm"] for r in rows] == list(alloc.arm_sequence)
    assert {r["method"] for r in rows} == {"minimisation"} and {r["seed"] for r in rows} == {"10"}
    assert rows[0]["block_id"] == "" and rows[0]["seq"] == "1"
    assert [p.name for p in out.parent.iterdir()] == ["allocation.csv"]  # no temporary left

    blocks = permuted_blocks(10, ARMS, seed=1)
    frame = blocks.to_frame()
    assert list(frame.columns) == list(COLUMNS)
    assert frame["block_size"].notna().all() and frame["stratum"].eq("all").all()


def test_failed_export_leaves_earlier_file_intact(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "allocation.csv"
    first = permuted_blocks(10, ARMS, seed=1)
    first.export_csv(path)

    def fail(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(trials.io.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        permuted_blocks(10, ARMS, seed=2).export_csv(path)
    assert sha256_file(path) == first.sha256()
    assert [p.name for p in tmp_path.iterdir()] == ["allocation.csv"]


def test_record_allocation_entry_verifies_in_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    before = log.append("lock", {"protocol": "demo"})
    alloc = stratified_permuted_blocks({"s1": 20, "s2": 20}, ARMS, seed=123456789)
    head = record_allocation(log, alloc)
    assert head.seq == 2
    assert log.verify([before, head]) == head
    entry = log.entries()[-1]
    assert entry["event"] == "allocation_list"
    assert entry["details"] == {"method": "stratified_permuted_blocks", "n": 40,
                                "sha256": alloc.sha256(), "arms": list(ARMS), "ratio": [1, 1],
                                "strata": 2, "seed": "withheld"}
    # Nothing in the log reveals an allocation, a block size or the seed.
    text = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    assert "block_size" not in text and "multiples" not in text and "123456789" not in text
    # Opt in to the seed (open-label study, or after unblinding).
    head = record_allocation(log, alloc, include_seed=True)
    assert log.entries()[-1]["details"]["seed"] == 123456789
    assert log.verify([before, head]).seq == 3


# --------------------------------------------------------------------------- balance, errors


def test_balance_summary_of_study_data() -> None:
    summary = balance_summary(["a", "a", "b", "a"], ["a", "b", "c"], strata=["x", "x", "y", "y"],
                              factors=pd.DataFrame({"sex": ["F", "M", "F", "F"]}))
    assert summary.overall.to_dict() == {"a": 3, "b": 1, "c": 0}
    assert summary.overall_imbalance == 3
    assert summary.by_stratum.loc["x", ["a", "b", "c"]].tolist() == [2, 0, 0]
    assert summary.by_factor.loc[("sex", "F"), "imbalance"] == 2
    table = summary.to_frame()
    assert list(table.columns) == ["scope", "level", "a", "b", "c", "imbalance"]
    assert table["scope"].tolist() == ["overall", "stratum", "stratum", "sex", "sex"]


@pytest.mark.parametrize("call, message", [
    (lambda: simple_randomisation(5, ["a"]), "at least two"),
    (lambda: simple_randomisation(5, ["a", "b"], ratio=[1, 0]), "positive integers"),
    (lambda: simple_randomisation(5, ["a", "b"], ratio=[1, 1, 1]), "3 entries"),
    (lambda: simple_randomisation(5, ["a", "b"], seed=-1), "seed"),
    (lambda: permuted_blocks(5, ["a", "b"], block_multiples=()), "block_multiples"),
    (lambda: Minimisation(["a", "b"], ["sex"], p=0), "p must"),
    (lambda: Minimisation(["a", "b"], ["sex"], measure="sd"), "measure"),
    (lambda: Minimisation(["a", "b"], ["sex"], weights=[1, 2]), "2 weights"),
    (lambda: Minimisation(["a", "b"], ["arm"]), "clash"),
    (lambda: minimisation(pd.DataFrame({"sex": ["F"]}), ["a", "b"], factors=["age"]), "age"),
    (lambda: Minimisation(["a", "b"], ["sex"]).next(
        pd.DataFrame({"sex": ["F"], "arm": ["z"]}), {"sex": "F"}), "'z'"),
    (lambda: Minimisation(["a", "b"], ["sex"]).next(
        pd.DataFrame({"sex": ["F"], "arm": ["a"]}), {}), "sex"),
])
def test_invalid_specifications_are_named(call, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()


def test_cli_randomise_writes_list_and_records_its_hash(tmp_path):
    import hashlib
    import json

    from typer.testing import CliRunner

    from trials.cli import app
    from trials.demo import demo_protocol_text
    from trials.demo.simulate import simulate_demo

    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(demo_protocol_text(), encoding="utf-8")
    people = tmp_path / "people.csv"
    d = simulate_demo(n=30)
    d[d["week"] == 0][["participant_id", "practice", "severity_stratum"]].to_csv(people,
                                                                                index=False)
    out = tmp_path / "list.csv"
    result = CliRunner().invoke(app, ["randomise", str(protocol), "--out", str(out),
                                      "--participants", str(people), "--method",
                                      "minimisation", "--seed", "9"])
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    entry = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert entry["event"] == "allocation_list" and entry["details"]["sha256"] == digest
    assert entry["details"]["seed"] == "withheld" and entry["details"]["n"] == 30


def test_cli_randomise_needs_n_or_participants(tmp_path):
    from typer.testing import CliRunner

    from trials.cli import app
    from trials.demo import demo_protocol_text

    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(demo_protocol_text(), encoding="utf-8")
    result = CliRunner().invoke(app, ["randomise", str(protocol), "--out",
                                      str(tmp_path / "l.csv")])
    assert result.exit_code == 2 and result.stderr.strip() == "error: give --n or --participants"
