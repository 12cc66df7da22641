"""Billed against observed: the ledger's running seconds beside the emulator's own record."""

from __future__ import annotations

from typing import Any

from bench.stack import Stack
from bench.stats import summary_ms


async def billing_errors(stack: Stack, session_ids: list[str]) -> dict[str, Any]:
    """Per session: ledger running seconds minus the emulator's observed running seconds; and
    the idle-cost ratio against keeping the sandbox running for the whole wall time."""
    wanted = set(session_ids)
    events = [e for e in await stack.ledger.events(org_id="bench") if e.session_id in wanted]
    errors: list[float] = []
    billed = observed = observed_paused = naive = ledger_paused = 0.0
    for event in events:
        record = stack.emulator.record(event.sandbox_id).computed()
        error = event.running_seconds - record.running_seconds
        errors.append(error)
        billed += event.running_seconds
        ledger_paused += event.paused_seconds
        observed += record.running_seconds
        observed_paused += record.paused_seconds
        naive += event.wall_seconds
    abs_errors = summary_ms(abs(x) for x in errors)
    return {
        "sessions": len(events),
        "missing_cost_events": len(wanted) - len(events),
        "billed_running_seconds": round(billed, 3),
        "observed_running_seconds": round(observed, 3),
        "observed_paused_seconds": round(observed_paused, 3),
        "ledger_paused_seconds": round(ledger_paused, 3),
        "naive_running_seconds": round(naive, 3),
        "billed_to_naive_ratio": round(billed / naive, 4) if naive else None,
        "error_per_session_ms": summary_ms(errors),
        "abs_error_per_session_ms": abs_errors,
        "max_abs_error_seconds": round(max((abs(x) for x in errors), default=0.0), 4),
        # Billed beyond what ran: at most the skew at the pause and resume boundaries.
        "parked_seconds_billed_worst_session": round(max([0.0, *errors]), 4),
        "parked_share_billed": round(max(0.0, billed - observed) / observed_paused, 5)
        if observed_paused
        else None,
    }
