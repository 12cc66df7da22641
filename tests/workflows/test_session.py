"""`SandboxSession` end to end: real dev server and activities, the e2b SDK against the emulator."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from e2b import AsyncSandbox
from e2b.exceptions import NotFoundException
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError

from provider.models import PoolConfig
from tests.fixtures.stack import Stack, save_history, state_is, status_of, wait_for
from tests.fixtures.temporal import answer, result_of
from workflows import ExecRequest, GateDecision, GateRequest, SandboxSession


async def sandbox_state(stack: Stack, sandbox_id: str) -> str | None:
    """What E2B itself says about the sandbox: running, paused, or None when gone."""
    emu = stack.emulator
    try:
        info = await AsyncSandbox.get_info(
            sandbox_id, api_key=emu.api_key, api_url=emu.api_url, sandbox_url=emu.sandbox_url
        )
    except NotFoundException:
        return None
    return str(getattr(info.state, "value", info.state))


async def kill_out_of_band(stack: Stack, sandbox_id: str) -> None:
    emu = stack.emulator
    await AsyncSandbox.kill(
        sandbox_id, api_key=emu.api_key, api_url=emu.api_url, sandbox_url=emu.sandbox_url
    )


async def the_cost(stack: Stack, session_id: str) -> Any:
    rows = await stack.ledger.events(session_id=session_id)
    assert len(rows) == 1, rows
    return rows[0]


def gate_state(status: Any, name: str) -> str:
    return next(g.state for g in status.gates if g.gate == name)


async def test_happy_path_runs_pauses_at_gate_and_bills_running_time_only(stack: Stack) -> None:
    handle = await stack.start(env_vars={"GREETING": "hello"})
    status = await wait_for(handle, state_is("running"), what="running")
    sandbox_id = status.sandbox_id
    assert sandbox_id and await sandbox_state(stack, sandbox_id) == "running"

    result = await answer(
        handle.execute_update(
            SandboxSession.exec,
            ExecRequest(command='echo "$GREETING, $WHO" | tr a-z A-Z', env={"WHO": "ana"}),
        )
    )
    assert (result.exit_code, result.stdout.strip()) == (0, "HELLO, ANA")

    await handle.signal("request_approval", {"gate": "deploy", "title": "Deploy to prod"})
    await wait_for(handle, state_is("paused"), what="paused at gate")
    assert await sandbox_state(stack, sandbox_id) == "paused"
    await asyncio.sleep(1.5)  # an idle human: this stretch must not be billed
    await handle.signal("approve", {"gate": "deploy", "by": "ana", "comment": "ship it"})
    status = await wait_for(handle, state_is("running"), what="resumed")
    assert await sandbox_state(stack, sandbox_id) == "running"
    gate = status.gates[0]
    assert (gate.state, gate.decided_by, gate.comment) == ("approved", "ana", "ship it")

    await handle.signal("finish", {})
    outcome = await result_of(handle)
    assert outcome.outcome == "finished" and outcome.cost_recorded
    assert outcome.status.state == "finished"
    assert await sandbox_state(stack, sandbox_id) is None

    cost = await the_cost(stack, outcome.status.session_id)
    assert cost.sandbox_id == sandbox_id and cost.outcome == "finished"
    assert cost.org_id == "acme" and cost.issue_id == "ISS-1" and cost.template_id == "base"
    assert cost.paused_seconds >= 1.4
    assert abs(cost.running_seconds + cost.paused_seconds - cost.wall_seconds) < 0.01
    assert cost.running_seconds < cost.wall_seconds - 1.4
    await save_history(handle, "happy_path")


async def test_two_gates_queue_and_keep_their_history(stack: Stack) -> None:
    handle = await stack.start()
    await wait_for(handle, state_is("running"))
    first = await answer(
        handle.execute_update(SandboxSession.request_gate, GateRequest(gate="plan"))
    )
    assert first.state == "waiting"
    await handle.signal("request_approval", {"gate": "merge", "title": "Merge the PR"})
    await wait_for(handle, state_is("paused"))
    status = await status_of(handle)
    assert [g.gate for g in status.gates] == ["plan", "merge"]

    approved = await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="plan", by="bo"))
    )
    assert approved.state == "approved" and approved.decided_by == "bo"
    # The queued gate takes over: the sandbox is paused again for it.
    await wait_for(
        handle,
        lambda s: gate_state(s, "plan") == "approved" and s.state == "paused",
        what="second gate paused",
    )
    await handle.signal("approve", {"gate": "merge", "by": "cy"})
    status = await wait_for(handle, state_is("running"))
    assert [(g.gate, g.state, g.decided_by) for g in status.gates] == [
        ("plan", "approved", "bo"),
        ("merge", "approved", "cy"),
    ]
    await handle.signal("finish", {})
    result = await result_of(handle)
    assert result.status.paused_seconds > 0
    await save_history(handle, "two_gates")


async def test_reject_resumes_and_records_who(stack: Stack) -> None:
    handle = await stack.start()
    await wait_for(handle, state_is("running"))
    await handle.signal("request_approval", {"gate": "rm-rf"})
    await wait_for(handle, state_is("paused"))
    gate = await answer(
        handle.execute_update(
            SandboxSession.reject_gate, GateDecision(gate="rm-rf", by="dee", comment="too risky")
        )
    )
    assert (gate.state, gate.comment) == ("rejected", "too risky")
    await wait_for(handle, state_is("running"))
    out = await answer(
        handle.execute_update(SandboxSession.exec, ExecRequest(command="echo alive"))
    )
    assert out.stdout == "alive\n"
    await handle.signal("finish", {})
    await result_of(handle)
    await save_history(handle, "reject")


async def test_unknown_or_decided_gate_is_refused_by_the_update(stack: Stack) -> None:
    handle = await stack.start()
    await wait_for(handle, state_is("running"))
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await answer(
            handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="nope", by="x"))
        )
    assert "unknown gate 'nope'" in str(err.value.cause)
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="g1")))
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="g1")))
    assert "already requested" in str(err.value.cause)
    await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="g1", by="x"))
    )
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await answer(
            handle.execute_update(SandboxSession.reject_gate, GateDecision(gate="g1", by="y"))
        )
    assert "already approved by x" in str(err.value.cause)
    # A malformed or unknown plain signal is logged and ignored: the session carries on.
    await handle.signal("approve", {"gate": "nope", "by": "x"})
    await handle.signal("approve", ["not", "an", "object"])
    await handle.signal("request_approval", {"gate": ""})
    await wait_for(handle, state_is("running"))
    await handle.signal("finish", {})
    result = await result_of(handle)
    assert [g.gate for g in result.status.gates] == ["g1"]


async def test_exec_while_paused_is_refused_clearly(stack: Stack) -> None:
    handle = await stack.start()
    await wait_for(handle, state_is("running"))
    out = await answer(handle.execute_update(SandboxSession.exec, ExecRequest(command="exit 3")))
    assert out.exit_code == 3
    await handle.signal("request_approval", {"gate": "hold"})
    await wait_for(handle, state_is("paused"))
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await answer(handle.execute_update(SandboxSession.exec, ExecRequest(command="echo hi")))
    assert "paused at gate 'hold'" in str(err.value.cause)
    await handle.signal("approve", {"gate": "hold", "by": "ana"})
    await wait_for(handle, state_is("running"))
    await handle.signal("finish", {})
    await result_of(handle)
    await save_history(handle, "exec_refused_while_paused")


@pytest.mark.parametrize("policy", ["reject", "terminate"])
async def test_gate_timeout_follows_its_policy(stack: Stack, policy: str) -> None:
    handle = await stack.start()
    status = await wait_for(handle, state_is("running"))
    await handle.signal(
        "request_approval", {"gate": "late", "timeout_seconds": 1.5, "on_timeout": policy}
    )
    if policy == "reject":
        status = await wait_for(
            handle, lambda s: gate_state(s, "late") == "timed_out" and s.state == "running"
        )
        await handle.signal("finish", {})
    result = await result_of(handle)
    assert gate_state(result.status, "late") == "timed_out"
    assert result.outcome == "finished"
    if policy == "terminate":  # the ending says why: not a plain finish
        expected = "gate 'late' timed out after 1.5s: its on_timeout policy `terminate` ended"
        assert result.reason and result.reason.startswith(expected)
        assert result.status.end_reason == result.reason
    else:
        assert result.reason is None and result.status.end_reason is None
    assert await sandbox_state(stack, status.sandbox_id or "") is None
    cost = await the_cost(stack, result.status.session_id)
    assert cost.paused_seconds >= 1.4
    await save_history(handle, f"gate_timeout_{policy}")


async def test_three_day_gate_costs_only_the_running_time(skipping_stack: Stack) -> None:
    stack = skipping_stack
    handle = await stack.start()
    await wait_for(handle, state_is("running"))
    await handle.signal(
        "request_approval",
        {"gate": "weekend", "timeout_seconds": 3 * 86400, "on_timeout": "terminate"},
    )
    result = await result_of(handle)  # time skips while the gate waits
    gate = result.status.gates[0]
    assert gate.state == "timed_out"
    assert gate.decided_at and gate.decided_at - gate.requested_at >= timedelta(days=3)
    # Three days waited at the gate, yet the ledger bills only the seconds the sandbox ran.
    cost = await the_cost(stack, result.status.session_id)
    assert cost.running_seconds < 30, cost
    await save_history(handle, "three_day_gate")


@pytest.mark.parametrize("where", ["running", "paused"])
async def test_cancel_terminates_and_bills_once(stack: Stack, where: str) -> None:
    handle = await stack.start()
    status = await wait_for(handle, state_is("running"))
    if where == "paused":
        await handle.signal("request_approval", {"gate": "g"})
        await wait_for(handle, state_is("paused"))
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as err:
        await result_of(handle)
    assert isinstance(err.value.cause, CancelledError)
    assert await sandbox_state(stack, status.sandbox_id or "") is None
    cost = await the_cost(stack, status.session_id)
    assert cost.outcome == "cancelled"
    assert (await status_of(handle)).state == "cancelled"
    await save_history(handle, f"cancel_{where}")


async def test_sandbox_lost_while_paused_ends_the_session_lost_and_still_bills(
    stack: Stack,
) -> None:
    handle = await stack.start()
    status = await wait_for(handle, state_is("running"))
    await handle.signal("request_approval", {"gate": "g"})
    await wait_for(handle, state_is("paused"))
    await kill_out_of_band(stack, status.sandbox_id or "")  # e.g. E2B's retention ended
    await handle.signal("approve", {"gate": "g", "by": "ana"})  # the resume finds it gone
    with pytest.raises(WorkflowFailureError) as err:
        await result_of(handle)
    assert isinstance(err.value.cause, ApplicationError)
    assert err.value.cause.type == "SandboxLost"
    final = await status_of(handle)
    assert (
        final.state == "lost"
        and final.error
        and "was lost while the session was paused" in final.error
    )
    cost = await the_cost(stack, status.session_id)
    assert cost.outcome == "lost" and cost.end_confirmed
    await save_history(handle, "lost_at_resume")


async def test_failure_after_provision_runs_the_compensation(stack: Stack) -> None:
    handle = await stack.start(keep_alive_interval_seconds=1)
    status = await wait_for(handle, state_is("running"))
    await kill_out_of_band(stack, status.sandbox_id or "")  # the next keep-alive finds it gone
    with pytest.raises(WorkflowFailureError):
        await result_of(handle)
    final = await status_of(handle)
    assert final.state == "lost" and "was lost while the session was running" in (final.error or "")
    assert (await the_cost(stack, status.session_id)).outcome == "lost"
    await save_history(handle, "lost_at_keep_alive")


async def test_provision_failure_ends_failed_without_a_cost(stack: Stack) -> None:
    handle = await stack.start(pool=PoolConfig(templateId="no-such-template"))
    with pytest.raises(WorkflowFailureError):
        await result_of(handle)
    final = await status_of(handle)
    assert final.state == "failed" and final.sandbox_id is None
    assert "InvalidRequest" in (final.error or "") or "SandboxGone" in (final.error or "")
    assert await stack.ledger.events(session_id=final.session_id) == []


async def test_continue_as_new_carries_the_whole_state(stack: Stack) -> None:
    handle = await stack.start(continue_as_new_after_events=50)
    first = await wait_for(handle, state_is("running"))
    first_run = (await handle.describe()).run_id
    for i in range(4):
        await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate=f"g{i}")))
        await wait_for(handle, state_is("paused"))
        await answer(
            handle.execute_update(SandboxSession.approve_gate, GateDecision(gate=f"g{i}", by="x"))
        )
        await wait_for(handle, state_is("running"))
        await answer(handle.execute_update(SandboxSession.exec, ExecRequest(command=f"echo {i}")))
    await asyncio.sleep(0.5)
    latest = stack.client.get_workflow_handle_for(SandboxSession.run, handle.id)
    assert (await latest.describe()).run_id != first_run
    await latest.signal("finish", {})
    result = await result_of(latest)
    assert result.status.sandbox_id == first.sandbox_id
    assert [g.state for g in result.status.gates] == ["approved"] * 4
    cost = await the_cost(stack, first.session_id)
    assert cost.sandbox_id == first.sandbox_id and cost.paused_seconds > 0
    # The first run's history is the one that ends in continue-as-new.
    await save_history(
        stack.client.get_workflow_handle(handle.id, run_id=first_run), "continue_as_new"
    )


async def test_a_late_keep_alive_never_lets_a_running_sandbox_expire(stack: Stack) -> None:
    # Pool timeout 30 s, keep-alive every 1 s: after 3 s the sandbox's end is pushed out.
    handle = await stack.start(
        pool=PoolConfig(templateId="base", timeoutSeconds=30), keep_alive_interval_seconds=1
    )
    status = await wait_for(handle, state_is("running"))
    emu = stack.emulator
    before = await AsyncSandbox.get_info(
        status.sandbox_id or "", api_key=emu.api_key, api_url=emu.api_url
    )
    await asyncio.sleep(3)
    after = await AsyncSandbox.get_info(
        status.sandbox_id or "", api_key=emu.api_key, api_url=emu.api_url
    )
    assert after.end_at - before.end_at >= timedelta(seconds=1.5)
    await handle.signal("finish", {})
    await result_of(handle)
