"""E2B's sandbox lifecycle events, read for one purpose: when a sandbox ended.

`GET /events/sandboxes/{sandboxID}` answers a JSON array of events (newest first), kept 7 days;
a `sandbox.lifecycle.killed` event's `timestamp` is the provider's record of the sandbox's end,
which is what a sandbox lost behind the workflow's back is billed to. No SDK here: `provider.e2b`
makes the call through the SDK's client and hands the answer over.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

KILLED = "sandbox.lifecycle.killed"


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
    return {"types": KILLED, "limit": 100}


def killed_at(payload: Any, sandbox_id: str) -> datetime | None:
    """The sandbox's `killed` event time (UTC, full precision), or None when there is none.

    A malformed answer raises `pydantic.ValidationError`: the caller treats it as a failed read.
    """
    events = _EVENTS.validate_python(payload)
    ends = [
        event.timestamp.astimezone(UTC)
        if event.timestamp.tzinfo
        else event.timestamp.replace(tzinfo=UTC)
        for event in events
        if event.type == KILLED and event.sandbox_id in (None, sandbox_id)
    ]
    return max(ends) if ends else None
