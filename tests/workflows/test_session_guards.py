"""Behaviours a plausible bug would break without any other test noticing (found by mutating
`workflows/session.py` and `workflows/models.py`): each test here fails on the bug its docstring
names. Fast tier: the stub activities and time skipping of test_session_stubbed.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from provider.models import PoolConfig
from tests.fixtures.session_stubs import (
    Rig,
    answer,
    failure_of,
    gone,
    one_row,
    refusal,
    result_of,
    state_is,
    status_of,
    wait_for,
)
from workflows import ExecRequest, GateDecision, GateRequest, SandboxSession, SessionStatus

pytestmark = pytest.mark.fast


async def stays(
    handle: WorkflowHandle[Any, Any],
    predicate: Callable[[SessionStatus], bool],
    seconds: float,
    what: str,
) -> None:
    """`predicate` holds on the session's status for `seconds` of real time."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        status = await status_of(handle)
        assert predicate(status), f"{what} no longer holds: {status}"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- keep-alive


async def test_the_default_keep_alive_interval_is_a_third_of_the_pool_timeout(rig: Rig) -> None:
    """Bug: the default interval is the whole pool timeout, so the sandbox is extended only as it
    expires (E2B may kill it first)."""
    fake = rig.fake
    handle, sandbox_id = await rig.running(pool=PoolConfig(templateId="base", timeoutSeconds=300))
    assert await rig.skip(handle, 90)
    assert not fake.called("keep_alive_sandbox")
    assert await rig.skip(handle, 20)  # 110 s: the first keep-alive came at 100 s
    assert len(fake.called("keep_alive_sandbox")) == 1
    assert await rig.skip(handle, 340)  # 450 s: one every 100 s
    calls = fake.called("keep_alive_sandbox")
    assert len(calls) == 4
    assert {(c.input.ref.sandbox_id, c.input.timeout_seconds, c.state) for c in calls} == {
        (sandbox_id, 300, "running")
    }
    await handle.signal("finish", {})
    assert (await result_of(handle)).outcome == "finished"


async def test_no_keep_alive_at_a_pause_or_a_resume(rig: Rig) -> None:
    """Bugs: a keep-alive at each pause or resume, or the keep-alive deadline carried across a
    gate (a resume already gives the sandbox the pool's whole timeout): each run stretch here is
    shorter than the interval, so no keep-alive is due, though they add up to more than it."""
    fake = rig.fake
    handle, _ = await rig.running(
        keep_alive_interval_seconds=60, pool=PoolConfig(templateId="base", timeoutSeconds=180)
    )
    for n in range(1, 4):
        await handle.signal("request_approval", {"gate": f"g{n}"})
        await wait_for(
            handle,
            lambda s, n=n: s.state == "paused" and len(fake.called("pause_sandbox")) == n,
            f"paused at g{n}",
        )
        assert await rig.skip(handle, 90)  # each gate waits longer than the interval
        await handle.signal("approve", {"gate": f"g{n}", "by": "ana"})
        await wait_for(
            handle,
            lambda s, n=n: s.state == "running" and len(fake.called("resume_sandbox")) == n,
            f"resumed after g{n}",
        )
        assert await rig.skip(handle, 40)  # and runs 40 s of a 60 s interval
    await handle.signal("finish", {})
    await result_of(handle)
    lifecycle = [n for n in fake.names() if n.endswith("_sandbox")]
    assert lifecycle == [
        "provision_sandbox",
        *["pause_sandbox", "resume_sandbox"] * 3,
        "terminate_sandbox",
    ]


# ---------------------------------------------------------------- gates


@pytest.mark.parametrize("first_wait", [40, 100], ids=["ahead-waits-40s", "ahead-waits-100s"])
async def test_a_queued_gate_times_out_counting_from_its_own_wait(
    rig: Rig, first_wait: float
) -> None:
    """Bug: a queued gate's timeout counts from its request, so a gate queued behind a slow one
    gets less than its time, or none: it times out the moment its turn comes."""
    fake = rig.fake
    handle, _ = await rig.running()
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="plan")))
    await answer(
        handle.execute_update(
            SandboxSession.request_gate,
            GateRequest(gate="deploy", timeout_seconds=60, on_timeout="reject"),
        )
    )
    await wait_for(handle, state_is("paused"), "paused at plan")
    assert await rig.skip(handle, first_wait)
    plan = await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="plan", by="bo"))
    )
    status = await wait_for(
        handle,
        lambda s: s.state == "paused" and len(fake.called("pause_sandbox")) == 2,
        "paused at deploy",
    )
    assert [(g.gate, g.state) for g in status.gates] == [
        ("plan", "approved"),
        ("deploy", "waiting"),
    ]
    refused = await refusal(handle.execute_update(SandboxSession.exec, ExecRequest(command="ls")))
    assert refused.message.startswith("session is paused at gate 'deploy'")
    if first_wait > 60:
        # Counted from the request, deploy's timeout would be due already: the server fires such
        # a timer in real time, within a second or so, not during a skip.
        await stays(handle, lambda s: s.gates[1].state == "waiting", 2.0, "deploy waiting")
    assert await rig.skip(handle, 50)  # 50 s of deploy's own 60 s
    status = await status_of(handle)
    assert status.state == "paused" and status.gates[1].state == "waiting"
    assert await rig.skip(handle, 20)
    status = await wait_for(handle, state_is("running"), "resumed after deploy timed out")
    deploy = status.gates[1]
    assert (deploy.state, deploy.decided_by) == ("timed_out", None)
    assert plan.decided_at is not None and deploy.decided_at is not None
    assert (deploy.decided_at - plan.decided_at).total_seconds() >= 60
    await handle.signal("finish", {})
    assert (await result_of(handle)).outcome == "finished"


