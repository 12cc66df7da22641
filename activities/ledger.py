"""The ledger's activities: `record_cost`, the session's compensating step that bills its
sandbox (with its running segments and its gates' audit rows), and `record_segment`, a running
segment as it closes.

Temporal runs them at least once (retries, or twice at once); the ledger's unique keys make the
rows exactly-once, so retrying here is always safe and a cost is never lost.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ActivityConfig, LocalActivityConfig

from activities._retry import backoff
from common.errors import validation_message
from ledger import CostEvent, GateEvent, Ledger, SegmentEvent
from telemetry.instruments import count_billed_seconds

_M = TypeVar("_M", CostEvent, SegmentEvent, GateEvent)

__all__ = [
    "INVALID_COST_EVENT",
    "INVALID_SEGMENT",
    "RECORD_COST",
    "RECORD_COST_LOCAL",
    "RECORD_SEGMENT",
    "RECORD_SEGMENT_LOCAL",
    "LedgerActivities",
    "RecordCostInput",
    "RecordCostResult",
    "RecordSegmentInput",
    "RecordSegmentResult",
]

INVALID_COST_EVENT = "InvalidCostEvent"
INVALID_SEGMENT = "InvalidSegment"

RECORD_COST = ActivityConfig(
    # One insert and one read: seconds when the database is healthy.
    start_to_close_timeout=timedelta(seconds=30),
    # Unlimited attempts: a database outage delays the cost, never loses it.
    retry_policy=backoff(maximum=300, non_retryable=[INVALID_COST_EVENT]),
)


RECORD_SEGMENT = ActivityConfig(
    # One insert: seconds when the database is healthy.
    start_to_close_timeout=timedelta(seconds=30),
    # The final cost row carries every segment again: past this, leave it to that row.
    schedule_to_close_timeout=timedelta(minutes=10),
    retry_policy=backoff(maximum=120, non_retryable=[INVALID_SEGMENT]),
)


# The same two steps as local activities (the session's `ledger-local` patch): a ledger write
# takes milliseconds, so it runs in the worker that decided it, inside that workflow task,
# instead of a round trip through the server's activity queue and a workflow task to take in
# its result. Safe: each write is exactly once by the ledger's key, so a re-run after a worker
# died before the task completed adds nothing. Retries past `local_retry_threshold` wait as
# workflow timers, so a ledger outage never holds the session's workflow task (signals,
# approvals and updates go on being handled).

RECORD_COST_LOCAL = LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=backoff(maximum=300, non_retryable=[INVALID_COST_EVENT]),
    local_retry_threshold=timedelta(seconds=1),
)

RECORD_SEGMENT_LOCAL = LocalActivityConfig(
    # A write held longer than this holds the session's workflow task: leave it to a retry.
    start_to_close_timeout=timedelta(seconds=5),
    schedule_to_close_timeout=timedelta(minutes=10),
    retry_policy=backoff(maximum=120, non_retryable=[INVALID_SEGMENT]),
    local_retry_threshold=timedelta(seconds=1),
)


class RecordCostInput(BaseModel):
    event: CostEvent
    segments: list[SegmentEvent] = Field(default_factory=list)
    """The event's closed running segments, stored with it (those not there yet)."""
    gate_events: list[GateEvent] = Field(default_factory=list)
    """The session's gate audit rows, written after the cost row (those not there yet): the last
    chance for a row whose earlier write was lost."""


class RecordCostResult(BaseModel):
    """`event` is the stored row: the first record wins, a repeat never changes it."""

    inserted: bool
    event: CostEvent
    gate_events_inserted: int = 0
    """How many of the input's gate audit rows were new (a repeat adds none)."""


class RecordSegmentInput(BaseModel):
    segment: SegmentEvent


class RecordSegmentResult(BaseModel):
    """`inserted` is False when the (sandbox, start) was already there: a repeat adds nothing."""

    inserted: bool


class LedgerActivities:
    """Ledger activities with the ledger injected (one per worker, shared by all tasks)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @activity.defn(name="record_cost")
    async def record_cost(self, input: RecordCostInput) -> RecordCostResult:
        """Record the event once; database errors raise and Temporal retries them."""
        event = _valid(CostEvent, input.event, INVALID_COST_EVENT)
        segments = [_valid(SegmentEvent, s, INVALID_COST_EVENT) for s in input.segments]
        gates = [_valid(GateEvent, g, INVALID_COST_EVENT) for g in input.gate_events]
        result = await self._ledger.record(event, segments)
        # After the bill, in a transaction of its own: a retry finds the cost row and adds these.
        gates_inserted = await self._ledger.record_gate_events(gates) if gates else 0
        if result.inserted:  # a repeat adds nothing: the metric sums to the ledger exactly
            count_billed_seconds(result.event)
        activity.logger.info(
            "cost event session=%s sandbox=%s running=%.3fs paused=%.3fs inserted=%s "
            "gate_events=%d/%d",
            result.event.session_id,
            result.event.sandbox_id,
            result.event.running_seconds,
            result.event.paused_seconds,
            result.inserted,
            gates_inserted,
            len(gates),
        )
        return RecordCostResult(
            inserted=result.inserted, event=result.event, gate_events_inserted=gates_inserted
        )

    @activity.defn(name="record_segment")
    async def record_segment(self, input: RecordSegmentInput) -> RecordSegmentResult:
        """Record one closed running segment once; database errors raise and Temporal retries."""
        segment = _valid(SegmentEvent, input.segment, INVALID_SEGMENT)
        inserted = await self._ledger.record_segment(segment)
        activity.logger.info(
            "running segment session=%s sandbox=%s %.3fs from %s inserted=%s",
            segment.session_id,
            segment.sandbox_id,
            segment.seconds,
            segment.started_at.isoformat(),
            inserted,
        )
        return RecordSegmentResult(inserted=inserted)


def _valid(model: type[_M], value: BaseModel, error_type: str) -> _M:
    """Revalidated: a model built without validation must not reach the database; a bad one is
    refused for good (no retry can fix it)."""
    whole = {CostEvent: "event", SegmentEvent: "segment", GateEvent: "gate event"}[model]
    try:
        return model.model_validate(dict(value))
    except (ValidationError, AttributeError, TypeError) as err:
        raise ApplicationError(
            f"invalid {'cost event' if whole == 'event' else whole}: {_describe(err, whole=whole)}",
            type=error_type,
            non_retryable=True,
        ) from None


def _describe(err: Exception, *, whole: str = "event") -> str:
    if isinstance(err, ValidationError):
        return validation_message(err, whole=whole)
    return str(err)
