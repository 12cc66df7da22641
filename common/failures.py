"""What a Temporal failure means, in one line a person can act on.

An activity's failure reaches its workflow, and an update's caller, wrapped in Temporal's
`ActivityError` ("Activity task failed"), which names only the layer it passed through. The cause
inside is the provider's own words: `ExecTimeout: command ... ran past 2s and was killed`,
`InvalidRequest: ... cwd '/nonexistent' does not exist`, `SandboxGone: ...`.
"""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError

__all__ = ["describe_failure"]


def describe_failure(err: BaseException, *, limit: int = 1000) -> str:
    """The innermost cause of an activity failure as `Type: message`; any other failure's own
    message. One line, at most `limit` characters of message."""
    cause: BaseException = err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    message = getattr(cause, "message", None) or str(cause)
    text = " ".join(str(message).split())[:limit] or type(cause).__name__
    if cause is not err and isinstance(cause, ApplicationError) and cause.type:
        if not text.startswith(f"{cause.type}: "):  # said once, never `SandboxGone: SandboxGone:`
            text = f"{cause.type}: {text}"
    return text
