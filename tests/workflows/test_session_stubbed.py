"""`SandboxSession` on stub activities and the time-skipping dev server: the fast tier.

Why: the end-to-end tests (test_session.py) drive the real provider against the E2B emulator in
real time, minutes for the suite. Here the very same workflow code runs on a real Temporal server
in the project's workflow sandbox (`worker.workflow_runner()`), but the activities are stubs
registered under the real activity names and models: an in-memory fake of E2B and of the ledger
whose clock advances deterministically, so costs can be asserted exactly. Sessions start with
time skipping off (a session waiting for a human does not spin through keep-alive timers); a test
that needs a timer to fire moves that session's virtual time on with `fast_forward`, so a gate
that waits three days costs milliseconds. The server skips nothing while an activity is in
flight, and each timer fired by a skip costs about a second of wall time: keep those few.
The fake and the rig live in tests/fixtures/session_stubs.py (test_session_guards.py uses them
too).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError

from activities.sandbox import to_application_error
from ledger.models import CostEvent
from provider.errors import ProviderAuthError
from provider.models import ExecResult, PoolConfig
from tests.fixtures.session_stubs import (
    WAIT,
    Rig,
    answer,
    assert_billed_as_the_sandbox_lived,
    continue_as_new,
    eventually,
    failed_workflow_tasks,
    failure_of,
    gone,
    innermost,
    one_row,
    refusal,
    result_of,
    start_exec,
    state_is,
    status_of,
    wait_for,
)
from workflows import ExecRequest, GateDecision, GateRequest, SandboxSession

pytestmark = pytest.mark.fast


# ---------------------------------------------------------------- the happy path


async def test_a_ledger_down_at_a_pause_holds_neither_the_approval_nor_the_final_record(
    rig: Rig,
) -> None:
    """The running stretch a pause closes is written inside the worker (a local activity).
    With the ledger failing, its retries wait as workflow timers, so the session goes on taking
    signals: the approval resumes the sandbox at once, and the final cost row carries the
    stretch the failed writes never stored."""
    fake = rig.fake
    fake.fail["record_segment"] = ApplicationError("ledger down", type="LedgerUnavailable")
    handle, _ = await rig.running()
    await handle.signal("request_approval", {"gate": "deploy"})
    await wait_for(handle, state_is("paused"), "paused at the gate")
    await eventually(lambda: fake.segment_attempts >= 2, "the segment write retried")
    loop = asyncio.get_running_loop()
    asked = loop.time()
    await handle.signal("approve", {"gate": "deploy", "by": "ana"})
    await wait_for(handle, state_is("running"), "resumed while the ledger is down")
    assert loop.time() - asked < 5, "the failing ledger write held the approval"
    assert not fake.segments
    await handle.signal("finish", {})
    await result_of(handle)
    record = fake.called("record_cost")[0].input
    assert len(record.segments) == 2  # before the gate and after it
    assert record.segments[0].ended_at is not None


@pytest.mark.parametrize("via", ["signal", "update"])
async def test_happy_path_bills_the_paused_stretch_apart(rig: Rig, via: str) -> None:
    fake = rig.fake
    handle, sandbox_id = await rig.running(env_vars={"GREETING": "hello"})
    provision = fake.called("provision_sandbox")
    assert len(provision) == 1
    assert (provision[0].input.org_id, provision[0].input.env_vars) == (
        "acme",
        {"GREETING": "hello"},
    )

    result = await answer(
        handle.execute_update(
            SandboxSession.exec, ExecRequest(command="echo hi", env={"WHO": "ana"}, cwd="/work")
        )
    )
    assert result == ExecResult(exit_code=0, stdout="out: echo hi", stderr="", pid=42)
    sent = fake.called("exec_command")[0].input
    assert (sent.ref.sandbox_id, sent.env, sent.cwd) == (sandbox_id, {"WHO": "ana"}, "/work")
    # A non-zero exit is a result, in the contract's shape, whatever the client.
    raw = await answer(handle.execute_update("exec", {"command": "exit 3"}, result_type=dict))
    assert {k: raw[k] for k in ("exit_code", "stdout", "stderr")} == {
        "exit_code": 3,
        "stdout": "out: exit 3",
        "stderr": "err: exit 3",
    }

    if via == "signal":
        await handle.signal("request_approval", {"gate": "deploy", "title": "Deploy to prod"})
    else:
        gate = await answer(
            handle.execute_update(
                SandboxSession.request_gate, GateRequest(gate="deploy", title="Deploy to prod")
            )
        )
        assert (gate.gate, gate.state, gate.title) == ("deploy", "waiting", "Deploy to prod")
    status = await wait_for(handle, state_is("paused"), "paused at the gate")
    assert fake.only_sandbox().state == "paused"
    assert len(fake.called("pause_sandbox")) == 1 and not fake.called("resume_sandbox")
    rig.fake.advance(3600)  # an hour with nobody deciding: not billed as running

    await handle.signal("approve", {"gate": "deploy", "by": "ana", "comment": "ship it"})
    status = await wait_for(handle, state_is("running"), "resumed")
    assert fake.only_sandbox().state == "running"
    assert [c.name for c in fake.calls[-2:]] == ["pause_sandbox", "resume_sandbox"]
    gate = status.gates[0]
    assert (gate.state, gate.decided_by, gate.comment) == ("approved", "ana", "ship it")

    await handle.signal("finish", {})
    outcome = await result_of(handle)
    assert fake.names()[-2:] == ["terminate_sandbox", "record_cost"]
    assert len(fake.called("terminate_sandbox")) == 1
    assert len(fake.called("pause_sandbox")) == 1 and len(fake.called("resume_sandbox")) == 1

    row = one_row(fake)
    assert (outcome.outcome, outcome.cost_recorded, outcome.cost) == ("finished", True, row)
    assert outcome.status.state == "finished" and outcome.status.sandbox_id == sandbox_id
    assert (row.session_id, row.org_id, row.issue_id) == (
        outcome.status.session_id,
        "acme",
        "ISS-1",
    )
    assert (row.sandbox_id, row.template_id, row.outcome) == (sandbox_id, "base", "finished")
    assert_billed_as_the_sandbox_lived(fake, row)
    assert row.paused_seconds == pytest.approx(3600.25)  # the hour, and the resume call's step
    assert row.running_seconds == pytest.approx(
        1.0
    )  # provision → exec → exec → pause; resume → end


# ---------------------------------------------------------------- gates


async def test_two_gates_queue_in_order_and_each_pauses(rig: Rig) -> None:
    fake = rig.fake
    handle, _ = await rig.running()
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="plan")))
    await handle.signal("request_approval", {"gate": "merge"})
    status = await wait_for(handle, state_is("paused"), "paused for plan")
    assert [(g.gate, g.state) for g in status.gates] == [("plan", "waiting"), ("merge", "waiting")]
    duplicate = await refusal(
        handle.execute_update(SandboxSession.request_gate, GateRequest(gate="plan"))
    )
    assert duplicate.message == "gate 'plan' was already requested"
    unknown = await refusal(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="nope", by="bo"))
    )
    assert unknown.message == "unknown gate 'nope' (gates: plan, merge)"

    approved = await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="plan", by="bo"))
    )
    assert (approved.state, approved.decided_by) == ("approved", "bo")
    decided = await refusal(
        handle.execute_update(SandboxSession.reject_gate, GateDecision(gate="plan", by="cy"))
    )
    assert decided.message == "gate 'plan' is already approved by bo"
    # The queued gate takes its turn: resumed for plan, paused again for merge.
    # The stub records a pause when it starts; the session says "paused" once it has finished.
    await wait_for(
        handle,
        lambda s: s.state == "paused" and len(fake.called("pause_sandbox")) == 2,
        "paused for merge",
    )
    await handle.signal("approve", {"gate": "merge", "by": "cy"})
    status = await wait_for(handle, state_is("running"), "resumed after merge")
    assert [(g.gate, g.state, g.decided_by) for g in status.gates] == [
        ("plan", "approved", "bo"),
        ("merge", "approved", "cy"),
    ]
    lifecycle = [n for n in fake.names() if n.endswith("_sandbox")]
    assert lifecycle == ["provision_sandbox", *["pause_sandbox", "resume_sandbox"] * 2]
    await handle.signal("finish", {})
    await result_of(handle)
    assert_billed_as_the_sandbox_lived(fake, one_row(fake))


async def test_a_gate_decided_before_its_turn_never_pauses(rig: Rig) -> None:
    fake = rig.fake
    handle, _ = await rig.running()
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="plan")))
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="merge")))
    await wait_for(handle, state_is("paused"), "paused for plan")
    await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="merge", by="cy"))
    )
    await answer(
        handle.execute_update(SandboxSession.reject_gate, GateDecision(gate="plan", by="bo"))
    )
    status = await wait_for(handle, state_is("running"), "resumed")
    assert [(g.gate, g.state) for g in status.gates] == [
        ("plan", "rejected"),
        ("merge", "approved"),
    ]
    await answer(handle.execute_update(SandboxSession.exec, ExecRequest(command="true")))
    await handle.signal("finish", {})
    await result_of(handle)
    assert len(fake.called("pause_sandbox")) == 1 and len(fake.called("resume_sandbox")) == 1


async def test_reject_resumes_the_sandbox(rig: Rig) -> None:
    fake = rig.fake
    handle, _ = await rig.running()
    await handle.signal("request_approval", {"gate": "deploy"})
    await wait_for(handle, state_is("paused"), "paused")
    gate = await answer(
        handle.execute_update(
            SandboxSession.reject_gate, GateDecision(gate="deploy", by="ana", comment="not today")
        )
    )
    assert (gate.state, gate.decided_by, gate.comment) == ("rejected", "ana", "not today")
    await wait_for(handle, state_is("running"), "resumed after the rejection")
    assert fake.only_sandbox().state == "running"
    result = await answer(handle.execute_update(SandboxSession.exec, ExecRequest(command="ls")))
    assert result.stdout == "out: ls"  # the session goes on
    await handle.signal("finish", {})
    assert (await result_of(handle)).outcome == "finished"


async def test_gate_timeout_with_reject_policy_resumes_and_goes_on(rig: Rig) -> None:
    fake = rig.fake
    handle, _ = await rig.running()
    await answer(
        handle.execute_update(
            SandboxSession.request_gate,
            GateRequest(gate="deploy", timeout_seconds=600, on_timeout="reject"),
        )
    )
    await wait_for(handle, state_is("paused"), "paused")
    assert await rig.skip(handle, 599)  # the timeout counts from the pause: not yet
    assert (await status_of(handle)).gates[0].state == "waiting"
    assert await rig.skip(handle, 30)
    status = await wait_for(handle, state_is("running"), "resumed after the timeout")
    gate = status.gates[0]
    assert gate.state == "timed_out" and gate.decided_by is None
    assert gate.decided_at is not None
    assert (gate.decided_at - gate.requested_at).total_seconds() >= 600
    assert fake.only_sandbox().state == "running" and len(fake.called("resume_sandbox")) == 1
    await answer(handle.execute_update(SandboxSession.exec, ExecRequest(command="true")))
    await handle.signal("finish", {})
    assert (await result_of(handle)).outcome == "finished"


async def test_gate_timeout_with_terminate_policy_ends_the_session(rig: Rig) -> None:
    fake = rig.fake
    handle, sandbox_id = await rig.running()
    await handle.signal(
        "request_approval", {"gate": "deploy", "timeout_seconds": 600, "on_timeout": "terminate"}
    )
    await wait_for(handle, state_is("paused"), "paused")
    assert not await rig.skip(handle, 630)  # the session ends before the target time
    result = await result_of(handle)
    assert (result.outcome, result.status.state) == ("finished", "finished")
    assert result.status.gates[0].state == "timed_out"
    assert not fake.called("resume_sandbox")
    assert fake.sandboxes[sandbox_id].state == "gone"
    row = one_row(fake)
    assert (row.outcome, result.cost_recorded, result.cost) == ("finished", True, row)
    assert_billed_as_the_sandbox_lived(fake, row)
    assert row.paused_seconds == pytest.approx(630.25)


async def test_a_gate_without_timeout_ends_at_the_ceiling(rig: Rig) -> None:
    fake = rig.fake
    handle, _ = await rig.running(gate_ceiling_seconds=3600)
    # A gate's own timeout past the ceiling is cut to it, and its policy no longer applies.
    await handle.signal("request_approval", {"gate": "merge", "timeout_seconds": 7200})
    await wait_for(handle, state_is("paused"), "paused")
    assert await rig.skip(handle, 3500)
    assert (await status_of(handle)).state == "paused"
    assert not await rig.skip(handle, 130)
    result = await result_of(handle)
    assert result.outcome == "finished" and result.status.gates[0].state == "timed_out"
    assert fake.only_sandbox().state == "gone" and not fake.called("resume_sandbox")
    assert one_row(fake).paused_seconds == pytest.approx(3630.25)


async def test_a_three_day_gate_bills_only_the_running_seconds(rig: Rig) -> None:
    fake = rig.fake
    handle, _ = await rig.running(keep_alive_interval_seconds=60)
    await handle.signal("request_approval", {"gate": "weekend"})
    await wait_for(handle, state_is("paused"), "paused")
    three_days = 3 * 24 * 3600
    assert await rig.skip(handle, three_days)
    status = await status_of(handle)
    assert status.state == "paused" and not fake.called("resume_sandbox")
    await handle.signal("approve", {"gate": "weekend", "by": "ana"})
    status = await wait_for(handle, state_is("running"), "resumed")
    assert status.paused_seconds == pytest.approx(three_days + 0.25)
    gate = status.gates[0]
    assert gate.decided_at is not None
    assert (gate.decided_at - gate.requested_at).total_seconds() >= three_days  # virtual time
    await handle.signal("finish", {})
    result = await result_of(handle)
    row = one_row(fake)
    assert_billed_as_the_sandbox_lived(fake, row)
    assert row.paused_seconds == pytest.approx(three_days, abs=1)
    assert row.running_seconds < 1
    assert not fake.called("keep_alive_sandbox")  # never while paused
    assert result.cost == row


async def test_keep_alive_runs_every_interval_while_running_and_never_while_paused(
    rig: Rig,
) -> None:
    fake = rig.fake
    interval, intervals = 60, 3
    handle, sandbox_id = await rig.running(
        keep_alive_interval_seconds=interval, pool=PoolConfig(templateId="base", timeoutSeconds=120)
    )
    assert await rig.skip(handle, interval * intervals + interval / 2)
    calls = fake.called("keep_alive_sandbox")
    assert len(calls) == intervals
    assert all(c.state == "running" for c in calls)
    assert {(c.input.ref.sandbox_id, c.input.timeout_seconds) for c in calls} == {(sandbox_id, 120)}

    await handle.signal("request_approval", {"gate": "deploy"})
    await wait_for(handle, state_is("paused"), "paused")
    assert await rig.skip(handle, interval * 10)
    assert len(fake.called("keep_alive_sandbox")) == intervals  # none in ten paused intervals
    await handle.signal("approve", {"gate": "deploy", "by": "ana"})
    await wait_for(handle, state_is("running"), "resumed")
    await handle.signal("finish", {})
    await result_of(handle)
    assert all(c.state == "running" for c in fake.called("keep_alive_sandbox"))


# ---------------------------------------------------------------- endings


@pytest.mark.parametrize("at", ["running", "paused"])
async def test_cancel_terminates_and_bills_once(rig: Rig, at: str) -> None:
    fake = rig.fake
    handle, sandbox_id = await rig.running()
    if at == "paused":
        await handle.signal("request_approval", {"gate": "deploy"})
        await wait_for(handle, state_is("paused"), "paused")
    await handle.cancel()
    cause = await failure_of(handle)
    assert isinstance(cause, CancelledError)
    assert len(fake.called("terminate_sandbox")) == 1
    assert fake.sandboxes[sandbox_id].state == "gone"
    row = one_row(fake)
    assert (row.outcome, row.sandbox_id) == ("cancelled", sandbox_id)
    assert_billed_as_the_sandbox_lived(fake, row)
    assert (row.paused_seconds > 0) == (at == "paused")
    assert (await status_of(handle)).state == "cancelled"


@pytest.mark.parametrize("lost_in", ["keep_alive_sandbox", "resume_sandbox"])
async def test_sandbox_lost_after_provision_fails_the_session(rig: Rig, lost_in: str) -> None:
    fake = rig.fake
    handle, sandbox_id = await rig.running(keep_alive_interval_seconds=60)
    fake.fail[lost_in] = gone(f"sandbox {sandbox_id} not found")
    if lost_in == "keep_alive_sandbox":
        assert not await rig.skip(handle, 90)
    else:
        await handle.signal("request_approval", {"gate": "deploy"})
        await wait_for(handle, state_is("paused"), "paused")
        await handle.signal("approve", {"gate": "deploy", "by": "ana"})
    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError)
    assert cause.type == "SessionFailed" and "SandboxGone" in cause.message
    assert cause.non_retryable
    status = await status_of(handle)
    assert status.state == "failed"
    assert status.error is not None and status.error.startswith("SandboxGone")
    assert len(fake.called(lost_in)) == 1  # non-retryable: not tried again
    assert len(fake.called("terminate_sandbox")) == 1
    row = one_row(fake)
    assert (row.outcome, row.sandbox_id) == ("failed", sandbox_id)
    assert_billed_as_the_sandbox_lived(fake, row)


async def test_provision_refused_fails_without_a_cost(rig: Rig) -> None:
    fake = rig.fake
    fake.fail["provision_sandbox"] = to_application_error(ProviderAuthError("key rejected"))
    handle = await rig.start()
    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "SessionFailed"
    assert "ProviderAuthError" in cause.message
    assert fake.names() == ["provision_sandbox"]  # not retried, nothing to terminate or bill
    assert fake.ledger == {}
    status = await status_of(handle)
    assert (status.state, status.sandbox_id) == ("failed", None)
    assert status.error is not None and "ProviderAuthError" in status.error


# ---------------------------------------------------------------- exec and the ending


async def test_exec_is_refused_while_paused(rig: Rig) -> None:
    fake = rig.fake
    handle, _ = await rig.running()
    await handle.signal("request_approval", {"gate": "deploy"})
    await wait_for(handle, state_is("paused"), "paused")
    refused = await refusal(handle.execute_update(SandboxSession.exec, ExecRequest(command="ls")))
    assert refused.type == "SessionPaused"
    assert refused.message == (
        "session is paused at gate 'deploy'; exec runs only while the sandbox is running"
    )
    assert not fake.called("exec_command")
    await handle.signal("approve", {"gate": "deploy", "by": "ana"})
    await wait_for(handle, state_is("running"), "resumed")
    assert (
        await answer(handle.execute_update(SandboxSession.exec, ExecRequest(command="ls")))
    ).stdout
    await handle.signal("finish", {})
    await result_of(handle)


@pytest.mark.parametrize("stage", ["finish-requested", "terminating"])
async def test_exec_and_gates_right_behind_finish_are_refused(rig: Rig, stage: str) -> None:
    fake = rig.fake
    if stage == "finish-requested":  # the run loop is busy extending the sandbox: still running
        fake.hold_keep_alive = release = asyncio.Event()
        handle, _ = await rig.running(keep_alive_interval_seconds=1)
        await asyncio.wait_for(fake.keep_alive_arrived.wait(), WAIT)
        await handle.signal("finish", {})
        expected = "session is ending (finish requested)"
    else:
        fake.hold_terminate = release = asyncio.Event()
        handle, _ = await rig.running()
        await handle.signal("finish", {})
        await eventually(lambda: fake.called("terminate_sandbox"), "terminate")
        expected = "session is terminating"
    exec_refused = await refusal(
        handle.execute_update(SandboxSession.exec, ExecRequest(command="ls"))
    )
    assert exec_refused.type == "SessionNotRunning"
    assert exec_refused.message == f"{expected}; exec runs only while the sandbox is running"
    gate_refused = await refusal(
        handle.execute_update(SandboxSession.request_gate, GateRequest(gate="late"))
    )
    assert gate_refused.message == f"{expected}; no gate can be requested"
    await handle.signal("request_approval", {"gate": "later"})  # a signal: ignored, not fatal
    release.set()
    result = await result_of(handle)
    assert result.outcome == "finished" and result.status.gates == []
    assert not fake.called("exec_command") and not fake.called("pause_sandbox")
    assert not await failed_workflow_tasks(handle)


@pytest.mark.parametrize("killed", [True, False], ids=["command-killed", "answer-after-cost"])
@pytest.mark.parametrize("ending", ["finish", "cancel", "failure"])
async def test_an_exec_in_flight_is_answered_when_the_session_ends(
    rig: Rig, ending: str, killed: bool
) -> None:
    fake = rig.fake
    # Keep-alive on a real-time second: no skipping while an activity runs.
    handle, sandbox_id = await rig.running(keep_alive_interval_seconds=1)
    fake.exec_outlives_kill = not killed
    update = await start_exec(handle, fake)
    if ending == "finish":
        await handle.signal("finish", {})
    elif ending == "cancel":
        await handle.cancel()
    else:
        fake.fail["keep_alive_sandbox"] = gone(f"sandbox {sandbox_id} not found")
    if killed:  # the command dies with its sandbox: the caller hears why
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await asyncio.wait_for(update.result(), WAIT)
        cause = innermost(info.value)
        assert isinstance(cause, ApplicationError) and cause.type == "SandboxGone"
        assert "killed while the command ran" in cause.message
    else:  # terminated and billed, the session still waits for the command's answer
        await eventually(lambda: fake.ledger, "the cost row")
        await asyncio.sleep(0.2)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert fake.hold_exec is not None
        fake.hold_exec.set()
        result = await asyncio.wait_for(update.result(), WAIT)
        assert (result.exit_code, result.stdout) == (0, "out: make test")
    if ending == "finish":
        assert (await result_of(handle)).outcome == "finished"
    else:
        cause = await failure_of(handle)
        expected = CancelledError if ending == "cancel" else ApplicationError
        assert isinstance(cause, expected)
    row = one_row(fake)
    assert row.outcome == {"finish": "finished", "cancel": "cancelled", "failure": "failed"}[ending]
    assert fake.sandboxes[sandbox_id].state == "gone"
    assert not await failed_workflow_tasks(handle)


# ---------------------------------------------------------------- the cost, honestly


async def test_cost_recorded_is_false_when_the_ledger_kept_another_row(rig: Rig) -> None:
    fake = rig.fake
    handle, sandbox_id = await rig.running()
    session_id = (await status_of(handle)).session_id
    reaped = CostEvent(
        session_id=session_id,
        org_id="acme",
        sandbox_id=sandbox_id,
        template_id="base",
        started_at=fake.t0,
        ended_at=fake.t0 + timedelta(seconds=5),
        running_seconds=5,
        paused_seconds=0,
        wall_seconds=5,
        outcome="cancelled",
    )
    fake.ledger[(session_id, sandbox_id)] = reaped  # the stray reconciler got there first
    await handle.signal("finish", {})
    result = await result_of(handle)
    assert result.outcome == "finished"
    assert (result.cost_recorded, result.cost) == (False, reaped)
    assert one_row(fake) == reaped


# ---------------------------------------------------------------- continue-as-new


async def test_continue_as_new_carries_the_session_and_bills_both_runs(rig: Rig) -> None:
    fake = rig.fake
    handle, sandbox_id = await rig.running(continue_as_new_after_events=50)
    first_run = (await handle.describe()).run_id
    await handle.signal("request_approval", {"gate": "plan"})
    await wait_for(handle, state_is("paused"), "paused")
    fake.advance(100)
    await handle.signal("approve", {"gate": "plan", "by": "bo"})
    await wait_for(handle, state_is("running"), "resumed")
    await continue_as_new(handle, first_run)

    status = await wait_for(handle, state_is("running"), "running in the new run")
    assert status.sandbox_id == sandbox_id
    assert [(g.gate, g.state, g.decided_by) for g in status.gates] == [("plan", "approved", "bo")]
    assert status.paused_seconds == pytest.approx(100.25)  # the first run's stretch came along
    await handle.signal("request_approval", {"gate": "merge"})
    await wait_for(handle, state_is("paused"), "paused in the new run")
    fake.advance(50)
    await handle.signal("approve", {"gate": "merge", "by": "cy"})
    await wait_for(handle, state_is("running"), "resumed in the new run")
    await handle.signal("finish", {})
    result = await result_of(handle)
    assert len(fake.called("provision_sandbox")) == 1 and len(fake.sandboxes) == 1
    row = one_row(fake)
    assert (result.cost_recorded, result.cost) == (True, row)
    assert_billed_as_the_sandbox_lived(fake, row)
    assert row.paused_seconds == pytest.approx(150.5)


async def test_continue_as_new_keeps_the_runner_pid(rig: Rig) -> None:
    pool = PoolConfig(templateId="base", launchRunnerInline=True)
    handle, _ = await rig.running(continue_as_new_after_events=50, pool=pool)
    first_run = (await handle.describe()).run_id
    assert (await status_of(handle)).runner_pid == 4242
    await continue_as_new(handle, first_run)
    pid = (await wait_for(handle, state_is("running"), "running in the new run")).runner_pid
    await handle.signal("finish", {})
    await result_of(handle)
    assert pid == 4242


# ---------------------------------------------------------------- bad input


async def test_invalid_start_input_fails_the_workflow_not_its_task(rig: Rig) -> None:
    fake = rig.fake
    workflow_id = f"session-bad-{uuid.uuid4().hex[:8]}"
    with rig.env.with_time_skipping_disabled():
        handle = await rig.env.client.start_workflow(
            "SandboxSession",
            args=[{"session_id": "x", "org_id": "", "env_vars": {"A": "s3cr3t", "1X": "s3cr3t"}}],
            id=workflow_id,
            task_queue=rig.task_queue,
        )
    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidInput" and cause.non_retryable
    assert "org_id" in cause.message and "env_vars" in cause.message
    assert "s3cr3t" not in cause.message  # never the values: they may be secrets
    assert fake.calls == []
    assert not await failed_workflow_tasks(handle)
    status = await status_of(handle)
    assert (status.state, status.sandbox_id) == ("failed", None)
