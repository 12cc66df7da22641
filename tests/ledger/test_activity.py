"""`record_cost` as Temporal runs it: exactly-once under retries, bad input never retried."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.ledger import (
    RECORD_COST,
    RECORD_SEGMENT,
    LedgerActivities,
    RecordCostInput,
    RecordCostResult,
    RecordSegmentInput,
    RecordSegmentResult,
)
from ledger import CostEvent, LedgerUnavailable, SegmentEvent, SqlLedger
from ledger.config import parse_ledger_url
from tests.fixtures.ledger_events import T0, cost_event, segment_event


async def test_record_cost_inserts_then_reports_the_stored_row(
    empty_ledger: SqlLedger, caplog: pytest.LogCaptureFixture
) -> None:
    activities = LedgerActivities(empty_ledger)
    env = ActivityEnvironment()
    first = cost_event()
    with caplog.at_level(logging.INFO):
        result = await env.run(activities.record_cost, RecordCostInput(event=first))
    assert result == RecordCostResult(inserted=True, event=first)
    [line] = [r.getMessage() for r in caplog.records if "cost event" in r.getMessage()]
    assert "session=s-1" in line and "sandbox=sbx-1" in line
    assert "running=125.500s" in line and "paused=3600.000s" in line and "inserted=True" in line

    # The retry after a lost response: no new row, the first figures come back.
    retried = await env.run(
        activities.record_cost, RecordCostInput(event=cost_event(running_seconds=1.0))
    )
    assert retried == RecordCostResult(inserted=False, event=first)
    assert await empty_ledger.events() == [first]


async def test_two_attempts_at_once_insert_once(empty_ledger: SqlLedger) -> None:
    activities = LedgerActivities(empty_ledger)
    results = await asyncio.gather(
        *(
            ActivityEnvironment().run(activities.record_cost, RecordCostInput(event=cost_event()))
            for _ in range(2)
        )
    )
    assert sorted(result.inserted for result in results) == [False, True]
    assert len(await empty_ledger.events()) == 1


async def test_invalid_event_is_not_retryable(empty_ledger: SqlLedger) -> None:
    # What another client could send: a model nobody validated.
    bad = CostEvent.model_construct(
        **{**cost_event().model_dump(), "running_seconds": -5.0, "ended_at": T0 - timedelta(1)}
    )
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            LedgerActivities(empty_ledger).record_cost, RecordCostInput.model_construct(event=bad)
        )
    assert err.value.type == "InvalidCostEvent"
    assert err.value.non_retryable
    assert "running_seconds" in str(err.value)
    assert await empty_ledger.events() == []
    assert "InvalidCostEvent" in (RECORD_COST["retry_policy"].non_retryable_error_types or [])  # type: ignore[union-attr]


async def test_database_down_is_retryable() -> None:
    # A real refused connection (nothing listens on port 1), not a mock.
    down = SqlLedger(parse_ledger_url("postgresql://bob:hunter2@127.0.0.1:1/empty_ledger"))
    try:
        with pytest.raises(LedgerUnavailable) as err:
            await ActivityEnvironment().run(
                LedgerActivities(down).record_cost, RecordCostInput(event=cost_event())
            )
    finally:
        await down.close()
    assert not isinstance(err.value, ApplicationError)  # Temporal retries any other error
    assert "hunter2" not in str(err.value)


def test_retry_policy_never_gives_up_but_backs_off() -> None:
    retry = RECORD_COST["retry_policy"]
    assert retry is not None and retry.maximum_attempts == 0
    assert retry.maximum_interval is not None
    assert timedelta(seconds=30) <= retry.maximum_interval <= timedelta(minutes=10)
    start_to_close = RECORD_COST["start_to_close_timeout"]
    assert start_to_close is not None and start_to_close >= timedelta(seconds=10)


def test_payloads_round_trip_through_the_workers_converter() -> None:
    """What other Temporal clients send (plain JSON) decodes to the same event."""
    from temporalio.api.common.v1 import Payload
    from temporalio.contrib.pydantic import pydantic_data_converter

    converter = pydantic_data_converter.payload_converter
    sent = RecordCostInput(event=cost_event(issue_id=None))
    [payload] = converter.to_payloads([sent])
    assert b'"started_at":"2025-03-14T09:26:53.589793Z"' in payload.data
    [decoded] = converter.from_payloads([payload], [RecordCostInput])
    assert decoded == sent

    foreign = Payload(metadata=payload.metadata, data=payload.data.replace(b"Z", b"+00:00"))
    [decoded] = converter.from_payloads([foreign], [RecordCostInput])
    assert decoded == sent


# ---------------------------------------------------------------- segments


async def test_record_segment_inserts_once(
    empty_ledger: SqlLedger, caplog: pytest.LogCaptureFixture
) -> None:
    activities = LedgerActivities(empty_ledger)
    env = ActivityEnvironment()
    with caplog.at_level(logging.INFO):
        first = await env.run(
            activities.record_segment, RecordSegmentInput(segment=segment_event())
        )
    assert first == RecordSegmentResult(inserted=True)
    [line] = [r.getMessage() for r in caplog.records if "running segment" in r.getMessage()]
    assert "sandbox=sbx-1" in line and "125.500s" in line and "inserted=True" in line
    again = await env.run(activities.record_segment, RecordSegmentInput(segment=segment_event()))
    assert again == RecordSegmentResult(inserted=False)
    assert await empty_ledger.segments() == [segment_event()]


async def test_record_cost_stores_its_segments(empty_ledger: SqlLedger) -> None:
    segments = [
        segment_event(),
        segment_event(started_at=T0 + timedelta(hours=1), ended_at=T0 + timedelta(hours=1)),
    ]
    result = await ActivityEnvironment().run(
        LedgerActivities(empty_ledger).record_cost,
        RecordCostInput(event=cost_event(), segments=segments),
    )
    assert result.inserted
    assert await empty_ledger.segments() == segments


async def test_an_invalid_segment_is_not_retryable(empty_ledger: SqlLedger) -> None:
    bad = SegmentEvent.model_construct(
        **{**segment_event().model_dump(), "ended_at": T0 - timedelta(seconds=1)}
    )
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            LedgerActivities(empty_ledger).record_segment,
            RecordSegmentInput.model_construct(segment=bad),
        )
    assert (err.value.type, err.value.non_retryable) == ("InvalidSegment", True)
    assert "ended_at is before started_at" in str(err.value)
    # Within a cost event's record, the whole record is refused: no bill without its parts.
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            LedgerActivities(empty_ledger).record_cost,
            RecordCostInput.model_construct(event=cost_event(), segments=[bad]),
        )
    assert err.value.type == "InvalidCostEvent" and err.value.non_retryable
    assert await empty_ledger.segments() == [] and await empty_ledger.events() == []
    assert "InvalidSegment" in (RECORD_SEGMENT["retry_policy"].non_retryable_error_types or [])  # type: ignore[union-attr]


def test_segment_retry_policy_never_gives_up_but_backs_off() -> None:
    retry = RECORD_SEGMENT["retry_policy"]
    assert retry is not None and retry.maximum_attempts == 0
    assert retry.maximum_interval is not None
    assert timedelta(seconds=30) <= retry.maximum_interval <= timedelta(minutes=10)


def test_old_record_cost_payloads_still_decode() -> None:
    """A history written before segments (and `end_confirmed`) replays: its input decodes."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    converter = pydantic_data_converter.payload_converter
    old = cost_event().model_dump(mode="json")
    del old["end_confirmed"]
    [payload] = converter.to_payloads([{"event": old}])
    [decoded] = converter.from_payloads([payload], [RecordCostInput])
    assert decoded == RecordCostInput(event=cost_event(), segments=[])
