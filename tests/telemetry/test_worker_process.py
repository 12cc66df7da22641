"""`python worker.py` as operators run it: one OTLP pipeline to a collector for spans, our
metrics and the Temporal SDK's (durations in seconds, one resource), probes, JSON logs that
name the session and sandbox, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ledger import open_ledger
from provider.models import PoolConfig
from telemetry.instruments import (
    GATE_OUTCOME,
    GATE_WAIT,
    PROVIDER_DURATION,
    SANDBOX_COUNT,
    SANDBOX_TIME,
    STATE,
    Metric,
)
from telemetry.prometheus import known_series, series_names
from telemetry.temporal import with_tracing
from tests.fixtures.cli import clean_env
from tests.fixtures.stack import state_is, wait_for
from tests.fixtures.telemetry import MemoryTelemetry, OtlpReceiver
from tests.fixtures.temporal import result_of
from workflows import SandboxSession, SessionInput, workflow_id_for

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _eventually(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            result = await check()
            if result:
                return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_worker_process_exports_spans_and_metrics_and_answers_probes(
    temporal_env: WorkflowEnvironment,
    emulator: Any,
    otlp_receiver: OtlpReceiver,
    memory_telemetry: MemoryTelemetry,
    tmp_path: Path,
) -> None:
    health = _free_port()
    queue = f"otel-{uuid.uuid4().hex[:8]}"
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = clean_env(
        **emulator.env(),
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        TEMPORAL_API_KEY="",  # as compose and Kubernetes pass an absent secret
        SESSIONS_TASK_QUEUE=queue,
        SESSIONS_RECONCILER="off",
        LEDGER_URL=ledger_url,
        SESSIONS_HEALTH_PORT=str(health),
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_METRIC_EXPORT_INTERVAL="300",
        LOG_FORMAT="json",
    )
    for name in (
        "OTEL_SERVICE_NAME",
        "OTEL_SDK_DISABLED",
        "OTEL_RESOURCE_ATTRIBUTES",
        "SESSIONS_METRICS_PORT",
    ):
        env.pop(name, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    log_lines: list[str] = []

    async def drain() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            log_lines.append(line.decode(errors="replace").rstrip())

    drainer = asyncio.create_task(drain())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health}", timeout=5) as http:

            async def ready() -> bool:
                assert proc.returncode is None, f"worker exited: {log_lines[-10:]}"
                return (await http.get("/readyz")).status_code == 200

            await _eventually(ready, "/readyz to answer 200")
            assert (await http.get("/healthz")).text == "ok\n"
            assert (await http.get("/nope")).status_code == 404

        # A session started by a traced client: its trace continues in the worker.
        config = temporal_env.client.config()
        client = Client(**{**config, "interceptors": with_tracing([])})
        session_id = f"otel-{uuid.uuid4().hex[:10]}"
        handle = await client.start_workflow(
            SandboxSession.run,
            SessionInput(session_id=session_id, org_id="otel", pool=PoolConfig(templateId="base")),
            id=workflow_id_for(session_id),
            task_queue=queue,
        )
        status = await wait_for(handle, state_is("running"), what="running")
        await handle.signal("request_approval", {"gate": "ship"})
        await wait_for(handle, state_is("paused"), what="paused")
        await handle.signal("approve", {"gate": "ship", "by": "ana"})
        await wait_for(handle, state_is("running"), what="resumed")
        await handle.signal("finish", {})
        await result_of(handle)
        (root,) = [
            s
            for s in memory_telemetry.spans()
            if s.name == "StartWorkflow:SandboxSession"
            and s.attributes.get("temporalWorkflowID") == workflow_id_for(session_id)
        ]

        async def exported_trace() -> bool:
            names = {
                s.name
                for s in otlp_receiver.span_list()
                if s.trace_id == root.context.trace_id.to_bytes(16, "big")
            }
            return {"RunWorkflow:SandboxSession", "sandbox.provision", "sandbox.terminate"} <= names

        await _eventually(exported_trace, "the session's spans at the collector")
        assert {"service.name": "session-worker"}.items() <= otlp_receiver.resources()[0].items()

        led = await open_ledger(ledger_url)
        try:
            (row,) = await led.events(session_id=session_id)
        finally:
            await led.close()

        async def billed_metric() -> bool:
            points = _points(otlp_receiver, SANDBOX_TIME.name, **{STATE: "running"})
            return bool(points) and points[-1].as_double == row.running_seconds

        await _eventually(billed_metric, f"{SANDBOX_TIME.name} equal to the ledger row")

        async def gate_metric() -> bool:
            return bool(_points(otlp_receiver, GATE_WAIT, **{GATE_OUTCOME: "approved"}))

        # The workflows' own metrics travel with the SDK's, over the same OTLP pipeline.
        await _eventually(gate_metric, f"{GATE_WAIT} at the collector")
        received = _received(otlp_receiver)
        for name in (
            "temporal_workflow_task_schedule_to_start_latency",
            "temporal_activity_execution_latency",
            PROVIDER_DURATION.name,
            GATE_WAIT,
        ):
            assert received[name].unit == "s", (name, received[name].unit)  # seconds, all
        assert received[SANDBOX_COUNT.name].kind == "updowncounter"
        # SDK's and ours under one resource: the same Prometheus job and instance.
        services = {
            scope: {k: v for k, v in attrs.items() if k.startswith("service.")}
            for scope, attrs in _resources(otlp_receiver).items()
        }
        assert services["temporal-core-sdk"] == services["session_worker"], services
        assert services["session_worker"]["service.name"] == "session-worker"
        assert services["session_worker"]["service.instance.id"]
        # What the alerts and dashboards query is what this worker sent (telemetry.prometheus).
        # (The runtime adds its own `rust_async_runtime_*` and `http_client_*`: not ours.)
        ours = [
            m for m in received.values() if m.name.startswith(("temporal_", "sandbox.", "session."))
        ]
        sent = {series for metric in ours for series in series_names(metric)}
        assert sent <= known_series().keys(), sorted(sent - known_series().keys())
        for series in (
            "temporal_workflow_task_schedule_to_start_latency_seconds_bucket",
            "temporal_worker_task_slots_available",
            "temporal_long_request_total",
            "sandbox_time_seconds_total",
            "session_gate_duration_seconds_bucket",
        ):
            assert series in sent, (series, sorted(sent))

        # JSON logs: activity lines name their session and sandbox.
        records = [json.loads(line) for line in log_lines if line.startswith("{")]
        pauses = [r for r in records if r.get("activity_type") == "pause_sandbox"]
        assert pauses, log_lines[-20:]
        assert pauses[0]["session_id"] == session_id
        assert pauses[0]["sandbox_id"] == status.sandbox_id
        assert pauses[0]["workflow_id"] == workflow_id_for(session_id)
        waiting = [r for r in records if r["message"].startswith("gate ship waiting")]
        assert waiting and waiting[0]["workflow_type"] == "SandboxSession", log_lines[-20:]
        assert waiting[0]["session_id"] == session_id
        assert waiting[0]["sandbox_id"] == status.sandbox_id
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
        await drainer
    assert code == 0, log_lines[-10:]
    assert not any("PyGILState" in line or "Traceback" in line for line in log_lines), log_lines


def _metrics(receiver: OtlpReceiver) -> list[tuple[str, Any]]:
    """(instrumentation scope, metric) for every metric received."""
    return [
        (sm.scope.name, m)
        for req in receiver.metrics
        for rm in req.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    ]


def _received(receiver: OtlpReceiver) -> dict[str, Metric]:
    """Each metric received, as `telemetry.instruments.Metric` (name, kind, unit)."""
    kinds = {"histogram": "histogram", "gauge": "updowncounter"}
    found = {}
    for _, m in _metrics(receiver):
        data = m.WhichOneof("data")
        kind = kinds.get(data) or ("counter" if m.sum.is_monotonic else "updowncounter")
        found[m.name] = Metric(m.name, kind, m.unit, "")  # type: ignore[arg-type]
    return found


def _resources(receiver: OtlpReceiver) -> dict[str, dict[str, str]]:
    """The resource attributes metrics came with, by instrumentation scope."""
    return {
        sm.scope.name: {a.key: a.value.string_value for a in rm.resource.attributes}
        for req in receiver.metrics
        for rm in req.resource_metrics
        for sm in rm.scope_metrics
    }


def _points(receiver: OtlpReceiver, name: str, **attrs: str) -> list[Any]:
    """Sum or histogram points of metric `name` whose attributes include `attrs`."""
    found = []
    for _, m in _metrics(receiver):
        if m.name != name:
            continue
        for point in (*m.sum.data_points, *m.histogram.data_points):
            have = {a.key: a.value.string_value for a in point.attributes}
            if attrs.items() <= have.items():
                found.append(point)
    return found
