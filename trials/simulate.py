"""Operating characteristics of a protocol's own group-sequential design, before it is locked.

The scenarios come from the protocol's ``simulation`` section; the design, looks and direction
from ``group_sequential`` and ``design.looks``; the decision rule from the protocol's
``criteria`` (:func:`decision_rules`): at every look each simulated trial is decided as
:func:`trials.decision.decide` would decide it, the group-sequential boundaries entering as
criteria as :func:`trials.sequential.monitor` adds them. The simulated trial's estimate and SE
of the monitored estimand stand in for every analysis of that estimand. Results are written
beside the protocol as ``<stem>.oc.json`` (deterministic for the seed, whatever the Dask
workers) with a plot and, on request, the design report ``<stem>.design.html``, recorded in the
audit log, and carried into every run's results and bundle.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from designs.simulation import (
    HarmEventRule,
    Scenario,
    SimulationResults,
    SimulationSpec,
    plot_operating_characteristics,
    run_simulation,
)
from designs.simulation_criteria import AnalysisRule, CriterionRule, DecisionRules
from trials.audit import AuditLog
from trials.errors import TrialsError
from trials.io import canonical_json, read_json, sha256_bytes, write_text_atomic
from trials.lock import StudyFiles
from trials.protocol import (
    Analysis,
    BayesPrior,
    Protocol,
    Simulation,
    SimulationScenario,
    load_protocol,
)
from trials.sequential import design_of


def oc_path(protocol_path: str | Path) -> Path:
    p = Path(protocol_path)
    return p.with_name(f"{p.stem}.oc.json")


def load_scenarios(path: str | Path) -> tuple[SimulationScenario, ...]:
    """Scenarios from a YAML file: a list in the format of the protocol's simulation.scenarios."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrialsError(f"{path}: cannot read scenarios ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and "scenarios" in data:
        data = data["scenarios"]
    try:
        return tuple(TypeAdapter(list[SimulationScenario]).validate_python(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise TrialsError(f"{path}: {where}: {err['msg']}") from None


def design_report_path(protocol_path: str | Path) -> Path:
    p = Path(protocol_path)
    return p.with_name(f"{p.stem}.design.html")


def _analysis_rule(protocol: Protocol, analysis: Analysis, looks: list[str]) -> AnalysisRule:
    mean = sd = None
    if analysis.engine == "bayesian":
        if isinstance(analysis.prior, BayesPrior):
            mean, sd = analysis.prior.treatment_effect.mean, analysis.prior.treatment_effect.sd
        else:
            from analysis.bayes_priors import standard_prior_sets

            cid = protocol.estimand(analysis.estimand).clinically_important_difference
            if protocol.priors is None or cid is None:
                raise TrialsError(f"simulate: analyses.{analysis.id}.prior: a named prior set "
                                  "needs priors.outcome_sd and the estimand's "
                                  "clinically_important_difference")
            # As trials.fitting.prior_set builds it for the run.
            sets = standard_prior_sets(cid, protocol.priors.outcome_sd,
                                       direction="lower" if cid < 0 else "higher")
            chosen = next(p for p in sets if p.name == analysis.prior)
            mean, sd = chosen.effect_mean, chosen.effect_sd
    runs_at = None if analysis.looks is None else tuple(looks.index(lk) for lk in analysis.looks)
    return AnalysisRule(analysis.id, analysis.engine, analysis.interval_level, mean, sd, runs_at)


def decision_rules(protocol: Protocol) -> DecisionRules:
    """The protocol's criteria that a simulated trial can be decided by.

    Criteria on the monitored analysis (``group_sequential.analysis``) and on every other
    analysis of its estimand are applied, each reading the simulated trial's estimate and SE of
    that estimand through the analysis's own statistics (interval level, engine, prior). The
    others are listed in ``not_simulated`` with the reason: secondary claims never change the
    decision; harm criteria on safety measures are stood in for by the harm-event rule
    (``simulation.harm_event_z``); criteria on other estimands or on responders are not
    simulated, so success ones count as met and futility or harm ones as not met (P(GO) is
    then an upper bound).
    """
    gs = protocol.group_sequential
    if gs is None:
        raise TrialsError("simulate: the protocol needs a group_sequential section")
    looks = [lk.id for lk in protocol.design.looks]
    estimand = protocol.analysis(gs.analysis).estimand
    analyses = {a.id: _analysis_rule(protocol, a, looks)
                for a in protocol.analyses if a.estimand == estimand}
    harm_rule = protocol.simulation is not None and protocol.simulation.harm_event_z is not None
    rules: list[CriterionRule] = []
    skipped: list[tuple[str, str]] = []
    for c in protocol.criteria:
        assumed = "assumed met" if c.kind.value == "success" else "assumed not met"
        if c.kind.value == "secondary":
            skipped.append((c.id, "secondary claim: never changes the decision"))
        elif c.analysis in analyses:
            rules.append(CriterionRule(
                c.id, c.kind.value, analyses[c.analysis], c.statistic.value, c.comparator.value,
                float(c.threshold), c.probability,
                None if c.look is None else looks.index(c.look)))
        elif c.analysis is not None:
            other = protocol.analysis(c.analysis).estimand
            skipped.append((c.id, f"reads estimand {other!r}, not the monitored {estimand!r}: "
                                  f"not simulated ({assumed})"))
        elif c.safety is not None and c.kind.value == "harm":
            skipped.append((c.id, f"safety measure {c.safety!r}: "
                                  + ("stood in for by the harm-event rule "
                                     "(simulation.harm_event_z)" if harm_rule else
                                     "not simulated (no simulation.harm_event_z)")))
        else:
            what = f"safety measure {c.safety!r}" if c.safety else f"responder {c.responder!r}"
            skipped.append((c.id, f"{what}: not simulated ({assumed})"))
    return DecisionRules(tuple(rules), boundaries=True, not_simulated=tuple(skipped))


def simulate_protocol(protocol: Protocol, *, trials: int | None = None, seed: int | None = None,
                      scheduler: Any = "synchronous", progress: bool = False,
                      engine: str | None = None,
                      scenarios: tuple[SimulationScenario, ...] | None = None,
                      criteria: bool = True) -> SimulationResults:
    """Simulate the protocol's design and decision rule under its (or the given) scenarios.

    ``criteria=False`` applies the group-sequential boundaries alone (the harm-event rule
    still applies), ignoring the protocol's criteria.
    """
    gs, sim = protocol.group_sequential, protocol.simulation
    if gs is None:
        raise TrialsError("simulate: the protocol needs a group_sequential section")
    if sim is None:
        if scenarios is None:
            raise TrialsError("simulate: the protocol has no simulation section; give --scenarios")
        sim = Simulation(scenarios=scenarios)
    elif scenarios is not None:
        sim = sim.model_copy(update={"scenarios": scenarios})
    fractions = tuple(lk.information_fraction for lk in protocol.design.looks)
    n_max = (gs.planned_analysed or protocol.design.planned_size) // 2
    spec = SimulationSpec(
        design_of(gs, fractions), direction=gs.direction,
        harm_events=HarmEventRule(z=sim.harm_event_z) if sim.harm_event_z else None,
        rules=decision_rules(protocol) if criteria else None)
    cases = [Scenario(s.name, s.effect, s.sd, n_max, dropout=s.dropout,
                      accrual_rate=s.accrual_rate, follow_up=s.follow_up,
                      baseline_correlation=s.baseline_correlation, harm_rate=s.harm_rate)
             for s in sim.scenarios]
    return run_simulation(spec, cases, trials or sim.trials,
                          sim.seed if seed is None else seed, engine=engine or sim.engine,
                          scheduler=scheduler, progress=progress)


def _criteria_record(protocol: Protocol, results: SimulationResults) -> list[dict[str, Any]]:
    """The protocol's criteria as pre-registered, each with whether it was simulated."""
    rules = results.spec.rules
    skipped = dict(rules.not_simulated) if rules is not None else {}
    simulated = {c.id for c in rules.criteria} if rules is not None else set()
    out = []
    for c in protocol.criteria:
        out.append({
            "id": c.id, "kind": c.kind.value, "label": c.label,
            "source": c.analysis or c.safety or c.responder, "statistic": c.statistic.value,
            "comparator": c.comparator.value, "threshold": float(c.threshold),
            "probability": c.probability, "look": c.look or protocol.design.final_look,
            "simulated": c.id in simulated,
            "note": skipped.get(c.id, "simulated" if c.id in simulated else
                                "not simulated (criteria switched off)")})
    return out


def write_operating_characteristics(protocol_path: str | Path, *, scheduler: Any = "synchronous",
                                    progress: bool = False, report: bool = False,
                                    **overrides: Any) -> Path:
    """Simulate and write ``<stem>.oc.json``, ``.oc.csv`` (the table) and ``.oc.png`` (the
    plot) beside the protocol; with ``report``, also the design report
    ``<stem>.design.html`` (:func:`render_design_report`)."""
    protocol = load_protocol(protocol_path)
    results = simulate_protocol(protocol, scheduler=scheduler, progress=progress, **overrides)
    target = oc_path(protocol_path)
    png = target.with_suffix(".png")
    alt = plot_operating_characteristics(results, png)
    write_text_atomic(target.with_suffix(".csv"), results.summary().to_csv(index=False))
    gs = protocol.group_sequential
    assert gs is not None
    text = canonical_json({
        "protocol": {"id": protocol.id, "version": protocol.version,
                     "sha256": protocol.sha256(), "title": protocol.title},
        "summary": results.summary().to_dict("records"), "simulation": results.to_dict(),
        "plot": {"file": png.name, "alt": alt},
        "looks": [{"id": lk.id, "information_fraction": lk.information_fraction}
                  for lk in protocol.design.looks],
        "monitored": {"analysis": gs.analysis,
                      "estimand": protocol.analysis(gs.analysis).estimand,
                      "planned_analysed": gs.planned_analysed or protocol.design.planned_size},
        "criteria": _criteria_record(protocol, results),
        "labels": protocol.decision.labels.model_dump(by_alias=True)})
    write_text_atomic(target, text)
    if report:
        render_design_report(target, design_report_path(protocol_path))
    files = StudyFiles.beside(protocol_path)
    AuditLog(files.audit).append("simulate", {
        "protocol_id": protocol.id, "protocol_version": protocol.version,
        "results_sha256": sha256_bytes(text.encode()), "trials": results.to_dict()["n_trials"]})
    return target


def render_design_report(oc_json: str | Path, target: str | Path) -> Path:
    """Render ``reports/templates/design.qmd`` from ``oc_json`` into ``target`` (HTML).

    The template reads only ``oc.json`` beside it: the file is copied into a scratch folder,
    rendered there by :func:`reports.render.render_report` (Quarto when on PATH, otherwise the
    offline renderer) and the HTML (and a PDF, when Quarto made one) moved beside the oc.json.
    """
    from reports.render import render_report

    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="trials-design-") as tmp:
        shutil.copyfile(oc_json, Path(tmp) / "oc.json")
        rendered = render_report(tmp, "design")
        write_text_atomic(target, rendered.html.read_text(encoding="utf-8"))
        if rendered.pdf is not None:
            shutil.copyfile(rendered.pdf, target.with_suffix(".pdf"))
    return target


def operating_characteristics(protocol_path: str | Path, protocol: Protocol) -> dict | None:
    """The simulated operating characteristics beside the protocol, if they match it."""
    path = oc_path(protocol_path)
    if not path.exists():
        return None
    doc = read_json(path)
    current = doc.get("protocol", {}).get("sha256") == protocol.sha256()
    return {"summary": doc["summary"], "protocol_version": doc["protocol"]["version"],
            "matches_protocol": current, "file": path.name}
