"""The ledger's tables and their migrations, applied once under a lock when a ledger opens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.types import TypeDecorator

from ledger.errors import LedgerError


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware in Python, UTC in the database (TIMESTAMPTZ, or naive UTC text in SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores timezone-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    CheckConstraint("id = 1", name="schema_version_single_row"),
)

cost_events = Table(
    "cost_events",
    metadata,
    Column("session_id", Text, nullable=False),
    Column("sandbox_id", Text, nullable=False),
    Column("org_id", Text, nullable=False),
    Column("issue_id", Text, nullable=True),
    Column("template_id", Text, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=False),
    Column("running_seconds", Float, nullable=False),
    Column("paused_seconds", Float, nullable=False),
    Column("wall_seconds", Float, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    # The idempotency key: one row per (session, sandbox), forever.
    PrimaryKeyConstraint("session_id", "sandbox_id", name="cost_events_idempotency_key"),
    CheckConstraint(
        "running_seconds >= 0 AND paused_seconds >= 0 AND wall_seconds >= 0",
        name="cost_events_seconds_not_negative",
    ),
    CheckConstraint("ended_at >= started_at", name="cost_events_ordered"),
    CheckConstraint("outcome IN ('finished', 'failed', 'cancelled')", name="cost_events_outcome"),
    Index("cost_events_org", "org_id"),
    Index("cost_events_issue", "issue_id"),
)


def _v1(conn: Connection) -> None:
    cost_events.create(conn, checkfirst=True)


# Append only: migration N brings the schema from version N-1 to N.
_MIGRATIONS: list[Callable[[Connection], None]] = [_v1]
LATEST_VERSION = len(_MIGRATIONS)


def migrate(conn: Connection) -> int:
    """Bring the schema to LATEST_VERSION; the caller holds the migration lock."""
    schema_version.create(conn, checkfirst=True)
    current = conn.execute(select(schema_version.c.version)).scalar_one_or_none() or 0
    if current > LATEST_VERSION:
        raise LedgerError(
            f"the ledger's schema is version {current}, newer than this worker knows "
            f"({LATEST_VERSION}): upgrade the worker"
        )
    for version in range(current + 1, LATEST_VERSION + 1):
        _MIGRATIONS[version - 1](conn)
    if current == 0:
        conn.execute(schema_version.insert().values(id=1, version=LATEST_VERSION))
    elif current < LATEST_VERSION:
        conn.execute(schema_version.update().values(version=LATEST_VERSION))
    return LATEST_VERSION


def lock_for_migration(conn: Connection) -> None:
    """Serialize workers starting together (SQLite: the BEGIN IMMEDIATE already did)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ledger_schema'))")
        )
