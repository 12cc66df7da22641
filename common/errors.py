"""The errors every layer may raise for a person to read: one line, one exit code.

`SessionsError` is the root of what the `sessions` CLI, the worker and the typed client report
(the client layer adds its own subclasses in `sessions.errors`); the provider and the ledger keep
their own roots (`ProviderError`, `LedgerError`), which the entry points show the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI's errors load without pydantic
    from pydantic import ValidationError

__all__ = ["ConfigError", "SessionsError", "TemporalUnreachable", "validation_message"]


class SessionsError(Exception):
    """Root of every error reported to a person as one line (`error: ...`)."""

    exit_code: int = 1


class ConfigError(SessionsError):
    """A setting or an argument is wrong: a person must fix it before anything can run."""

    exit_code = 2


class TemporalUnreachable(SessionsError):
    """No Temporal server answered at the configured address."""


def validation_message(err: ValidationError, *, whole: str | None = "payload") -> str:
    """Pydantic's errors in one line, `where: rule; ...`, never echoing the values sent (they
    may be secrets); an error about the whole value is said to be about `whole` (if given)."""
    parts = []
    for problem in err.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in problem["loc"]) or whole
        rule = problem["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {rule}" if where else rule)
    return "; ".join(parts)
