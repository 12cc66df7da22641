"""What a sandbox cost: its running and paused stretches, and the cost event they add up to.

Pure arithmetic on provider-confirmed times, no I/O and no clock, so the session workflow can use
it deterministically and the stray reconciler bills with the very same rules: the cost event's
running seconds and the running segments the ledger keeps come from the same stretches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Literal, get_args

from pydantic import BaseModel

from ledger.models import CostEvent, DailyBy, DailyCost, Outcome, SegmentEvent

__all__ = ["BilledState", "Segment", "Usage", "daily_costs"]

BilledState = Literal["running", "paused"]


class Segment(BaseModel):
    """A stretch of the sandbox's life in one state, from provider-confirmed times."""

    state: BilledState
    start: datetime
    end: datetime | None = None
    """None while the stretch lasts."""


class Usage:
    """The stretches of one sandbox's life, in order; at most the last one is open.

    E2B bills a sandbox per second while it runs and nothing while it is paused, so the cost
    event counts running and paused seconds apart.
    """

    def __init__(self, segments: Iterable[Segment] = ()) -> None:
        self.segments: list[Segment] = list(segments)

    @classmethod
    def running_since(cls, start: datetime) -> Usage:
        """A sandbox known only by its start (a stray): all of its life counts as running."""
        return cls([Segment(state="running", start=start)])

    @property
    def started_at(self) -> datetime | None:
        return self.segments[0].start if self.segments else None

    @property
    def latest(self) -> datetime | None:
        """The latest time the usage is known at: the last stretch's end, or its start while it
        lasts; None before the sandbox ran."""
        if not self.segments:
            return None
        last = self.segments[-1]
        return last.end if last.end is not None else last.start

    def enter(self, state: BilledState, at: datetime) -> None:
        """The sandbox is now `state`, since `at`: close the open stretch, open a new one.

        Entering the state it is already in changes nothing (a repeated pause or resume). Time
        never runs backwards here: a stamp from a clock behind the last one's (pause and resume
        may run on different workers) counts from the last transition, never twice.
        """
        latest = self.latest
        if latest is not None:
            at = max(at, latest)
            last = self.segments[-1]
            if last.end is None:
                if last.state == state:
                    return
                last.end = at
        self.segments.append(Segment(state=state, start=at))

    def close(self, at: datetime) -> None:
        """The sandbox ended at `at` (never before the open stretch began)."""
        if self.segments and self.segments[-1].end is None:
            self.segments[-1].end = max(at, self.segments[-1].start)

    def seconds(self, state: BilledState, now: datetime) -> float:
        """Seconds spent in `state`, an open stretch counted up to `now`; to the millisecond."""
        total = 0.0
        for seg in self.segments:
            if seg.state == state:
                total += max(((seg.end or now) - seg.start).total_seconds(), 0.0)
        return round(total, 3)

    def running_segment_events(
        self,
        *,
        session_id: str,
        org_id: str,
        issue_id: str | None,
        sandbox_id: str,
        template_id: str,
    ) -> list[SegmentEvent]:
        """The closed running stretches, as the ledger's segments (oldest first).

        An open stretch is not one yet (it is recorded when it closes), and an empty one bills
        nothing and is left out; the rest have distinct starts, the segments' key. Their seconds
        add up to the cost event's running seconds (which `cost_event` computes from them).
        """
        return [
            SegmentEvent(
                session_id=session_id,
                org_id=org_id,
                issue_id=issue_id,
                sandbox_id=sandbox_id,
                template_id=template_id,
                started_at=start,
                ended_at=end,
            )
            for start, end in self._closed_running()
        ]

    def cost_event(
        self,
        *,
        session_id: str,
        org_id: str,
        issue_id: str | None,
        sandbox_id: str,
        template_id: str,
        ended_at: datetime,
        outcome: Outcome,
        end_confirmed: bool = True,
    ) -> CostEvent:
        """Close the usage at `ended_at` and bill it: the row the ledger keeps once.

        `ended_at` never precedes the last transition (so neither the start): running and
        paused seconds then always add up to the wall time. `end_confirmed`: False when
        `ended_at` is only the last moment the sandbox was known alive (see `CostEvent`).
        The running seconds are the sum of `running_segment_events()`, to the millisecond.
        """
        started_at = self.started_at
        if started_at is None:
            raise ValueError("a sandbox that never ran costs nothing: there is no event to record")
        ended_at = max(ended_at, self.latest or ended_at)
        self.close(ended_at)
        running = sum((end - start).total_seconds() for start, end in self._closed_running())
        return CostEvent(
            session_id=session_id,
            org_id=org_id,
            issue_id=issue_id,
            sandbox_id=sandbox_id,
            template_id=template_id,
            started_at=started_at,
            ended_at=ended_at,
            running_seconds=round(running, 3),
            paused_seconds=self.seconds("paused", ended_at),
            wall_seconds=(ended_at - started_at).total_seconds(),
            outcome=outcome,
            end_confirmed=end_confirmed,
        )

    def _closed_running(self) -> list[tuple[datetime, datetime]]:
        """(start, end) of each closed running stretch that lasted at all, in order."""
        return [
            (seg.start, seg.end)
            for seg in self.segments
            if seg.state == "running" and seg.end is not None and seg.end > seg.start
        ]


def daily_costs(segments: Iterable[SegmentEvent], by: DailyBy | None = None) -> list[DailyCost]:
    """Running seconds per UTC day, oldest day first; a segment crossing midnight is cut there.

    A sandbox counts on a day it ran on (an empty segment: on the day it is stamped). With `by`,
    one row per day and org or issue (None: segments without an issue), None last in each day;
    the rows then carry their `key`, and plain per-day rows none (their JSON stays as it was).
    """
    if by not in (None, *get_args(DailyBy)):
        raise ValueError(f"cannot split days by {by!r}: choose org or issue")
    running: dict[tuple[date, str | None], timedelta] = defaultdict(timedelta)
    sandboxes: dict[tuple[date, str | None], set[str]] = defaultdict(set)
    for segment in segments:
        key = None if by is None else segment.org_id if by == "org" else segment.issue_id
        start, end = segment.started_at, segment.ended_at
        day = start.date()
        while True:
            midnight = datetime.combine(day + timedelta(days=1), clock_time(), tzinfo=UTC)
            piece = min(end, midnight) - max(start, midnight - timedelta(days=1))
            if piece > timedelta(0) or start == end:
                running[day, key] += piece
                sandboxes[day, key].add(segment.sandbox_id)
            if end <= midnight:
                break
            day += timedelta(days=1)
    rows = []
    for day, key in sorted(running, key=lambda dk: (dk[0], dk[1] is None, dk[1] or "")):
        seconds, count = running[day, key].total_seconds(), len(sandboxes[day, key])
        if by is None:
            rows.append(DailyCost(day=day, sandboxes=count, running_seconds=seconds))
        else:
            rows.append(DailyCost(day=day, key=key, sandboxes=count, running_seconds=seconds))
    return rows
