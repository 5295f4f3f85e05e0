"""The ``trials`` command. Every failure is one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from trials.errors import DataError, TrialsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Pre-registered evaluation of AI-enabled mental-health interventions.")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")
app.add_typer(audit_app, name="audit")
design_app = typer.Typer(no_args_is_help=True, help="Design calculations.")
app.add_typer(design_app, name="design")


def _fail(exc: TrialsError) -> None:
    typer.echo(f"error: {exc}", err=True)
    if isinstance(exc, DataError):
        for line in exc.problems:
            typer.echo(line, err=True)
    raise typer.Exit(2)


def _guard(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TrialsError as exc:
            _fail(exc)

    return wrapper


@app.command()
@_guard
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Folder to write (replaced on success)."),
    n: int = typer.Option(400, help="Participants to simulate."),
    seed: int | None = typer.Option(None, help="Seed of the simulated data (default: "
                                    "20261127 for the trial, 20261128 for the rollout)."),
    study: str = typer.Option("trial", help="trial: the randomised demo; rollout: the "
                              "quasi-experimental demo (staggered switch-on in clinics)."),
) -> None:
    """Simulate, lock, run, report and bundle a demo study."""
    if study == "rollout":
        from trials.demo_rollout import ROLLOUT_SEED, run_rollout_demo

        run = run_rollout_demo(out, seed=ROLLOUT_SEED if seed is None else seed)
        typer.echo(f"decision: {run.decision.display_label}")
        typer.echo(f"report:   {run.report}")
        typer.echo(f"bundle:   {run.bundle}")
        return
    if study != "trial":
        raise TrialsError(f"--study {study}: expected trial or rollout")
    from trials.demo import run_demo

    res = run_demo(out, n=n, seed=20261127 if seed is None else seed)
    if res.interim is not None:
        typer.echo(f"interim:  {res.interim.decision.display_label} ({res.interim.run_dir})")
    typer.echo(f"decision: {res.run.decision.display_label}")
    typer.echo(f"report:   {res.run.report}")
    typer.echo(f"bundle:   {res.run.bundle}")
    typer.echo(f"study:    {res.protocol.parent}")


@app.command()
@_guard
def lock(protocol: Path) -> None:
    """Lock PROTOCOL: record the SHA-256 of its canonical form and the time."""
    from trials.lock import lock_protocol

    rec = lock_protocol(protocol)["versions"][-1]
    typer.echo(f"locked {protocol} version {rec['version']} sha256 {rec['sha256']}")


@app.command()
@_guard
def amend(
    protocol: Path, reason: str = typer.Option(..., help="Why the protocol changed.")
) -> None:
    """Record the edited PROTOCOL as a new locked version with its reason."""
    from trials.lock import amend_protocol

    rec = amend_protocol(protocol, reason)["versions"][-1]
    typer.echo(f"amended {protocol} to version {rec['version']} sha256 {rec['sha256']}")


@app.command("check-data")
@_guard
def check_data(protocol: Path, data: list[Path]) -> None:
    """Validate DATA files against PROTOCOL; list every problem; write nothing."""
    from trials.data import read_data
    from trials.protocol import load_protocol

    intake = read_data(data, load_protocol(protocol))
    rows = sum(s["rows"] for s in intake.sources)
    typer.echo(f"ok: {rows} rows in {len(intake.sources)} file(s) match {protocol}")


@app.command()
@_guard
def run(
    protocol: Path,
    data: list[Path] = typer.Option(
        ..., "--data", help="Data file(s): CSV, Parquet, Excel, SAS, SPSS, Stata, or a .yaml "
        "REDCap / SQL source specification."),
    out: Path = typer.Option(..., help="Run directory (replaced only on success)."),
    look: str | None = typer.Option(None, help="Look id (default: the final look)."),
    exploratory: bool = typer.Option(False, help="Run an unlocked or changed protocol; every "
                                     "output is stamped EXPLORATORY."),
    render: bool = typer.Option(True, help="Render the reports (brief, full, monitoring)."),
    escalations: Path | None = typer.Option(None, help="Escalation log (red flag -> clinician)."),
    engagement: Path | None = typer.Option(None, help="Session log: dose and AI version."),
    adverse_events: Path | None = typer.Option(None, help="Adverse-event log."),
    downtime: Path | None = typer.Option(None, help="Service downtime incident log."),
    clinician_ratings: Path | None = typer.Option(None, help="Clinicians' ratings log."),
) -> None:
    """Run the locked PROTOCOL on the data: decision, report and bundle."""
    from trials.pipeline import run_study

    logs = {"escalations": escalations, "engagement": engagement,
            "adverse_events": adverse_events, "downtime": downtime,
            "clinician_ratings": clinician_ratings}
    res = run_study(protocol, data, out, look=look, exploratory=exploratory, render=render,
                    logs=logs)
    typer.echo(f"decision: {res.decision.display_label}")
    if res.report:
        typer.echo(f"report:   {res.report}")
    typer.echo(f"bundle:   {res.bundle}")


@app.command()
@_guard
def verify(bundle: Path) -> None:
    """Check every byte of BUNDLE against its manifest; non-zero exit naming the file if not."""
    from trials.bundle import verify_bundle

    manifest = verify_bundle(bundle)
    typer.echo(f"ok: {bundle} intact ({len(manifest['files'])} files)")


@audit_app.command("verify")
@_guard
def audit_verify(
    protocol: Path,
    run: list[Path] = typer.Option(
        [], "--run", help="Run directories whose recorded audit head must still be in the log "
        "(catches entries removed at the end)."),
) -> None:
    """Check the audit log beside PROTOCOL: chain intact, lock and run anchors present."""
    from trials.audit import AuditHead, AuditLog
    from trials.errors import AuditError
    from trials.io import read_json
    from trials.lock import StudyFiles, lock_anchors, read_lock

    files = StudyFiles.beside(protocol)
    anchors = lock_anchors(read_lock(files)) if files.lock.exists() else []
    for run_dir in run:
        try:
            head = read_json(run_dir / "run.json")["audit_head"]
        except (OSError, ValueError, KeyError) as exc:
            raise AuditError(f"{run_dir / 'run.json'}: no audit head recorded ({exc})") from None
        anchors.append(AuditHead(head["seq"], head["hash"]))
    head = AuditLog(files.audit).verify(anchors)
    typer.echo(f"ok: {files.audit} intact ({head.seq} entries)")




@app.command()
@_guard
def randomise(
    protocol: Path,
    out: Path = typer.Option(..., help="Allocation list to write (CSV, for the unblinded "
                             "statistician only)."),
    method: str = typer.Option("blocks", help="simple, blocks (stratified by the protocol's "
                               "strata when --participants is given) or minimisation."),
    n: int | None = typer.Option(None, help="Participants (without --participants)."),
    participants: Path | None = typer.Option(None, help="Participants in enrolment order, "
                                             "with the protocol's strata columns."),
    seed: int | None = typer.Option(None, help="Seed (a fresh random one by default)."),
) -> None:
    """Make a concealed allocation list and record its SHA-256 in the audit log."""
    import pandas as pd

    from designs.minimisation import Minimisation
    from designs.randomisation import (
        new_seed,
        permuted_blocks,
        permuted_blocks_by_enrolment,
        record_allocation,
        simple_randomisation,
    )
    from trials.audit import AuditLog
    from trials.errors import DataError
    from trials.lock import StudyFiles
    from trials.protocol import load_protocol

    spec = load_protocol(protocol)
    arms = [a.id for a in spec.design.arms]
    ratio = [a.ratio for a in spec.design.arms]
    seed = new_seed() if seed is None else seed
    frame = None
    if participants is not None:
        frame = pd.read_csv(participants, dtype=str, keep_default_na=False, na_values=[""])
        missing = [c for c in spec.design.strata if c not in frame.columns]
        if missing:
            raise DataError(f"{participants}: column(s) {missing} missing (the protocol's strata)")
    elif n is None:
        raise TrialsError("give --n or --participants")
    count = len(frame) if frame is not None else int(n or 0)
    try:
        if method == "simple":
            allocation = simple_randomisation(count, arms, ratio, seed=seed)
        elif method == "blocks" and frame is not None and spec.design.strata:
            allocation = permuted_blocks_by_enrolment(frame[list(spec.design.strata)], arms,
                                                      ratio, seed=seed)
        elif method == "blocks":
            allocation = permuted_blocks(count, arms, ratio, seed=seed)
        elif method == "minimisation":
            if frame is None or not spec.design.strata:
                raise TrialsError("minimisation needs --participants and design.strata")
            allocation = Minimisation(arms, tuple(spec.design.strata), ratio=ratio,
                                      seed=seed).allocate(frame[list(spec.design.strata)])
        else:
            raise TrialsError(f"--method {method!r}: use simple, blocks or minimisation")
    except ValueError as exc:
        raise TrialsError(f"randomise: {exc}") from None
    allocation.export_csv(out)
    record_allocation(AuditLog(StudyFiles.beside(protocol).audit), allocation)
    typer.echo(f"wrote {out}: {count} allocations ({allocation.method}), "
               f"sha256 {allocation.sha256()} (recorded in the audit log)")


@app.command()
@_guard
def simulate(
    protocol: Path,
    trials: int | None = typer.Option(None, help="Simulated trials per scenario."),
    seed: int | None = typer.Option(None, help="Seed (the protocol's by default)."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler address (tcp://...); a "
                                         "local cluster when omitted."),
    workers: int | None = typer.Option(None, help="Local Dask workers."),
    engine: str | None = typer.Option(None, help="summary or patient."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    scenarios: Path | None = typer.Option(None, help="YAML list of scenarios (instead of the "
                                          "protocol's simulation.scenarios)."),
    report: bool = typer.Option(True, help="Render the design report <stem>.design.html."),
) -> None:
    """Simulate the protocol's design and decision rule under scenarios: writes
    <stem>.oc.json, .csv and .png, and the design report <stem>.design.html."""
    from trials.simulate import (
        design_report_path,
        load_scenarios,
        write_operating_characteristics,
    )

    extra = {"scenarios": load_scenarios(scenarios)} if scenarios else {}

    if scheduler is None:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            path = write_operating_characteristics(protocol, scheduler=client,
                                                   progress=progress, trials=trials, seed=seed,
                                                   engine=engine, report=report, **extra)
    else:
        path = write_operating_characteristics(protocol, scheduler=scheduler, progress=progress,
                                               trials=trials, seed=seed, engine=engine,
                                               report=report, **extra)
    written = [str(path), str(path.with_suffix(".csv")), str(path.with_suffix(".png"))]
    if report:
        written.append(str(design_report_path(protocol)))
    typer.echo(f"wrote {', '.join(written[:-1])} and {written[-1]}")


@design_app.command("boundaries")
@_guard
def design_boundaries(
    looks: str = typer.Option(..., help="Information fractions, comma-separated, e.g. 0.5,1."),
    alpha: float = typer.Option(0.025, help="One-sided type-I error."),
    beta: float = typer.Option(0.2, help="Type-II error (1 - power)."),
    efficacy: str = typer.Option("asOF", help="OF, P, asOF, asP, asKD or asHSD."),
    gamma_a: float | None = typer.Option(None, help="Parameter of asKD / asHSD."),
    futility: str | None = typer.Option(None, help="bsOF, bsP, bsKD or bsHSD."),
    gamma_b: float | None = typer.Option(None, help="Parameter of bsKD / bsHSD."),
    binding: bool = typer.Option(False, help="Binding futility."),
    harm_z: float | None = typer.Option(None, help="Stop for harm when Z <= -HARM_Z."),
    observed: str | None = typer.Option(None, help="Observed information fractions."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Group-sequential efficacy, futility and harm boundaries (numerical integration)."""
    import json

    from designs.boundaries import GroupSequentialDesign, HarmBoundary

    def rates(text: str, option: str) -> tuple[float, ...]:
        try:
            return tuple(float(x) for x in text.split(","))
        except ValueError:
            raise TrialsError(f"--{option}: {text!r} is not a comma-separated list of "
                              "numbers") from None

    design = GroupSequentialDesign(
        information_rates=rates(looks, "looks"), alpha=alpha, beta=beta, efficacy=efficacy,
        gamma_a=gamma_a, futility=futility, gamma_b=gamma_b, binding_futility=binding,
        harm=HarmBoundary(z=harm_z) if harm_z is not None else None)
    result = design.compute(rates(observed, "observed") if observed else None)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, allow_nan=False))
    else:
        typer.echo(result.to_frame().to_string())


