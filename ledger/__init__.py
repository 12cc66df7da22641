"""The billing ledger: one cost event per (session, sandbox), recorded exactly once.

`open_ledger()` picks the backend from the URL (argument > `LEDGER_URL` > a SQLite file in
`SESSIONS_DATA_DIR`): SQLite via aiosqlite, or PostgreSQL via asyncpg for several workers.
"""

from ledger.base import Ledger
from ledger.config import mask_url, resolve_ledger_url
from ledger.errors import LedgerConfigError, LedgerError, LedgerUnavailable
from ledger.models import CostEvent, CostSummary, Outcome, RecordResult, SummaryBy
from ledger.sql import SqlLedger, open_ledger

__all__ = [
    "CostEvent",
    "CostSummary",
    "Ledger",
    "LedgerConfigError",
    "LedgerError",
    "LedgerUnavailable",
    "Outcome",
    "RecordResult",
    "SqlLedger",
    "SummaryBy",
    "mask_url",
    "open_ledger",
    "resolve_ledger_url",
]
