"""Append-only, hash-chained audit log (one JSON object per line).

Each entry holds the SHA-256 of the previous entry and its own hash over its canonical content,
so an edited, inserted or removed entry breaks the chain. Removing entries from the *end* of a
chain cannot be seen from the chain alone; the lock file and every run record the head of the log
(sequence number and hash) as anchors, and :func:`verify` checks them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trials.errors import AuditError
from trials.io import write_text_atomic

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditHead:
    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


def _entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AuditLog:
    """The audit log of one study (``audit.jsonl`` beside the protocol)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        """Read and verify every entry; raise :class:`AuditError` naming the first bad line."""
        if not self.path.exists():
            return []
        entries: list[dict[str, Any]] = []
        prev = GENESIS
        # Split on newlines only: str.splitlines() would also split inside an entry on U+2028
        # and friends, which a pasted --reason may contain.
        text = self.path.read_text(encoding="utf-8")
        for lineno, line in enumerate(text.rstrip("\n").split("\n") if text else [], 1):
            where = f"{self.path}: line {lineno}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AuditError(f"{where}: not a JSON audit entry (edited?)") from None
            if not isinstance(entry, dict) or "hash" not in entry:
                raise AuditError(f"{where}: not an audit entry (edited?)")
            if entry.get("seq") != lineno:
                raise AuditError(
                    f"{where}: sequence number {entry.get('seq')} where {lineno} was expected "
                    "(an entry was removed or inserted)"
                )
            if entry.get("prev") != prev:
                raise AuditError(f"{where}: does not chain to the entry before it "
                                 "(an entry was removed, reordered or edited)")
            if _entry_hash(entry) != entry["hash"]:
                raise AuditError(f"{where}: content does not match its hash (entry was edited)")
            prev = entry["hash"]
            entries.append(entry)
        return entries

    def head(self) -> AuditHead:
        entries = self.entries()
        if not entries:
            return AuditHead(0, GENESIS)
        return AuditHead(entries[-1]["seq"], entries[-1]["hash"])

    def append(self, event: str, details: dict[str, Any]) -> AuditHead:
        """Verify the chain, then add one entry (written atomically)."""
        entries = self.entries()
        prev = entries[-1]["hash"] if entries else GENESIS
        entry: dict[str, Any] = {
            "seq": len(entries) + 1,
            "time": now(),
            "event": event,
            "details": details,
            "prev": prev,
        }
        entry["hash"] = _entry_hash(entry)
        old = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        write_text_atomic(self.path, old + line + "\n")
        return AuditHead(entry["seq"], entry["hash"])

    def verify(self, anchors: list[AuditHead] | None = None) -> AuditHead:
        """Check the chain and that every anchor (a head recorded elsewhere) is still in it."""
        entries = self.entries()
        by_seq = {e["seq"]: e["hash"] for e in entries}
        for anchor in anchors or []:
            if anchor.seq == 0:
                continue
            if anchor.seq not in by_seq:
                raise AuditError(
                    f"{self.path}: entry {anchor.seq} recorded in the lock or a run is missing "
                    "(entries were removed from the end)"
                )
            if by_seq[anchor.seq] != anchor.hash:
                raise AuditError(f"{self.path}: entry {anchor.seq} differs from the hash "
                                 "recorded in the lock or a run")
        if not entries:
            return AuditHead(0, GENESIS)
        return AuditHead(entries[-1]["seq"], entries[-1]["hash"])
