"""Bundles: manifest, privacy of the contents, determinism, and that any change is caught."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trials.bundle import MANIFEST, build_bundle, read_members, verify_bundle
from trials.cli import app
from trials.demo import demo_logs
from trials.errors import BundleError

runner = CliRunner()

SMALL_MEMBERS = {
    "results.json": b'{"effect": -2.5}\n',
    "decision.json": b'{"label": "GO"}\n',
    "protocol/protocol.yaml": b"id: X\n",
}

REQUIRED = {
    "protocol/protocol.yaml", "protocol/protocol.lock.json", "protocol/audit.jsonl",
    "results.json", "decision.json", "run.json", "environment.txt", "brief.qmd", "brief.html",
}


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class RealRun:
    base: Path
    protocol: Path
    data: Path
    run_dir: Path
    bundle: Path
    fits: object  # the pipeline's fitted analyses, to replay in a later run


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """The 60-participant demo study (as the ``small_study`` fixture), locked and run once.

    The pseudonym key is taken from a key file beside the protocol here (not the environment),
    so that the test can prove the file never reaches the bundle. Tests must not modify these
    files: copy them first.
    """
    import trials.pipeline
    from trials.demo import write_demo_study
    from trials.lock import lock_protocol

    base = tmp_path_factory.mktemp("bundle")
    fitted = []
    real_fit = trials.pipeline.fit_analyses

    def recording_fit(*args, **kwargs):
        fitted.append(real_fit(*args, **kwargs))
        return fitted[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TRIALS_PSEUDONYM_KEY", raising=False)
        mp.setattr(trials.pipeline, "fit_analyses", recording_fit)
        protocol, data = write_demo_study(base / "study", n=60, seed=7)
        lock_protocol(protocol)
        result = trials.pipeline.run_study(protocol, [data], base / "run", logs=demo_logs(data))
    assert result.bundle is not None
    return RealRun(base, protocol, data, result.run_dir, result.bundle, fitted[0])


@pytest.fixture
def small_bundle(tmp_path: Path) -> Path:
    path = tmp_path / "small.zip"
    path.write_bytes(build_bundle(SMALL_MEMBERS))
    return path


@pytest.fixture
def real_copy(real_run: RealRun, tmp_path: Path) -> Path:
    """A copy of the real bundle that a test may tamper with."""
    return Path(shutil.copy(real_run.bundle, tmp_path / "bundle.zip"))


def zip_entries(path: Path | bytes) -> dict[str, bytes]:
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    with zipfile.ZipFile(source) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def canonical_rezip(path: Path, members: dict[str, bytes]) -> None:
    """Write ``members`` (manifest included, as given) the way a bundle is written, so that the
    manifest check, not the archive-structure check, is what must notice the change."""
    from trials.bundle import _canonical_zip

    path.write_bytes(_canonical_zip(members))


def plain_rezip(src: Path, dst: Path, drop: str) -> None:
    """Copy every entry except ``drop`` with :mod:`zipfile` (as a person would)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename != drop:
                zout.writestr(info, zin.read(info))


def flip(path: Path, at: int, data: bytes) -> None:
    changed = bytearray(data)
    changed[at] ^= 0x01
    path.write_bytes(bytes(changed))


