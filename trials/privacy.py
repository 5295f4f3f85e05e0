"""Privacy helpers: keyed pseudonyms and small-cell suppression.

The pseudonymisation key lives beside the protocol (``.pseudonym.key``, mode 600) or in the
environment variable ``TRIALS_PSEUDONYM_KEY``; it never enters a run directory or a bundle.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

from trials.io import write_text_atomic

KEY_ENV = "TRIALS_PSEUDONYM_KEY"
KEY_FILE = ".pseudonym.key"


def load_or_create_key(study_dir: str | Path) -> bytes:
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode("utf-8")
    path = Path(study_dir) / KEY_FILE
    if not path.exists():
        write_text_atomic(path, secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip().encode("utf-8")


def pseudonymise(ids: pd.Series, key: bytes, prefix: str = "P-") -> pd.Series:
    """Replace IDs by ``prefix`` + the first 16 hex digits of HMAC-SHA256(key, id)."""
    mapping = {
        v: prefix + hmac.new(key, str(v).encode("utf-8"), hashlib.sha256).hexdigest()[:16]
        for v in ids.dropna().unique()
    }
    return ids.map(mapping)


def suppress(count: int, threshold: int) -> int | str:
    """A count of 1..threshold-1 becomes the string ``"<threshold"``; 0 and larger counts stay.

    Zero is shown because it discloses nothing about an individual.
    """
    count = int(count)
    return f"<{threshold}" if 0 < count < threshold else count
