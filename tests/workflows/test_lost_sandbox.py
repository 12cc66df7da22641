"""A sandbox killed behind the workflow's back (E2B's lifetime limit, an incident) is noticed
within the watch's window, the session ends `lost`, and it is billed to the sandbox's real end
(the provider's record), once, with nothing left running.

The kills go through the emulator's own sandbox manager, as E2B's would: the workflow learns
of them only from the provider.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.watch import SandboxWatch
from common.failures import describe_failure
from emulator.testing import EmulatorHandle
from ledger import CostEvent, Ledger
from provider import E2BSandboxProvider, StaticCredentialSource
from tests.fixtures.stack import (
    Stack,
    save_history,
    state_is,
    status_of,
    wait_for,
)
from worker import build_worker
from workflows import SandboxSession

WATCH_INTERVAL = 0.5
DETECTION_LIMIT = 5.0
"""The watch lists every 0.5 s, the session checks at once: seconds, never a keep-alive away."""


@pytest_asyncio.fixture
async def watched(
    temporal_env: WorkflowEnvironment, emulator: EmulatorHandle, ledger: Ledger
) -> AsyncIterator[Stack]:
    """A worker and its sandbox watch, as `sessions worker` runs them."""
    provider = E2BSandboxProvider(
        credentials=StaticCredentialSource(emulator.api_key),
        api_url=emulator.api_url,
        sandbox_url=emulator.sandbox_url,
    )
    watch = SandboxWatch(provider, temporal_env.client, org_ids=["*"], interval=WATCH_INTERVAL)
    queue = f"tq-{uuid.uuid4()}"
    worker = build_worker(
        temporal_env.client, task_queue=queue, provider=provider, ledger=ledger, watch=watch
    )
    stop = asyncio.Event()
    async with worker:
        task = asyncio.create_task(watch.run(stop))
        try:
            yield Stack(
                client=temporal_env.client, task_queue=queue, ledger=ledger, emulator=emulator
            )
        finally:
            stop.set()
            await task


async def _kill_behind(stack: Stack, sandbox_id: str) -> float:
    """Kill the sandbox in the emulator, as E2B would; the loop time of the kill."""
    await stack.emulator.core.manager.kill(sandbox_id, reason="timeout")
    return asyncio.get_running_loop().time()


async def _lost(handle: WorkflowHandle[Any, Any], killed_at: float) -> tuple[float, str]:
    """Wait for the session to fail `SandboxLost`; seconds from the kill, and its message."""
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 30)
    noticed = asyncio.get_running_loop().time() - killed_at
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "SandboxLost", cause
    return noticed, cause.message


async def _row(stack: Stack, handle: WorkflowHandle[Any, Any]) -> CostEvent:
    rows = await stack.ledger.events(session_id=handle.id.removeprefix("session-"))
    assert len(rows) == 1, rows
    return rows[0]


def _billed_like_e2b(stack: Stack, row: CostEvent) -> None:
    """The row's seconds are the emulator's (E2B's bill), to well within a second."""
    record = stack.emulator.record(row.sandbox_id)
    assert record.state == "killed"
    assert abs(row.running_seconds - record.running_seconds) < 1.0, (row, record)
    assert abs(row.paused_seconds - record.paused_seconds) < 1.0, (row, record)
    assert record.killed_at is not None
    assert abs((row.ended_at - record.killed_at).total_seconds()) < 0.01, "ends at the kill"
    assert row.end_confirmed
    assert row.sandbox_id not in stack.emulator.live_sandboxes()


async def test_a_running_sandbox_killed_behind_the_workflow_ends_the_session_lost(
    watched: Stack,
) -> None:
    handle = await watched.start(keep_alive_interval_seconds=600)  # no keep-alive will notice
    status = await wait_for(handle, state_is("running"), what="running")
    await asyncio.sleep(1.5)
    killed_at = await _kill_behind(watched, status.sandbox_id or "")

    noticed, message = await _lost(handle, killed_at)

    print(f"\nlost while running: noticed {noticed:.2f}s after the kill")
    assert noticed < DETECTION_LIMIT
    assert status.sandbox_id in message and "provider's record" in message
    final = await status_of(handle)
    assert final.state == "lost" and final.error == message
    row = await _row(watched, handle)
    assert row.outcome == "lost"
    assert row.running_seconds >= 1.5
    _billed_like_e2b(watched, row)
    await save_history(handle, "lost_while_running")


async def test_a_sandbox_killed_before_any_listing_showed_it_is_noticed_too(
    watched: Stack,
) -> None:
    """The worker that made it tells its watch: no need to have seen it listed."""
    handle = await watched.start(keep_alive_interval_seconds=600)
    status = await wait_for(handle, state_is("running"), what="running")
    killed_at = await _kill_behind(watched, status.sandbox_id or "")

    noticed, _ = await _lost(handle, killed_at)

    assert noticed < DETECTION_LIMIT
    _billed_like_e2b(watched, await _row(watched, handle))


async def test_a_paused_sandbox_killed_at_a_gate_ends_the_session_lost(watched: Stack) -> None:
    handle = await watched.start(keep_alive_interval_seconds=600)
    await wait_for(handle, state_is("running"), what="running")
    await asyncio.sleep(1.0)
    await handle.signal("request_approval", {"gate": "deploy", "timeout_seconds": 3600})
    status = await wait_for(handle, state_is("paused"), what="paused")
    await asyncio.sleep(1.0)
    killed_at = await _kill_behind(watched, status.sandbox_id or "")

    noticed, _ = await _lost(handle, killed_at)

    print(f"\nlost while paused: noticed {noticed:.2f}s after the kill")
    assert noticed < DETECTION_LIMIT
    row = await _row(watched, handle)
    assert row.outcome == "lost"
    assert row.paused_seconds >= 1.0  # the wait at the gate, billed $0, up to the kill
    _billed_like_e2b(watched, row)
    segments = await watched.ledger.segments(session_id=row.session_id)
    assert len(segments) == 1 and segments[0].seconds == pytest.approx(
        row.running_seconds, abs=0.002
    )
    await save_history(handle, "lost_while_paused")


async def test_a_sandbox_killed_during_an_exec_fails_the_exec_and_ends_the_session_lost(
    watched: Stack,
) -> None:
    handle = await watched.start(keep_alive_interval_seconds=600)
    status = await wait_for(handle, state_is("running"), what="running")
    running = asyncio.create_task(
        handle.execute_update("exec", {"command": "sleep 30", "timeout_seconds": 60})
    )
    await asyncio.sleep(1.5)
    killed_at = await _kill_behind(watched, status.sandbox_id or "")

    noticed, _ = await _lost(handle, killed_at)

    with pytest.raises(WorkflowUpdateFailedError) as exec_failure:  # its caller hears why
        await asyncio.wait_for(running, 30)
    cause = exec_failure.value.cause
    assert cause is not None and describe_failure(cause).startswith("SandboxGone: exec in ")
    print(f"\nlost during an exec: noticed {noticed:.2f}s after the kill")
    assert noticed < DETECTION_LIMIT
    row = await _row(watched, handle)
    assert row.outcome == "lost"
    _billed_like_e2b(watched, row)


async def test_without_the_watch_a_finish_bills_a_dead_sandbox_to_its_kill_not_the_finish(
    stack: Stack,
) -> None:
    """The reproduction from the issue: killed ~1 s in, finished seconds later; E2B billed the
    second, so the ledger must too."""
    handle = await stack.start(keep_alive_interval_seconds=600)
    status = await wait_for(handle, state_is("running"), what="running")
    await asyncio.sleep(1.0)
    await _kill_behind(stack, status.sandbox_id or "")
    await asyncio.sleep(3.0)  # nobody notices: no watch here
    await handle.signal(SandboxSession.finish)
    await asyncio.wait_for(handle.result(), 30)

    row = await _row(stack, handle)
    record = stack.emulator.record(row.sandbox_id)
    assert row.running_seconds < 2.0, "billed to the finish, not to the sandbox's end"
    assert abs(row.running_seconds - record.running_seconds) < 1.0
    assert row.end_confirmed


async def test_a_lost_sandbox_the_provider_has_no_record_of_is_billed_to_its_last_sign_of_life(
    watched: Stack,
) -> None:
    """Past the provider's retention (or an API without lifecycle events), the end is the last
    moment the session knew the sandbox alive, and the row says it is not confirmed."""
    handle = await watched.start(keep_alive_interval_seconds=600)
    status = await wait_for(handle, state_is("running"), what="running")
    sandbox_id = status.sandbox_id or ""
    await handle.execute_update("exec", {"command": "true"})  # a sign of life
    await asyncio.sleep(1.0)
    killed_at = await _kill_behind(watched, sandbox_id)
    # Forget the kill: the emulator answers as E2B does once its events have expired.
    record = watched.emulator.core.manager.records.pop(sandbox_id)

    noticed, message = await _lost(handle, killed_at)

    row = await _row(watched, handle)
    assert row.outcome == "lost" and not row.end_confirmed
    assert "known alive" in message
    assert row.running_seconds <= record.computed().running_seconds + 0.5
    assert noticed < DETECTION_LIMIT


async def test_a_flood_of_forged_check_hints_costs_a_few_checks_and_changes_nothing(
    stack: Stack,
) -> None:
    handle = await stack.start(keep_alive_interval_seconds=600)
    await wait_for(handle, state_is("running"), what="running")
    began = asyncio.get_running_loop().time()
    for _ in range(100):
        await handle.signal("check_sandbox", {})
    for bad in ([], "x", {"sandbox_id": 5}, {"nope": 1}):
        await handle.signal("check_sandbox", bad)
    await asyncio.sleep(6.0)
    status = await status_of(handle)
    assert status.state == "running" and status.error is None
    checks = 0
    async for event in handle.fetch_history_events():
        attrs = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes"):
            checks += attrs.activity_type.name == "check_sandbox"
    elapsed = asyncio.get_running_loop().time() - began
    assert 1 <= checks <= elapsed / 5 + 2, f"{checks} checks in {elapsed:.1f}s"
    await handle.signal(SandboxSession.finish)
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.outcome == "finished"


async def test_a_hint_the_provider_cannot_answer_never_ends_the_session(
    stack: Stack, emulator_faults: EmulatorHandle
) -> None:
    """No answer is no verdict: a check that fails (E2B refusing, down) leaves the session
    running; only a provider that says the sandbox is gone ends it."""
    handle = await stack.start(keep_alive_interval_seconds=600)
    await wait_for(handle, state_is("running"), what="running")
    # The check's get-info is refused (401: no retry); `emulator_faults` clears what is left.
    emulator_faults.fail_next("get", count=1, status=401)

    await handle.signal("check_sandbox", {})
    await asyncio.sleep(2.0)

    status = await status_of(handle)
    assert status.state == "running" and status.error is None
    checks = [
        e
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_failed_event_attributes")
    ]
    assert checks, "the check ran and failed"
    await handle.signal(SandboxSession.finish)
    assert (await asyncio.wait_for(handle.result(), 30)).outcome == "finished"