async def test_gates_are_held_in_the_order_they_were_requested(rig: Rig) -> None:
    """Bug: the newest waiting gate is held first (LIFO), so a later request jumps the queue."""
    fake = rig.fake
    handle, _ = await rig.running()
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="first")))
    await wait_for(handle, state_is("paused"), "paused at first")
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="second")))
    await handle.signal("request_approval", {"gate": "third"})
    await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="first", by="ana"))
    )
    await wait_for(
        handle,
        lambda s: s.state == "paused" and len(fake.called("pause_sandbox")) == 2,
        "paused at the next gate",
    )
    refused = await refusal(handle.execute_update(SandboxSession.exec, ExecRequest(command="ls")))
    assert refused.message == (
        "session is paused at gate 'second'; exec runs only while the sandbox is running"
    )
    # third, decided before its turn, never pauses the sandbox: second is the one held.
    await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="third", by="bo"))
    )
    assert (await status_of(handle)).state == "paused"
    await answer(
        handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="second", by="cy"))
    )
    status = await wait_for(handle, state_is("running"), "resumed after second")
    assert [(g.gate, g.decided_by) for g in status.gates] == [
        ("first", "ana"),
        ("second", "cy"),
        ("third", "bo"),
    ]
    await handle.signal("finish", {})
    await result_of(handle)
    lifecycle = [n for n in fake.names() if n.endswith("_sandbox")]
    assert lifecycle == [
        "provision_sandbox",
        *["pause_sandbox", "resume_sandbox"] * 2,
        "terminate_sandbox",
    ]


async def test_a_gate_title_past_500_characters_is_refused(rig: Rig) -> None:
    """Bug: the title's length limit (GateRequest.title, 500) is not enforced, so any client can
    put an unbounded string into the session's state and every status answer."""
    fake = rig.fake
    handle, _ = await rig.running()
    # Raw JSON, as any Temporal client sends it: the client-side model would refuse it first.
    refused = await refusal(
        handle.execute_update("request_gate", {"gate": "long", "title": "t" * 501})
    )
    assert "title" in refused.message and "500" in refused.message
    await handle.signal("request_approval", {"gate": "long-signal", "title": "t" * 501})
    # An update sent after the signal is answered after the signal was handled.
    await answer(handle.execute_update(SandboxSession.exec, ExecRequest(command="true")))
    status = await status_of(handle)
    assert (status.state, status.gates) == ("running", [])
    assert not fake.called("pause_sandbox")

    gate = await answer(
        handle.execute_update(
            "request_gate", {"gate": "edge", "title": "t" * 500}, result_type=dict
        )
    )
    assert (gate["gate"], gate["title"]) == ("edge", "t" * 500)  # the limit itself is fine
    status = await wait_for(handle, state_is("paused"), "paused at edge")
    assert [g.gate for g in status.gates] == ["edge"]
    await handle.signal("finish", {})
    await result_of(handle)


# ---------------------------------------------------------------- the cost, once


@pytest.mark.parametrize("ending", ["finish", "failure", "cancel"])
async def test_the_cost_is_recorded_exactly_once_whatever_the_ending(rig: Rig, ending: str) -> None:
    """Bug: the compensation runs twice on some ending. The ledger keeps one row per sandbox
    whatever happens, so only the number of `record_cost` calls shows it."""
    fake = rig.fake
    handle, sandbox_id = await rig.running()
    await handle.signal("request_approval", {"gate": "deploy"})
    await wait_for(handle, state_is("paused"), "paused")
    if ending == "finish":
        await handle.signal("approve", {"gate": "deploy", "by": "ana"})
        await wait_for(handle, state_is("running"), "resumed")
        await handle.signal("finish", {})
        result = await result_of(handle)
        assert (result.outcome, result.cost_recorded) == ("finished", True)
    elif ending == "failure":
        fake.fail["resume_sandbox"] = gone(f"sandbox {sandbox_id} not found")
        await handle.signal("approve", {"gate": "deploy", "by": "ana"})
        cause = await failure_of(handle)
        assert isinstance(cause, ApplicationError) and cause.type == "SessionFailed"
    else:
        await handle.cancel()
        assert isinstance(await failure_of(handle), CancelledError)
    assert len(fake.called("record_cost")) == 1, fake.names()
    assert len(fake.called("terminate_sandbox")) == 1, fake.names()
    assert fake.names()[-2:] == ["terminate_sandbox", "record_cost"]
    outcome = {"finish": "finished", "failure": "failed", "cancel": "cancelled"}[ending]
    assert one_row(fake).outcome == outcome
    assert (await status_of(handle)).state == outcome
