"""The client layer's exceptions: each one becomes one clear line on stderr in the CLI."""

from __future__ import annotations


class SessionsError(Exception):
    """Root of every error the `sessions` client reports to a person."""

    exit_code: int = 1


class ConfigError(SessionsError):
    """A setting or argument is wrong."""

    exit_code = 2


class TemporalUnreachable(SessionsError):
    """No Temporal server answered at the configured address."""


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
