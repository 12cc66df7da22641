"""A ledger written by the version 1 worker, opened by this one: on SQLite and real PostgreSQL,
every row is kept as it was, with `end_confirmed` true, and the new outcome and segments work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ledger import SqlLedger, open_ledger
from ledger._schema import LATEST_VERSION
from ledger.config import parse_ledger_url
from tests.fixtures.ledger_events import T0, cost_event, segment_event

# What the version 1 worker created, word for word (SQLAlchemy's DDL for each dialect).
_V1_SCHEMA_VERSION = """CREATE TABLE schema_version (
    id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT schema_version_single_row CHECK (id = 1)
)"""
_V1_COST_EVENTS = """CREATE TABLE cost_events (
    session_id TEXT NOT NULL,
    sandbox_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    issue_id TEXT,
    template_id TEXT NOT NULL,
    started_at {ts} NOT NULL,
    ended_at {ts} NOT NULL,
    running_seconds FLOAT NOT NULL,
    paused_seconds FLOAT NOT NULL,
    wall_seconds FLOAT NOT NULL,
    outcome TEXT NOT NULL,
    recorded_at {ts} NOT NULL,
    CONSTRAINT cost_events_idempotency_key PRIMARY KEY (session_id, sandbox_id),
    CONSTRAINT cost_events_seconds_not_negative CHECK (running_seconds >= 0 AND paused_seconds >= 0 AND wall_seconds >= 0),
    CONSTRAINT cost_events_ordered CHECK (ended_at >= started_at),
    CONSTRAINT cost_events_outcome CHECK (outcome IN ('finished', 'failed', 'cancelled'))
)"""  # noqa: E501
_V1_INDEXES = (
    "CREATE INDEX cost_events_org ON cost_events (org_id)",
    "CREATE INDEX cost_events_issue ON cost_events (issue_id)",
)

V1_ROWS = [  # oldest first, as `events()` reads them
    cost_event(),
    cost_event(session_id="s-3", sandbox_id="sbx-3", outcome="failed"),
    cost_event(
        session_id="s-2",
        sandbox_id="sbx-2",
        org_id="globex",
        issue_id=None,
        started_at=T0 + timedelta(hours=1),
        ended_at=T0 + timedelta(hours=1, seconds=10.000001),
        running_seconds=0.1 + 0.2,
        paused_seconds=0.0,
        wall_seconds=10.000001,
        outcome="cancelled",
    ),
]


def _engine(url: str) -> AsyncEngine:
    target = parse_ledger_url(url)
    return create_async_engine(target.url, connect_args=target.connect_args)


def _stamp(conn: AsyncConnection, value: datetime) -> Any:
    """A time as version 1 stored it: naive UTC text in SQLite, TIMESTAMPTZ in PostgreSQL."""
    if conn.dialect.name == "sqlite":
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


@pytest_asyncio.fixture
async def v1_ledger_url(ledger_url: str) -> AsyncIterator[str]:
    """A ledger at schema version 1 holding `V1_ROWS`, on each backend in turn."""
    engine = _engine(ledger_url)
    try:
        async with engine.begin() as conn:
            ts = "DATETIME" if conn.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"
            await conn.execute(text(_V1_SCHEMA_VERSION))
            await conn.execute(text(_V1_COST_EVENTS.format(ts=ts)))
            for index in _V1_INDEXES:
                await conn.execute(text(index))
            await conn.execute(text("INSERT INTO schema_version (id, version) VALUES (1, 1)"))
            for event in V1_ROWS:
                values = event.model_dump(exclude={"end_confirmed"})
                for name in ("started_at", "ended_at"):
                    values[name] = _stamp(conn, values[name])
                values["recorded_at"] = _stamp(conn, T0 + timedelta(days=1))
                columns = ", ".join(values)
                params = ", ".join(f":{name}" for name in values)
                await conn.execute(
                    text(f"INSERT INTO cost_events ({columns}) VALUES ({params})"), values
                )
    finally:
        await engine.dispose()
    yield ledger_url


async def _scalars(url: str, sql: str) -> list[Any]:
    engine = _engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).scalars())
    finally:
        await engine.dispose()


async def test_v1_rows_survive_the_migration_as_confirmed_ends(v1_ledger_url: str) -> None:
    ledger = await open_ledger(v1_ledger_url)
    try:
        stored = await ledger.events()
    finally:
        await ledger.close()
    assert stored == V1_ROWS  # every field as written, to the microsecond and the last bit
    assert all(event.end_confirmed for event in stored)
    assert stored[2].running_seconds == 0.1 + 0.2 and stored[2].issue_id is None
    assert await _scalars(v1_ledger_url, "SELECT version FROM schema_version") == [LATEST_VERSION]


async def test_after_the_migration_a_lost_sandbox_can_be_billed(v1_ledger_url: str) -> None:
    ledger = await open_ledger(v1_ledger_url)
    try:
        lost = cost_event(session_id="s-4", outcome="lost", end_confirmed=False)
        assert (await ledger.record(lost)).inserted
        [stored] = await ledger.events(session_id="s-4")
        assert stored.outcome == "lost" and stored.end_confirmed is False
        # The old key still holds: a v1 row is never billed a second time.
        again = await ledger.record(cost_event(running_seconds=1.0))
        assert not again.inserted and again.event == V1_ROWS[0]
        # And the segments' table is there.
        assert await ledger.record_segment(segment_event())
        assert [d.running_seconds for d in await ledger.daily()] == [125.5]
    finally:
        await ledger.close()


async def test_the_migration_keeps_the_indexes_and_runs_once(v1_ledger_url: str) -> None:
    ledger: SqlLedger = await open_ledger(v1_ledger_url)
    await ledger.close()
    if v1_ledger_url.startswith("sqlite"):
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cost_events'"
    else:
        sql = (
            "SELECT indexname FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = 'cost_events'"
        )
    assert {"cost_events_org", "cost_events_issue"} <= set(await _scalars(v1_ledger_url, sql))
    # Opening again finds version 2 and changes nothing.
    reopened = await open_ledger(v1_ledger_url)
    try:
        assert await reopened.events() == V1_ROWS
    finally:
        await reopened.close()
    assert await _scalars(v1_ledger_url, "SELECT count(*) FROM cost_events") == [len(V1_ROWS)]


@pytest.mark.parametrize(("outcome", "stored"), [("lost", True), ("succeeded", False)])
async def test_the_migrated_outcome_check_takes_lost_and_still_refuses_the_rest(
    v1_ledger_url: str, outcome: str, stored: bool
) -> None:
    """Straight SQL, past the models: the database's own rule, as another writer meets it."""
    ledger = await open_ledger(v1_ledger_url)
    await ledger.close()
    engine = _engine(v1_ledger_url)
    values = {"s": "s-9", "t": _now_text(v1_ledger_url), "o": outcome}
    insert = text(
        "INSERT INTO cost_events (session_id, sandbox_id, org_id, template_id, started_at, "
        "ended_at, running_seconds, paused_seconds, wall_seconds, outcome, recorded_at) "
        "VALUES (:s, 'sbx-9', 'acme', 'base', :t, :t, 0, 0, 0, :o, :t)"
    )
    try:
        if stored:
            async with engine.begin() as conn:
                await conn.execute(insert, values)
        else:
            with pytest.raises(IntegrityError, match="cost_events_outcome|CHECK constraint"):
                async with engine.begin() as conn:
                    await conn.execute(insert, values)
    finally:
        await engine.dispose()
    rows = await _scalars(
        v1_ledger_url, "SELECT end_confirmed FROM cost_events WHERE session_id = 's-9'"
    )
    assert rows == ([True] if stored else [])


def _now_text(url: str) -> Any:
    return T0.strftime("%Y-%m-%d %H:%M:%S.%f") if url.startswith("sqlite") else T0


def test_the_schema_allows_every_outcome_the_model_knows() -> None:
    """A new `Outcome` without a migration that widens the check would be refused by every
    ledger at the worst moment: when the session ends and its cost is recorded."""
    from typing import get_args

    from ledger import Outcome
    from ledger._schema import OUTCOMES

    assert set(get_args(Outcome)) == set(OUTCOMES)
