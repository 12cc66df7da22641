"""Gate notifications: `notify_gate` writes a gate's audit row and announces it to the org's
sinks (a signed webhook, a Slack incoming webhook).

(Scaffolding: the models below are the workflow's contract with this activity; the delivery
is implemented by `GateNotifier`.)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

from ledger import GateEvent, NoticeAbout

__all__ = ["NOTIFY_GATE", "GateNotice", "NoticeResult"]

NOTIFY_GATE = ActivityConfig(
    # A few HTTP POSTs and ledger writes per attempt.
    start_to_close_timeout=timedelta(seconds=30),
    # Bounded: a sink that keeps failing is reported (status, metric, log), never retried forever.
    schedule_to_close_timeout=timedelta(minutes=10),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=1),
        maximum_attempts=0,
        non_retryable_error_types=["InvalidNotice"],
    ),
)


class GateNotice(BaseModel):
    """One gate event to audit and announce. Never holds a sink's URL or secret: those are
    resolved inside the activity (they must not reach workflow history)."""

    about: NoticeAbout
    event: GateEvent | None = None
    """The audit row to write first (requested, approved, rejected, timed out); None for a
    reminder, which is only a notification."""
    session_id: str
    org_id: str
    issue_id: str | None = None
    sandbox_id: str | None = None
    gate: str
    title: str | None = None
    summary: str | None = None
    details: str | None = None
    requested_by: str | None = None
    approvers: list[str] = Field(default_factory=list)
    timeout_seconds: float | None = None
    """The gate's effective limit (its timeout, or the session's gate ceiling)."""
    on_timeout: str = "reject"
    requested_at: datetime
    waiting_since: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    comment: str | None = None
    running_seconds: float = 0.0
    """The sandbox's running (billed) seconds so far; paused seconds cost nothing."""
    paused_seconds: float = 0.0


class NoticeResult(BaseModel):
    delivered: list[str] = Field(default_factory=list)
    """The sinks that have this notification (now or on an earlier attempt): `webhook`, `slack`;
    empty when none is configured for the org."""
    at: datetime | None = None
    """When the last delivery happened; None when there was nothing to deliver."""
