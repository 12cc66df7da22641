"""The `record_cost` activity: the session's compensating step that bills its sandbox.

Temporal runs it at least once (retries, or twice at once); the ledger's unique key makes the
row exactly-once, so retrying here is always safe and a cost event is never lost.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ActivityConfig

from common.errors import validation_message
from ledger import CostEvent, Ledger
from telemetry.instruments import count_billed_seconds

__all__ = ["RECORD_COST", "LedgerActivities", "RecordCostInput", "RecordCostResult"]

INVALID_COST_EVENT = "InvalidCostEvent"

RECORD_COST = ActivityConfig(
    # One insert and one read: seconds when the database is healthy.
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=5),
        maximum_attempts=0,  # unlimited: a database outage delays the cost, never loses it
        non_retryable_error_types=[INVALID_COST_EVENT],
    ),
)


class RecordCostInput(BaseModel):
    event: CostEvent


class RecordCostResult(BaseModel):
    """`event` is the stored row: the first record wins, a repeat never changes it."""

    inserted: bool
    event: CostEvent


class LedgerActivities:
    """Ledger activities with the ledger injected (one per worker, shared by all tasks)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @activity.defn(name="record_cost")
    async def record_cost(self, input: RecordCostInput) -> RecordCostResult:
        """Record the event once; database errors raise and Temporal retries them."""
        try:
            # Revalidate: a model built without validation must not reach the database.
            event = CostEvent.model_validate(dict(input.event))
        except (ValidationError, AttributeError, TypeError) as err:
            raise ApplicationError(
                f"invalid cost event: {_describe(err)}",
                type=INVALID_COST_EVENT,
                non_retryable=True,
            ) from None
        result = await self._ledger.record(event)
        if result.inserted:  # a repeat adds nothing: the metric sums to the ledger exactly
            count_billed_seconds(result.event)
        activity.logger.info(
            "cost event session=%s sandbox=%s running=%.3fs paused=%.3fs inserted=%s",
            result.event.session_id,
            result.event.sandbox_id,
            result.event.running_seconds,
            result.event.paused_seconds,
            result.inserted,
        )
        return RecordCostResult(inserted=result.inserted, event=result.event)


def _describe(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return validation_message(err, whole="event")
    return str(err)
