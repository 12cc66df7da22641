"""The one storage interface every ledger backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol, runtime_checkable

from ledger.models import (
    CostEvent,
    CostSummary,
    DailyBy,
    DailyCost,
    GateEvent,
    RecordResult,
    SegmentEvent,
    SummaryBy,
)


@runtime_checkable
class Ledger(Protocol):
    """Exactly-once storage of cost events, keyed by (session, sandbox), and of the closed running
    segments they are made of, keyed by (sandbox, start)."""

    async def record(self, event: CostEvent, segments: Sequence[SegmentEvent] = ()) -> RecordResult:
        """Store `event` unless its key exists; a duplicate never overwrites the stored row.

        `segments` (the event's closed running segments) are stored with it, in the same
        transaction, each unless its key exists. When another account of the sandbox is already
        stored, its segments stand and these are not added.
        """
        ...

    async def record_segment(self, segment: SegmentEvent) -> bool:
        """Store one closed running segment unless its (sandbox, start) exists; True if new."""
        ...

    async def events(
        self,
        *,
        session_id: str | None = None,
        org_id: str | None = None,
        issue_id: str | None = None,
    ) -> list[CostEvent]:
        """Stored events, oldest first, filtered by whichever ids are given."""
        ...

    async def segments(
        self,
        *,
        session_id: str | None = None,
        org_id: str | None = None,
        issue_id: str | None = None,
    ) -> list[SegmentEvent]:
        """Stored segments, oldest first, filtered by whichever ids are given."""
        ...

    async def summary(self, by: SummaryBy) -> list[CostSummary]:
        """Sums per session, issue or org; events without an issue are grouped under None."""
        ...

    async def daily(
        self,
        *,
        org_id: str | None = None,
        by: DailyBy | None = None,
        since: date | None = None,
    ) -> list[DailyCost]:
        """Running seconds per UTC day from the segments (one crossing midnight is split),
        oldest day first, with the number of sandboxes that ran that day.

        `by`: one row per day and org or issue (its `key`; None for segments without an issue),
        sorted by day then key, None last. `since`: only the days from that one on (UTC)."""
        ...

    async def record_gate_events(self, events: Sequence[GateEvent]) -> int:
        """Store each gate audit row unless its key (session, gate, event, about, sink) exists;
        a duplicate never overwrites the stored row. Returns how many were new."""
        ...

    async def gate_events(
        self,
        *,
        session_id: str | None = None,
        org_id: str | None = None,
        gate: str | None = None,
        since: datetime | None = None,
    ) -> list[GateEvent]:
        """Stored gate audit rows, oldest first (by `at`), filtered by whichever are given
        (`since`: rows at or after it)."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...