def content_offset(path: Path, name: str) -> tuple[int, int]:
    """(start, length) of member ``name``'s stored bytes inside the archive."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def outcome_of_flips(path: Path, data: bytes, positions: list[int]) -> dict[int, str]:
    """For each position: 'passed', 'BundleError' or the name of any other exception."""
    outcome: dict[int, str] = {}
    for at in positions:
        flip(path, at, data)
        try:
            verify_bundle(path)
        except BundleError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
            outcome[at] = "BundleError"
        except Exception as exc:  # recorded here, asserted on by the tests below
            outcome[at] = type(exc).__name__
        else:
            outcome[at] = "passed"
    return outcome


def assert_bundle_error(path: Path, *names: str) -> str:
    with pytest.raises(BundleError) as info:
        verify_bundle(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for name in names:
        assert name in msg, f"{name!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------- intact bundles


def test_small_bundle_verifies_and_returns_its_manifest(small_bundle: Path) -> None:
    manifest = verify_bundle(small_bundle)
    assert manifest["schema"] == "trials.bundle/1"
    assert manifest["files"] == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in SMALL_MEMBERS.items()
    }


def test_small_bundle_is_a_plain_zip_with_the_manifest_last(small_bundle: Path) -> None:
    with zipfile.ZipFile(small_bundle) as zf:
        infos = zf.infolist()
        assert zf.testzip() is None
    assert [i.filename for i in infos] == [*sorted(SMALL_MEMBERS), MANIFEST]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    entries = zip_entries(small_bundle)
    assert {n: d for n, d in entries.items() if n != MANIFEST} == SMALL_MEMBERS


def test_real_bundle_verifies_and_manifest_lists_every_member(real_run: RealRun) -> None:
    manifest = verify_bundle(real_run.bundle)
    entries = zip_entries(real_run.bundle)
    assert set(manifest["files"]) == set(entries) - {MANIFEST}
    for name, data in entries.items():
        if name != MANIFEST:
            assert manifest["files"][name] == {
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}, name


def test_real_bundle_holds_the_protocol_trail_results_and_report(real_run: RealRun) -> None:
    listed = set(verify_bundle(real_run.bundle)["files"])
    assert REQUIRED <= listed, REQUIRED - listed
    assert "bundle.zip" not in listed


def test_real_bundle_members_are_the_run_and_study_files(real_run: RealRun) -> None:
    entries = zip_entries(real_run.bundle)
    study = real_run.protocol.parent
    for name in ("results.json", "decision.json", "run.json", "brief.html"):
        assert entries[name] == (real_run.run_dir / name).read_bytes(), name
    for name in ("protocol.yaml", "protocol.lock.json", "audit.jsonl"):
        assert entries[f"protocol/{name}"] == (study / name).read_bytes(), name


def test_real_bundle_has_no_pseudonym_key(real_run: RealRun) -> None:
    key_file = real_run.protocol.parent / ".pseudonym.key"
    assert key_file.is_file()  # the run did use a key file ...
    key = key_file.read_bytes().strip()
    entries = zip_entries(real_run.bundle)
    assert not [n for n in entries if "pseudonym" in n or n.rsplit("/", 1)[-1].startswith(".")]
    # ... and its secret appears in no member.
    assert [n for n, data in entries.items() if key in data] == []
    assert key not in real_run.bundle.read_bytes()


def test_real_bundle_has_no_original_participant_ids(real_run: RealRun) -> None:
    assert b"CMP-0001" in real_run.data.read_bytes()  # the IDs the input data carry
    entries = zip_entries(real_run.bundle)
    assert [n for n, data in entries.items() if b"CMP-" in data] == []
    assert b"CMP-" not in real_run.bundle.read_bytes()


# --------------------------------------------------------------------------- determinism


def test_same_members_give_byte_identical_bundles() -> None:
    reordered = dict(reversed(list(SMALL_MEMBERS.items())))
    assert build_bundle(SMALL_MEMBERS) == build_bundle(dict(SMALL_MEMBERS))
    assert build_bundle(SMALL_MEMBERS) == build_bundle(reordered)


def test_different_members_give_different_bundles() -> None:
    changed = {**SMALL_MEMBERS, "results.json": b'{"effect": -2.6}\n'}
    assert build_bundle(SMALL_MEMBERS) != build_bundle(changed)


def test_real_bundle_is_rebuilt_byte_for_byte_from_its_members(real_run: RealRun) -> None:
    members = {n: d for n, d in zip_entries(real_run.bundle).items() if n != MANIFEST}
    assert build_bundle(members) == real_run.bundle.read_bytes()


# --------------------------------------------------------------------------- any byte


@pytest.fixture(scope="module")
def small_flips(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    data = build_bundle(SMALL_MEMBERS)
    assert 300 <= len(data) <= 1000  # small enough to flip every byte
    path = tmp_path_factory.mktemp("flips") / "small.zip"
    return outcome_of_flips(path, data, list(range(len(data))))


@pytest.fixture(scope="module")
def real_flips(real_run: RealRun, tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    data = real_run.bundle.read_bytes()
    n = len(data)
    positions = set(random.Random(20261127).sample(range(n), 300))
    positions |= set(range(100)) | set(range(n - 100, n))
    path = tmp_path_factory.mktemp("flips") / "bundle.zip"
    return outcome_of_flips(path, data, sorted(positions))


def test_every_byte_flip_of_small_bundle_is_detected(small_flips: dict[int, str]) -> None:
    assert [at for at, what in small_flips.items() if what == "passed"] == []


def test_sampled_byte_flips_of_real_bundle_are_detected(real_flips: dict[int, str]) -> None:
    assert len(real_flips) >= 450
    assert [at for at, what in real_flips.items() if what == "passed"] == []


def test_every_byte_flip_of_small_bundle_raises_bundle_error(
    small_flips: dict[int, str],
) -> None:
    assert {at: what for at, what in small_flips.items() if what != "BundleError"} == {}


def test_sampled_byte_flips_of_real_bundle_raise_bundle_error(
    real_flips: dict[int, str],
) -> None:
    assert {at: what for at, what in real_flips.items() if what != "BundleError"} == {}


def _central_directory_offset(data: bytes, name: str) -> int:
    at = data.index(b"PK\x01\x02")  # first central-directory record
    while True:
        name_len = struct.unpack("<H", data[at + 28:at + 30])[0]
        if data[at + 46:at + 46 + name_len] == name.encode():
            return at
        at = data.index(b"PK\x01\x02", at + 4)


@pytest.mark.parametrize(("field", "offset"), [("encrypted_flag", 8), ("compression", 10)])
def test_flipped_central_directory_field_raises_bundle_error(
    small_bundle: Path, field: str, offset: int
) -> None:
    data = small_bundle.read_bytes()
    flip(small_bundle, _central_directory_offset(data, "results.json") + offset, data)
    assert_bundle_error(small_bundle)


def test_cli_verify_exits_2_on_flipped_encryption_flag(small_bundle: Path) -> None:
    data = small_bundle.read_bytes()
    flip(small_bundle, _central_directory_offset(data, "results.json") + 8, data)
    result = runner.invoke(app, ["verify", str(small_bundle)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- named tampering


@pytest.mark.parametrize(
    "name",
    ["results.json", "decision.json", "run.json", "brief.html", "protocol/protocol.yaml",
     "protocol/audit.jsonl", "protocol/protocol.lock.json", MANIFEST],
)
def test_changed_byte_inside_a_member_names_that_member(real_copy: Path, name: str) -> None:
    data = real_copy.read_bytes()
    start, length = content_offset(real_copy, name)
    flip(real_copy, start + length // 2, data)
    assert_bundle_error(real_copy, name)


def test_changed_member_with_valid_zip_is_caught_by_the_manifest(real_copy: Path) -> None:
    entries = zip_entries(real_copy)
    entries["results.json"] = entries["results.json"].replace(b'"look"', b'"Look"', 1)
    canonical_rezip(real_copy, entries)
    assert_bundle_error(real_copy, "results.json", "SHA-256")


def test_added_file_is_caught(real_copy: Path) -> None:
    with zipfile.ZipFile(real_copy, "a") as zf:
        zf.writestr("notes.txt", b"added later\n")
    assert_bundle_error(real_copy, "notes.txt", "not listed")


def test_added_file_in_canonical_layout_is_caught(real_copy: Path) -> None:
    entries = zip_entries(real_copy)
    entries["protocol/.pseudonym.key"] = b"00" * 32 + b"\n"
    canonical_rezip(real_copy, entries)
    assert_bundle_error(real_copy, "protocol/.pseudonym.key", "not listed")


@pytest.mark.parametrize("drop", ["decision.json", "protocol/audit.jsonl"])
def test_removed_file_is_caught(real_copy: Path, tmp_path: Path, drop: str) -> None:
    rebuilt = tmp_path / "rebuilt.zip"
    plain_rezip(real_copy, rebuilt, drop)
    assert_bundle_error(rebuilt, drop, "missing")


def test_removed_file_in_canonical_layout_is_caught(real_copy: Path) -> None:
    entries = zip_entries(real_copy)
    del entries["run.json"]
    canonical_rezip(real_copy, entries)
    assert_bundle_error(real_copy, "run.json", "missing")


def test_removed_manifest_is_caught(real_copy: Path, tmp_path: Path) -> None:
    rebuilt = tmp_path / "rebuilt.zip"
    plain_rezip(real_copy, rebuilt, MANIFEST)
    assert_bundle_error(rebuilt, MANIFEST, "missing")


def _set_sha(manifest: dict) -> dict:
    manifest["files"]["results.json"]["sha256"] = "0" * 64
    return manifest


def _drop_entry(manifest: dict) -> dict:
    del manifest["files"]["brief.html"]
    return manifest


def _extra_entry(manifest: dict) -> dict:
    manifest["files"]["extra.csv"] = {"sha256": "0" * 64, "bytes": 1}
    return manifest


REPLACED_MANIFESTS: dict[str, tuple[Callable[[dict], object], tuple[str, ...]]] = {
    "other_bundle": (lambda m: json.loads(zip_entries(build_bundle(SMALL_MEMBERS))[
        MANIFEST]), ("not listed",)),
    "wrong_sha": (_set_sha, ("results.json", "SHA-256")),
    "entry_removed": (_drop_entry, ("brief.html", "not listed")),
    "entry_added": (_extra_entry, ("extra.csv", "missing")),
    "no_files_key": (lambda m: {"schema": m["schema"]}, ("not a valid manifest",)),
    "json_list": (lambda m: [m], ("not a valid manifest",)),
}


@pytest.mark.parametrize("case", sorted(REPLACED_MANIFESTS))
def test_replaced_manifest_is_caught(real_copy: Path, case: str) -> None:
    change, names = REPLACED_MANIFESTS[case]
    entries = zip_entries(real_copy)
    new = change(json.loads(entries[MANIFEST]))
    entries[MANIFEST] = (json.dumps(new, indent=2, sort_keys=True) + "\n").encode()
    canonical_rezip(real_copy, entries)
    assert_bundle_error(real_copy, *names)


def test_manifest_that_is_not_json_is_caught(real_copy: Path) -> None:
    entries = zip_entries(real_copy)
    entries[MANIFEST] = b"this is not json\n"
    canonical_rezip(real_copy, entries)
    assert_bundle_error(real_copy, MANIFEST, "not a valid manifest")


@pytest.mark.parametrize("shape", ["files_as_list", "entry_as_string"])
def test_malformed_manifest_entries_raise_bundle_error(real_copy: Path, shape: str) -> None:
    entries = zip_entries(real_copy)
    names = sorted(set(entries) - {MANIFEST})  # every member listed, so no earlier check fires
    files: object = names
    if shape == "entry_as_string":
        files = {n: hashlib.sha256(entries[n]).hexdigest() for n in names}
    entries[MANIFEST] = json.dumps({"schema": "trials.bundle/1", "files": files}).encode()
    canonical_rezip(real_copy, entries)
    assert_bundle_error(real_copy, MANIFEST)


def test_manifest_with_a_wrong_size_is_caught(real_copy: Path) -> None:
    entries = zip_entries(real_copy)
    manifest = json.loads(entries[MANIFEST])
    manifest["files"]["results.json"]["bytes"] += 1
    entries[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    canonical_rezip(real_copy, entries)
    assert_bundle_error(real_copy, "results.json")


def test_duplicate_member_name_is_caught(small_bundle: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(small_bundle, "a") as zf:
            zf.writestr("results.json", SMALL_MEMBERS["results.json"])
    assert_bundle_error(small_bundle)


def test_truncated_bundle_is_caught(real_copy: Path) -> None:
    data = real_copy.read_bytes()
    real_copy.write_bytes(data[: len(data) // 2])
    assert_bundle_error(real_copy, "damaged or altered archive")


def test_extra_bytes_after_the_bundle_are_caught(small_bundle: Path) -> None:
    small_bundle.write_bytes(small_bundle.read_bytes() + b"\0")
    assert_bundle_error(small_bundle)


@pytest.mark.parametrize("kind", ["missing", "directory", "text"])
def test_unreadable_bundle_path_is_a_bundle_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bundle.zip"
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("not a zip\n")
    assert_bundle_error(path)


def test_read_members_returns_every_entry(small_bundle: Path) -> None:
    members = read_members(small_bundle)
    assert set(members) == {*SMALL_MEMBERS, MANIFEST}


# --------------------------------------------------------------------------- CLI


def test_cli_verify_intact_bundle_exits_0(real_run: RealRun) -> None:
    result = runner.invoke(app, ["verify", str(real_run.bundle)])
    assert result.exit_code == 0, result.output
    n = len(verify_bundle(real_run.bundle)["files"])
    assert result.stdout == f"ok: {real_run.bundle} intact ({n} files)\n"


@pytest.mark.parametrize("member", ["results.json", "protocol/audit.jsonl"])
def test_cli_verify_tampered_bundle_exits_2_with_one_error_line(real_copy: Path,
                                                                member: str) -> None:
    data = real_copy.read_bytes()
    start, length = content_offset(real_copy, member)
    flip(real_copy, start + 1, data)
    result = runner.invoke(app, ["verify", str(real_copy)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {real_copy}: ")
    assert member in line


def test_cli_verify_missing_bundle_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", str(tmp_path / "nope.zip")])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "nope.zip" in line


# --------------------------------------------------------------------------- runs


def _copy_study_and_run(real_run: RealRun, dest: Path) -> tuple[Path, Path, Path]:
    shutil.copytree(real_run.protocol.parent, dest / "study")
    shutil.copytree(real_run.run_dir, dest / "run")
    study = dest / "study"
    return study / "protocol.yaml", study / "data" / "demo.csv", dest / "run"


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_failed_run_leaves_earlier_run_unchanged_and_no_staging(
    real_run: RealRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reports.render
    import trials.pipeline

    protocol, data, run_dir = _copy_study_and_run(real_run, tmp_path)
    before = _hashes(run_dir)
    assert "bundle.zip" in before and "results.json" in before

    def broken_render(*args: object, **kwargs: object) -> None:
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(reports.render, "render_report", broken_render)
    # Replay the module run's fits (same protocol and data) to skip ~10 s of sampling; every
    # other stage runs for real and the failure comes inside the staging folder.
    monkeypatch.setattr(trials.pipeline, "fit_analyses", lambda *a, **k: real_run.fits)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        trials.pipeline.run_study(protocol, [data], run_dir, logs=demo_logs(data))

    assert _hashes(run_dir) == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{run_dir.name}")]
    assert leftovers == []
    verify_bundle(run_dir / "bundle.zip")
    result = runner.invoke(app, ["audit", "verify", str(protocol), "--run", str(run_dir)])
    assert result.exit_code == 0, result.output


def test_real_run_head_catches_entries_removed_from_the_audit_log(
    real_run: RealRun, tmp_path: Path
) -> None:
    protocol, _, run_dir = _copy_study_and_run(real_run, tmp_path)
    audit = protocol.with_name("audit.jsonl")
    head = json.loads((run_dir / "run.json").read_text())["audit_head"]
    lines = audit.read_text().splitlines()
    assert len(lines) == head["seq"]
    audit.write_text("".join(x + "\n" for x in lines[:-1]))  # drop the "run" entry

    ok = runner.invoke(app, ["audit", "verify", str(protocol)])
    assert ok.exit_code == 0, ok.output  # the lock's anchor alone cannot see it
    result = runner.invoke(app, ["audit", "verify", str(protocol), "--run", str(run_dir)])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {audit}: ") and f"entry {head['seq']}" in line
