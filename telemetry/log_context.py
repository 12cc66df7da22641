"""Which session, workflow and sandbox the current activity works for, for log records.

Set by `LogContextInterceptor` when an activity starts (from its workflow id and its input's
sandbox reference) and by the traced provider once a new sandbox has an id.
"""

from __future__ import annotations

import contextvars
from typing import Any

import temporalio.worker

from common.ids import session_id_of

session_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)
sandbox_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("sandbox_id", default=None)


def bind_sandbox(value: str) -> None:
    """Log records from here to the end of the current activity name this sandbox."""
    sandbox_id.set(value)


def _sandbox_in(args: Any) -> tuple[str | None, str | None]:
    """(sandbox id, session id) named by an activity's input model, if any."""
    for arg in args:
        ref = getattr(arg, "ref", None)
        if ref is not None and getattr(ref, "sandbox_id", None):
            return ref.sandbox_id, None
        event = getattr(arg, "event", None)
        if event is not None and getattr(event, "sandbox_id", None):
            return event.sandbox_id, getattr(event, "session_id", None)
        if getattr(arg, "session_id", None):
            return None, arg.session_id
    return None, None


class _Inbound(temporalio.worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        from temporalio import activity

        sandbox, session = _sandbox_in(input.args)
        tokens = (
            session_id.set(session or session_id_of(activity.info().workflow_id)),
            sandbox_id.set(sandbox),
        )
        try:
            return await super().execute_activity(input)
        finally:
            session_id.reset(tokens[0])
            sandbox_id.reset(tokens[1])


class LogContextInterceptor(temporalio.worker.Interceptor):
    """Puts the session and sandbox of each activity where `telemetry.logging` finds them."""

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        return _Inbound(next)
