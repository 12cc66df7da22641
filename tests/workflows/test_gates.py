"""Gates people can act on, on the fast tier (stub activities, time-skipping server): who may
decide, what the session publishes for a client to find it by, what it announces and audits.

The notifier itself (HTTP, signatures, retries) is tested in tests/notify; here its stub under
the real name records each notice, so the workflow's promises are asserted exactly: one notice
per gate event, after the pause; a failing notifier never holds or fails the session; every
gate's request and ending reach the final cost record's audit rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from common.search import (
    MEMO_USAGE,
    MEMO_WAITING_GATES,
    SESSION_ISSUE,
    SESSION_ORG,
    SESSION_STATE,
    SESSION_WAITING_GATES,
)
from ledger import gate_digest
from tests.fixtures.session_stubs import (
    WAIT,
    Rig,
    answer,
    eventually,
    failed_workflow_tasks,
    result_of,
    state_is,
    status_of,
    wait_for,
)
from tests.fixtures.stack import save_history
from workflows import GateDecision, GateRequest, SandboxSession

pytestmark = pytest.mark.fast


async def _paused_at(rig: Rig, **gate: Any) -> WorkflowHandle[Any, Any]:
    handle, _ = await rig.running()
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(**gate)))
    await wait_for(handle, state_is("paused"), "paused at the gate")
    return handle


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an async check (the session's status, its description) until it holds."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _refused(call: Any) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await answer(call)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return str(cause.message)


# ---------------------------------------------------------------- who may decide


async def test_only_a_listed_approver_decides_and_the_requester_never_approves(rig: Rig) -> None:
    handle = await _paused_at(
        rig, gate="deploy", summary="Deploy v2 to prod", requested_by="runner",
        approvers=["Ana@example.com", "runner"],
    )  # fmt: skip

    refused = await _refused(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="deploy", by="eve"))
    )
    assert refused == "eve may not approve gate 'deploy': its approvers are Ana@example.com, runner"
    refused = await _refused(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="deploy", by="RUNNER"))
    )
    assert "requested gate 'deploy' and may not approve it" in refused

    # A signal from someone else is logged and ignored: the gate still waits, nothing failed.
    await handle.signal("approve", {"gate": "deploy", "by": "eve"})
    await handle.signal("approve", {"gate": "deploy", "by": "runner"})
    await handle.signal("reject", {"gate": "deploy", "by": "mallory"})
    status = await status_of(handle)
    assert status.state == "paused" and status.gates[0].state == "waiting"
    assert not await failed_workflow_tasks(handle)

    # An approver, in another case than listed, decides.
    gate = await answer(
        handle.execute_update(
            SandboxSession.approve_gate,
            GateDecision(gate="deploy", by="ana@EXAMPLE.com", comment="ok"),
        )
    )
    assert (gate.state, gate.decided_by) == ("approved", "ana@EXAMPLE.com")
    await wait_for(handle, state_is("running"), "resumed")
    await handle.signal("finish", {})
    await result_of(handle)
    await save_history(handle, "gate_authorised")


async def test_the_requester_may_reject_and_may_approve_only_when_the_gate_allows(
    rig: Rig,
) -> None:
    handle, _ = await rig.running()
    for name, allow in (("a", False), ("b", True)):
        await answer(
            handle.execute_update(
                SandboxSession.request_gate,
                GateRequest(gate=name, requested_by="platform", allow_self_approval=allow),
            )
        )
    gate = await answer(
        handle.execute_update(SandboxSession.reject_gate, GateDecision(gate="a", by="platform"))
    )
    assert gate.state == "rejected"
    gate = await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="b", by="platform"))
    )
    assert gate.state == "approved"
    await handle.signal("finish", {})
    await result_of(handle)


async def test_gate_context_is_validated_with_one_clear_line(rig: Rig) -> None:
    handle, _ = await rig.running()
    too_long = {"gate": "g", "details": "x" * (16 * 1024 + 1)}
    refused = await _refused(handle.execute_update("request_gate", too_long, result_type=dict))
    assert "details is 16385 bytes; at most 16384 (16 KiB)" in refused
    assert "xxxx" not in refused  # the payload is never echoed
    refused = await _refused(
        handle.execute_update("request_gate", {"gate": "g", "approvers": "ana"}, result_type=dict)
    )
    assert "approvers" in refused and "list" in refused
    refused = await _refused(
        handle.execute_update(
            "request_gate", {"gate": "g", "approvers": ["ana", "bo\x1bb"]}, result_type=dict
        )
    )
    assert "each approver contains control characters" in refused
    refused = await _refused(
        handle.execute_update(
            "request_gate", {"gate": "g", "summary": "two\nlines"}, result_type=dict
        )
    )
    assert "summary contains control characters" in refused
    # The same by signal: logged and ignored, the session unharmed.
    await handle.signal("request_approval", too_long)
    await handle.signal("request_approval", {"gate": "g", "approvers": [1, 2]})
    status = await status_of(handle)
    assert status.state == "running" and status.gates == []
    assert not await failed_workflow_tasks(handle)
    # Sixteen KiB exactly is fine, newlines and tabs included.
    details = ("diff --git a/x b/x\n\t+line\n" * 1000)[: 16 * 1024]
    gate = await answer(
        handle.execute_update(SandboxSession.request_gate, GateRequest(gate="g", details=details))
    )
    assert gate.details == details
    await handle.signal("finish", {})
    await result_of(handle)


async def test_the_waiting_gates_must_fit_one_search_attribute_value(rig: Rig) -> None:
    """Past Temporal's 2 KB per search attribute value every workflow task would fail, forever:
    the request that would cross it is refused instead, and the session goes on."""
    handle, _ = await rig.running()
    for n in range(13):
        await handle.signal("request_approval", {"gate": f"{n:03d}-" + "g" * 124})
    refused = await _refused(
        handle.execute_update(SandboxSession.request_gate, GateRequest(gate="one-more" * 16))
    )
    assert refused.startswith("too many gates wait at once (13)")
    status = await wait_for(handle, state_is("paused"), "paused at the first gate")
    assert len(status.gates) == 13
    assert not await failed_workflow_tasks(handle)
    await handle.signal("finish", {})
    await result_of(handle)


# ---------------------------------------------------------------- what the session publishes


async def test_search_attributes_and_memo_follow_every_transition(rig: Rig) -> None:
    handle = await _paused_at(
        rig, gate="deploy", title="Deploy", summary="Ship v2", requested_by="runner",
        approvers=["ana"], timeout_seconds=3600,
    )  # fmt: skip
    desc = await handle.describe()
    attrs = desc.typed_search_attributes
    assert attrs.get(SESSION_STATE) == "paused"
    assert (attrs.get(SESSION_ORG), attrs.get(SESSION_ISSUE)) == ("acme", "ISS-1")
    assert attrs.get(SESSION_WAITING_GATES) == ["deploy"]
    waiting = await desc.memo_value(MEMO_WAITING_GATES)
    assert [(w["gate"], w["summary"], w["requested_by"], w["approvers"]) for w in waiting] == [
        ("deploy", "Ship v2", "runner", ["ana"])
    ]
    assert waiting[0]["timeout_seconds"] == 3600 and waiting[0]["waiting_since"] is not None
    usage = await desc.memo_value(MEMO_USAGE)
    assert usage["state"] == "paused" and usage["running_seconds"] > 0

    await handle.signal("approve", {"gate": "deploy", "by": "ana"})
    await wait_for(handle, state_is("running"), "resumed")

    async def published() -> bool:
        desc = await handle.describe()
        attrs = desc.typed_search_attributes
        return (
            attrs.get(SESSION_STATE) == "running"
            and attrs.get(SESSION_WAITING_GATES) is None
            and await desc.memo_value(MEMO_WAITING_GATES, None) is None
        )

    await _until(published, "the decided gate gone from the search attributes and memo")
    await handle.signal("finish", {})
    await result_of(handle)
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(SESSION_STATE) == "finished" and attrs.get(SESSION_WAITING_GATES) is None


async def test_a_session_that_ends_with_a_gate_waiting_is_no_longer_listed_as_waiting(
    rig: Rig,
) -> None:
    handle = await _paused_at(rig, gate="deploy")
    await handle.cancel()
    with pytest.raises(Exception):  # noqa: B017 - cancelled: asserted by the attributes
        await result_of(handle)
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(SESSION_STATE) == "cancelled"
    assert attrs.get(SESSION_WAITING_GATES) is None


# ---------------------------------------------------------------- notices and the audit


async def test_one_notice_per_gate_event_and_every_row_in_the_final_record(rig: Rig) -> None:
    fake = rig.fake
    details = "rm -rf /tmp/build && make deploy"
    handle = await _paused_at(
        rig, gate="deploy", summary="Deploy v2", details=details, requested_by="runner",
        timeout_seconds=600,
    )  # fmt: skip
    await eventually(lambda: fake.notices_about("deploy") == ["requested"], "the first notice")
    first = fake.notices[0]
    assert first.event is not None and first.event.event == "requested"
    assert (first.event.by, first.summary, first.details) == ("runner", "Deploy v2", details)
    assert first.waiting_since is not None  # announced once the sandbox paused
    assert fake.only_sandbox().state == "paused"
    status = await status_of(handle)
    assert status.gates[0].notified_at is not None and status.gates[0].notify_error is None

    fake.advance(120)
    await handle.signal("reject", {"gate": "deploy", "by": "ana", "comment": "not today"})
    await eventually(
        lambda: fake.notices_about("deploy") == ["requested", "rejected"], "the follow-up"
    )
    follow = fake.notices[1]
    assert follow.event is not None
    assert (follow.event.event, follow.event.by, follow.event.comment) == (
        "rejected",
        "ana",
        "not today",
    )
    assert follow.event.paused_seconds is not None and follow.event.paused_seconds >= 0
    await wait_for(handle, state_is("running"), "resumed after the rejection")
    await handle.signal("finish", {})
    await result_of(handle)

    rows = fake.called("record_cost")[0].input.gate_events
    assert [(r.gate, r.event, r.by) for r in rows] == [
        ("deploy", "requested", "runner"),
        ("deploy", "rejected", "ana"),
    ]
    canonical = json.dumps(
        {"details": details, "summary": "Deploy v2"}, sort_keys=True, separators=(",", ":")
    )
    assert rows[0].digest == gate_digest("Deploy v2", details)
    assert rows[0].digest == hashlib.sha256(canonical.encode()).hexdigest()
    assert rows[1].event == follow.event.event and rows[1].at == follow.event.at
    assert len(fake.notices) == 2  # nothing announced twice
    await save_history(handle, "gate_context_rejected")


async def test_a_reminder_at_the_gates_share_and_a_notice_when_it_times_out(rig: Rig) -> None:
    fake = rig.fake
    handle = await _paused_at(rig, gate="deploy", timeout_seconds=3600, remind_at=0.5)
    await eventually(lambda: fake.notices_about("deploy") == ["requested"], "the first notice")
    assert await rig.skip(handle, 1700)
    assert fake.notices_about("deploy") == ["requested"]  # not before its share
    assert await rig.skip(handle, 200)
    await eventually(
        lambda: fake.notices_about("deploy") == ["requested", "reminder"], "the reminder"
    )
    reminder = fake.notices[-1]
    assert reminder.event is None and reminder.timeout_seconds == 3600
    assert (await status_of(handle)).gates[0].reminded_at is not None

    await rig.skip(handle, 1800)
    await eventually(
        lambda: fake.notices_about("deploy") == ["requested", "reminder", "timed_out"],
        "the timeout's notice",
    )
    notice = fake.notices[-1]
    assert notice.event is not None and notice.event.event == "timed_out"
    assert notice.on_timeout == "reject"
    await wait_for(handle, state_is("running"), "resumed after the timeout")
    await handle.signal("finish", {})
    await result_of(handle)
    await save_history(handle, "gate_reminder_timeout")


async def test_a_failing_notifier_never_holds_or_fails_the_session(rig: Rig) -> None:
    fake = rig.fake
    fake.fail["notify_gate"] = ApplicationError(
        "webhook to hooks.example.com answered 500", type="NotifyFailed", non_retryable=True
    )
    handle = await _paused_at(rig, gate="deploy")

    async def reported() -> bool:
        return (await status_of(handle)).gates[0].notify_error is not None

    await _until(reported, "the notifier's failure on the gate")
    gate = (await status_of(handle)).gates[0]
    assert gate.notify_error == (
        "requested notice not delivered: NotifyFailed: webhook to hooks.example.com answered 500"
    )
    assert gate.state == "waiting" and gate.notified_at is None
    await handle.signal("approve", {"gate": "deploy", "by": "ana"})
    await wait_for(handle, state_is("running"), "resumed though no notice went")
    await handle.signal("finish", {})
    result = await result_of(handle)
    assert result.outcome == "finished"
    rows = fake.called("record_cost")[0].input.gate_events
    assert [r.event for r in rows] == ["requested", "approved"]
    await save_history(handle, "gate_notify_failed")


async def test_a_continued_run_keeps_its_gates_announced_once_published_and_audited(
    rig: Rig,
) -> None:
    """Continued as new while a gate waits: the gate is not announced again, the new run
    publishes it, a decided gate's details stay behind (its digest does not), and the final
    record audits the gates of both runs."""
    fake = rig.fake
    handle, _ = await rig.running(continue_as_new_after_events=200)
    await handle.signal("request_approval", {"gate": "plan", "details": "the plan"})
    await wait_for(handle, state_is("paused"), "paused at plan")
    await handle.signal("approve", {"gate": "plan", "by": "bo"})
    await wait_for(handle, state_is("running"), "resumed")
    plan_digest = (await status_of(handle)).gates[0].digest
    await handle.signal("request_approval", {"gate": "deploy", "details": "the deploy"})
    await wait_for(handle, state_is("paused"), "paused at deploy")
    await eventually(lambda: fake.notices_about("deploy") == ["requested"], "deploy announced")
    first_run = (await handle.describe()).run_id  # the run that announced deploy

    async def continued() -> bool:
        await handle.signal("approve", {"gate": "nope", "by": "x"})  # ignored: history grows
        return (await handle.describe()).run_id != first_run

    await _until(continued, "the continue-as-new at the gate")
    status = await wait_for(handle, state_is("paused"), "still paused in the new run")
    plan, deploy = status.gates
    assert (plan.details, plan.digest) == (None, plan_digest)
    assert (deploy.state, deploy.details) == ("waiting", "the deploy")
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(SESSION_WAITING_GATES) == ["deploy"] and attrs.get(SESSION_STATE) == "paused"
    assert fake.notices_about("deploy") == ["requested"]  # not announced again

    await handle.signal("approve", {"gate": "deploy", "by": "cy"})
    await wait_for(handle, state_is("running"), "resumed in the new run")
    await handle.signal("finish", {})
    await result_of(handle)
    rows = fake.called("record_cost")[0].input.gate_events
    assert [(r.gate, r.event, r.by) for r in rows] == [
        ("plan", "requested", None),
        ("plan", "approved", "bo"),
        ("deploy", "requested", None),
        ("deploy", "approved", "cy"),
    ]
    assert rows[0].digest == gate_digest(None, "the plan") == plan_digest
    assert fake.notices_about("deploy") == ["requested", "approved"]
    await save_history(handle, "gate_continued_while_waiting")


async def test_a_sink_that_keeps_failing_shows_on_the_gate_after_one_round_then_clears(
    rig: Rig,
) -> None:
    """Retried in rounds: after the first round (2 minutes of attempts) the gate's status says
    why; the next round goes on trying, and a delivery clears it. Time skipped, not waited."""
    fake = rig.fake
    fake.fail["notify_gate"] = ApplicationError(
        "webhook to hooks.example.com answered 503", type="NotifyFailed"
    )
    handle = await _paused_at(rig, gate="deploy")
    await eventually(lambda: len(fake.notify_attempts) >= 1, "the first attempt")
    assert (await status_of(handle)).gates[0].notify_error is None  # still retrying

    async def reported() -> bool:
        await rig.skip(handle, 30)
        return (await status_of(handle)).gates[0].notify_error is not None

    await _until(reported, "the first round's failure on the gate")
    gate = (await status_of(handle)).gates[0]
    assert gate.notify_error == (
        "requested notice not delivered: NotifyFailed: webhook to hooks.example.com answered 503"
    )
    assert len(fake.notify_attempts) >= 3  # retried within the round

    del fake.fail["notify_gate"]  # the sink is back: the next round delivers

    async def delivered() -> bool:
        await rig.skip(handle, 30)
        gate = (await status_of(handle)).gates[0]
        return gate.notify_error is None and gate.notified_at is not None

    await _until(delivered, "the delivery in a later round")
    assert fake.notices_about("deploy") == ["requested"]
    await handle.signal("approve", {"gate": "deploy", "by": "ana"})
    await wait_for(handle, state_is("running"), "resumed")
    await handle.signal("finish", {})
    await result_of(handle)
    await save_history(handle, "gate_notify_rounds")
