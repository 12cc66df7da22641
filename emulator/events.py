"""E2B's sandbox lifecycle events API, answered from the emulator's own records.

`GET /events/sandboxes/{sandboxID}` and `GET /events/sandboxes` (the team's): the provider's
record of when a sandbox was created, paused, resumed, updated (a `set_timeout`) and killed,
kept 7 days. Timestamps keep the records' full precision (microseconds): billing reads them.
The emulator has one API key, so one team: every record is the caller's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from starlette.datastructures import QueryParams

from .errors import EmulatorError, SandboxNotFound
from .records import SandboxRecord, now

RETENTION = timedelta(days=7)
"""How long E2B keeps lifecycle events."""

PREFIX = "sandbox.lifecycle."
EVENT_TYPES = tuple(PREFIX + kind for kind in ("created", "updated", "paused", "resumed", "killed"))

DEFAULT_LIMIT = 10
MAX_LIMIT = 100

_NAMESPACE = uuid.UUID("0d6f0f55-3b0e-4a4e-9a43-6e1f2b5c9e11")
TEAM_ID = str(uuid.uuid5(_NAMESPACE, "team"))
"""The emulator's one team (stable across restarts, so old records stay the caller's)."""

_INT = re.compile(r"^[+-]?\d{1,18}$")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class EventQuery(BaseModel):
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    order_asc: bool = False
    types: frozenset[str] = frozenset()
    """Empty: every type."""


def _bad(name: str, problem: str) -> EmulatorError:
    return EmulatorError(400, f'parameter "{name}" in query has an error: {problem}')


def _integer(query: QueryParams, name: str, default: int, low: int, high: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _INT.match(raw):
        raise EmulatorError(400, f"Invalid format for parameter {name}: {raw!r} is not an integer")
    value = int(raw)
    if value < low:
        raise _bad(name, f"number must be at least {low}")
    if high is not None and value > high:
        raise _bad(name, f"number must be at most {high}")
    return value


def parse_query(query: QueryParams) -> EventQuery:
    """The query parameters, checked as E2B checks them: a bad one is a 400, never ignored."""
    offset = _integer(query, "offset", 0, 0, None)
    limit = _integer(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    order = query.get("orderAsc")
    if order is not None and order not in _TRUE | _FALSE:
        raise EmulatorError(400, f"Invalid format for parameter orderAsc: {order!r} is not a bool")
    types = query.getlist("types")
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        allowed = ", ".join(EVENT_TYPES)
        raise _bad("types", f"value {unknown[0]!r} is not one of the allowed values [{allowed}]")
    return EventQuery(offset=offset, limit=limit, order_asc=order in _TRUE, types=frozenset(types))


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a `Z`."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _event(
    record: SandboxRecord, kind: str, at: datetime, n: int, run: int, data: dict[str, str] | None
) -> dict[str, Any]:
    sid = record.sandbox_id
    return {
        "version": "v1",
        "id": str(uuid.uuid5(_NAMESPACE, f"{sid}/{kind}/{n}")),
        "type": PREFIX + kind,
        "eventData": data,
        "sandboxBuildId": str(uuid.uuid5(_NAMESPACE, f"build/{record.template_id}")),
        "sandboxExecutionId": str(uuid.uuid5(_NAMESPACE, f"{sid}/run/{run}")),
        "sandboxId": sid,
        "sandboxTeamId": TEAM_ID,
        "sandboxTemplateId": record.template_id,
        "timestamp": timestamp(at),
        "_at": at,
    }


def record_events(record: SandboxRecord) -> list[dict[str, Any]]:
    """A sandbox's events, oldest first (each with its datetime under `_at`, for sorting)."""
    marks: list[tuple[datetime, int, str, dict[str, str] | None]] = [
        (t.at, i, t.event, None) for i, t in enumerate(record.transitions)
    ]
    marks += [
        (u.at, i, "updated", {"set_timeout": timestamp(u.set_timeout)})
        for i, u in enumerate(record.updates)
    ]
    marks.sort(key=lambda m: m[0])
    events, run = [], 0
    for at, n, kind, data in marks:
        if kind in ("created", "resumed"):
            run += 1  # a resume starts a new execution, as on E2B
        events.append(_event(record, kind, at, n, run, data))
    return events


def select(events: Iterable[dict[str, Any]], query: EventQuery) -> list[dict[str, Any]]:
    """Retention, type filter, order and page, as the API answers them."""
    oldest = now() - RETENTION
    wanted = query.types or frozenset(EVENT_TYPES)
    kept = [e for e in events if e["_at"] >= oldest and e["type"] in wanted]
    kept.sort(key=lambda e: e["_at"])  # stable: ties keep the order they happened in
    if not query.order_asc:
        kept.reverse()
    page = kept[query.offset : query.offset + query.limit]
    return [{k: v for k, v in e.items() if k != "_at"} for e in page]


def sandbox_events(
    records: dict[str, SandboxRecord], sandbox_id: str, query: EventQuery
) -> list[dict[str, Any]]:
    """One sandbox's events; an id never seen (or forgotten) is a 404."""
    short = sandbox_id.split("-")[0]  # E2B accepts `<id>-<client id>` and looks up the id
    record = records.get(short)
    if record is None:
        raise SandboxNotFound(short)
    return select(record_events(record), query)


def team_events(records: dict[str, SandboxRecord], query: EventQuery) -> list[dict[str, Any]]:
    return select((e for r in list(records.values()) for e in record_events(r)), query)
