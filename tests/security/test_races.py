"""Races and hostile clients against the money and the sandboxes: every sandbox is billed exactly
once whatever races its ending, and no session reaches another session's sandbox.

Real parts: the dev server, the e2b SDK on the emulator, a SQLite ledger. Each race is run many
times with seeded random delays, so a window that is hit one time in three is hit here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError

from provider import E2BSandboxProvider, SandboxNotOwned, StaticCredentialSource
from provider.models import ExecInput, ProvisionInput, ResumeInput, SandboxRef, TerminateInput
from tests.fixtures.security import failed_workflow_tasks
from tests.fixtures.stack import Stack, save_history, state_is, status_of, wait_for
from tests.fixtures.temporal import answer, within
from tests.reliability.test_reconciler import reconcile
from workflows import (
    GateDecision,
    GateRequest,
    SandboxSession,
    SessionInput,
    SessionResult,
    workflow_id_for,
)

ROUNDS = 12


async def _ending(handle: WorkflowHandle[Any, Any]) -> str:
    """How the workflow ended: `finished`, `cancelled` or `failed`."""
    try:
        result = await within(handle.result(), 60, f"the end of {handle.id}")
    except WorkflowFailureError as err:
        return "cancelled" if isinstance(err.cause, CancelledError) else "failed"
    return str(result.outcome)


async def _cancel_requested(handle: WorkflowHandle[Any, Any]) -> bool:
    history = await handle.fetch_history()
    return any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
        for e in history.events
    )


async def _billed_once(stack: Stack, handle: WorkflowHandle[Any, Any], sandbox_id: str) -> None:
    """The sandbox is dead, the ledger has exactly one row for it, and no task failed."""
    session_id = handle.id.removeprefix("session-")
    rows = await stack.ledger.events(session_id=session_id)
    assert [r.sandbox_id for r in rows] == [sandbox_id], rows
    record = stack.emulator.record(sandbox_id)
    assert record.state == "killed", record
    # What the session billed is what the sandbox ran, within the time a call takes.
    assert abs(rows[0].running_seconds - record.computed().running_seconds) < 1.0, (rows, record)
    assert await failed_workflow_tasks(handle) == []


async def test_cancel_racing_finish_bills_exactly_once(stack: Stack) -> None:
    """`finish`, then a cancel while the sandbox is being terminated and the cost recorded:
    the ending completes (it is shielded) and the one cost row is written."""
    rng = random.Random(19)

    async def one(delay: float) -> str:
        handle = await stack.start()
        status = await wait_for(handle, state_is("running"))
        await handle.signal(SandboxSession.finish)
        await asyncio.sleep(delay)
        await handle.cancel()
        ending = await _ending(handle)
        assert status.sandbox_id
        await _billed_once(stack, handle, status.sandbox_id)
        if ending == "finished" and await _cancel_requested(handle):
            await save_history(handle, "cancel_during_finish")  # the cancel landed while ending
        return ending

    endings = await asyncio.gather(*(one(rng.uniform(0, 0.25)) for _ in range(ROUNDS)))
    # Both sides of the race were hit: some cancels landed before the ending began.
    assert set(endings) <= {"finished", "cancelled"}, endings


async def test_cancel_racing_a_decision_and_a_gate_timeout_bills_exactly_once(
    stack: Stack,
) -> None:
    """A cancel against an approval (the resume) or against a gate timing out (the ending)."""
    rng = random.Random(7)

    async def one(i: int) -> None:
        handle = await stack.start()
        status = await wait_for(handle, state_is("running"))
        if i % 2:
            await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="g")))
            await wait_for(handle, state_is("paused"))
            await handle.signal(SandboxSession.approve, GateDecision(gate="g", by="ana"))
        else:
            gate = GateRequest(gate="g", timeout_seconds=0.3, on_timeout="terminate")
            await answer(handle.execute_update(SandboxSession.request_gate, gate))
        await asyncio.sleep(rng.uniform(0, 0.4))
        await handle.cancel()
        await _ending(handle)
        assert status.sandbox_id
        await _billed_once(stack, handle, status.sandbox_id)

    await asyncio.gather(*(one(i) for i in range(ROUNDS)))


async def test_terminate_racing_finish_is_billed_exactly_once_by_the_reconciler(
    stack: Stack,
) -> None:
    """A termination runs no workflow code: landing between the kill and the cost row, it
    leaves a dead sandbox no listing shows. The reconciler's pass finds the terminated session
    and writes what its history says it owes (or, alive, reaps it as a stray)."""
    rng = random.Random(23)

    async def one(delay: float) -> tuple[WorkflowHandle[Any, Any], str]:
        handle = await stack.start()
        status = await wait_for(handle, state_is("running"))
        await handle.signal(SandboxSession.finish)
        await asyncio.sleep(delay)
        with contextlib.suppress(RPCError):  # already ended: the race went the other way
            await handle.terminate("racing finish")
        assert status.sandbox_id
        return handle, status.sandbox_id

    ended = await asyncio.gather(*(one(rng.uniform(0, 0.3)) for _ in range(ROUNDS)))
    await reconcile(stack, grace_seconds=0)
    for handle, sandbox_id in ended:
        await _billed_once(stack, handle, sandbox_id)


async def test_a_terminated_session_is_billed_by_the_reconciler_as_it_recorded_it(
    stack: Stack,
) -> None:
    """Termination runs no compensation: the reconciler kills the sandbox and bills it from
    the session's own record, so its paused time is billed as paused, not as running."""
    handle = await stack.start()
    status = await wait_for(handle, state_is("running"))
    await asyncio.sleep(0.5)
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="g")))
    await wait_for(handle, state_is("paused"))
    await asyncio.sleep(1.5)
    await handle.terminate("by hand")
    assert status.sandbox_id
    result = await reconcile(stack, grace_seconds=0)
    assert result.billed >= 1
    [row] = await stack.ledger.events(session_id=status.session_id)
    record = stack.emulator.record(status.sandbox_id).computed()
    assert record.state == "killed"
    assert row.paused_seconds >= 1.4, row
    assert abs(row.running_seconds - record.running_seconds) < 1.0, (row, record)


