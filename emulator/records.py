"""The emulator's own record of every sandbox ever created, for billing checks and leak checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

State = Literal["running", "paused", "killed"]


def now() -> datetime:
    return datetime.now(UTC)


class Transition(BaseModel):
    event: Literal["created", "paused", "resumed", "killed"]
    at: datetime
    reason: str | None = None
    """`api`, `timeout` (lifetime ran out), `shutdown` or `reset`."""


class TimeoutUpdate(BaseModel):
    """A `set_timeout` call: E2B's `sandbox.lifecycle.updated` event (`{"set_timeout": end}`)."""

    at: datetime
    set_timeout: datetime


MAX_UPDATES = 1000
"""Timeout updates kept per sandbox (a keep-alive every few minutes for 24 h is ~300): bounded,
so neither memory nor the state file grows without end."""


class SandboxRecord(BaseModel):
    sandbox_id: str
    template_id: str
    metadata: dict[str, str] = Field(default_factory=dict)
    state: State = "running"
    auto_pause: bool = False
    created_at: datetime
    run_started_at: datetime | None = None
    """When the current (or last) run began: the create, or the latest resume (E2B restarts a
    sandbox's start time on resume, and a run lasts at most the tier's maximum lifetime).
    None in records written before this field existed: the create."""
    end_at: datetime
    """When the sandbox times out (meaningful while running)."""
    transitions: list[Transition] = Field(default_factory=list)
    """State changes only (what billing sums); timeout updates are kept apart in `updates`."""
    updates: list[TimeoutUpdate] = Field(default_factory=list)
    running_seconds: float = 0.0
    """Observed time spent running (what E2B bills), up to now or the kill."""
    paused_seconds: float = 0.0

    def add(self, event: str, reason: str | None = None) -> None:
        self.transitions.append(Transition(event=event, at=now(), reason=reason))  # type: ignore[arg-type]

    def note_timeout(self, end_at: datetime) -> None:
        """Remember a `set_timeout` (the oldest are dropped past `MAX_UPDATES`)."""
        self.updates.append(TimeoutUpdate(at=now(), set_timeout=end_at))
        del self.updates[:-MAX_UPDATES]

    @property
    def killed_at(self) -> datetime | None:
        return next((t.at for t in self.transitions if t.event == "killed"), None)

    def computed(self) -> SandboxRecord:
        """A copy with running/paused seconds summed from the transitions."""
        running = paused = 0.0
        marks = self.transitions
        for i, t in enumerate(marks):
            if t.event == "killed":
                break
            end = marks[i + 1].at if i + 1 < len(marks) else now()
            span = (end - t.at).total_seconds()
            if t.event in ("created", "resumed"):
                running += span
            else:
                paused += span
        return self.model_copy(update={"running_seconds": running, "paused_seconds": paused})
