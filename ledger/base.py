"""The one storage interface every ledger backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ledger.models import CostEvent, CostSummary, RecordResult, SummaryBy


@runtime_checkable
class Ledger(Protocol):
    """Exactly-once storage of cost events, keyed by (session, sandbox)."""

    async def record(self, event: CostEvent) -> RecordResult:
        """Store `event` unless its key exists; a duplicate never overwrites the stored row."""
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

    async def summary(self, by: SummaryBy) -> list[CostSummary]:
        """Sums per session, issue or org; events without an issue are grouped under None."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...
