"""E2B's sandbox lifecycle events, read for two purposes: when a sandbox ended, and when E2B
paused it on its own.

`GET /events/sandboxes/{sandboxID}` answers a JSON array of events (newest first), kept 7 days;
a `sandbox.lifecycle.killed` event's `timestamp` is the provider's record of the sandbox's end,
which is what a sandbox lost behind the workflow's back is billed to; the latest
`sandbox.lifecycle.paused` one is when a sandbox whose timeout ran out was paused (created with
`on_timeout: pause`), which is when its billing stopped. No SDK here: `provider.e2b`
makes the call through the SDK's client and hands the answer over.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

KILLED = "sandbox.lifecycle.killed"
PAUSED = "sandbox.lifecycle.paused"


class LifecycleEvent(BaseModel):
    """One event, as much of it as we read (E2B may add fields: they are ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: str
    timestamp: datetime
    sandbox_id: str | None = Field(None, alias="sandboxId")


_EVENTS = TypeAdapter(list[LifecycleEvent])


def events_path(sandbox_id: str) -> str:
    return f"/events/sandboxes/{quote(sandbox_id, safe='')}"


def killed_query() -> dict[str, Any]:
    """Only the killed events (an API that ignores `types` is filtered here again)."""
    return event_query(KILLED)


def event_query(kind: str) -> dict[str, Any]:
    """Only events of `kind`, newest first (an API that ignores `types` is filtered again)."""
    return {"types": kind, "limit": 100}


def killed_at(payload: Any, sandbox_id: str) -> datetime | None:
    """The sandbox's `killed` event time (UTC, full precision), or None when there is none.

    A malformed answer raises `pydantic.ValidationError`: the caller treats it as a failed read.
    """
    return latest(payload, sandbox_id, KILLED)


def latest(payload: Any, sandbox_id: str, kind: str) -> datetime | None:
    """The latest event of `kind` for the sandbox (UTC, full precision), or None."""
    events = _EVENTS.validate_python(payload)
    times = [
        event.timestamp.astimezone(UTC)
        if event.timestamp.tzinfo
        else event.timestamp.replace(tzinfo=UTC)
        for event in events
        if event.type == kind and event.sandbox_id in (None, sandbox_id)
    ]
    return max(times) if times else None
