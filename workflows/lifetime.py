"""E2B's maximum sandbox lifetime, as the session works around it: when to roll a sandbox over
(pause and resume: E2B starts a new run on resume), and the metrics that count it.

Pure and deterministic (times come from activity results), so the workflow can use it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from telemetry.instruments import FOUND_PAUSED, ROLLOVERS

__all__ = ["count_found_paused", "count_rollover", "rollover_due"]


def rollover_due(
    run_ends_at: datetime | None, margin_seconds: float | None, run_started: datetime | None
) -> datetime | None:
    """When to roll over a run that E2B ends at `run_ends_at`: `margin_seconds` before, but
    never in the run's first half (a margin longer than the lifetime would otherwise pause and
    resume the sandbox at every keep-alive); None when the end is not known or rollover is off."""
    if run_ends_at is None or margin_seconds is None:
        return None
    due = run_ends_at - timedelta(seconds=margin_seconds)
    if run_started is not None and run_started < run_ends_at:
        due = max(due, run_started + (run_ends_at - run_started) / 2)
    return due


def count_rollover() -> None:
    """One rollover, on the SDK's replay-safe meter (nothing counted while replaying)."""
    workflow.metric_meter().create_counter(
        ROLLOVERS, "Sandboxes paused and resumed to outlive E2B's maximum lifetime", "{rollover}"
    ).add(1)


def count_found_paused() -> None:
    """One sandbox found paused by E2B (its timeout ran out with no keep-alive)."""
    workflow.metric_meter().create_counter(
        FOUND_PAUSED,
        "Sandboxes E2B paused on its own when their keep-alives stopped, taken back by the session",
        "{sandbox}",
    ).add(1)
