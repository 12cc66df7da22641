"""CostEvent is the contract's `sessions costs --json` object, and refuses impossible figures."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest
from pydantic import ValidationError

from ledger import CostEvent, CostSummary, DailyCost, SegmentEvent
from tests.fixtures.ledger_events import PARIS, T0, cost_event, segment_event

pytestmark = pytest.mark.fast  # pure models

CONTRACT_KEYS = {
    "session_id", "org_id", "issue_id", "sandbox_id", "template_id", "started_at", "ended_at",
    "running_seconds", "paused_seconds", "wall_seconds", "outcome", "end_confirmed",
}  # fmt: skip


def test_json_is_the_contract_shape() -> None:
    event = cost_event(started_at=T0.astimezone(PARIS))
    data = json.loads(event.model_dump_json())
    assert set(data) == CONTRACT_KEYS
    assert data["started_at"] == "2025-03-14T09:26:53.589793Z"
    assert datetime.fromisoformat(data["ended_at"]) == T0 + timedelta(seconds=3726.5)
    assert data["running_seconds"] == 125.5
    assert data["issue_id"] == "ISSUE-7"
    assert CostEvent.model_validate_json(event.model_dump_json()) == event


def test_an_end_is_the_providers_record_unless_said_otherwise() -> None:
    assert json.loads(cost_event().model_dump_json())["end_confirmed"] is True
    # A cost event from before `end_confirmed` existed (an old history, another client) reads
    # as a confirmed end: every row so far was billed to the provider's terminate.
    old = cost_event().model_dump(mode="json")
    del old["end_confirmed"]
    assert CostEvent.model_validate(old).end_confirmed is True
    lost = cost_event(outcome="lost", end_confirmed=False)
    assert json.loads(lost.model_dump_json())["outcome"] == "lost"
    assert CostEvent.model_validate_json(lost.model_dump_json()) == lost


def test_a_segment_is_one_running_stretch_in_utc() -> None:
    segment = segment_event(started_at=T0.astimezone(PARIS))
    assert segment.started_at.utcoffset() == timedelta(0)
    assert segment.seconds == 125.5
    assert json.loads(segment.model_dump_json())["started_at"] == "2025-03-14T09:26:53.589793Z"
    assert SegmentEvent.model_validate_json(segment.model_dump_json()) == segment
    assert segment.idempotency_key == segment_event(ended_at=T0).idempotency_key
    assert segment.idempotency_key != segment_event(sandbox_id="sbx-2").idempotency_key


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"ended_at": T0 - timedelta(microseconds=1)}, "ended_at is before started_at"),
        ({"started_at": T0.replace(tzinfo=None)}, "timezone"),
        ({"sandbox_id": ""}, "sandbox_id"),
    ],
)
def test_impossible_segments_are_refused(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as err:
        segment_event(**overrides)
    assert problem in str(err.value)


def test_daily_cost_shape() -> None:
    day = DailyCost(day=date(2025, 3, 14), sandboxes=2, running_seconds=60.5)
    assert json.loads(day.model_dump_json()) == {
        "day": "2025-03-14",
        "sandboxes": 2,
        "running_seconds": 60.5,
    }


def test_issue_is_optional() -> None:
    assert json.loads(cost_event(issue_id=None).model_dump_json())["issue_id"] is None


def test_idempotency_key_is_session_and_sandbox() -> None:
    a = cost_event()
    assert a.idempotency_key == "s-1/sbx-1"
    assert cost_event(running_seconds=1.0, outcome="failed").idempotency_key == a.idempotency_key
    assert cost_event(sandbox_id="sbx-2").idempotency_key != a.idempotency_key


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"running_seconds": -0.001}, "running_seconds"),
        ({"paused_seconds": -1}, "paused_seconds"),
        ({"wall_seconds": float("nan")}, "wall_seconds"),
        ({"ended_at": T0 - timedelta(microseconds=1)}, "ended_at is before started_at"),
        ({"outcome": "succeeded"}, "outcome"),
        ({"started_at": T0.replace(tzinfo=None)}, "timezone"),
        ({"session_id": ""}, "session_id"),
    ],
)
def test_impossible_events_are_refused(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as err:
        cost_event(**overrides)
    assert problem in str(err.value)


def test_zero_length_session_is_valid() -> None:
    event = cost_event(ended_at=T0, running_seconds=0, paused_seconds=0, wall_seconds=0)
    assert event.wall_seconds == 0


def test_summary_shape() -> None:
    summary = CostSummary(
        key=None, by="issue", sessions=2, running_seconds=1, paused_seconds=2, wall_seconds=3
    )
    assert json.loads(summary.model_dump_json()) == {
        "key": None,
        "by": "issue",
        "sessions": 2,
        "running_seconds": 1.0,
        "paused_seconds": 2.0,
        "wall_seconds": 3.0,
    }
