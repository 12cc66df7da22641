"""The `sessions` CLI and the typed client the platform uses to start one workflow per session.

The client (and with it Temporal's) is imported on first use, so `sessions --help` and argument
errors answer at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy_exports
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

if TYPE_CHECKING:
    from sessions.client import SessionClient, SessionListing, WaitingSession, new_session_id

__getattr__ = lazy_exports(
    __name__,
    dict.fromkeys(
        ("SessionClient", "SessionListing", "WaitingSession", "new_session_id"), "sessions.client"
    ),
)

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
    "WaitingSession",
    "WorkerUnavailable",
    "new_session_id",
]
