"""Cost events for the ledger tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ledger import CostEvent

T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def cost_event(**overrides: Any) -> CostEvent:
    """A plausible event: 2 min 5.5 s running, 1 h paused at a gate, 1 s of provisioning."""
    values: dict[str, Any] = {
        "session_id": "s-1",
        "org_id": "acme",
        "issue_id": "ISSUE-7",
        "sandbox_id": "sbx-1",
        "template_id": "base",
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=3726.5),
        "running_seconds": 125.5,
        "paused_seconds": 3600.0,
        "wall_seconds": 3726.5,
        "outcome": "finished",
    }
    values.update(overrides)
    return CostEvent(**values)


PARIS = timezone(timedelta(hours=1))
