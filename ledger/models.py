"""The ledger's values: one cost event per (session, sandbox), the running segments it is made
of, and sums of them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

Outcome = Literal["finished", "failed", "cancelled", "lost"]
"""How the session ended; `lost`: the sandbox died behind the session's back (E2B killed it)."""
SummaryBy = Literal["session", "issue", "org"]
DailyBy = Literal["org", "issue"]
"""What `Ledger.daily(by=...)` splits each day by."""

_Seconds = Field(ge=0, allow_inf_nan=False)


class _Stretch(BaseModel):
    """What a cost event and a segment share: whose sandbox, and from when to when (UTC)."""

    model_config = ConfigDict(frozen=True)

    session_id: str = Field(min_length=1)
    org_id: str = Field(min_length=1)
    issue_id: str | None = None
    sandbox_id: str = Field(min_length=1)
    template_id: str = Field(min_length=1)
    started_at: AwareDatetime
    ended_at: AwareDatetime

    @field_validator("started_at", "ended_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # One zone everywhere: the database stores UTC and gives UTC back.
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


class CostEvent(_Stretch):
    """What one sandbox cost one session: the shape `sessions costs --json` prints.

    Paused seconds are recorded to prove they were billed nothing.
    """

    running_seconds: float = _Seconds
    paused_seconds: float = _Seconds
    wall_seconds: float = _Seconds
    outcome: Outcome
    end_confirmed: bool = True
    """True when `ended_at` is the provider's record of the sandbox's end (its terminate, or its
    lifecycle event); False when it is the last moment the sandbox was known alive (a sandbox
    lost with no record of its end is billed to there, never beyond)."""

    @property
    def idempotency_key(self) -> str:
        """The (session, sandbox) pair the database keeps unique: at most one row per key."""
        return f"{self.session_id}/{self.sandbox_id}"


class SegmentEvent(_Stretch):
    """One closed running stretch of a sandbox: recorded once, when it closes (a pause, the end).

    The ledger keeps one row per (sandbox, start); the running seconds of a billed sandbox are the
    sum of its segments. Paused stretches cost nothing and are not segments.
    """

    @property
    def seconds(self) -> float:
        """The stretch's length, to the microsecond."""
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def idempotency_key(self) -> str:
        """The (sandbox, start) pair the database keeps unique: at most one row per key."""
        return f"{self.sandbox_id}@{self.started_at.isoformat()}"


class DailyCost(BaseModel):
    """The running seconds of one UTC day (`sessions costs --by day`), from the segments: a
    segment that crosses midnight counts on each side of it."""

    day: date
    key: str | None = None
    """`Ledger.daily(by=...)` only: the org or issue of the row (None: segments without an issue).
    Left out of the JSON of a row built without it, so a plain per-day row keeps its shape."""
    sandboxes: int = Field(ge=0)
    """Sandboxes that ran on that day (for that key)."""
    running_seconds: float

    @model_serializer(mode="wrap")
    def _key_only_when_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if "key" not in self.model_fields_set:
            data.pop("key", None)
        return data


class CostSummary(BaseModel):
    """The cost events of one session, issue or org, summed (`sessions costs --by ...`)."""

    key: str | None
    """The session, issue or org id; None groups the events without an issue."""
    by: SummaryBy
    sessions: int = Field(ge=0)
    running_seconds: float
    paused_seconds: float
    wall_seconds: float


class RecordResult(BaseModel):
    """`inserted` is False when the key was already there; `event` is always the stored row."""

    inserted: bool
    event: CostEvent


GateEventKind = Literal["requested", "notified", "approved", "rejected", "timed_out"]
"""A gate's life in the audit trail: requested, announced (`notified`, one row per sink and
announcement), and how it ended (approved, rejected, timed out)."""
NoticeAbout = Literal["requested", "reminder", "approved", "rejected", "timed_out"]
"""What a notification announced: the gate waiting, a reminder, or how it was decided."""


def gate_digest(summary: str | None, details: str | None) -> str:
    """The SHA-256 (hex) of a gate's summary and details, as the audit trail keeps them: proof of
    what was approved without copying it. The digest of the canonical JSON object
    `{"details": ..., "summary": ...}` (sorted keys, no spaces, UTF-8, absent values null)."""
    body = json.dumps(
        {"details": details, "summary": summary},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class GateEvent(BaseModel):
    """One row of the gate audit trail (`sessions audit`): kept in the ledger, so a decision
    outlives the workflow history's retention. Exactly once per `idempotency_key`."""

    model_config = ConfigDict(frozen=True)

    session_id: str = Field(min_length=1)
    org_id: str = Field(min_length=1)
    issue_id: str | None = None
    gate: str = Field(min_length=1)
    event: GateEventKind
    at: AwareDatetime
    """When it happened: the request, the delivery, the decision or the timeout (UTC)."""
    by: str | None = None
    """Who: the requester (`requested`), the decider (`approved`/`rejected`); None otherwise."""
    comment: str | None = None
    about: NoticeAbout | None = None
    """`notified` only: what the notification announced."""
    sink: str | None = None
    """`notified` only: where it went (`webhook` or `slack`)."""
    attempts: int | None = Field(None, ge=1)
    """`notified` only: the delivery attempt that succeeded."""
    waited_seconds: float | None = Field(None, ge=0, allow_inf_nan=False)
    """From the request to this event (decisions, timeouts, notifications)."""
    paused_seconds: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Decisions and timeouts: the seconds the sandbox was paused while the gate waited."""
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    """`gate_digest(summary, details)` of the gate."""

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def idempotency_key(self) -> str:
        """(session, gate, event, about, sink): at most one row per key."""
        return "/".join((self.session_id, self.gate, self.event, self.about or "", self.sink or ""))