@app.command()
@_guard
def validate(
    out: Path = typer.Option(Path("validation"), help="Folder for validation.json and "
                             "validation.html (created; other files in it are kept)."),
) -> None:
    """Run the reference suite (R and published tables) and render what matched, with the
    tolerances: an installation and operational qualification. Exit 1 if any check did not
    match."""
    from trials.validate import run_validation

    res = run_validation(out)
    typer.echo(f"reference checks: {res.matched} of {len(res.checks)} matched "
               f"({len({c.file for c in res.checks})} modules)")
    for check in res.checks:
        if not check.matched:
            typer.echo(f"  {check.outcome}: {check.id}")
    typer.echo(f"results:  {res.json}")
    if res.html:
        typer.echo(f"report:   {res.html}")
    if not res.ok:
        raise typer.Exit(1)


@app.command()
@_guard
def replicate(
    bundle: Path,
    out: Path | None = typer.Option(None, help="New or empty folder to keep the re-run in "
                                    "(a temporary folder by default)."),
    data: Path | None = typer.Option(None, help="Folder of controlled-access data released "
                                     "with the bundle (checked against its SHA-256)."),
) -> None:
    """Verify BUNDLE, re-run its analyses on its shared data and confirm identical
    results.json and decision.json. Exit 0 identical, 1 something differs, 3 the analyses
    could not be re-run (no shared data: the brief was re-rendered and compared instead)."""
    from trials.replicate import replicate_bundle

    rep = replicate_bundle(bundle, out, data)
    typer.echo(f"ok: {bundle} intact ({rep.files} files)")
    if rep.rerun:
        kind = "exploratory" if rep.exploratory else "confirmatory"
        typer.echo(f"re-ran look {rep.look} ({kind}) on the bundle's shared data")
    else:
        typer.echo(f"NOT RE-RUN: {rep.reason}")
    for comparison in rep.comparisons:
        typer.echo(comparison.line())
    typer.echo(rep.environment)
    if rep.rerun:
        typer.echo("replicated: identical results" if rep.identical
                   else "NOT replicated: results differ")
    if rep.work_dir:
        typer.echo(f"work:     {rep.work_dir}")
    raise typer.Exit(rep.exit_code)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
