"""Reading a session's event history: live (to drive it) and afterwards (to time each step).

Every step is timed on the server's clock, from the event that asked for it (the start, the
signal, the update) to the workflow task that took in its result: that is what the workflow
path costs, independent of how fast the benchmark's client reacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

E = EventType
STEP_OF_ACTIVITY = {
    "provision_sandbox": "provision",
    "exec_command": "exec",
    "pause_sandbox": "pause",
    "resume_sandbox": "resume",
    "terminate_sandbox": "terminate",
    "record_cost": "record_cost",
    "record_segment": "record_segment",
    "notify_gate": "notify_gate",
}
TRIGGER_SIGNAL = {"pause": "request_approval", "resume": "approve", "terminate": "finish"}


def _t(event: HistoryEvent) -> float:
    return event.event_time.ToNanoseconds() / 1e9


class HistoryWatcher:
    """Long-polls one workflow's history; `absorbed(activity)` returns once the workflow has
    taken in that activity's result (a workflow task completed after it)."""

    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self.events: list[HistoryEvent] = []
        self._stream = handle.fetch_history_events(wait_new_event=True).__aiter__()
        self._types: dict[int, str] = {}
        self._completed: set[str] = set()
        self._absorbed: set[str] = set()
        self.closed = False

    async def _next(self) -> None:
        try:
            event = await self._stream.__anext__()
        except StopAsyncIteration:
            self.closed = True
            return
        self.events.append(event)
        kind = event.event_type
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            self._types[event.event_id] = name
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sched = event.activity_task_completed_event_attributes.scheduled_event_id
            self._completed.add(self._types.get(sched, "?"))
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            self._absorbed |= self._completed
        elif kind in _CLOSING:
            self.closed = True

    async def absorbed(self, activity: str) -> None:
        while activity not in self._absorbed:
            if self.closed:
                raise RuntimeError(f"workflow closed before {activity} completed")
            await self._next()

    async def until_closed(self) -> None:
        while not self.closed:
            await self._next()


_CLOSING = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


@dataclass
class StepTiming:
    """One activity-backed step, in seconds on the server's clock."""

    step: str
    step_seconds: float
    """From the request (start, signal, update) to the workflow task that took in the result."""
    activity_seconds: float
    """ActivityTaskStarted -> ActivityTaskCompleted: the activity worker's share."""
    schedule_to_start_seconds: float
    wft_wait_seconds: float = 0.0
    """Of the step time: its workflow tasks waiting to be picked up (the server's dispatch)."""


@dataclass
class SessionTimeline:
    steps: list[StepTiming] = field(default_factory=list)
    wall_seconds: float = 0.0
    """WorkflowExecutionStarted -> WorkflowExecutionCompleted."""
    finish_seconds: float = 0.0
    """The finish signal -> the workflow closed (terminate plus recording the cost)."""
    wft_schedule_to_start: list[float] = field(default_factory=list)
    """Workflow tasks waiting for the worker to pick them up (server dispatch and queueing)."""
    wft_start_to_complete: list[float] = field(default_factory=list)
    """Workflow tasks being processed by the worker (activation, commands, the reply RPC)."""


def timeline(events: list[HistoryEvent]) -> SessionTimeline:
    """The step timings of one completed session history."""
    out = SessionTimeline()
    started_at = _t(events[0])
    last_signal: dict[str, float] = {}
    last_wft_scheduled = wft_started = started_at
    pending: dict[int, dict[str, Any]] = {}
    by_started: dict[int, float] = {}
    exec_open: dict[str, Any] | None = None
    awaiting_wft: list[dict[str, Any]] = []
    wft_pairs: list[tuple[float, float]] = []
    for event in events:
        kind, at = event.event_type, _t(event)
        if kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            last_signal[event.workflow_execution_signaled_event_attributes.signal_name] = at
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            last_wft_scheduled = at
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            out.wft_schedule_to_start.append(at - last_wft_scheduled)
            wft_pairs.append((last_wft_scheduled, at))
            wft_started = at
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            exec_open = {"trigger": last_wft_scheduled}
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            step = STEP_OF_ACTIVITY.get(name, name)
            if step == "provision":
                trigger = started_at
            elif step == "exec" and exec_open is not None:
                trigger = exec_open["trigger"]
                exec_open["step"] = pending.setdefault(event.event_id, {})
            elif step in TRIGGER_SIGNAL:
                trigger = last_signal.get(TRIGGER_SIGNAL[step], at)
            else:
                trigger = at
            pending.setdefault(event.event_id, {}).update(step=step, trigger=trigger, sched=at)
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            by_started[event.activity_task_started_event_attributes.scheduled_event_id] = at
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sched = event.activity_task_completed_event_attributes.scheduled_event_id
            item = pending[sched]
            item["started"] = by_started.get(sched, item["sched"])
            item["completed"] = at
            if item["step"] == "exec":
                continue  # done when the update completes
            if item["step"] == "record_cost":
                continue  # done when the workflow closes
            awaiting_wft.append(item)
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            out.wft_start_to_complete.append(at - wft_started)
            for item in awaiting_wft:
                item["done"] = at
            awaiting_wft = []
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            if exec_open is not None and "step" in exec_open:
                exec_open["step"]["done"] = at
            exec_open = None
        elif kind in _CLOSING:
            out.wall_seconds = at - started_at
            out.finish_seconds = at - last_signal.get("finish", at)
            for item in pending.values():
                if item.get("step") == "record_cost":
                    item["done"] = at
    for item in pending.values():
        if "done" not in item or "completed" not in item:
            continue
        out.steps.append(
            StepTiming(
                step=item["step"],
                step_seconds=item["done"] - item["trigger"],
                activity_seconds=item["completed"] - item["started"],
                schedule_to_start_seconds=item["started"] - item["sched"],
                wft_wait_seconds=sum(
                    b - a for a, b in wft_pairs if item["trigger"] <= a < item["done"]
                ),
            )
        )
    return out
