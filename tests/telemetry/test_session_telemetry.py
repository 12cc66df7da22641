"""One real session (dev server, emulator, worker from `build_worker`) seen through telemetry:
the span tree from the client that starts it down to each E2B call, and metrics that agree
with the billing ledger."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import telemetry
from common.codec import data_converter
from emulator.testing import EmulatorHandle, running_emulator
from ledger import Ledger
from provider import E2BSandboxProvider, ExecInput, SandboxRef, StaticCredentialSource
from provider.errors import SandboxGone
from provider.models import PoolConfig
from telemetry.instruments import (
    ERROR_TYPE,
    GATE_OUTCOME,
    GATE_WAIT,
    OPERATION,
    ORG,
    OUTCOME,
    PROVIDER_DURATION,
    PROVIDER_ERRORS,
    SANDBOX,
    SANDBOX_COUNT,
    SANDBOX_TIME,
    STATE,
    TEMPLATE,
)
from tests.fixtures.stack import state_is, wait_for
from tests.fixtures.telemetry import MemoryTelemetry, SdkMetrics, attr
from tests.fixtures.temporal import answer, result_of
from worker import build_worker
from workflows import ExecRequest, SandboxSession, SessionInput, workflow_id_for

SECRET = f"tok-{uuid.uuid4().hex}"
"""An env value given to the sandbox: it must reach no span."""


@pytest_asyncio.fixture(scope="module")
async def traced(
    temporal_env: WorkflowEnvironment,
    emulator: Any,
    ledger: Ledger,
    memory_telemetry: MemoryTelemetry,
    sdk_metrics: SdkMetrics,
) -> AsyncIterator[tuple[Client, str]]:
    """A client that traces (as the worker and the CLI connect) and a worker built on it, its
    SDK metrics (and the workflows' own) kept in `sdk_metrics`."""
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=data_converter(),
        interceptors=telemetry.with_tracing([]),
        runtime=sdk_metrics.runtime,
    )
    provider = E2BSandboxProvider(
        credentials=StaticCredentialSource(emulator.api_key),
        api_url=emulator.api_url,
        sandbox_url=emulator.sandbox_url,
    )
    queue = f"tq-{uuid.uuid4()}"
    async with build_worker(client, task_queue=queue, provider=provider, ledger=ledger):
        yield client, queue


