"""CostEvent is the contract's `sessions costs --json` object, and refuses impossible figures."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from ledger import CostEvent, CostSummary
from tests.fixtures.ledger_events import PARIS, T0, cost_event

pytestmark = pytest.mark.fast  # pure models

CONTRACT_KEYS = {
    "session_id", "org_id", "issue_id", "sandbox_id", "template_id", "started_at", "ended_at",
    "running_seconds", "paused_seconds", "wall_seconds", "outcome",
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
