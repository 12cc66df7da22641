"""Configuration by the standard OTEL_* variables, and the worker's own settings around it."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.worker import Replayer

from bench.replay import load_history
from common.codec import data_converter
from common.errors import ConfigError
from common.settings import TelemetrySettings
from telemetry import build
from telemetry.instruments import GATE_OUTCOME, GATE_WAIT
from telemetry.temporal import temporal_runtime
from tests.fixtures.telemetry import OtlpReceiver, SdkMetrics
from worker import workflow_runner
from workflows import SandboxSession

HISTORIES = Path(__file__).parent.parent / "histories"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.fast
def test_nothing_is_exported_without_an_endpoint(otel_env: pytest.MonkeyPatch) -> None:
    built = build()
    assert (built.tracer_provider, built.meter_provider, built.exporters) == (None, None, {})


@pytest.mark.fast
def test_an_endpoint_exports_both_signals_as_session_worker(
    otel_env: pytest.MonkeyPatch,
) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    built = build()
    try:
        assert built.exporters == {"traces": "otlp", "metrics": "otlp"}
        resource = built.tracer_provider.resource
        assert resource.attributes["service.name"] == "session-worker"
    finally:
        built.shutdown(timeout_millis=100)


@pytest.mark.fast
def test_service_name_signal_choice_and_kill_switch_follow_otel(
    otel_env: pytest.MonkeyPatch,
) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    otel_env.setenv("OTEL_SERVICE_NAME", "workers-eu")
    built = build()
    try:
        assert built.exporters == {"traces": "otlp"}  # no metrics endpoint: no metrics
        assert built.tracer_provider.resource.attributes["service.name"] == "workers-eu"
    finally:
        built.shutdown(timeout_millis=100)
    otel_env.setenv("OTEL_SDK_DISABLED", "true")
    assert build().exporters == {}


@pytest.mark.fast
def test_a_bad_port_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_METRICS_PORT", "nine")
    with pytest.raises(ConfigError, match="SESSIONS_METRICS_PORT must be a port number"):
        TelemetrySettings.load()
    monkeypatch.setenv("SESSIONS_METRICS_PORT", "")
    assert TelemetrySettings.load().metrics_port is None


@pytest.mark.parametrize("setting", ["LOG_FORMAT", "SESSIONS_METRICS_PORT"])
def test_worker_refuses_a_bad_setting_in_one_line(setting: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        value = "xml" if setting == "LOG_FORMAT" else str(taken.getsockname()[1])
        proc = subprocess.run(
            [sys.executable, "worker.py"],
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", setting: value, "TEMPORAL_ADDRESS": "127.0.0.1:1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    expected = (
        "error: LOG_FORMAT must be text or json, not 'xml'"
        if setting == "LOG_FORMAT"
        else f"error: SESSIONS_METRICS_PORT={value}: Failed starting Prometheus exporter"
    )
    assert line.startswith(expected), line


@pytest.mark.fast
async def test_replaying_history_records_no_gate_metric(sdk_metrics: SdkMetrics) -> None:
    """A replay (cache eviction, another worker) must not count the same decision again: the
    workflow records gate waits on `workflow.metric_meter()`, which is silent during replay."""
    before = len(sdk_metrics.values(GATE_WAIT))
    replayer = Replayer(
        workflows=[SandboxSession],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
        runtime=sdk_metrics.runtime,
    )
    for name in ("two_gates", "gate_timeout_reject", "reject"):
        path = HISTORIES / f"{name}.json"
        await replayer.replay_workflow(load_history(path))
    assert len(sdk_metrics.values(GATE_WAIT)) == before


async def test_without_a_prometheus_port_sdk_metrics_follow_our_otlp_endpoint(
    otel_env: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver
) -> None:
    """No `SESSIONS_METRICS_PORT`: the Temporal runtime pushes the SDK's metrics (and the
    workflows' gate waits) to the same OTLP/HTTP endpoint as ours, in seconds."""
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url)
    assert temporal_runtime(None) is not None
    otel_env.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert temporal_runtime(None) is None  # nothing to export to: the default runtime

    otel_env.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{otlp_receiver.url}/v1/metrics")
    runtime = temporal_runtime(None)
    assert runtime is not None
    histogram = runtime.metric_meter.create_histogram_float(GATE_WAIT, unit="s")
    histogram.record(42.0, {GATE_OUTCOME: "approved"})

    for _ in range(100):
        if GATE_WAIT in otlp_receiver.metric_names():
            break
        await asyncio.sleep(0.1)
    assert GATE_WAIT in otlp_receiver.metric_names()
    del histogram, runtime  # the runtime pushes until it is dropped: not past the receiver
    gc.collect()
