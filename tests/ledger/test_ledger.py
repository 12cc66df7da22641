"""The empty_ledger on SQLite and on real PostgreSQL: exactly one row per (session, sandbox)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ledger import CostEvent, LedgerError, SqlLedger, open_ledger
from ledger._schema import LATEST_VERSION
from ledger.config import parse_ledger_url
from tests.fixtures.ledger_events import PARIS, T0, cost_event


async def test_record_and_read_back_exactly(empty_ledger: SqlLedger) -> None:
    event = cost_event(
        started_at=T0.astimezone(PARIS),
        ended_at=T0 + timedelta(seconds=1.000001),
        running_seconds=0.1 + 0.2,  # a float that does not print short
        paused_seconds=1 / 3,
        wall_seconds=1.000001,
    )
    result = await empty_ledger.record(event)
    assert result.inserted
    assert result.event == event

    [stored] = await empty_ledger.events()
    assert stored == event
    assert stored.started_at == T0 and stored.started_at.utcoffset() == timedelta(0)
    assert stored.ended_at - stored.started_at == timedelta(seconds=1, microseconds=1)
    assert stored.running_seconds == 0.1 + 0.2
    assert stored.paused_seconds == 1 / 3


async def test_stored_rows_survive_reopening(empty_ledger: SqlLedger, ledger_url: str) -> None:
    await empty_ledger.record(cost_event())
    await empty_ledger.close()
    reopened = await open_ledger(ledger_url)
    try:
        assert await reopened.events() == [cost_event()]
        assert not (await reopened.record(cost_event())).inserted
    finally:
        await reopened.close()


async def test_duplicate_keeps_the_stored_row(empty_ledger: SqlLedger) -> None:
    first = cost_event()
    assert (await empty_ledger.record(first)).inserted
    retry = cost_event(
        running_seconds=999.0, paused_seconds=0.0, outcome="failed", template_id="other"
    )
    again = await empty_ledger.record(retry)
    assert not again.inserted
    assert again.event == first
    assert await empty_ledger.events() == [first]


async def test_same_session_other_sandbox_is_another_row(empty_ledger: SqlLedger) -> None:
    assert (await empty_ledger.record(cost_event())).inserted
    assert (await empty_ledger.record(cost_event(sandbox_id="sbx-2"))).inserted
    assert (await empty_ledger.record(cost_event(session_id="s-2"))).inserted
    assert len(await empty_ledger.events(session_id="s-1")) == 2


async def test_concurrent_duplicates_insert_once(empty_ledger: SqlLedger, ledger_url: str) -> None:
    """20 workers recording the same event at once, each on its own connection pool."""
    others = await asyncio.gather(*(open_ledger(ledger_url) for _ in range(20)))
    try:
        events = [cost_event(running_seconds=float(i)) for i in range(20)]
        results = await asyncio.gather(
            *(other.record(event) for other, event in zip(others, events, strict=True))
        )
    finally:
        await asyncio.gather(*(other.close() for other in others))
    assert sum(result.inserted for result in results) == 1
    winner = next(result.event for result in results if result.inserted)
    assert all(result.event == winner for result in results)
    assert await empty_ledger.events() == [winner]


async def test_concurrent_distinct_events_all_land(empty_ledger: SqlLedger) -> None:
    events = [cost_event(session_id=f"s-{i}") for i in range(20)]
    results = await asyncio.gather(*(empty_ledger.record(event) for event in events))
    assert all(result.inserted for result in results)
    assert len(await empty_ledger.events()) == 20


async def test_concurrent_opens_migrate_once(ledger_url: str) -> None:
    """Workers starting together on an empty database each get a working empty_ledger."""
    opened = await asyncio.gather(*(open_ledger(ledger_url) for _ in range(2)))
    try:
        results = await asyncio.gather(*(one.record(cost_event()) for one in opened))
        assert sorted(result.inserted for result in results) == [False, True]
    finally:
        await asyncio.gather(*(one.close() for one in opened))
    target = parse_ledger_url(ledger_url)
    engine = create_async_engine(target.url, connect_args=target.connect_args)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, version FROM schema_version"))).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [(1, LATEST_VERSION)]


async def test_newer_schema_is_refused(empty_ledger: SqlLedger, ledger_url: str) -> None:
    target = parse_ledger_url(ledger_url)
    engine = create_async_engine(target.url, connect_args=target.connect_args)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE schema_version SET version = 99"))
    finally:
        await engine.dispose()
    with pytest.raises(LedgerError, match="version 99, newer than this worker"):
        await open_ledger(ledger_url)


def _summed(rows: list, key: str | None) -> tuple:  # type: ignore[type-arg]
    [row] = [row for row in rows if row.key == key]
    return row.sessions, row.running_seconds, row.paused_seconds, row.wall_seconds


async def _seed(empty_ledger: SqlLedger) -> None:
    def ev(session: str, sandbox: str, org: str, issue: str | None, run: float) -> CostEvent:
        return cost_event(
            session_id=session,
            sandbox_id=sandbox,
            org_id=org,
            issue_id=issue,
            running_seconds=run,
            paused_seconds=10.0,
            wall_seconds=run + 10.0,
        )

    for event in [
        ev("s-1", "sbx-a", "acme", "ISSUE-1", 1.5),
        ev("s-1", "sbx-b", "acme", "ISSUE-1", 2.5),  # a second sandbox in one session
        ev("s-2", "sbx-c", "acme", "ISSUE-1", 4.0),
        ev("s-3", "sbx-d", "acme", None, 8.0),
        ev("s-4", "sbx-e", "globex", None, 16.0),
        ev("s-5", "sbx-f", "globex", "ISSUE-2", 32.0),
    ]:
        assert (await empty_ledger.record(event)).inserted
    # A retried record never counts twice.
    assert not (await empty_ledger.record(ev("s-1", "sbx-a", "acme", "ISSUE-1", 1000.0))).inserted


async def test_summary_by_session(empty_ledger: SqlLedger) -> None:
    await _seed(empty_ledger)
    rows = await empty_ledger.summary("session")
    assert [row.key for row in rows] == ["s-1", "s-2", "s-3", "s-4", "s-5"]
    assert {row.by for row in rows} == {"session"}
    assert _summed(rows, "s-1") == (1, 4.0, 20.0, 24.0)
    assert _summed(rows, "s-5") == (1, 32.0, 10.0, 42.0)


async def test_summary_by_issue_groups_no_issue_under_none(empty_ledger: SqlLedger) -> None:
    await _seed(empty_ledger)
    rows = await empty_ledger.summary("issue")
    assert [row.key for row in rows] == ["ISSUE-1", "ISSUE-2", None]
    assert _summed(rows, "ISSUE-1") == (2, 8.0, 30.0, 38.0)
    assert _summed(rows, None) == (2, 24.0, 20.0, 44.0)


async def test_summary_by_org(empty_ledger: SqlLedger) -> None:
    await _seed(empty_ledger)
    rows = await empty_ledger.summary("org")
    assert _summed(rows, "acme") == (3, 16.0, 40.0, 56.0)
    assert _summed(rows, "globex") == (2, 48.0, 20.0, 68.0)
    assert len(rows) == 2


async def test_summary_of_an_empty_ledger(empty_ledger: SqlLedger) -> None:
    assert await empty_ledger.summary("org") == []


async def test_summary_by_unknown_key_is_refused(empty_ledger: SqlLedger) -> None:
    with pytest.raises(LedgerError, match="choose one of session, issue, org"):
        await empty_ledger.summary("template")  # type: ignore[arg-type]


async def test_events_filters(empty_ledger: SqlLedger) -> None:
    await _seed(empty_ledger)
    assert {e.sandbox_id for e in await empty_ledger.events(session_id="s-1")} == {"sbx-a", "sbx-b"}
    assert {e.session_id for e in await empty_ledger.events(org_id="globex")} == {"s-4", "s-5"}
    assert [e.session_id for e in await empty_ledger.events(org_id="acme", issue_id="ISSUE-1")] == [
        "s-1",
        "s-1",
        "s-2",
    ]
    assert await empty_ledger.events(session_id="nobody") == []


async def test_events_are_oldest_first(empty_ledger: SqlLedger) -> None:
    late = cost_event(session_id="late", started_at=T0 + timedelta(hours=1),
                      ended_at=T0 + timedelta(hours=2))  # fmt: skip
    early = cost_event(session_id="early")
    await empty_ledger.record(late)
    await empty_ledger.record(early)
    assert [e.session_id for e in await empty_ledger.events()] == ["early", "late"]
