"""Temporal's side: the tracing interceptor for clients and workers, and the SDK's own metrics
on a Prometheus port (`SESSIONS_METRICS_PORT`, opt-in)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from sessions.errors import ConfigError
from telemetry import otel
from telemetry.log_context import LogContextInterceptor

METRICS_PORT_VAR = "SESSIONS_METRICS_PORT"


def tracing_interceptor() -> TracingInterceptor:
    """Spans for client calls (StartWorkflow, SignalWorkflow, ...) and, on a worker, for
    workflows and activities, with the trace context carried in Temporal headers."""
    return TracingInterceptor(otel.tracer())


def worker_interceptors(client: Client, extra: Sequence[Any] = ()) -> list[Any]:
    """`extra`, log context, and tracing unless the client already traces (a client's
    interceptors apply to its workers too, and twice would mean every span twice)."""
    chosen = [*extra, LogContextInterceptor()]
    if not any(
        isinstance(i, TracingInterceptor) for i in (*client.config()["interceptors"], *extra)
    ):
        chosen.append(tracing_interceptor())
    return chosen


def port_from_env(name: str) -> int | None:
    """A port number from `name`; unset or empty: None (the feature is off)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name} must be a port number (1-65535), not {raw!r}")
    return int(raw)


def temporal_runtime() -> Runtime | None:
    """A runtime serving the Temporal SDK's metrics for Prometheus, when the port is set."""
    port = port_from_env(METRICS_PORT_VAR)
    if port is None:
        return None
    try:
        return Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"0.0.0.0:{port}"))
        )
    except ValueError as err:  # the bridge's way of saying the port is taken
        raise ConfigError(f"{METRICS_PORT_VAR}={port}: {err}") from None


def with_tracing(interceptors: Sequence[Any]) -> list[Any]:
    """A client's interceptors plus tracing (once), so a session's trace starts at its client."""
    chosen = list(interceptors)
    if not any(isinstance(i, TracingInterceptor) for i in chosen):
        chosen.append(tracing_interceptor())
    return chosen
