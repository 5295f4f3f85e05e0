"""Domain exceptions. Each message is one line naming the file, field, row or column."""

from __future__ import annotations


class TrialsError(Exception):
    """Base class of every error the `trials` command reports as one line and exit code 2."""


class ProtocolError(TrialsError):
    """The protocol file is unreadable or does not satisfy the schema."""


class LockError(TrialsError):
    """The protocol differs from its lock, or the lock file is invalid."""


class AuditError(TrialsError):
    """The audit log has an edited, inserted or removed entry."""


class DataError(TrialsError):
    """Input data fail validation against the protocol.

    ``problems`` holds every problem found, one line each, so that the user sees all of them at
    once rather than one per run.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems or [])


class AnalysisError(TrialsError):
    """A pre-specified analysis cannot be fitted to the data."""


class BundleError(TrialsError):
    """A bundle is missing, malformed or fails its integrity check."""


class PrivacyError(TrialsError):
    """An output would disclose personal data, or a released dataset is not k-anonymous."""
