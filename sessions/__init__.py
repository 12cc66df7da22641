"""The `sessions` CLI and the typed client the platform uses to start one workflow per session.

Names are imported on first use, so `sessions --help` and argument errors answer at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions.client import SessionClient, SessionListing, new_session_id
    from sessions.errors import (
        ConfigError,
        RequestRejected,
        SessionEnded,
        SessionExists,
        SessionFailed,
        SessionNotFound,
        SessionsError,
        TemporalUnreachable,
        WorkerUnavailable,
    )

_WHERE = {
    "SessionClient": "sessions.client",
    "SessionListing": "sessions.client",
    "new_session_id": "sessions.client",
    "ConfigError": "sessions.errors",
    "RequestRejected": "sessions.errors",
    "SessionEnded": "sessions.errors",
    "SessionExists": "sessions.errors",
    "SessionFailed": "sessions.errors",
    "SessionNotFound": "sessions.errors",
    "SessionsError": "sessions.errors",
    "TemporalUnreachable": "sessions.errors",
    "WorkerUnavailable": "sessions.errors",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sessions' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "RequestRejected",
    "SessionClient",
    "SessionEnded",
    "SessionExists",
    "SessionFailed",
    "SessionListing",
    "SessionNotFound",
    "SessionsError",
    "TemporalUnreachable",
    "WorkerUnavailable",
    "new_session_id",
]
