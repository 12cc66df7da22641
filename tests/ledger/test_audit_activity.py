"""`record_cost` with the session's gate audit rows, as Temporal runs it: each row exactly once
however often the activity runs, the ones an earlier write lost added, bad rows never retried."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.ledger import LedgerActivities, RecordCostInput, RecordCostResult
from ledger import GateEvent, SqlLedger
from tests.fixtures.gate_events import gate_event, gate_life
from tests.fixtures.ledger_events import cost_event


async def test_record_cost_writes_the_gate_events_once_when_run_twice(
    empty_ledger: SqlLedger,
) -> None:
    activities = LedgerActivities(empty_ledger)
    sent = RecordCostInput(event=cost_event(), gate_events=gate_life())
    first = await ActivityEnvironment().run(activities.record_cost, sent)
    assert first == RecordCostResult(inserted=True, event=cost_event(), gate_events_inserted=3)
    again = await ActivityEnvironment().run(activities.record_cost, sent)
    assert again == RecordCostResult(inserted=False, event=cost_event(), gate_events_inserted=0)
    assert await empty_ledger.gate_events() == gate_life()
    assert await empty_ledger.events() == [cost_event()]


async def test_two_attempts_at_once_write_each_row_once(empty_ledger: SqlLedger) -> None:
    activities = LedgerActivities(empty_ledger)
    sent = RecordCostInput(event=cost_event(), gate_events=gate_life())
    results = await asyncio.gather(
        *(ActivityEnvironment().run(activities.record_cost, sent) for _ in range(2))
    )
    assert sum(r.gate_events_inserted for r in results) == 3
    assert await empty_ledger.gate_events() == gate_life()


async def test_the_final_step_adds_what_an_earlier_write_lost(empty_ledger: SqlLedger) -> None:
    requested, notified, approved = gate_life()
    # The requested and decided rows reached the ledger when they happened; the notification's
    # write was lost. The session's last step carries them all.
    assert await empty_ledger.record_gate_events([requested, approved]) == 2
    result = await ActivityEnvironment().run(
        LedgerActivities(empty_ledger).record_cost,
        RecordCostInput(event=cost_event(), gate_events=gate_life()),
    )
    assert result.inserted and result.gate_events_inserted == 1
    assert await empty_ledger.gate_events() == [requested, notified, approved]


async def test_an_invalid_gate_event_refuses_the_record_for_good(
    empty_ledger: SqlLedger,
) -> None:
    bad = GateEvent.model_construct(**{**gate_event().model_dump(), "waited_seconds": -1.0})
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            LedgerActivities(empty_ledger).record_cost,
            RecordCostInput.model_construct(event=cost_event(), segments=[], gate_events=[bad]),
        )
    assert (err.value.type, err.value.non_retryable) == ("InvalidCostEvent", True)
    assert "invalid gate event: waited_seconds" in str(err.value)
    assert await empty_ledger.events() == [] and await empty_ledger.gate_events() == []


def test_a_record_cost_payload_without_gate_events_still_decodes() -> None:
    """A history written before the audit trail replays: its input decodes, with no rows."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    converter = pydantic_data_converter.payload_converter
    [payload] = converter.to_payloads([{"event": cost_event().model_dump(mode="json")}])
    [decoded] = converter.from_payloads([payload], [RecordCostInput])
    assert decoded == RecordCostInput(event=cost_event())
    assert decoded.gate_events == []
    [result] = converter.to_payloads([{"inserted": True, "event": cost_event()}])
    [old] = converter.from_payloads([result], [RecordCostResult])
    assert old.gate_events_inserted == 0
