"""trials: pre-registered evaluation of AI-enabled mental-health interventions.

The flow is one-directional (see ``DESIGN.md``)::

    protocol -> lock/audit -> data intake -> outcomes -> analysis -> decision -> report -> bundle
"""

from trials.errors import (
    AuditError,
    BundleError,
    DataError,
    LockError,
    ProtocolError,
    TrialsError,
)
from trials.protocol import Protocol, load_protocol

__all__ = [
    "AuditError",
    "BundleError",
    "DataError",
    "LockError",
    "Protocol",
    "ProtocolError",
    "TrialsError",
    "load_protocol",
]

__version__ = "0.1.0"
