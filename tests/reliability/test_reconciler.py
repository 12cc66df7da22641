"""The stray-sandbox reconciler: strays made on purpose are killed and billed once; a live
session's sandbox, and a sandbox too young to judge, are left alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from e2b import AsyncSandbox
from temporalio.client import Client, ScheduleHandle

from activities.reconcile import ReconcileInput, ReconcileResult
from common.ids import MANAGED_BY, MANAGED_BY_KEY
from common.settings import ReconcilerSettings
from emulator.testing import EmulatorHandle
from ledger import CostEvent
from tests.fixtures.stack import Stack, save_history, state_is, wait_for
from tests.fixtures.temporal import answer, result_of
from worker import ensure_reconciler_schedule
from workflows import (
    RECONCILER_SCHEDULE_ID,
    GateDecision,
    GateRequest,
    SandboxSession,
    StraySandboxReconciler,
)


async def make_stray(emu: EmulatorHandle, session_id: str, org: str = "acme") -> str:
    """A sandbox tagged as this product's, as a lost create answer would leave it."""
    sandbox = await AsyncSandbox.create(
        template="base",
        timeout=600,
        metadata={MANAGED_BY_KEY: MANAGED_BY, "session_id": session_id, "org_id": org},
        api_key=emu.api_key,
        api_url=emu.api_url,
        sandbox_url=emu.sandbox_url,
    )
    return sandbox.sandbox_id


async def reconcile(
    stack: Stack, grace_seconds: float, *, history: str | None = None
) -> ReconcileResult:
    handle = await stack.client.start_workflow(
        StraySandboxReconciler.run,
        ReconcileInput(org_ids=["acme"], grace_seconds=grace_seconds),
        id=f"reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
    )
    result = await result_of(handle)
    if history:
        await save_history(handle, history)
    return result


async def test_strays_are_killed_and_billed_once_live_sessions_left_alone(rstack: Stack) -> None:
    emu = rstack.emulator
    ledger = rstack.ledger
    # A live session (paused at a gate: its sandbox is listed, paused, and must survive).
    live = await rstack.start()
    status = await wait_for(live, state_is("running"), what="live session running")
    await answer(live.execute_update(SandboxSession.request_gate, GateRequest(gate="deploy")))
    await wait_for(live, state_is("paused"), what="live session paused")
    live_sandbox = status.sandbox_id
    # A session that finished normally, plus a second sandbox of its own nobody knows of.
    done = await rstack.start()
    await wait_for(done, state_is("running"), what="second session running")
    await done.signal(SandboxSession.finish)
    await result_of(done)
    done_id = done.id.removeprefix("session-")
    leaked = await make_stray(emu, done_id)
    # A sandbox of a session that never existed.
    ghost_id = f"ghost-{uuid.uuid4().hex[:8]}"
    ghost = await make_stray(emu, ghost_id)
    # A stray whose cost is already in the ledger (its session billed it; the kill failed).
    billed_id = f"billed-{uuid.uuid4().hex[:8]}"
    billed = await make_stray(emu, billed_id)
    now = datetime.now(UTC)
    await ledger.record(
        CostEvent(
            session_id=billed_id,
            org_id="acme",
            sandbox_id=billed,
            template_id="base",
            started_at=now - timedelta(seconds=5),
            ended_at=now,
            running_seconds=5,
            paused_seconds=0,
            wall_seconds=5,
            outcome="failed",
        )
    )

    young = await reconcile(rstack, grace_seconds=3600)
    assert (young.strays, young.killed) == (0, 0), "a sandbox younger than the grace is kept"
    assert {leaked, ghost, billed} <= set(emu.live_sandboxes())

    first = await reconcile(rstack, grace_seconds=0, history="reconciler_pass")
    again = await reconcile(rstack, grace_seconds=0)

    live_now = set(emu.live_sandboxes())
    rows = await ledger.events()
    per_key = {(e.session_id, e.sandbox_id): e for e in rows}
    print(
        f"\nreconciler: listed={first.listed} strays={first.strays} killed={first.killed} "
        f"billed={first.billed}; second pass strays={again.strays}; "
        f"live sandboxes left={len(live_now)}; ledger rows={len(rows)}"
    )
    assert (first.strays, first.killed, first.billed) == (3, 3, 2)
    assert (again.strays, again.killed, again.billed) == (0, 0, 0)
    assert live_now == {live_sandbox}, "only the live session's sandbox survives"
    assert emu.record(live_sandbox).state == "paused"
    assert len(rows) == len(per_key), "one row per (session, sandbox)"
    for session_id, sandbox_id in ((done_id, leaked), (ghost_id, ghost)):
        event = per_key[(session_id, sandbox_id)]
        assert event.outcome == "cancelled"
        assert event.running_seconds > 0
    assert per_key[(billed_id, billed)].outcome == "failed", "the session's own row stands"
    assert sum(1 for e in rows if e.session_id == done_id) == 2  # its sandbox and the leak

    # The live session still works, and ends billed once.
    await answer(
        live.execute_update(SandboxSession.approve_gate, GateDecision(gate="deploy", by="ana"))
    )
    await wait_for(live, state_is("running"), what="live session resumed")
    await live.signal(SandboxSession.finish)
    await result_of(live)
    assert emu.live_sandboxes() == []
    assert len(await ledger.events(session_id=live.id.removeprefix("session-"))) == 1


async def test_schedule_is_created_once_updated_in_place_and_runs_a_pass(rstack: Stack) -> None:
    settings = ReconcilerSettings.load(reconciler_interval=3600, reconciler_orgs="acme, beta")
    assert settings.reconciler and settings.reconciler_orgs == ["acme", "beta"]
    client = rstack.client
    handle = client.get_schedule_handle(RECONCILER_SCHEDULE_ID)
    try:
        await ensure_reconciler_schedule(client, rstack.task_queue, settings)
        faster = settings.model_copy(update={"reconciler_interval": 1800.0})
        await ensure_reconciler_schedule(client, rstack.task_queue, faster)  # updated, no error
        described = await handle.describe()
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=30)]
        action = described.schedule.action
        assert action.workflow == "StraySandboxReconciler"  # type: ignore[union-attr]
        assert action.task_queue == rstack.task_queue  # type: ignore[union-attr]

        ghost = await make_stray(rstack.emulator, f"ghost-{uuid.uuid4().hex[:8]}")
        now = faster.model_copy(update={"reconciler_orgs": ["acme"], "reconciler_grace": 0.0})
        await ensure_reconciler_schedule(client, rstack.task_queue, now)  # judge the stray now
        before = len((await handle.describe()).info.recent_actions)
        await handle.trigger()
        result = await _newest_run_result(client, handle, after=before)
        print(f"\nscheduled reconciler pass: {result}")
        assert result.killed >= 1 and ghost not in rstack.emulator.live_sandboxes()
    finally:
        await handle.delete()


async def _newest_run_result(
    client: Client, handle: ScheduleHandle, *, after: int
) -> ReconcileResult:
    """The result of the run the trigger started (not of an older, interval-started one)."""
    for _ in range(300):
        actions = (await handle.describe()).info.recent_actions
        if len(actions) > after:
            started = max(actions, key=lambda a: a.started_at).action
            return await result_of(
                client.get_workflow_handle(started.workflow_id, result_type=ReconcileResult)
            )
        await asyncio.sleep(0.1)
    raise AssertionError("the schedule never started a pass")