async def test_a_session_cannot_start_as_another_sessions_workflow(stack: Stack) -> None:
    """`session-B` started with `session_id: A` fails `InvalidInput` before any activity: it
    never reaches A's sandbox (the idempotency key would have handed it over)."""
    victim = await stack.start()
    status = await wait_for(victim, state_is("running"))
    intruder_id = workflow_id_for(f"intruder-{uuid.uuid4().hex[:8]}")
    forged = SessionInput(session_id=status.session_id, org_id="acme")
    intruder = await stack.client.start_workflow(
        SandboxSession.run, forged, id=intruder_id, task_queue=stack.task_queue
    )
    with pytest.raises(WorkflowFailureError) as err:
        await within(intruder.result(), 30)
    assert isinstance(err.value.cause, ApplicationError)
    assert err.value.cause.type == "InvalidInput"
    assert "does not match the workflow id" in err.value.cause.message
    assert (await status_of(intruder)).sandbox_id is None
    assert await stack.ledger.events(session_id=status.session_id) == []
    assert (await status_of(victim)).state == "running"
    await victim.signal(SandboxSession.finish)
    await within(victim.result(), 30)
    assert status.sandbox_id
    await _billed_once(stack, victim, status.sandbox_id)


async def test_a_session_id_started_again_gets_a_new_sandbox(stack: Stack) -> None:
    """A raw client restarting an ended session id starts a new chain of runs: the create's
    idempotency key includes the first run's id, so the old (dead) sandbox is not handed back."""
    session_id = f"again-{uuid.uuid4().hex[:8]}"
    sandboxes = []
    for _ in range(2):
        handle = await stack.start(session_id=session_id)
        status = await wait_for(handle, state_is("running"))
        sandboxes.append(status.sandbox_id)
        await handle.signal(SandboxSession.finish)
        await within(handle.result(), 30)
    assert sandboxes[0] != sandboxes[1]
    rows = await stack.ledger.events(session_id=session_id)
    assert sorted(r.sandbox_id for r in rows) == sorted(sandboxes)


async def test_the_provider_refuses_another_sessions_sandbox(stack: Stack) -> None:
    """Defence in depth: every reconnect (exec, resume) checks the sandbox's metadata names
    the session and run the ref says; a mismatch is `SandboxNotOwned`, never a command."""
    emu = stack.emulator
    provider = E2BSandboxProvider(
        credentials=StaticCredentialSource(emu.api_key),
        api_url=emu.api_url,
        sandbox_url=emu.sandbox_url,
    )
    owner = uuid.uuid4().hex
    made = await provider.provision(
        ProvisionInput(session_id="owner-a", owner=owner, org_id="acme")
    )
    sandbox_id = made.handle.sandbox_id
    try:
        mine = SandboxRef(org_id="acme", sandbox_id=sandbox_id, session_id="owner-a", owner=owner)
        assert (
            await provider.exec_command(ExecInput(ref=mine, command="echo ok"))
        ).stdout == "ok\n"
        for session_id, run in (("owner-b", owner), ("owner-a", uuid.uuid4().hex)):
            theirs = SandboxRef(
                org_id="acme", sandbox_id=sandbox_id, session_id=session_id, owner=run
            )
            with pytest.raises(SandboxNotOwned):
                await provider.exec_command(ExecInput(ref=theirs, command="echo leaked"))
            with pytest.raises(SandboxNotOwned):
                await provider.resume(ResumeInput(ref=theirs))
    finally:
        await provider.terminate(
            TerminateInput(ref=SandboxRef(org_id="acme", sandbox_id=sandbox_id))
        )


