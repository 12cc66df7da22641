"""The client layer's exceptions: each one becomes one clear line on stderr in the CLI.

The root (`SessionsError`), `ConfigError` and `TemporalUnreachable` are shared with the worker
(`common.errors`); the rest are what a session can answer.
"""

from __future__ import annotations

from common.errors import ConfigError, SessionsError, TemporalUnreachable

__all__ = [
    "ConfigError",
    "RequestRejected",
    "SessionEnded",
    "SessionExists",
    "SessionFailed",
    "SessionNotFound",
    "SessionsError",
    "TemporalUnreachable",
    "WorkerUnavailable",
]


class SessionNotFound(SessionsError):
    """No session workflow has this id."""


class SessionExists(SessionsError):
    """A session with this id was already started."""


class SessionEnded(SessionsError):
    """The session's workflow has closed: it takes no more messages."""


class RequestRejected(SessionsError):
    """The workflow refused a request (unknown or decided gate, session paused, ...)."""


class SessionFailed(SessionsError):
    """The session ended failed or cancelled."""


class WorkerUnavailable(SessionsError):
    """No worker answered: the workflow cannot take queries or updates right now."""
