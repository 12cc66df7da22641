"""Gate notices end to end: a real worker (`build_worker`, as `sessions worker` builds it), the
real notifier posting to real local receivers, the real e2b SDK on the emulator, a real SQLite
ledger; and a worker process SIGKILLed while it notifies.

What a person relies on: they are told once per gate event, with what the agent asks and how
to decide, even when their receiver fails at first; the audit trail holds each event once, even
when the worker dies mid-delivery; and none of it ever holds the session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.notify import EVENT_ID_HEADER
from emulator.testing import EmulatorHandle
from ledger import GateEvent, Ledger, open_ledger
from provider import E2BSandboxProvider, StaticCredentialSource
from tests.fixtures.chaos import WorkerProcess, activity_started
from tests.fixtures.receiver import RECEIVER_SECRET, Receiver, notify_settings
from tests.fixtures.stack import Stack, state_is, status_of, wait_for
from tests.fixtures.temporal import result_of
from worker import build_worker
from workflows import GateRequest, SandboxSession

GATE = GateRequest(
    gate="deploy",
    title="Deploy to prod",
    summary="kubectl apply the v2 manifests",
    details="kubectl apply -f deploy/v2/\n# 3 deployments, 1 service",
    requested_by="runner",
    approvers=["ana"],
    timeout_seconds=3600,
)


async def _eventually(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _kinds(rows: list[GateEvent]) -> list[tuple[str, str | None, str | None]]:
    return sorted((r.event, r.about, r.sink) for r in rows)


@pytest_asyncio.fixture
async def notified_stack(
    temporal_env: WorkflowEnvironment,
    emulator: EmulatorHandle,
    ledger: Ledger,
    receiver: Receiver,
    slack_receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    settings = notify_settings(
        monkeypatch,
        SESSIONS_NOTIFY_URL=receiver.url(),
        SESSIONS_NOTIFY_SECRET=RECEIVER_SECRET,
        SESSIONS_NOTIFY_SLACK_URL=slack_receiver.url("/services/T0/B0/XXXX"),
    )
    provider = E2BSandboxProvider(
        credentials=StaticCredentialSource(emulator.api_key),
        api_url=emulator.api_url,
        sandbox_url=emulator.sandbox_url,
    )
    queue = f"tq-{uuid.uuid4()}"
    worker = build_worker(
        temporal_env.client, task_queue=queue, provider=provider, ledger=ledger, notify=settings
    )
    async with worker:
        yield Stack(temporal_env.client, queue, ledger, emulator)


async def test_each_gate_event_is_delivered_once_signed_despite_failing_first_attempts(
    notified_stack: Stack, receiver: Receiver, slack_receiver: Receiver
) -> None:
    receiver.fail_first = 2  # the webhook answers 500 twice, then takes it
    handle = await notified_stack.start()
    await wait_for(handle, state_is("running"), what="running")
    await handle.execute_update(SandboxSession.request_gate, GATE)
    await wait_for(handle, state_is("paused"), what="paused at the gate")

    await _eventually(lambda: len(receiver.accepted) == 1, "the waiting notice, third try")
    assert len(receiver.received) == 3 and all(r.signed for r in receiver.received)
    assert len({r.headers[EVENT_ID_HEADER.lower()] for r in receiver.received}) == 1
    body = receiver.accepted[0].json()
    status = await status_of(handle)
    assert body["type"] == "gate.waiting"
    assert (body["session_id"], body["org_id"], body["issue_id"]) == (
        status.session_id,
        "acme",
        "ISS-1",
    )
    assert (body["gate"], body["summary"], body["details"]) == (
        "deploy",
        GATE.summary,
        GATE.details,
    )
    assert (body["requested_by"], body["approvers"], body["timeout_seconds"]) == (
        "runner",
        ["ana"],
        3600,
    )
    assert body["waiting_since"] is not None and body["cost"]["running_seconds"] > 0
    assert any("sessions approve" in c for c in body["decide"]["commands"])
    await _eventually(lambda: len(slack_receiver.accepted) == 1, "the Slack message")
    assert len(slack_receiver.received) == 1  # Slack took it at once: never posted again

    async def notified() -> bool:
        return (await status_of(handle)).gates[0].notified_at is not None

    deadline = asyncio.get_running_loop().time() + 30
    while not await notified():
        assert asyncio.get_running_loop().time() < deadline, "notified_at never set"
        await asyncio.sleep(0.1)

    await handle.signal("approve", {"gate": "deploy", "by": "ana", "comment": "go"})
    await wait_for(handle, state_is("running"), what="resumed")
    await _eventually(lambda: len(receiver.accepted) == 2, "the follow-up")
    follow = receiver.accepted[1].json()
    assert (follow["type"], follow["decided_by"], follow["comment"]) == (
        "gate.approved",
        "ana",
        "go",
    )
    await handle.signal("finish", {})
    await result_of(handle)
    await _eventually(lambda: len(slack_receiver.accepted) == 2, "the Slack follow-up")

    rows = await notified_stack.ledger.gate_events(session_id=status.session_id)
    assert _kinds(rows) == [
        ("approved", None, None),
        ("notified", "approved", "slack"),
        ("notified", "approved", "webhook"),
        ("notified", "requested", "slack"),
        ("notified", "requested", "webhook"),
        ("requested", None, None),
    ]
    hook = next(r for r in rows if r.sink == "webhook" and r.about == "requested")
    assert hook.attempts == 3
    approved = next(r for r in rows if r.event == "approved")
    assert (approved.by, approved.comment) == ("ana", "go")
    assert approved.paused_seconds is not None and approved.paused_seconds > 0
    assert len(receiver.accepted) == 2 and len(slack_receiver.accepted) == 2


async def test_a_receiver_that_is_down_never_holds_the_gate_or_the_session(
    notified_stack: Stack, receiver: Receiver, slack_receiver: Receiver
) -> None:
    receiver.close()
    slack_receiver.close()
    handle = await notified_stack.start()
    await wait_for(handle, state_is("running"), what="running")
    await handle.execute_update(SandboxSession.request_gate, GATE)
    await wait_for(handle, state_is("paused"), what="paused at the gate")
    await handle.signal("approve", {"gate": "deploy", "by": "ana"})
    await wait_for(handle, state_is("running"), what="resumed though no notice went")
    gate = (await status_of(handle)).gates[0]
    assert gate.state == "approved" and gate.notified_at is None
    await handle.signal("finish", {})
    result = await result_of(handle)
    assert result.outcome == "finished"
    rows = await notified_stack.ledger.gate_events(session_id=result.status.session_id)
    assert _kinds(rows) == [("approved", None, None), ("requested", None, None)]


async def test_audit_rows_exactly_once_when_the_worker_is_killed_while_notifying(
    temporal_env: WorkflowEnvironment,
    emulator: EmulatorHandle,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    """SIGKILL lands while the webhook holds the POST: the notice is retried by a new worker
    (within its 5 s heartbeat timeout), delivered once, and each audit row is there once."""
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    queue = f"kill-notify-{uuid.uuid4().hex[:6]}"

    def process() -> WorkerProcess:
        worker = WorkerProcess(
            address=temporal_env.client.service_client.config.target_host,
            queue=queue,
            ledger_url=ledger_url,
            emu=emulator,
            log=tmp_path / "worker.log",
        )
        worker.env.update(
            SESSIONS_NOTIFY_URL=receiver.url(), SESSIONS_NOTIFY_SECRET=RECEIVER_SECRET
        )
        return worker

    receiver.hang = True
    first = await process().start()
    second: WorkerProcess | None = None
    try:
        stack = Stack(temporal_env.client, queue, None, emulator)  # type: ignore[arg-type]
        handle = await stack.start()
        await wait_for(handle, state_is("running"), what="running")
        await handle.execute_update(SandboxSession.request_gate, GATE)
        await activity_started(handle, "notify_gate")
        await asyncio.sleep(0.5)  # the POST is in the receiver's hands
        first.kill()
        receiver.hang = False
        second = await process().start()
        await _eventually(lambda: len(receiver.accepted) == 1, "the retried notice", 90)
        await handle.signal("approve", {"gate": "deploy", "by": "ana"})
        await wait_for(handle, state_is("running"), what="resumed")
        await handle.signal("finish", {})
        result = await result_of(handle, 90)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert len(receiver.accepted) == 2  # the waiting notice and the follow-up, once each
    led = await open_ledger(ledger_url)
    try:
        rows = await led.gate_events(session_id=result.status.session_id)
    finally:
        await led.close()
    assert _kinds(rows) == [
        ("approved", None, None),
        ("notified", "approved", "webhook"),
        ("notified", "requested", "webhook"),
        ("requested", None, None),
    ]