async def test_a_gate_continues_as_new_while_it_waits(stack: Stack) -> None:
    """A history grown long while a gate waits (here: ignored signals past the session's own
    event limit) continues as new carrying the gate: the sandbox stays paused (no second pause),
    the gate keeps waiting, and the approval still resumes it. Never a server termination."""
    handle = await stack.start(continue_as_new_after_events=60)
    status = await wait_for(handle, state_is("running"))
    first_run = (await handle.describe()).run_id
    await answer(
        handle.execute_update(SandboxSession.request_gate, GateRequest(gate="g", title="t"))
    )
    await wait_for(handle, state_is("paused"))
    for _ in range(40):
        await handle.signal("approve", {"gate": "nope", "by": "flood"})
    current = stack.client.get_workflow_handle(handle.id, result_type=SessionResult)
    deadline = asyncio.get_running_loop().time() + 30
    while (await current.describe()).run_id == first_run:
        assert asyncio.get_running_loop().time() < deadline, "never continued as new"
        await asyncio.sleep(0.2)
    first = stack.client.get_workflow_handle(handle.id, run_id=first_run)
    await save_history(first, "continue_as_new_at_gate")  # the first run, up to its handover
    carried = await status_of(current)
    assert carried.state == "paused"
    assert [(g.gate, g.state) for g in carried.gates] == [("g", "waiting")]
    assert carried.gates[0].waiting_since is not None
    await current.signal(SandboxSession.approve, GateDecision(gate="g", by="ana"))
    await wait_for(current, state_is("running"))
    await current.signal(SandboxSession.finish)
    result = await within(current.result(), 30)
    assert result.cost_recorded and result.cost.paused_seconds > 0
    assert status.sandbox_id
    record = stack.emulator.record(status.sandbox_id)
    assert [t.event for t in record.transitions].count("paused") == 1, record.transitions
    await _billed_once(stack, current, status.sandbox_id)


async def test_a_flood_of_big_ignored_signals_cannot_get_the_session_terminated(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Twelve 1 MiB signals for no gate, while a gate waits: the history passes the size at
    which the session continues as new (8 MiB, or Temporal's suggestion) long before Temporal's
    50 MB termination; the session lives on, and the log does not repeat the flood."""
    handle = await stack.start()
    await wait_for(handle, state_is("running"))
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="g")))
    await wait_for(handle, state_is("paused"))
    first_run = (await handle.describe()).run_id
    big = "x" * (1024 * 1024)
    for _ in range(12):
        await handle.signal("approve", {"gate": "g", "by": big})
    current = stack.client.get_workflow_handle(handle.id, result_type=SessionResult)
    deadline = asyncio.get_running_loop().time() + 60
    while (description := await current.describe()).run_id == first_run:
        assert description.status == WorkflowExecutionStatus.RUNNING, description.status
        assert asyncio.get_running_loop().time() < deadline, "never continued as new"
        await asyncio.sleep(0.2)
    assert (await status_of(current)).state == "paused"
    await current.signal(SandboxSession.approve, GateDecision(gate="g", by="ana"))
    await current.signal(SandboxSession.finish)
    result = await within(current.result(), 30)
    assert result.cost_recorded
    assert not [r for r in caplog.records if big[:1000] in r.getMessage()]


async def test_a_session_on_a_cron_schedule_is_refused(skipping_stack: Stack) -> None:
    """A cron run starts with `continued_run_id` set, as a continue-as-new does: without this
    check a forged `carry` would be taken in from the second run of a cron schedule on."""
    stack = skipping_stack  # the first cron run waits for its minute
    session_id = f"cron-{uuid.uuid4().hex[:8]}"
    handle = await stack.client.start_workflow(
        SandboxSession.run,
        SessionInput(session_id=session_id, org_id="acme"),
        id=workflow_id_for(session_id),
        task_queue=stack.task_queue,
        cron_schedule="* * * * *",
    )
    try:
        first = stack.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            events = (await first.fetch_history()).events
            closed = [e for e in events if e.event_type in _CLOSED]
            if closed:
                break
            assert asyncio.get_running_loop().time() < deadline, "the cron run never closed"
            await asyncio.sleep(0.2)
        text = str(closed[0])
        assert "InvalidInput" in text and "does not run on a cron schedule" in text, text
        assert await stack.ledger.events(session_id=session_id) == []
    finally:
        await stack.client.get_workflow_handle(handle.id).terminate("test over")


_CLOSED = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
)
