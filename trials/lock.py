"""Locking a protocol before unblinding, amending it with a reason, and checking a run against it.

Study files sit beside the protocol: ``<stem>.lock.json`` (the lock chain: every version's
canonical protocol, its SHA-256, time and reason) and ``audit.jsonl`` (the audit log).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trials.audit import AuditHead, AuditLog, now
from trials.errors import LockError
from trials.io import read_json, sha256_file, write_json_atomic
from trials.protocol import Protocol, load_protocol


@dataclass(frozen=True)
class StudyFiles:
    protocol: Path
    lock: Path
    audit: Path

    @classmethod
    def beside(cls, protocol_path: str | Path) -> StudyFiles:
        p = Path(protocol_path)
        return cls(p, p.with_name(f"{p.stem}.lock.json"), p.with_name("audit.jsonl"))


def read_lock(files: StudyFiles) -> dict[str, Any]:
    if not files.lock.exists():
        raise LockError(f"{files.protocol}: not locked (run `trials lock {files.protocol}`)")
    try:
        lock = read_json(files.lock)
        lock["versions"][-1]["sha256"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LockError(f"{files.lock}: not a valid lock file") from None
    return lock


def lock_anchors(lock: dict[str, Any]) -> list[AuditHead]:
    return [AuditHead(v["audit_head"]["seq"], v["audit_head"]["hash"]) for v in lock["versions"]]


def _version_record(protocol: Protocol, files: StudyFiles, event: str,
                    reason: str | None) -> dict[str, Any]:
    return {
        "event": event,
        "version": protocol.version,
        "sha256": protocol.sha256(),
        "file_sha256": sha256_file(files.protocol),
        "time": now(),
        "reason": reason,
        "canonical": protocol.canonical(),
    }


def lock_protocol(protocol_path: str | Path) -> dict[str, Any]:
    """Record the SHA-256 of the canonical protocol and the time; first lock only."""
    files = StudyFiles.beside(protocol_path)
    protocol = load_protocol(files.protocol)
    if files.lock.exists():
        raise LockError(f"{files.protocol}: already locked in {files.lock.name}; "
                        "use `trials amend` with a reason to change it")
    record = _version_record(protocol, files, "lock", None)
    head = AuditLog(files.audit).append(
        "lock", {"protocol_id": protocol.id, "version": protocol.version,
                 "sha256": record["sha256"]})
    record["audit_head"] = head.to_dict()
    lock = {"protocol_id": protocol.id, "protocol_file": files.protocol.name, "versions": [record]}
    write_json_atomic(files.lock, lock)
    return lock


def amend_protocol(protocol_path: str | Path, reason: str) -> dict[str, Any]:
    """Record an edited protocol as a new version with its reason."""
    files = StudyFiles.beside(protocol_path)
    if not reason or not reason.strip():
        raise LockError(f"{files.protocol}: an amendment needs a --reason")
    protocol = load_protocol(files.protocol)
    lock = read_lock(files)
    AuditLog(files.audit).verify(lock_anchors(lock))
    last = lock["versions"][-1]
    if protocol.id != lock["protocol_id"]:
        raise LockError(f"{files.protocol}: id {protocol.id!r} differs from the locked id "
                        f"{lock['protocol_id']!r}")
    if protocol.sha256() == last["sha256"]:
        raise LockError(f"{files.protocol}: unchanged since version {last['version']}; "
                        "nothing to amend")
    if protocol.version <= last["version"]:
        raise LockError(f"{files.protocol}: version: must be greater than the locked version "
                        f"{last['version']} for an amendment")
    record = _version_record(protocol, files, "amend", reason.strip())
    head = AuditLog(files.audit).append(
        "amend", {"protocol_id": protocol.id, "version": protocol.version,
                  "sha256": record["sha256"], "reason": reason.strip()})
    record["audit_head"] = head.to_dict()
    lock["versions"].append(record)
    write_json_atomic(files.lock, lock)
    return lock


def check_lock(protocol: Protocol, files: StudyFiles) -> dict[str, Any]:
    """Raise :class:`LockError` (one line) when ``protocol`` differs from its latest lock."""
    lock = read_lock(files)
    last = lock["versions"][-1]
    if protocol.sha256() != last["sha256"]:
        raise LockError(
            f"{files.protocol}: differs from its lock (locked version {last['version']}, "
            f"sha256 {last['sha256'][:12]}, now {protocol.sha256()[:12]}); "
            "amend it with a reason or run with --exploratory"
        )
    return lock
