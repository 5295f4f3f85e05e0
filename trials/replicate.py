"""Re-running a bundle's analyses and confirming identical results (``trials replicate``).

When the protocol allows sharing the analysis data (``privacy.share_analysis_dataset: true``),
a run writes ``shared_data/`` beside its results and the bundle carries it as ``data/``:

- ``intake.csv``: the validated intake data as the analyses saw them: direct identifiers dropped,
  participant IDs already pseudonymised, rows in the order the analyses used;
- one CSV per log (escalations, engagement, ...), pseudonymised the same way and cut to the
  columns the protocol names for that log;
- ``shared.json``: which file is which, and the provenance of the original (identifiable) input
  files (names, SHA-256, rows), which the results report and which cannot be shared.

:func:`replicate_bundle` verifies the bundle, re-runs :func:`trials.pipeline.run_study` on the
shared data in a fresh folder (same look, same exploratory flag) and compares ``results.json`` and
``decision.json`` byte for byte. The pseudonym key never enters a bundle, so the re-run must not
pseudonymise again (``run_study(shared_input=...)``); results hold no participant IDs, so they
can still be identical, provided the rows keep the order the original analyses used (sums of
floating-point numbers, and so posterior draws, depend on it). Without shared data the analyses
cannot be re-run: the bundle is verified and its reports are re-rendered from ``results.json``
and compared by their text.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trials.data import Intake, read_table
from trials.errors import BundleError, TrialsError
from trials.io import read_json, sha256_file, write_json_atomic, write_text_atomic
from trials.protocol import Protocol

SHARED_DIR = "shared_data"  # in a run directory
CONTROLLED_DIR = "controlled_data"  # in a run directory, never in a bundle
CONTROLLED_INDEX = "controlled_data.json"  # in the run directory and the bundle
CONTROLLED_SCHEMA = "trials.controlled_data/1"
BUNDLE_DATA = "data"  # the same files inside a bundle
INDEX = "shared.json"
INTAKE = "intake.csv"
SHARED_SCHEMA = "trials.shared_data/1"

# Exit codes of ``trials replicate`` (2 stays "error", as for every command).
IDENTICAL, DIFFERS, NOT_RERUN = 0, 1, 3


# --------------------------------------------------------------------------- shared data


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def _log_columns(protocol: Protocol, kind: str, log: pd.DataFrame) -> list[str]:
    """The columns of a log the measures read; anything else (free-text notes, session numbers)
    is not shared."""
    from trials.measures import _log_columns as named

    wanted = set(named(protocol, kind))
    cr = protocol.clinician_ratings
    if kind == "clinician_ratings" and cr is not None:
        n_items = protocol.instrument_named(cr.instrument).n_items
        key = cr.instrument.lower().replace("-", "")  # as trials.measures names the items
        wanted |= {cr.item_pattern.format(instrument=key, item=i) for i in range(1, n_items + 1)}
    return [c for c in log.columns if c in wanted]


def write_shared_data(folder: str | Path, protocol: Protocol, frame: pd.DataFrame,
                      logs: Mapping[str, pd.DataFrame], sources: Sequence[Mapping[str, Any]],
                      dropped_identifiers: Sequence[str],
                      log_sources: Sequence[Mapping[str, Any]]) -> Path:
    """Write the pseudonymised intake data and logs of a run, and ``shared.json``.

    Parameters
    ----------
    folder : path
        ``<run>/shared_data``; :func:`trials.bundle.write_bundle` packs it as ``data/``.
    frame : DataFrame
        The intake data exactly as the analyses used them (IDs pseudonymised, analysis order).
    logs : mapping
        The logs as the measures used them (IDs pseudonymised).
    sources, dropped_identifiers, log_sources
        Provenance of the original files, as the results report it.
    """
    folder = Path(folder)
    index: dict[str, Any] = {
        "schema": SHARED_SCHEMA, "intake": INTAKE, "logs": {},
        "pseudonymised": protocol.privacy.pseudonymise_ids,
        "sources": [dict(s) for s in sources],
        "dropped_identifiers": list(dropped_identifiers),
        "log_sources": [dict(s) for s in log_sources],
        "note": "Participant IDs are keyed pseudonyms (the key is not shared); rows are in the "
                "order the analyses used. sources and log_sources describe the original files, "
                "which are not shared.",
    }
    write_text_atomic(folder / INTAKE, _csv(frame))
    for kind, log in sorted(logs.items()):
        columns = _log_columns(protocol, kind, log)
        if columns:  # a log the protocol does not describe is not read by any measure
            index["logs"][kind] = f"{kind}.csv"
            write_text_atomic(folder / f"{kind}.csv", _csv(log[columns]))
    write_json_atomic(folder / INDEX, index)
    return folder


@dataclass(frozen=True)
class SharedInput:
    """A bundle's shared data, extracted; pass it to ``run_study(shared_input=...)``."""

    intake: Path
    logs: dict[str, Path]
    sources: tuple[dict[str, Any], ...]
    dropped_identifiers: tuple[str, ...]
    log_sources: list[dict[str, Any]]

    @classmethod
    def read(cls, folder: str | Path) -> SharedInput:
        folder = Path(folder)
        try:
            index = read_json(folder / INDEX)
            if index.get("schema") != SHARED_SCHEMA:
                raise KeyError("schema")
            return cls(folder / index["intake"],
                       {k: folder / v for k, v in index["logs"].items()},
                       tuple(index["sources"]), tuple(index["dropped_identifiers"]),
                       list(index["log_sources"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise BundleError(f"{folder / INDEX}: not a valid index of shared data") from None

    def restore(self, intake: Intake, protocol: Protocol) -> Intake:
        """The re-read intake in the shared file's row order (intake sorts by participant ID,
        and pseudonyms sort differently from the original IDs: row order changes floating-point
        sums and posterior draws), with the original files' provenance."""
        cols = protocol.data
        order = read_table(self.intake)
        position = {(p, int(v)): i for i, (p, v) in enumerate(
            zip(order[cols.participant], order[cols.visit], strict=True))}
        frame = intake.frame
        rank = [position[(p, int(v))]
                for p, v in zip(frame[cols.participant], frame[cols.visit], strict=True)]
        frame = frame.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)
        return dataclasses.replace(intake, frame=frame, sources=self.sources,
                                   dropped_identifiers=self.dropped_identifiers)


# --------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison:
    file: str
    identical: bool
    detail: str

    def line(self) -> str:
        return f"{self.file}: {self.detail}"


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def first_difference(a: Any, b: Any, at: str = "") -> str | None:
    """The key path of the first difference between two JSON values (None if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                return f"{_path(at, key)} (only in the bundle)"
            if key not in a:
                return f"{_path(at, key)} (only in the re-run)"
            found = first_difference(a[key], b[key], _path(at, key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, _path(at, i))
            if found:
                return found
        if len(a) != len(b):
            return f"{at or '<top>'} (length {len(a)} in the bundle, {len(b)} in the re-run)"
        return None
    if type(a) is not type(b) or a != b:
        return f"{at or '<top>'} (bundle {json.dumps(a)[:60]}, re-run {json.dumps(b)[:60]})"
    return None


def compare_json_bytes(name: str, original: bytes, rerun: bytes) -> Comparison:
    if original == rerun:
        return Comparison(name, True, "identical")
    try:
        where = first_difference(json.loads(original), json.loads(rerun))
    except ValueError:
        where = None
    if where is None:
        return Comparison(name, False, "differs in its bytes only (same values, other layout)")
    return Comparison(name, False, f"differs at {where}")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("style", "script") or (
                tag == "a" and "anchor-link" in (dict(attrs).get("class") or "")):
            self._skip += 1  # hidden: styles, scripts and the headings' ¶ links
        elif tag in ("p", "div", "tr", "li", "br", "h1", "h2", "h3", "h4", "table", "pre",
                     "figure", "header", "main"):
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script") or (tag == "a" and self._skip):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(html: str) -> list[str]:
    """The visible text of a rendered report, one normalised line per block; which renderer
    made it is left out (a re-render may legitimately use another one)."""
    from reports.render import OFFLINE

    parser = _Text()
    parser.feed(html)
    text = "".join(parser.parts).replace(OFFLINE, "<renderer>")
    text = re.sub(r"Quarto \d+(\.\d+)*", "<renderer>", text)
    return [ln for ln in (" ".join(x.split()) for x in text.splitlines()) if ln]


def compare_text(name: str, original: str, rerun: str) -> Comparison:
    a, b = html_text(original), html_text(rerun)
    if a == b:
        return Comparison(name, True, "re-rendered text identical")
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    x = a[i] if i < len(a) else "<end>"
    y = b[i] if i < len(b) else "<end>"
    return Comparison(name, False, f"re-rendered text differs at line {i + 1} "
                                   f"(bundle {x[:60]!r}, re-render {y[:60]!r})")


def environment_note(bundled: bytes | None) -> str:
    """How this environment's package versions compare with the bundle's environment.txt."""
    from trials.pipeline import environment_lock

    if bundled is None:
        return "environment: the bundle records none"

    def versions(text: str) -> dict[str, str]:
        return dict(ln.split("==", 1) for ln in text.splitlines()
                    if "==" in ln and not ln.startswith("#"))

    then, now = versions(bundled.decode("utf-8", "replace")), versions(environment_lock())
    differ = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
    if not differ:
        return "environment: the same package versions as the bundle's environment.txt"
    shown = "; ".join(f"{k} {now.get(k, 'absent')} here, {then.get(k, 'absent')} in the bundle"
                      for k in differ[:5])
    more = f"; and {len(differ) - 5} more" if len(differ) > 5 else ""
    return (f"environment: {len(differ)} package version(s) differ from the bundle's "
            f"environment.txt ({shown}{more})")


# --------------------------------------------------------------------------- replicate


@dataclass(frozen=True)
class Replication:
    """What ``trials replicate`` found. ``rerun`` is False when the bundle holds no shared data
    (then ``reason`` says why and the reports were re-rendered from the bundled results)."""

    bundle: Path
    files: int
    rerun: bool
    reason: str | None
    look: str | None
    exploratory: bool
    comparisons: tuple[Comparison, ...]
    environment: str
    work_dir: Path | None

    @property
    def identical(self) -> bool:
        return all(c.identical for c in self.comparisons)

    @property
    def exit_code(self) -> int:
        if not self.identical:
            return DIFFERS
        return IDENTICAL if self.rerun else NOT_RERUN

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle.name, "files": self.files, "rerun": self.rerun,
                "reason": self.reason, "look": self.look, "exploratory": self.exploratory,
                "identical": self.identical, "environment": self.environment,
                "comparisons": [dataclasses.asdict(c) for c in self.comparisons]}


def _extract(members: Mapping[str, bytes], prefix: str, folder: Path) -> None:
    for name, data in members.items():
        if name.startswith(prefix + "/"):
            rel = Path(name[len(prefix) + 1:])
            if rel.is_absolute() or ".." in rel.parts:
                raise BundleError(f"{name}: unsafe member name")
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _protocol_name(members: Mapping[str, bytes], run: Mapping[str, Any]) -> str:
    name = run.get("protocol_file")
    if name and f"protocol/{name}" in members:
        return str(name)
    yamls = [n for n in members if n.startswith("protocol/") and n.endswith((".yaml", ".yml"))]
    if len(yamls) != 1:
        raise BundleError("the bundle does not name its protocol file")
    return yamls[0].split("/", 1)[1]


def write_controlled_index(run_dir: Path, folder: Path) -> Path:
    """``controlled_data.json``: the SHA-256 of every file released under controlled access."""
    files = [{"file": p.name, "sha256": sha256_file(p)} for p in sorted(folder.iterdir())
             if p.is_file()]
    return write_json_atomic(run_dir / CONTROLLED_INDEX, {
        "schema": CONTROLLED_SCHEMA, "folder": CONTROLLED_DIR, "files": files,
        "note": "Pseudonymised analysis data, released only under a data-sharing agreement; "
                "re-run with `trials replicate BUNDLE --data FOLDER`."})


def _controlled_members(members: Mapping[str, bytes], data: Path) -> dict[str, bytes]:
    """The controlled-access files in ``data`` as bundle members (``data/...``), after checking
    each against the SHA-256 the bundle recorded."""
    if CONTROLLED_INDEX not in members:
        raise BundleError(f"--data {data}: the bundle records no controlled-access data "
                          f"({CONTROLLED_INDEX} is missing)")
    index = json.loads(members[CONTROLLED_INDEX])
    out = {}
    for entry in index["files"]:
        path = data / entry["file"]
        if not path.is_file():
            raise BundleError(f"--data {data}: {entry['file']} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"--data {data}: {entry['file']} differs from the data the bundle "
                              "was made from (SHA-256 mismatch)")
        out[f"{BUNDLE_DATA}/{entry['file']}"] = path.read_bytes()
    return out


def replicate_bundle(bundle: str | Path, out: str | Path | None = None,
                     data: str | Path | None = None) -> Replication:
    """Verify ``bundle``, re-run its analyses on its shared data and compare the results.

    ``data`` is the folder of controlled-access data (``controlled_data/`` of the original run,
    released under a data-sharing agreement); each file must match the SHA-256 the bundle
    recorded.

    Parameters
    ----------
    bundle : path
        A ``bundle.zip`` written by ``trials run``.
    out : path, optional
        A new (or empty) folder to keep the work in: ``study/`` (protocol, lock, audit log and
        shared data from the bundle), ``run/`` (the re-run) and ``replication.json``. By default
        a temporary folder, removed afterwards.

    Raises
    ------
    BundleError
        When the bundle fails verification (any changed byte, shared data included): nothing is
        re-run from a bundle that is not intact.
    """
    from trials.bundle import read_members, verify_bundle

    bundle = Path(bundle)
    manifest = verify_bundle(bundle)
    members = read_members(bundle)
    if data is not None:
        members = {**members, **_controlled_members(members, Path(data))}
    if out is not None:
        work = Path(out)
        if work.exists() and (not work.is_dir() or any(work.iterdir())):
            raise TrialsError(f"--out {work}: exists and is not an empty folder")
        work.mkdir(parents=True, exist_ok=True)
        return _replicate(bundle, members, len(manifest["files"]), work, keep=True)
    with tempfile.TemporaryDirectory(prefix="trials-replicate-") as tmp:
        return _replicate(bundle, members, len(manifest["files"]), Path(tmp), keep=False)


def _replicate(bundle: Path, members: Mapping[str, bytes], n_files: int, work: Path,
               keep: bool) -> Replication:
    for name in ("results.json", "decision.json"):
        if name not in members:
            raise BundleError(f"{bundle}: {name} is missing; nothing to compare")
    try:
        run = json.loads(members["run.json"]) if "run.json" in members else {}
        results = json.loads(members["results.json"])
    except ValueError:
        raise BundleError(f"{bundle}: run.json or results.json is not valid JSON") from None
    look = run.get("look") or results.get("look")
    exploratory = bool(run.get("exploratory", results.get("exploratory", False)))
    environment = environment_note(members.get("environment.txt"))
    has_data = any(n.startswith(f"{BUNDLE_DATA}/") for n in members)
    if has_data:
        comparisons = _rerun(bundle, members, work, run, look, exploratory)
        reason = None
    else:
        comparisons = _rerender(members, run, work)
        reason = _why_no_data(members, run)
    rep = Replication(bundle, n_files, has_data, reason, look, exploratory, tuple(comparisons),
                      environment, work if keep else None)
    if keep:
        write_json_atomic(work / "replication.json", rep.to_dict())
    return rep


def _rerun(bundle: Path, members: Mapping[str, bytes], work: Path, run: Mapping[str, Any],
           look: str | None, exploratory: bool) -> list[Comparison]:
    from trials.pipeline import run_study

    study = work / "study"
    _extract(members, "protocol", study)
    _extract(members, BUNDLE_DATA, study / BUNDLE_DATA)
    shared = SharedInput.read(study / BUNDLE_DATA)
    protocol = study / _protocol_name(members, run)
    run_dir = work / "run"
    run_study(protocol, [shared.intake], run_dir, look=look, exploratory=exploratory,
              render=False, bundle=False, logs=shared.logs, shared_input=shared)
    return [compare_json_bytes(name, members[name], (run_dir / name).read_bytes())
            for name in ("results.json", "decision.json")]


def _rerender(members: Mapping[str, bytes], run: Mapping[str, Any],
              work: Path) -> list[Comparison]:
    """Render again every report in the bundle (each ``X.html`` with its ``X.qmd``, and any
    that run.json lists), from the bundle's own results files, and compare the text; with no
    report in the bundle, render the brief to show that the results files still render."""
    from reports.render import render_report, template_text

    folder = work / "rendered"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():  # what the templates read: results, decision, ...
        if "/" not in name and name not in (".", "..") and not name.endswith(
                (".html", ".qmd", ".pdf")):
            (folder / name).write_bytes(data)
    listed = run.get("reports") if isinstance(run.get("reports"), list) else []
    names = sorted({n[:-5] for n in members if "/" not in n and n.endswith(".html")
                    and f"{n[:-5]}.qmd" in members} | {Path(str(n)).stem for n in listed})
    if not names:
        render_report(folder, "brief")
        return [Comparison("brief.html", True, "not in the bundle (the run rendered no report); "
                           "rendered from results.json without error")]
    out = []
    for name in names:
        again = render_report(folder, name).html.read_text(encoding="utf-8")
        original = members.get(f"{name}.html")
        if original is None:
            out.append(Comparison(f"{name}.html", False, "listed in run.json but missing"))
            continue
        found = compare_text(f"{name}.html", original.decode("utf-8", "replace"), again)
        if not found.identical and members.get(f"{name}.qmd") != template_text(name).encode():
            found = dataclasses.replace(found, detail=found.detail + f"; the installed "
                                        f"template differs from the bundle's {name}.qmd")
        out.append(found)
    return out


def _why_no_data(members: Mapping[str, bytes], run: Mapping[str, Any]) -> str:
    import yaml

    if CONTROLLED_INDEX in members:
        return ("the analyses could not be re-run: the analysis data are released only under "
                "a data-sharing agreement (controlled access); re-run with `trials replicate "
                "BUNDLE --data FOLDER` on the controlled_data folder")

    try:
        spec = yaml.safe_load(members[f"protocol/{_protocol_name(members, run)}"])
        allowed = bool(spec["privacy"]["share_analysis_dataset"])
    except (BundleError, KeyError, TypeError, ValueError, yaml.YAMLError):
        allowed = False
    if not allowed:
        return ("the analyses could not be re-run: the protocol does not allow sharing the "
                "analysis data (privacy.share_analysis_dataset is false), so the bundle holds "
                "no data/")
    return ("the analyses could not be re-run: the bundle holds no data/ although the protocol "
            "allows sharing the analysis data (a bundle made before shared data were bundled)")