def _by_name(spans: list[Any], name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


def _child(spans: list[Any], parent: Any, name: str) -> Any:
    children = [
        s for s in _by_name(spans, name) if s.parent and s.parent.span_id == parent.context.span_id
    ]
    assert children, f"no {name} under {parent.name}; have {sorted({s.name for s in spans})}"
    return children[0]


async def test_one_session_yields_the_span_tree_and_metrics_equal_to_the_ledger(
    traced: tuple[Client, str],
    ledger: Ledger,
    memory_telemetry: MemoryTelemetry,
    sdk_metrics: SdkMetrics,
    emulator: Any,
) -> None:
    client, queue = traced
    mem = memory_telemetry
    org, session_id = f"obs-{uuid.uuid4().hex[:8]}", f"obs-{uuid.uuid4().hex[:10]}"
    handle = await client.start_workflow(
        SandboxSession.run,
        SessionInput(
            session_id=session_id,
            org_id=org,
            pool=PoolConfig(templateId="base"),
            env_vars={"API_TOKEN": SECRET},
        ),
        id=workflow_id_for(session_id),
        task_queue=queue,
    )
    status = await wait_for(handle, state_is("running"), what="running")
    sandbox_id = status.sandbox_id
    assert mem.value(SANDBOX_COUNT.name, **{ORG: org, STATE: "running"}) == 1

    done = await answer(
        handle.execute_update(
            SandboxSession.exec, ExecRequest(command='test -n "$API_TOKEN" && echo "has token"')
        )
    )
    assert done.stdout.strip() == "has token"

    await handle.signal("request_approval", {"gate": "review"})
    await wait_for(handle, state_is("paused"), what="paused at the gate")
    assert mem.value(SANDBOX_COUNT.name, **{ORG: org, STATE: "paused"}) == 1
    assert mem.value(SANDBOX_COUNT.name, **{ORG: org, STATE: "running"}) == 0
    await handle.signal("approve", {"gate": "review", "by": "ana"})
    await wait_for(handle, state_is("running"), what="resumed")

    # A gate nobody decides: it times out, is rejected, and the session carries on.
    await handle.signal("request_approval", {"gate": "nap", "timeout_seconds": 1})
    await wait_for(
        handle,
        lambda s: s.state == "running" and s.gates[-1].state == "timed_out",
        what="second gate timed out",
    )
    await handle.signal("finish", {})
    result = await result_of(handle)
    assert result.cost_recorded

    # Metrics: the ledger's row, exactly, and the gauges back to zero.
    (row,) = await ledger.events(session_id=session_id)
    labels = {ORG: org, TEMPLATE: "base"}
    assert row.running_seconds > 0 and row.paused_seconds > 0
    assert mem.value(SANDBOX_TIME.name, **labels, **{STATE: "running"}) == row.running_seconds
    assert mem.value(SANDBOX_TIME.name, **labels, **{STATE: "paused"}) == row.paused_seconds
    assert mem.value(SANDBOX_COUNT.name, **{ORG: org}) == 0  # both states back to zero
    assert mem.value(SANDBOX_COUNT.name, **{ORG: org, STATE: "paused"}) == 0
    # Gate waits, from the workflow's replay-safe meter: one per decision, in seconds.
    session_attrs = {"workflow_type": "SandboxSession"}
    assert len(sdk_metrics.values(GATE_WAIT, **{GATE_OUTCOME: "approved"}, **session_attrs)) == 1
    (timed_out,) = sdk_metrics.values(GATE_WAIT, **{GATE_OUTCOME: "timed_out"}, **session_attrs)
    assert 1.0 <= timed_out < 30
    for operation, calls in (("provision", 1), ("exec", 1), ("pause", 2), ("resume", 2)):
        assert (
            mem.count(PROVIDER_DURATION.name, **{OPERATION: operation, OUTCOME: "ok"}) >= calls
        ), operation
    assert mem.count(PROVIDER_DURATION.name, **{OPERATION: "terminate"}) >= 1

    # Traces: client → workflow → activity → E2B call, in one trace.
    spans = mem.spans()
    starts = [
        s
        for s in _by_name(spans, "StartWorkflow:SandboxSession")
        if attr(s, "temporalWorkflowID") == workflow_id_for(session_id)
    ]
    assert len(starts) == 1, [s.attributes for s in _by_name(spans, "StartWorkflow:SandboxSession")]
    root = starts[0]
    trace = [s for s in spans if s.context.trace_id == root.context.trace_id]
    # The interceptor's workflow spans take no time: RunWorkflow and each StartActivity hang
    # from the workflow's trace context, the client span that started it.
    _child(trace, root, "RunWorkflow:SandboxSession")
    for activity, call in (
        ("provision_sandbox", "sandbox.provision"),
        ("exec_command", "sandbox.exec"),
        ("pause_sandbox", "sandbox.pause"),
        ("terminate_sandbox", "sandbox.terminate"),
    ):
        start = _child(trace, root, f"StartActivity:{activity}")
        executed = _child(trace, start, f"RunActivity:{activity}")
        provider_span = _child(trace, executed, call)
        assert attr(provider_span, SANDBOX) == sandbox_id
        assert attr(provider_span, ORG) == org
        assert attr(provider_span, TEMPLATE) == "base"
        assert attr(provider_span, OUTCOME) == "ok"
    _child(trace, root, "HandleSignal:request_approval")  # signals are in the tree too

    # Nothing secret anywhere in what was exported.
    for span in spans:
        texts = [span.name, str(span.status.description), *map(str, span.attributes.values())]
        texts += [str(v) for event in span.events for v in (event.attributes or {}).values()]
        for text in texts:
            assert SECRET not in text and emulator.api_key not in text, (span.name, text)


@pytest_asyncio.fixture
async def own_emulator() -> AsyncIterator[EmulatorHandle]:
    """An emulator of the test's own: the listing below must find it empty, whatever sandboxes
    other modules' sessions hold on the shared one meanwhile."""
    async with running_emulator(api_key="e2b_telemetry_own") as emu:
        yield emu


async def test_a_failed_provider_call_is_an_error_span_and_counted_by_type(
    own_emulator: EmulatorHandle, memory_telemetry: MemoryTelemetry
) -> None:
    provider = telemetry.TracedProvider(
        E2BSandboxProvider(
            credentials=StaticCredentialSource(own_emulator.api_key),
            api_url=own_emulator.api_url,
            sandbox_url=own_emulator.sandbox_url,
        )
    )
    before = memory_telemetry.value(
        PROVIDER_ERRORS.name, **{OPERATION: "exec", ERROR_TYPE: "SandboxGone"}
    )
    ref = SandboxRef(org_id="acme", sandbox_id=f"gone{uuid.uuid4().hex[:8]}")
    with pytest.raises(SandboxGone):
        await provider.exec_command(ExecInput(ref=ref, command="true"))
    after = memory_telemetry.value(
        PROVIDER_ERRORS.name, **{OPERATION: "exec", ERROR_TYPE: "SandboxGone"}
    )
    assert after == before + 1
    (span,) = [s for s in memory_telemetry.spans() if attr(s, SANDBOX) == ref.sandbox_id]
    assert span.name == "sandbox.exec" and span.status.status_code.name == "ERROR"
    assert attr(span, OUTCOME) == attr(span, ERROR_TYPE) == "SandboxGone"
    assert (
        memory_telemetry.count(
            PROVIDER_DURATION.name, **{OPERATION: "exec", OUTCOME: "SandboxGone"}
        )
        >= 1
    )

    # Calls beyond a session's (the reconciler's listing) are traced too.
    org = f"list-{uuid.uuid4().hex[:6]}"
    assert await provider.list_sandboxes(org) == []
    (listed,) = [s for s in memory_telemetry.spans() if attr(s, ORG) == org]
    assert (listed.name, attr(listed, OUTCOME)) == ("sandbox.list", "ok")
