"""The gate audit trail on SQLite and on real PostgreSQL: one row per (session, gate, event,
about, sink), written any number of times and by any number of writers at once, never
overwritten; read back oldest first, filtered; and a version 2 ledger upgraded to hold it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from typing import get_args

import pytest
import pytest_asyncio
from pydantic import ValidationError
from sqlalchemy import Connection

from ledger import GateEvent, GateEventKind, LedgerError, NoticeAbout, SqlLedger, open_ledger
from ledger._schema import (
    _MIGRATIONS,
    GATE_EVENT_KINDS,
    LATEST_VERSION,
    NOTICE_ABOUTS,
    cost_events,
    cost_segments,
    schema_version,
)
from tests.fixtures.gate_events import gate_event, gate_life
from tests.fixtures.ledger_events import PARIS, T0, cost_event, segment_event
from tests.ledger.test_migration import _engine, _scalars


async def test_the_same_rows_twice_are_stored_once(empty_ledger: SqlLedger) -> None:
    life = gate_life()
    assert await empty_ledger.record_gate_events(life) == 3
    assert await empty_ledger.record_gate_events(life) == 0
    assert await empty_ledger.record_gate_events([*life, *life]) == 0
    assert await empty_ledger.gate_events() == life
    assert await empty_ledger.record_gate_events([]) == 0


async def test_a_batch_with_a_row_twice_stores_it_once(empty_ledger: SqlLedger) -> None:
    assert await empty_ledger.record_gate_events([gate_event(), gate_event()]) == 1
    assert await empty_ledger.gate_events() == [gate_event()]


async def test_concurrent_writers_store_each_row_once(
    empty_ledger: SqlLedger, ledger_url: str
) -> None:
    """20 workers, each on its own connection pool, racing the same rows (half of them in the
    other order: they must not deadlock on each other's rows either)."""
    lives = [gate_life(session_id=f"s-{n}") for n in range(3)]
    rows = [row for life in lives for row in life]
    others = await asyncio.gather(*(open_ledger(ledger_url) for _ in range(20)))
    try:
        counts = await asyncio.gather(
            *(
                other.record_gate_events(rows if n % 2 else rows[::-1])
                for n, other in enumerate(others)
            )
        )
    finally:
        await asyncio.gather(*(other.close() for other in others))
    assert sum(counts) == len(rows)
    stored = await empty_ledger.gate_events()
    assert sorted(e.idempotency_key for e in stored) == sorted(e.idempotency_key for e in rows)


async def test_concurrent_writers_on_one_ledger_store_each_row_once(
    empty_ledger: SqlLedger,
) -> None:
    counts = await asyncio.gather(
        *(empty_ledger.record_gate_events(gate_life()) for _ in range(10))
    )
    assert sum(counts) == 3
    assert await empty_ledger.gate_events() == gate_life()


async def test_a_duplicate_with_other_content_never_overwrites(empty_ledger: SqlLedger) -> None:
    decided = gate_life()[2]
    assert await empty_ledger.record_gate_events([decided]) == 1
    rewritten = decided.model_copy(
        update={
            "by": "mallory",
            "comment": "not what was said",
            "at": T0 + timedelta(days=1),
            "waited_seconds": 1.0,
            "digest": "0" * 64,
        }
    )
    assert await empty_ledger.record_gate_events([rewritten]) == 0
    assert await empty_ledger.gate_events() == [decided]


async def test_notifications_are_one_row_per_subject_and_sink(empty_ledger: SqlLedger) -> None:
    notice = gate_life()[1]
    rows = [
        notice,
        notice.model_copy(update={"sink": "webhook"}),
        notice.model_copy(update={"about": "reminder"}),
        notice.model_copy(update={"about": "approved", "sink": "webhook"}),
    ]
    assert await empty_ledger.record_gate_events(rows) == 4
    assert await empty_ledger.record_gate_events(rows) == 0
    assert len(await empty_ledger.gate_events()) == 4


async def test_about_and_sink_none_round_trip(empty_ledger: SqlLedger, ledger_url: str) -> None:
    """None is stored as '' (a NULL would make every row distinct) and read back as None."""
    requested = gate_event()
    assert requested.about is None and requested.sink is None
    assert await empty_ledger.record_gate_events([requested]) == 1
    # The same key with None again: no second row, as it would be with NULLs in the key.
    assert await empty_ledger.record_gate_events([gate_event(by="someone else")]) == 0
    [stored] = await empty_ledger.gate_events()
    assert stored == requested and stored.about is None and stored.sink is None
    assert await _scalars(ledger_url, "SELECT about || '|' || sink FROM gate_events") == ["|"]


async def test_every_field_round_trips_in_utc(empty_ledger: SqlLedger) -> None:
    row = gate_event(
        event="timed_out",
        at=T0.astimezone(PARIS),
        by=None,
        issue_id=None,
        comment="línea 1\nline 2 ✓",
        waited_seconds=0.1 + 0.2,
        paused_seconds=1e-6,
    )
    await empty_ledger.record_gate_events([row])
    [stored] = await empty_ledger.gate_events()
    assert stored == row
    assert stored.at == T0 and stored.at.utcoffset() == timedelta(0)
    assert stored.waited_seconds == 0.1 + 0.2 and stored.issue_id is None


async def test_filters(empty_ledger: SqlLedger) -> None:
    await empty_ledger.record_gate_events(
        [
            *gate_life(),
            *gate_life(session_id="s-2", gate="publish"),
            *gate_life(session_id="s-3", org_id="globex"),
        ]
    )

    def keys(rows: list[GateEvent]) -> set[tuple[str, str]]:
        return {(e.session_id, e.gate) for e in rows}

    assert keys(await empty_ledger.gate_events(session_id="s-2")) == {("s-2", "publish")}
    assert keys(await empty_ledger.gate_events(org_id="acme")) == {
        ("s-1", "deploy"),
        ("s-2", "publish"),
    }
    assert keys(await empty_ledger.gate_events(gate="deploy")) == {
        ("s-1", "deploy"),
        ("s-3", "deploy"),
    }
    assert await empty_ledger.gate_events(org_id="globex", gate="publish") == []
    assert await empty_ledger.gate_events(session_id="nobody") == []

    # `since`: at or after it, in any zone.
    approved_at = T0 + timedelta(hours=1, seconds=30)
    since = await empty_ledger.gate_events(since=approved_at.astimezone(PARIS))
    assert len(since) == 3 and {e.event for e in since} == {"approved"}
    later = await empty_ledger.gate_events(since=approved_at + timedelta(microseconds=1))
    assert later == []
    assert len(await empty_ledger.gate_events(since=T0, session_id="s-1")) == 3


async def test_a_time_without_a_zone_is_refused(empty_ledger: SqlLedger) -> None:
    with pytest.raises(LedgerError, match="time zone"):
        await empty_ledger.gate_events(since=T0.replace(tzinfo=None))


async def test_oldest_first_and_a_gates_life_in_order(empty_ledger: SqlLedger) -> None:
    at = T0 + timedelta(minutes=5)
    same_instant = [
        gate_event(session_id="s-9", event="approved", at=at, by="ana"),
        gate_event(session_id="s-9", event="notified", at=at, about="requested", sink="slack"),
        gate_event(session_id="s-9", event="requested", at=at),
    ]
    earlier = gate_life()
    await empty_ledger.record_gate_events([*same_instant, *reversed(earlier)])
    stored = await empty_ledger.gate_events()
    assert [e.at for e in stored] == sorted(e.at for e in stored)
    nine = [e.event for e in stored if e.session_id == "s-9"]
    assert nine == ["requested", "notified", "approved"]


async def test_an_unvalidated_row_never_reaches_the_database(empty_ledger: SqlLedger) -> None:
    good = gate_event(session_id="s-ok")
    bad = GateEvent.model_construct(**{**gate_event().model_dump(), "digest": "not a digest"})
    with pytest.raises(ValidationError):
        await empty_ledger.record_gate_events([good, bad])
    assert await empty_ledger.gate_events() == []  # the whole batch is refused


def test_the_schema_allows_every_kind_the_model_knows() -> None:
    """A new `GateEventKind` or `NoticeAbout` needs a migration that widens the checks."""
    assert set(get_args(GateEventKind)) == set(GATE_EVENT_KINDS)
    assert set(get_args(NoticeAbout)) == set(NOTICE_ABOUTS)


# ---------------------------------------------------------------- from version 2

V2_COSTS = [cost_event(), cost_event(session_id="s-2", sandbox_id="sbx-2", outcome="lost")]


def _as_version_2(conn: Connection) -> None:
    """A ledger as the version 2 worker left it: its migrations, frozen, and its version."""
    schema_version.create(conn)
    for migration in _MIGRATIONS[:2]:
        migration(conn)
    conn.execute(schema_version.insert().values(id=1, version=2))


@pytest_asyncio.fixture
async def v2_ledger_url(ledger_url: str) -> AsyncIterator[str]:
    """A ledger at schema version 2 holding `V2_COSTS` and a segment, on each backend."""
    engine = _engine(ledger_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_as_version_2)
            recorded = T0 + timedelta(days=1)
            await conn.execute(
                cost_events.insert(),
                [{**e.model_dump(), "recorded_at": recorded} for e in V2_COSTS],
            )
            segment = segment_event()
            await conn.execute(
                cost_segments.insert().values(
                    **segment.model_dump(), seconds=segment.seconds, recorded_at=recorded
                )
            )
    finally:
        await engine.dispose()
    yield ledger_url


async def test_a_version_2_ledger_keeps_its_rows_and_gains_the_audit_trail(
    v2_ledger_url: str,
) -> None:
    assert LATEST_VERSION == 3
    assert "gate_events" not in await _tables(v2_ledger_url)
    ledger = await open_ledger(v2_ledger_url)
    try:
        assert await ledger.events() == V2_COSTS
        assert await ledger.segments() == [segment_event()]
        assert await ledger.gate_events() == []
        assert await ledger.record_gate_events(gate_life()) == 3
        assert await ledger.gate_events() == gate_life()
        # The old keys still hold.
        assert not (await ledger.record(cost_event(running_seconds=1.0))).inserted
    finally:
        await ledger.close()
    assert await _scalars(v2_ledger_url, "SELECT version FROM schema_version") == [3]
    assert {"gate_events_org_at", "gate_events_session"} <= await _indexes(v2_ledger_url)
    # Opening again changes nothing.
    reopened = await open_ledger(v2_ledger_url)
    try:
        assert await reopened.events() == V2_COSTS
        assert await reopened.gate_events() == gate_life()
    finally:
        await reopened.close()


async def _tables(url: str) -> set[str]:
    if url.startswith("sqlite"):
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    return set(await _scalars(url, sql))


async def _indexes(url: str) -> set[str]:
    if url.startswith("sqlite"):
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'gate_events'"
    else:
        sql = (
            "SELECT indexname FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = 'gate_events'"
        )
    return set(await _scalars(url, sql))


def test_stored_times_are_utc() -> None:
    assert gate_event(at=T0.astimezone(PARIS)).at.tzinfo == UTC
