"""The protocol schema: the demo loads, the hash sees values not layout, bad protocols fail in one
line that names the file and the field, and no string in a protocol is ever evaluated."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from trials.demo import demo_protocol_text
from trials.errors import ProtocolError
from trials.protocol import Protocol, load_protocol, parse_protocol

DEMO_FILE = Path(__file__).parents[1] / "trials" / "demo" / "protocol.yaml"


@pytest.fixture
def demo() -> dict[str, Any]:
    """The demo protocol as plain data, a fresh copy for each test to modify."""
    return yaml.safe_load(demo_protocol_text())


def _demo_sha256() -> str:
    return load_protocol(DEMO_FILE).sha256()


def _error(data: Any, source: str = "p.yaml") -> str:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(data, source)
    return str(info.value)


def _assert_one_line(message: str) -> None:
    assert message.strip(), "empty error message"
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"


# --------------------------------------------------------------------------- the demo


def test_demo_protocol_loads():
    protocol = load_protocol(DEMO_FILE)

    assert isinstance(protocol, Protocol)
    assert protocol.id == "COMPANION-PC"
    assert [a.id for a in protocol.design.arms] == ["usual_care", "ai_cbt"]
    assert protocol.design.control_arm.id == "usual_care"
    assert [c.id for c in protocol.criteria] == [
        "superiority", "bayes_benefit", "futility_cid", "harm_worse", "harm_item9",
        "harm_missed_escalation", "harm_slow_escalation", "harm_serious_events",
        "anxiety_claim", "recovery_claim"]


def test_packaged_demo_text_is_the_demo_file():
    assert demo_protocol_text() == DEMO_FILE.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the hash


@pytest.mark.parametrize(
    "dump_options",
    [
        {"default_flow_style": True, "sort_keys": True, "width": 10**6},
        {"default_flow_style": False, "sort_keys": False, "indent": 6},
        {"default_flow_style": False, "sort_keys": True, "allow_unicode": True, "width": 40},
    ],
    ids=["flow-sorted", "block-indent6", "block-sorted-narrow"],
)
def test_sha256_ignores_comments_and_layout(demo, tmp_path, dump_options):
    # safe_dump drops every comment of the demo file and changes quoting, order and layout.
    text = "# a new comment\n" + yaml.safe_dump(demo, **dump_options) + "# trailing comment\n"
    assert text != DEMO_FILE.read_text(encoding="utf-8")
    path = tmp_path / "relaid.yaml"
    path.write_text(text, encoding="utf-8")

    assert load_protocol(path).sha256() == _demo_sha256()


def test_sha256_same_whether_a_default_is_written_or_omitted(demo):
    assert demo["design"]["type"] == "parallel"  # the default
    del demo["design"]["type"]

    assert parse_protocol(demo).sha256() == _demo_sha256()


# Value changes that keep the protocol valid; each must give a new hash.
VALUE_CHANGES = [
    ("title", "Another title"),
    ("version", 2),
    ("description", "Edited description."),
    ("design.planned_size", 401),
    ("design.arms.1.label", "Companion"),
    ("design.arms.1.ratio", 2),
    ("outcomes.1.visits", [0, 8, 12]),
    ("estimands.0.variable.measure", "change"),
    ("estimands.0.population", "Per protocol"),
    ("estimands.0.intercurrent_events.0.strategy", "hypothetical"),
    ("estimands.0.intercurrent_events.0.note", "ascertained at each visit"),
    ("estimands.0.clinically_important_difference", -2.5),
    ("analyses.0.covariates", ["baseline"]),
    ("analyses.0.interval_level", 0.9),
    ("analyses.1.prior.treatment_effect.sd", 4),
    ("analyses.1.sampler.seed", 1),
    ("analyses.1.diagnostics.max_rhat", 1.05),
    ("safety.red_flags.0.at_least", 2),
    ("safety.red_flags.0.window", "any"),
    ("privacy.small_cell_threshold", 10),
    ("privacy.pseudonymise_ids", False),
    ("criteria.0.threshold", -0.5),
    ("criteria.0.comparator", "<="),
    ("criteria.0.label", "Edited label"),
    ("criteria.1.probability", 0.95),
    ("criteria.2.kind", "harm"),
    ("decision.labels.continue", "KEEP GOING"),
]


@pytest.mark.parametrize(("path", "value"), VALUE_CHANGES, ids=[p for p, _ in VALUE_CHANGES])
def test_sha256_changes_when_a_value_changes(demo, path, value):
    _set(demo, path, value)

    assert parse_protocol(demo).sha256() != _demo_sha256()


def test_sha256_changes_for_every_leaf_value_that_still_validates(demo):
    """Walk every scalar of the demo: a changed value is either rejected or changes the hash."""
    base = _demo_sha256()
    unchanged, validated = [], 0
    for path, value in _leaves(demo):
        changed = copy.deepcopy(demo)
        _set(changed, path, _other_value(value))
        try:
            sha = parse_protocol(changed).sha256()
        except ProtocolError:
            continue  # e.g. a renamed id that others refer to
        validated += 1
        if sha == base:
            unchanged.append(path)

    assert unchanged == []
    assert validated >= 50  # the walk really exercised the hash, not only the validator


# --------------------------------------------------------------------------- bad protocols

# (test id, edits to the demo, field path the message must name after the file, a fragment)
# An edit is (dotted path, value); value DROP deletes the key, APPEND(x) appends x to a list.
DROP = object()


class APPEND:
    def __init__(self, value: Any) -> None:
        self.value = value


FLAG = {"id": "phq9_item9", "label": "again", "outcome": "phq9", "item": 9}
BAD_PROTOCOLS = [
    # references between sections
    ("criterion-unknown-analysis", [("criteria.0.analysis", "nope")],
     "criteria.0.analysis", "'nope' is not one of"),
    ("criterion-unknown-safety", [("criteria.4.safety", "nope")],
     "criteria.4.safety", "'nope' is not one of"),
    ("criterion-unknown-look", [("criteria.0.look", "week6")],
     "criteria.0.look", "'week6' is not one of"),
    ("estimand-visit-not-scheduled", [("estimands.0.variable.visit", 6)],
     "estimands.0.variable.visit", "6 is not one of"),
    ("estimand-unknown-outcome", [("estimands.1.variable.outcome", "bdi")],
     "estimands.1.variable.outcome", "'bdi' is not one of"),
    ("estimand-unknown-arm", [("estimands.0.treatment.arm", "placebo")],
     "estimands.0.treatment.arm", "'placebo' is not one of"),
    ("estimand-unknown-comparator", [("estimands.0.treatment.comparator", "placebo")],
     "estimands.0.treatment.comparator", "'placebo' is not one of"),
    ("arm-equals-comparator", [("estimands.0.treatment.comparator", "ai_cbt")],
     "estimands.0.treatment", "must differ"),
    ("analysis-unknown-estimand", [("analyses.2.estimand", "nope")],
     "analyses.2.estimand", "'nope' is not one of"),
    ("analysis-unknown-covariate", [("analyses.0.covariates", ["baseline", "age"])],
     "analyses.0.covariates", "'age' is not one of"),
    ("red-flag-unknown-outcome", [("safety.red_flags.0.outcome", "bdi")],
     "safety.red_flags.0.outcome", "'bdi' is not one of"),
    ("subgroup-not-a-column", [("subgroups", ["age_group", "shoe_size"])],
     "subgroups", "'shoe_size'"),
    # design
    ("three-arms", [("design.arms", APPEND({"id": "waitlist", "label": "Waiting list"}))],
     "design.arms", "at most 2"),
    ("one-arm", [("design.arms.1", DROP)], "design.arms", "at least 2"),
    ("duplicate-arm-ids", [("design.arms.1.id", "usual_care"),
                           ("estimands.0.treatment.arm", "usual_care")],
     "design", "arm ids must be unique"),
    ("no-control-arm", [("design.arms.0.control", False)], "design", "exactly one arm"),
    ("two-control-arms", [("design.arms.1.control", True)], "design", "exactly one arm"),
    ("arm-ratio-zero", [("design.arms.0.ratio", 0)], "design.arms.0.ratio", "greater than"),
    ("looks-empty", [("design.looks", [])], "design.looks", "at least 1"),
    ("duplicate-look-ids", [("design.looks", [{"id": "final", "information_fraction": 0.5},
                                              {"id": "final", "information_fraction": 1.0}])],
     "design", "look ids must be unique"),
    ("last-look-not-final", [("design.looks.1.information_fraction", 0.9)],
     "design", "ending at 1.0"),
    ("planned-size-missing", [("design.planned_size", DROP)],
     "design.planned_size", "Field required"),
    # unknown and missing keys
    ("unknown-top-level-key", [("foo", 1)], "foo", "Extra inputs are not permitted"),
    ("misspelt-optional-key", [("design.look", [])], "design.look", "Extra inputs"),
    ("unknown-key-in-criterion", [("criteria.0.thresold", 0)],
     "criteria.0.thresold", "Extra inputs"),
    ("title-missing", [("title", DROP)], "title", "Field required"),
    ("criterion-statistic-missing", [("criteria.0.statistic", DROP)],
     "criteria.0.statistic", "Field required"),
    ("criterion-threshold-missing", [("criteria.0.threshold", DROP)],
     "criteria.0.threshold", "Field required"),
    # criteria
    ("comparator-double-equals", [("criteria.0.comparator", "==")],
     "criteria.0.comparator", "Input should be '<'"),
    ("comparator-empty-from-unquoted-gt", [("criteria.2.comparator", "")],
     "criteria.2.comparator", "Input should be '<'"),
    ("comparator-word", [("criteria.0.comparator", "lt")],
     "criteria.0.comparator", "Input should be '<'"),
    ("posterior-probability-without-probability", [("criteria.1.probability", DROP)],
     "criteria.1", "needs probability"),
    ("probability-on-ci-statistic", [("criteria.0.probability", 0.9)],
     "criteria.0", "probability applies only to statistic posterior_probability"),
    ("both-analysis-and-safety", [("criteria.0.safety", "phq9_item9")],
     "criteria.0", "exactly one of analysis, safety or responder"),
    ("neither-analysis-nor-safety", [("criteria.0.analysis", DROP)],
     "criteria.0", "exactly one of analysis, safety or responder"),
    ("p-value-on-bayesian-analysis", [("criteria.1.statistic", "p_value"),
                                      ("criteria.1.probability", DROP)],
     "criteria.1.statistic", "p_value needs a frequentist analysis"),
    ("posterior-probability-on-frequentist", [("criteria.0.statistic", "posterior_probability"),
                                              ("criteria.0.probability", 0.9)],
     "criteria.0.statistic", "needs a bayesian analysis"),
    ("posterior-probability-on-safety", [("criteria.4.statistic", "posterior_probability"),
                                         ("criteria.4.probability", 0.9)],
     "criteria.4", "only bayesian analyses have a posterior_probability"),
    ("probability-above-one", [("criteria.1.probability", 1.5)],
     "criteria.1.probability", "less than 1"),
    ("unknown-statistic", [("criteria.0.statistic", "median")],
     "criteria.0.statistic", "Input should be"),
    ("unknown-kind", [("criteria.0.kind", "efficacy")], "criteria.0.kind", "Input should be"),
    ("duplicate-criterion-ids", [("criteria.1.id", "superiority")],
     "criteria", "duplicate id ['superiority']"),
    ("criteria-empty", [("criteria", [])], "criteria", "at least 1"),
    # safety
    ("red-flag-item-beyond-phq9", [("safety.red_flags.0.item", 10)],
     "safety.red_flags.0.item", "PHQ-9 has 9 items"),
    ("red-flag-item-beyond-gad7", [("safety.red_flags.0.outcome", "gad7"),
                                   ("safety.red_flags.0.item", 8)],
     "safety.red_flags.0.item", "GAD-7 has 7 items"),
    ("red-flag-at-least-above-range", [("safety.red_flags.0.at_least", 4)],
     "safety.red_flags.0.at_least", "outside the PHQ-9 item range"),
    ("duplicate-red-flag-ids", [("safety.red_flags", APPEND(FLAG))],
     "safety.red_flags", "duplicate id ['phq9_item9']"),
    # analyses
    ("bayesian-without-prior", [("analyses.1.prior", DROP)], "analyses.1", "needs a stated prior"),
    ("frequentist-with-sampler", [("analyses.0.sampler", {"draws": 100})],
     "analyses.0", "apply only to engine: bayesian"),
    ("prior-sd-zero", [("analyses.1.prior.treatment_effect.sd", 0)],
     "analyses.1.prior.treatment_effect.sd", "greater than 0"),
    ("unknown-engine", [("analyses.0.engine", "magic")], "analyses.0.engine", "Input should be"),
    # outcomes, estimands, data, top level
    ("unknown-instrument", [("outcomes.0.instrument", "BDI-II")],
     "outcomes.0.instrument", "'BDI-II' is neither a library instrument"),
    ("baseline-visit-not-a-visit", [("outcomes.0.baseline_visit", 2)],
     "outcomes.0", "baseline_visit 2 is not one of visits"),
    ("visits-not-increasing", [("outcomes.0.visits", [0, 8, 4, 12])],
     "outcomes.0", "increasing"),
    ("unknown-strategy", [("estimands.0.intercurrent_events.0.strategy", "ignore")],
     "estimands.0.intercurrent_events.0.strategy", "Input should be"),
    ("item-pattern-without-item", [("data.item_pattern", "{outcome}")],
     "data.item_pattern", "must contain {item}"),
    ("bad-identifier", [("criteria.0.id", "1st criterion")],
     "criteria.0.id", "should match pattern"),
    ("schema-version-2", [("schema_version", 2)], "schema_version", "Input should be 1"),
    ("version-zero", [("version", 0)], "version", "greater than or equal to 1"),
]


@pytest.mark.parametrize(
    ("edits", "field", "fragment"),
    [case[1:] for case in BAD_PROTOCOLS],
    ids=[case[0] for case in BAD_PROTOCOLS],
)
def test_bad_protocol_is_one_line_naming_file_and_field(demo, edits, field, fragment):
    for path, value in edits:
        _set(demo, path, value)

    message = _error(demo, "p.yaml")

    _assert_one_line(message)
    assert message.startswith(f"p.yaml: {field}: "), message
    assert fragment in message


@pytest.mark.parametrize(
    ("path", "value", "duplicate"),
    [
        ("outcomes.1.id", "phq9", "phq9"),
        ("estimands.1.id", "primary", "primary"),
        ("analyses.1.id", "primary_ancova", "primary_ancova"),
    ],
    ids=["outcomes", "estimands", "analyses"],
)
def test_duplicate_id_message_names_the_id(demo, path, value, duplicate):
    _set(demo, path, value)

    message = _error(demo)

    assert message.startswith(f"p.yaml: {path.split('.')[0]}: duplicate id")
    assert repr(duplicate) in message


def test_several_errors_give_one_line_naming_the_first(demo):
    # Only the first error is shown: pydantic's follow-on errors make a count misleading.
    _set(demo, "version", 0)
    _set(demo, "design.planned_size", -1)

    message = _error(demo)

    _assert_one_line(message)
    assert message == "p.yaml: version: Input should be greater than or equal to 1"


def test_one_bad_list_item_is_not_counted_as_two_errors(demo):
    _set(demo, "design.arms.0.ratio", 0)

    message = _error(demo)

    assert message.startswith("p.yaml: design.arms.0.ratio: ")
    assert "more)" not in message


@pytest.mark.parametrize("data", [[1, 2], "just text", None, 3],
                         ids=["list", "str", "empty", "int"])
def test_protocol_that_is_not_a_mapping_is_rejected(data):
    message = _error(data)

    _assert_one_line(message)
    assert message == "p.yaml: the protocol must be a YAML mapping"


# --------------------------------------------------------------------------- nothing is evaluated

EVIL = ["__import__('os')", "__import__('os').system('touch pwned')", "1 + 1", "float('1')",
        "lambda a, b: True", "0x10", "${THRESHOLD}"]


@pytest.mark.parametrize("text", EVIL)
def test_threshold_string_is_not_evaluated_but_rejected_as_not_a_number(demo, text):
    _set(demo, "criteria.0.threshold", text)

    message = _error(demo)

    _assert_one_line(message)
    assert message.startswith("p.yaml: criteria.0.threshold: Input should be a valid number")


@pytest.mark.parametrize("text", EVIL)
def test_probability_string_is_not_evaluated_but_rejected(demo, text):
    _set(demo, "criteria.1.probability", text)

    assert _error(demo).startswith("p.yaml: criteria.1.probability: ")


def test_comparator_that_is_code_is_rejected(demo):
    _set(demo, "criteria.0.comparator", "__import__('operator').lt")

    assert _error(demo).startswith("p.yaml: criteria.0.comparator: Input should be '<'")


def test_code_in_free_text_is_kept_as_text_and_never_run(demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "__import__('os').system('touch pwned')"
    _set(demo, "criteria.0.label", code)
    _set(demo, "description", code)

    protocol = parse_protocol(demo)

    assert protocol.criteria[0].label == code
    assert protocol.description == code
    assert not (tmp_path / "pwned").exists()


def test_yaml_python_tags_are_refused_not_constructed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = demo_protocol_text().replace(
        'title: "AI-guided', "title: !!python/object/apply:os.system ['touch pwned']\n#", 1)
    line = _line_of(text, "title: !!python")
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)

    message = str(info.value)
    _assert_one_line(message)
    assert message.startswith(f"{path}: line {line} invalid YAML")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_threshold_must_be_finite(tmp_path, value):
    text = demo_protocol_text().replace("    threshold: -2.0\n", f"    threshold: {value}\n", 1)
    assert f"threshold: {value}" in text
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)

    assert str(info.value).startswith(f"{path}: criteria.2.threshold: ")


# --------------------------------------------------------------------------- the file


def test_invalid_yaml_names_the_line(tmp_path):
    # The trap docs/protocol.md warns about: an unquoted >= opens a folded block scalar.
    text = demo_protocol_text().replace('comparator: ">"', "comparator: >=", 1)
    line = _line_of(text, "comparator: >=")
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)

    message = str(info.value)
    _assert_one_line(message)
    assert message.startswith(f"{path}: line {line} invalid YAML (")


def test_invalid_yaml_tab_indent_names_the_line(tmp_path):
    lines = demo_protocol_text().splitlines(keepends=True)
    lines.insert(11, "\tplanned_size: 400\n")  # becomes line 12
    path = tmp_path / "protocol.yaml"
    path.write_text("".join(lines), encoding="utf-8")

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)

    message = str(info.value)
    _assert_one_line(message)
    assert message.startswith(f"{path}: line 12 invalid YAML (")


def test_missing_file_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "no-such-protocol.yaml"

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)

    message = str(info.value)
    _assert_one_line(message)
    assert message.startswith(f"{path}: cannot read protocol")


def test_empty_file_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "protocol.yaml"
    path.write_text("# only a comment\n", encoding="utf-8")

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)

    assert str(info.value) == f"{path}: the protocol must be a YAML mapping"


def test_schema_error_from_a_file_names_that_file(tmp_path):
    text = demo_protocol_text().replace("planned_size: 400", "planned_size: many", 1)
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)

    message = str(info.value)
    _assert_one_line(message)
    assert message.startswith(f"{path}: design.planned_size: ")


def test_duplicate_yaml_key_is_rejected(tmp_path):
    text = demo_protocol_text().replace("    threshold: -2.0\n",
                                        "    threshold: -2.0\n    threshold: -9.0\n", 1)
    line = _line_of(text, "threshold: -9.0")
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)

    assert str(info.value).startswith(f"{path}: line {line}")


# --------------------------------------------------------------------------- helpers


def _set(data: Any, dotted: str, value: Any) -> None:
    """Set (or, with DROP, delete; with APPEND, append to) the item at a dotted path."""
    *parents, last = _keys(dotted)
    target = data
    for key in parents:
        target = target[key]
    key = int(last) if isinstance(target, list) else last
    if value is DROP:
        del target[key]
    elif isinstance(value, APPEND):
        target[key].append(value.value)
    else:
        target[key] = value


def _keys(dotted: str) -> list[Any]:
    return [int(k) if k.isdigit() else k for k in dotted.split(".")]


def _leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{path}.{i}")
    else:
        yield path, obj


def _other_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, str):
        return value + "x"
    raise TypeError(f"unexpected leaf {value!r}")


def _line_of(text: str, fragment: str) -> int:
    """1-based line number of the first line containing ``fragment``."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if fragment in line)
