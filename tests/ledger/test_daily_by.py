"""Costs per UTC day and org or issue (`Ledger.daily(by=..., since=...)`), on SQLite and on real
PostgreSQL: what the web inbox charts draw over time."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import pytest_asyncio

from ledger import DailyBy, DailyCost, LedgerError, SegmentEvent, SqlLedger, daily_costs
from tests.fixtures.ledger_events import segment_event

MIDNIGHT = datetime(2025, 3, 15, tzinfo=UTC)
DAY_14, DAY_15, DAY_16 = date(2025, 3, 14), date(2025, 3, 15), date(2025, 3, 16)


def _at(offset: timedelta, seconds: float, **ids: str | None) -> SegmentEvent:
    start = MIDNIGHT + offset
    return segment_event(started_at=start, ended_at=start + timedelta(seconds=seconds), **ids)


SEGMENTS = [
    # acme, ISS-1: 60 s before midnight and 90 s after it.
    _at(timedelta(seconds=-60), 150, org_id="acme", issue_id="ISS-1", sandbox_id="sbx-a"),
    _at(timedelta(hours=3), 10, org_id="acme", issue_id="ISS-2", sandbox_id="sbx-b"),
    _at(timedelta(hours=5), 20, org_id="acme", issue_id=None, sandbox_id="sbx-c"),
    # globex shares the issue id ISS-1 (issues are grouped by id, whatever the org).
    _at(timedelta(hours=-14), 30, org_id="globex", issue_id="ISS-1", sandbox_id="sbx-g"),
    _at(timedelta(days=1, hours=1), 5, org_id="globex", issue_id="ISS-9", sandbox_id="sbx-h"),
]


def _rows(rows: list[DailyCost]) -> list[tuple[date, str | None, int, float]]:
    return [(r.day, r.key, r.sandboxes, r.running_seconds) for r in rows]


@pytest_asyncio.fixture
async def filled(empty_ledger: SqlLedger) -> SqlLedger:
    for segment in SEGMENTS:
        assert await empty_ledger.record_segment(segment)
    return empty_ledger


async def test_daily_by_org(filled: SqlLedger) -> None:
    assert _rows(await filled.daily(by="org")) == [
        (DAY_14, "acme", 1, 60.0),
        (DAY_14, "globex", 1, 30.0),
        (DAY_15, "acme", 3, 120.0),
        (DAY_16, "globex", 1, 5.0),
    ]


async def test_daily_by_issue_puts_segments_without_one_last(filled: SqlLedger) -> None:
    assert _rows(await filled.daily(by="issue")) == [
        (DAY_14, "ISS-1", 2, 90.0),
        (DAY_15, "ISS-1", 1, 90.0),
        (DAY_15, "ISS-2", 1, 10.0),
        (DAY_15, None, 1, 20.0),
        (DAY_16, "ISS-9", 1, 5.0),
    ]


async def test_daily_by_issue_of_one_org(filled: SqlLedger) -> None:
    assert _rows(await filled.daily(org_id="acme", by="issue")) == [
        (DAY_14, "ISS-1", 1, 60.0),
        (DAY_15, "ISS-1", 1, 90.0),
        (DAY_15, "ISS-2", 1, 10.0),
        (DAY_15, None, 1, 20.0),
    ]


async def test_keyed_rows_add_up_to_the_plain_days(filled: SqlLedger) -> None:
    plain = {row.day: row.running_seconds for row in await filled.daily()}
    splits: tuple[DailyBy, ...] = ("org", "issue")
    for by in splits:
        summed: dict[date, float] = {}
        for row in await filled.daily(by=by):
            summed[row.day] = summed.get(row.day, 0.0) + row.running_seconds
        assert summed == plain


async def test_since_keeps_the_days_from_it_on(filled: SqlLedger) -> None:
    # The segment across midnight counts only its 90 s after it.
    assert _rows(await filled.daily(by="org", since=DAY_15)) == [
        (DAY_15, "acme", 3, 120.0),
        (DAY_16, "globex", 1, 5.0),
    ]
    assert _rows(await filled.daily(since=DAY_16)) == [(DAY_16, None, 1, 5.0)]
    assert await filled.daily(since=DAY_16 + timedelta(days=1)) == []
    assert await filled.daily(since=DAY_14 - timedelta(days=30)) == await filled.daily()


async def test_since_leaves_out_a_segment_that_ends_at_its_midnight(
    empty_ledger: SqlLedger,
) -> None:
    await empty_ledger.record_segment(_at(timedelta(hours=-1), 3600))
    assert _rows(await empty_ledger.daily(since=DAY_15)) == []
    assert _rows(await empty_ledger.daily(since=DAY_14)) == [(DAY_14, None, 1, 3600.0)]


async def test_plain_days_keep_their_json_and_keyed_ones_show_the_key(filled: SqlLedger) -> None:
    plain = await filled.daily()
    assert all("key" not in json.loads(row.model_dump_json()) for row in plain)
    no_issue = [row for row in await filled.daily(by="issue") if row.key is None]
    assert json.loads(no_issue[0].model_dump_json()) == {
        "day": "2025-03-15",
        "key": None,
        "sandboxes": 1,
        "running_seconds": 20.0,
    }


async def test_bad_by_or_a_time_for_since_is_refused(empty_ledger: SqlLedger) -> None:
    with pytest.raises(LedgerError, match="org or issue"):
        await empty_ledger.daily(by="session")  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="give a date"):
        await empty_ledger.daily(since=MIDNIGHT)


@pytest.mark.fast
def test_daily_costs_sorts_keys_within_each_day() -> None:
    rows = daily_costs(
        [
            _at(timedelta(hours=1), 1, issue_id=None, sandbox_id="n"),
            _at(timedelta(hours=2), 2, issue_id="b", sandbox_id="b"),
            _at(timedelta(hours=3), 3, issue_id="a", sandbox_id="a"),
            _at(timedelta(hours=-1), 4, issue_id=None, sandbox_id="m"),
        ],
        by="issue",
    )
    assert _rows(rows) == [
        (DAY_14, None, 1, 4.0),
        (DAY_15, "a", 1, 3.0),
        (DAY_15, "b", 1, 2.0),
        (DAY_15, None, 1, 1.0),
    ]


@pytest.mark.fast
def test_daily_costs_refuses_an_unknown_split() -> None:
    with pytest.raises(ValueError, match="org or issue"):
        daily_costs([], by="template")  # type: ignore[arg-type]
