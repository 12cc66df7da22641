"""Running segments on SQLite and on real PostgreSQL: one row per (sandbox, start), recorded as
they close or with the cost event; the seconds they add up to, per sandbox and per UTC day."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from ledger import DailyCost, SegmentEvent, SqlLedger, Usage, open_ledger
from tests.fixtures.ledger_events import PARIS, T0, cost_event, segment_event

MIDNIGHT = datetime(2025, 3, 15, tzinfo=UTC)


def _ids(**overrides: str | None) -> dict[str, str | None]:
    ids: dict[str, str | None] = {
        "session_id": "s-1",
        "org_id": "acme",
        "issue_id": "ISSUE-7",
        "sandbox_id": "sbx-1",
        "template_id": "base",
    }
    ids.update(overrides)
    return ids


def _life(seed: int, *, stretches: int = 9) -> Usage:
    """A sandbox's life of running and paused stretches with microsecond-odd lengths."""
    rng = random.Random(seed)
    usage = Usage()
    at = T0
    for index in range(stretches):
        usage.enter("running" if index % 2 == 0 else "paused", at)
        at += timedelta(microseconds=rng.randint(1, 90_000_000))
    return usage


async def test_record_segment_then_read_it_back(empty_ledger: SqlLedger) -> None:
    segment = segment_event(started_at=T0.astimezone(PARIS))
    assert await empty_ledger.record_segment(segment)
    [stored] = await empty_ledger.segments()
    assert stored == segment
    assert stored.started_at == T0 and stored.started_at.utcoffset() == timedelta(0)
    assert stored.seconds == 125.5


async def test_a_repeated_segment_is_not_a_second_row(empty_ledger: SqlLedger) -> None:
    first = segment_event()
    assert await empty_ledger.record_segment(first)
    # The same stretch again (a retried activity), even with another end: the first one stands.
    assert not await empty_ledger.record_segment(segment_event())
    assert not await empty_ledger.record_segment(segment_event(ended_at=T0 + timedelta(hours=9)))
    assert await empty_ledger.segments() == [first]


async def test_concurrent_records_of_one_segment_insert_once(
    empty_ledger: SqlLedger, ledger_url: str
) -> None:
    """20 workers recording the same segment at once, each on its own connection pool."""
    others = await asyncio.gather(*(open_ledger(ledger_url) for _ in range(20)))
    try:
        results = await asyncio.gather(*(o.record_segment(segment_event()) for o in others))
    finally:
        await asyncio.gather(*(other.close() for other in others))
    assert sorted(results) == [False] * 19 + [True]
    assert await empty_ledger.segments() == [segment_event()]


async def test_concurrent_records_on_one_ledger_insert_once(empty_ledger: SqlLedger) -> None:
    results = await asyncio.gather(
        *(empty_ledger.record_segment(segment_event()) for _ in range(20))
    )
    assert sum(results) == 1
    assert len(await empty_ledger.segments()) == 1


async def test_other_stretches_and_sandboxes_are_other_rows(empty_ledger: SqlLedger) -> None:
    later = T0 + timedelta(minutes=10)
    assert await empty_ledger.record_segment(segment_event())
    assert await empty_ledger.record_segment(
        segment_event(started_at=later, ended_at=later + timedelta(seconds=1))
    )
    assert await empty_ledger.record_segment(segment_event(sandbox_id="sbx-2"))
    stored = await empty_ledger.segments(session_id="s-1")
    assert [(s.sandbox_id, s.started_at) for s in stored] == [
        ("sbx-1", T0),
        ("sbx-2", T0),
        ("sbx-1", later),
    ]


async def test_segments_filters(empty_ledger: SqlLedger) -> None:
    for session, sandbox, org, issue in [
        ("s-1", "sbx-a", "acme", "ISSUE-1"),
        ("s-2", "sbx-b", "acme", None),
        ("s-3", "sbx-c", "globex", "ISSUE-1"),
    ]:
        await empty_ledger.record_segment(
            segment_event(session_id=session, sandbox_id=sandbox, org_id=org, issue_id=issue)
        )
    assert [s.sandbox_id for s in await empty_ledger.segments(session_id="s-2")] == ["sbx-b"]
    assert [s.sandbox_id for s in await empty_ledger.segments(org_id="acme")] == ["sbx-a", "sbx-b"]
    assert [s.sandbox_id for s in await empty_ledger.segments(issue_id="ISSUE-1")] == [
        "sbx-a",
        "sbx-c",
    ]
    assert await empty_ledger.segments(org_id="nobody") == []


@pytest.mark.parametrize("seed", range(3))
async def test_a_billed_sandboxs_segments_add_up_to_its_running_seconds(
    empty_ledger: SqlLedger, seed: int
) -> None:
    """The invariant: what `costs --by day` sums is what the cost event bills."""
    usage = _life(seed)
    # Segments recorded as they close (the first two), then the rest with the cost event.
    early = usage.running_segment_events(**_ids())  # type: ignore[arg-type]
    for segment in early[:2]:
        assert await empty_ledger.record_segment(segment)
    event = usage.cost_event(
        **_ids(),  # type: ignore[arg-type]
        ended_at=usage.segments[-1].start + timedelta(microseconds=1_234_567),
        outcome="finished",
    )
    segments = usage.running_segment_events(**_ids())  # type: ignore[arg-type]
    assert len(segments) == 5
    result = await empty_ledger.record(event, segments)
    assert result.inserted

    stored = await empty_ledger.segments(session_id="s-1")
    assert stored == segments
    total = sum(s.seconds for s in stored)
    assert abs(total - result.event.running_seconds) <= 0.001 * len(stored)
    [day] = await empty_ledger.daily()
    assert abs(day.running_seconds - result.event.running_seconds) <= 0.001 * len(stored)


