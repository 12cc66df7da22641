"""The ledger's tables and their migrations, applied once under a lock when a ledger opens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
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
    true,
)
from sqlalchemy.schema import CreateTable
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


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _outcomes(outcomes: tuple[str, ...]) -> str:
    return _one_of("outcome", outcomes)


def _cost_event_columns() -> list[Column[Any]]:
    """The columns of version 1's cost_events, new objects for each table that has them."""
    return [
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
    ]


def _cost_event_rules(outcomes: tuple[str, ...]) -> list[Any]:
    return [
        # The idempotency key: one row per (session, sandbox), forever.
        PrimaryKeyConstraint("session_id", "sandbox_id", name="cost_events_idempotency_key"),
        CheckConstraint(
            "running_seconds >= 0 AND paused_seconds >= 0 AND wall_seconds >= 0",
            name="cost_events_seconds_not_negative",
        ),
        CheckConstraint("ended_at >= started_at", name="cost_events_ordered"),
        CheckConstraint(_outcomes(outcomes), name="cost_events_outcome"),
    ]


# Each version's outcomes, frozen: a migration does the same thing whenever it runs. A new
# `Outcome` needs a migration that widens the check (a test keeps the two equal).
_V1_OUTCOMES = ("finished", "failed", "cancelled")
OUTCOMES = (*_V1_OUTCOMES, "lost")  # version 2

cost_events = Table(
    "cost_events",
    metadata,
    *_cost_event_columns(),
    # Version 2: the provider's record of the end (True), or the last moment known alive.
    Column("end_confirmed", Boolean, nullable=False, server_default=true()),
    *_cost_event_rules(OUTCOMES),
    Index("cost_events_org", "org_id"),
    Index("cost_events_issue", "issue_id"),
)

cost_segments = Table(
    "cost_segments",
    metadata,
    Column("session_id", Text, nullable=False),
    Column("org_id", Text, nullable=False),
    Column("issue_id", Text, nullable=True),
    Column("sandbox_id", Text, nullable=False),
    Column("template_id", Text, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    # One row per closed running stretch of a sandbox, forever.
    PrimaryKeyConstraint("sandbox_id", "started_at", name="cost_segments_idempotency_key"),
    CheckConstraint("ended_at >= started_at", name="cost_segments_ordered"),
    CheckConstraint("seconds >= 0", name="cost_segments_seconds_not_negative"),
    Index("cost_segments_session", "session_id"),
    Index("cost_segments_org", "org_id"),
    Index("cost_segments_started", "started_at"),
)


# Version 3's gate event kinds and notice subjects, frozen like the outcomes (a test keeps them
# equal to `GateEventKind` and `NoticeAbout`).
GATE_EVENT_KINDS = ("requested", "notified", "approved", "rejected", "timed_out")
NOTICE_ABOUTS = ("requested", "reminder", "approved", "rejected", "timed_out")


gate_events = Table(
    "gate_events",
    metadata,
    Column("session_id", Text, nullable=False),
    Column("org_id", Text, nullable=False),
    Column("issue_id", Text, nullable=True),
    Column("gate", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("by", Text, nullable=True),
    Column("comment", Text, nullable=True),
    # '' for "none", never NULL: NULLs are distinct in a key, so a NULL would let duplicates in.
    Column("about", Text, nullable=False, server_default=""),
    Column("sink", Text, nullable=False, server_default=""),
    Column("attempts", Integer, nullable=True),
    Column("waited_seconds", Float, nullable=True),
    Column("paused_seconds", Float, nullable=True),
    Column("digest", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    # One row per (session, gate, event, about, sink), forever.
    PrimaryKeyConstraint(
        "session_id", "gate", "event", "about", "sink", name="gate_events_idempotency_key"
    ),
    CheckConstraint(_one_of("event", GATE_EVENT_KINDS), name="gate_events_event"),
    CheckConstraint(_one_of("about", ("", *NOTICE_ABOUTS)), name="gate_events_about"),
    CheckConstraint(
        "(waited_seconds IS NULL OR waited_seconds >= 0) "
        "AND (paused_seconds IS NULL OR paused_seconds >= 0)",
        name="gate_events_seconds_not_negative",
    ),
    CheckConstraint("attempts IS NULL OR attempts >= 1", name="gate_events_attempts"),
    Index("gate_events_org_at", "org_id", "at"),
    Index("gate_events_session", "session_id"),
)


def _v1(conn: Connection) -> None:
    # Version 1's table as it was: later migrations bring it on from there.
    v1 = Table(
        "cost_events",
        MetaData(),
        *_cost_event_columns(),
        *_cost_event_rules(_V1_OUTCOMES),
        Index("cost_events_org", "org_id"),
        Index("cost_events_issue", "issue_id"),
    )
    v1.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    """`end_confirmed` (true for every row so far), the outcome `lost`, and the segments."""
    if conn.dialect.name == "sqlite":
        _rebuild_sqlite_cost_events(conn)
    else:
        conn.execute(
            text("ALTER TABLE cost_events ADD COLUMN end_confirmed BOOLEAN NOT NULL DEFAULT true")
        )
        conn.execute(text("ALTER TABLE cost_events DROP CONSTRAINT cost_events_outcome"))
        conn.execute(
            text(
                "ALTER TABLE cost_events ADD CONSTRAINT cost_events_outcome "
                f"CHECK ({_outcomes(OUTCOMES)})"
            )
        )
    cost_segments.create(conn, checkfirst=True)


def _rebuild_sqlite_cost_events(conn: Connection) -> None:
    """SQLite cannot alter a CHECK constraint: build the new table, copy the rows over, drop the
    old one, take its name and indexes (SQLite's own recipe, inside the migration's transaction)."""
    new = cost_events.to_metadata(MetaData(), name="cost_events_v2")
    conn.execute(CreateTable(new))  # no indexes yet: their names are the old table's
    columns = ", ".join(column.name for column in _cost_event_columns())
    conn.execute(text(f"INSERT INTO cost_events_v2 ({columns}) SELECT {columns} FROM cost_events"))
    conn.execute(text("DROP TABLE cost_events"))
    conn.execute(text("ALTER TABLE cost_events_v2 RENAME TO cost_events"))
    for index in cost_events.indexes:
        index.create(conn)


def _v3(conn: Connection) -> None:
    """The gate audit trail: a new table, nothing else changes (both dialects alike)."""
    gate_events.create(conn, checkfirst=True)


# Append only: migration N brings the schema from version N-1 to N.
_MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3]
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
