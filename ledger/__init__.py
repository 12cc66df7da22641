"""The billing ledger: one cost event per (session, sandbox), recorded exactly once, and the
closed running segments it is made of (one per sandbox and start), recorded as they close.

The interface (`Ledger`), its values and the billing arithmetic (`Usage`) are plain Python; the
SQL backend behind `open_ledger()` (SQLAlchemy: SQLite via aiosqlite, or PostgreSQL via asyncpg
for several workers, chosen from the URL: argument > `LEDGER_URL` > a SQLite file in
`SESSIONS_DATA_DIR`) loads on first use, so workflows that bill with `Usage` never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy_exports
from ledger.base import Ledger
from ledger.billing import BilledState, Segment, Usage, daily_costs
from ledger.errors import LedgerConfigError, LedgerError, LedgerUnavailable
from ledger.models import (
    CostEvent,
    CostSummary,
    DailyBy,
    DailyCost,
    GateEvent,
    GateEventKind,
    NoticeAbout,
    Outcome,
    RecordResult,
    SegmentEvent,
    SummaryBy,
    gate_digest,
)

if TYPE_CHECKING:
    from ledger.config import mask_url, resolve_ledger_url
    from ledger.sql import SqlLedger, open_ledger

__getattr__ = lazy_exports(
    __name__,
    {
        "SqlLedger": "ledger.sql",
        "open_ledger": "ledger.sql",
        "mask_url": "ledger.config",
        "resolve_ledger_url": "ledger.config",
    },
)


__all__ = [
    "BilledState",
    "CostEvent",
    "CostSummary",
    "DailyBy",
    "DailyCost",
    "GateEvent",
    "GateEventKind",
    "Ledger",
    "LedgerConfigError",
    "LedgerError",
    "LedgerUnavailable",
    "NoticeAbout",
    "Outcome",
    "RecordResult",
    "Segment",
    "SegmentEvent",
    "SqlLedger",
    "SummaryBy",
    "Usage",
    "daily_costs",
    "gate_digest",
    "mask_url",
    "open_ledger",
    "resolve_ledger_url",
]