async def test_record_stores_the_event_and_its_segments_together(empty_ledger: SqlLedger) -> None:
    segments = [
        segment_event(),
        segment_event(started_at=T0 + timedelta(seconds=200), ended_at=T0 + timedelta(seconds=300)),
    ]
    assert (await empty_ledger.record(cost_event(), segments)).inserted
    assert await empty_ledger.segments() == segments
    assert await empty_ledger.events() == [cost_event()]


async def test_a_refused_segment_stores_nothing_of_the_bill(empty_ledger: SqlLedger) -> None:
    """One transaction: a segment that cannot be stored leaves no cost row without its parts."""
    bad = SegmentEvent.model_construct(
        **{**segment_event().model_dump(), "ended_at": T0 - timedelta(seconds=1)}
    )
    with pytest.raises(ValidationError, match="ended_at is before started_at"):
        await empty_ledger.record(cost_event(), [segment_event(sandbox_id="sbx-1"), bad])
    assert await empty_ledger.events() == []
    assert await empty_ledger.segments() == []


async def test_a_retried_record_adds_only_the_missing_segments(empty_ledger: SqlLedger) -> None:
    first = segment_event()
    second = segment_event(
        started_at=T0 + timedelta(seconds=200), ended_at=T0 + timedelta(seconds=300)
    )
    assert await empty_ledger.record_segment(first)  # as it closed
    assert (await empty_ledger.record(cost_event())).inserted  # an attempt without segments
    again = await empty_ledger.record(cost_event(), [first, second])  # the retry with them
    assert not again.inserted
    assert await empty_ledger.segments() == [first, second]


async def test_another_accounts_segments_are_not_added(empty_ledger: SqlLedger) -> None:
    """Once a sandbox is billed, another account of it (say the reconciler's, all running)
    changes neither its row nor its segments: the days never count more than the bill."""
    ours = segment_event()
    assert (await empty_ledger.record(cost_event(), [ours])).inserted
    theirs = cost_event(running_seconds=3726.5, paused_seconds=0.0, outcome="cancelled")
    late = segment_event(started_at=T0 + timedelta(hours=1), ended_at=T0 + timedelta(hours=2))
    result = await empty_ledger.record(theirs, [late])
    assert not result.inserted and result.event == cost_event()
    assert await empty_ledger.segments() == [ours]


async def test_daily_splits_a_segment_at_midnight(empty_ledger: SqlLedger) -> None:
    # 60 s before midnight and 90 s after it; another sandbox runs 10 s on the second day.
    await empty_ledger.record_segment(
        segment_event(
            started_at=MIDNIGHT - timedelta(seconds=60),
            ended_at=MIDNIGHT + timedelta(seconds=90),
        )
    )
    await empty_ledger.record_segment(
        segment_event(
            sandbox_id="sbx-2",
            started_at=MIDNIGHT + timedelta(hours=3),
            ended_at=MIDNIGHT + timedelta(hours=3, seconds=10),
        )
    )
    assert await empty_ledger.daily() == [
        DailyCost(day=date(2025, 3, 14), sandboxes=1, running_seconds=60.0),
        DailyCost(day=date(2025, 3, 15), sandboxes=2, running_seconds=100.0),
    ]


async def test_daily_of_a_segment_over_several_days_counts_each_day(
    empty_ledger: SqlLedger,
) -> None:
    start = MIDNIGHT - timedelta(hours=1, microseconds=250_000)
    end = MIDNIGHT + timedelta(days=1, hours=2)
    await empty_ledger.record_segment(segment_event(started_at=start, ended_at=end))
    days = await empty_ledger.daily()
    assert [(d.day, d.sandboxes, d.running_seconds) for d in days] == [
        (date(2025, 3, 14), 1, 3600.25),
        (date(2025, 3, 15), 1, 86400.0),
        (date(2025, 3, 16), 1, 7200.0),
    ]
    assert sum(d.running_seconds for d in days) == (end - start).total_seconds()


async def test_daily_is_by_utc_day_whatever_the_zone_given(empty_ledger: SqlLedger) -> None:
    # 00:30 in Paris on the 15th is 23:30 UTC on the 14th.
    start = datetime(2025, 3, 15, 0, 30, tzinfo=PARIS)
    await empty_ledger.record_segment(
        segment_event(started_at=start, ended_at=start + timedelta(minutes=10))
    )
    assert [d.day for d in await empty_ledger.daily()] == [date(2025, 3, 14)]


async def test_daily_for_one_org(empty_ledger: SqlLedger) -> None:
    await empty_ledger.record_segment(segment_event())
    await empty_ledger.record_segment(segment_event(sandbox_id="sbx-g", org_id="globex"))
    [acme] = await empty_ledger.daily(org_id="acme")
    assert (acme.sandboxes, acme.running_seconds) == (1, 125.5)
    [both] = await empty_ledger.daily()
    assert (both.sandboxes, both.running_seconds) == (2, 251.0)
    assert await empty_ledger.daily(org_id="nobody") == []


async def test_daily_of_an_empty_ledger(empty_ledger: SqlLedger) -> None:
    assert await empty_ledger.daily() == []
