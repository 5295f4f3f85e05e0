"""Bundles: one zip a journal or partner can verify byte for byte.

The archive is canonical: members sorted by name, stored (not compressed), fixed timestamps and
permissions, ``manifest.json`` (SHA-256 and size of every member) last. :func:`verify_bundle`
checks every member against the manifest and then rebuilds the canonical archive from the
members and compares it with the file, so a change to any byte of the bundle is caught, whether
inside a member or in the zip structure around them.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from trials.errors import BundleError
from trials.io import sha256_bytes, write_bytes_atomic
from trials.lock import StudyFiles

MANIFEST = "manifest.json"
BUNDLE = "bundle.zip"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _canonical_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(members, key=lambda n: (n == MANIFEST, n)):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            zf.writestr(info, members[name])
    return buf.getvalue()


def _manifest(members: dict[str, bytes]) -> dict[str, Any]:
    return {
        "schema": "trials.bundle/1",
        "files": {n: {"sha256": sha256_bytes(b), "bytes": len(b)}
                  for n, b in sorted(members.items())},
    }


def build_bundle(members: dict[str, bytes]) -> bytes:
    """The canonical archive of ``members`` plus their manifest."""
    members = dict(members)
    members[MANIFEST] = _manifest_bytes(members)
    return _canonical_zip(members)


def _manifest_bytes(members: dict[str, bytes]) -> bytes:
    return (json.dumps(_manifest(members), indent=2, sort_keys=True) + "\n").encode()


def write_bundle(run_dir: str | Path, study: StudyFiles) -> Path:
    """Pack the run directory's files (``shared_data/`` as ``data/``) and the study's protocol,
    lock and audit log."""
    run_dir = Path(run_dir)
    members: dict[str, bytes] = {}
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and path.name != BUNDLE and not path.name.startswith("."):
            members[path.name] = path.read_bytes()
    # The pseudonymised analysis data, written only where the protocol allows sharing them
    # (privacy.share_analysis_dataset); ``trials replicate`` re-runs the analyses on them.
    shared = run_dir / "shared_data"
    if shared.is_dir():
        for path in sorted(shared.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                members[f"data/{path.name}"] = path.read_bytes()
    oc = study.protocol.with_name(f"{study.protocol.stem}.oc.json")
    for path in (study.protocol, study.lock, study.audit, oc, oc.with_suffix(".csv"),
                 oc.with_suffix(".png")):
        if path.exists():
            members[f"protocol/{path.name}"] = path.read_bytes()
    return write_bytes_atomic(run_dir / BUNDLE, build_bundle(members))


def read_members(path: str | Path) -> dict[str, bytes]:
    """Every member's bytes; any failure to read the archive is a one-line BundleError."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: file not found")
    current = None
    try:
        with zipfile.ZipFile(path) as zf:
            members: dict[str, bytes] = {}
            for info in zf.infolist():
                current = info.filename
                members[info.filename] = zf.read(info)
            return members
    except Exception as exc:  # zipfile raises many types on damaged input; all mean "damaged"
        where = f"{current}: " if current else ""
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{path}: {where}damaged or altered archive ({detail})") from None


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Raise :class:`BundleError` naming the file when anything differs; return the manifest."""
    path = Path(path)
    members = read_members(path)
    if MANIFEST not in members:
        raise BundleError(f"{path}: {MANIFEST} is missing")
    try:
        manifest = json.loads(members[MANIFEST])
        listed = manifest["files"]
        recorded = {name: str(entry["sha256"]) for name, entry in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BundleError(f"{path}: {MANIFEST} is not a valid manifest") from None
    for name in sorted(set(members) - set(recorded) - {MANIFEST}):
        raise BundleError(f"{path}: {name}: not listed in the manifest (file was added)")
    for name, digest in sorted(recorded.items()):
        if name not in members:
            raise BundleError(f"{path}: {name}: listed in the manifest but missing")
        if listed[name].get("bytes") != len(members[name]):
            raise BundleError(f"{path}: {name}: size differs from the manifest "
                              "(file or manifest was changed)")
        if sha256_bytes(members[name]) != digest:
            raise BundleError(f"{path}: {name}: SHA-256 differs from the manifest "
                              "(file was changed)")
    content = {n: b for n, b in members.items() if n != MANIFEST}
    if members[MANIFEST] != _manifest_bytes(content):
        raise BundleError(f"{path}: {MANIFEST}: differs from the manifest of the files it lists "
                          "(sizes or layout were changed)")
    expected = _canonical_zip(members)
    actual = path.read_bytes()
    if expected != actual:
        at = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b),
                  min(len(expected), len(actual)))
        raise BundleError(f"{path}: archive structure differs from the canonical bundle at byte "
                          f"{at} (the archive was altered)")
    return manifest
