"""Temporal's side: the tracing interceptor for clients and workers, and where the SDK's
metrics go (with them the workflows' own, from `workflow.metric_meter()`): a Prometheus port
(`SESSIONS_METRICS_PORT`), else the OTLP endpoint our own metrics are pushed to, else nowhere.

OTLP is the deployed pipeline (docs/observability.md): one collector receives the SDK's metrics
and ours, durations in seconds, with the same `service.*` resource, and Prometheus scrapes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import (
    OpenTelemetryConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
)

from common.errors import ConfigError
from telemetry import otel
from telemetry.instruments import SDK_HISTOGRAM_BUCKETS, WORKFLOW_METRICS
from telemetry.log_context import LogContextInterceptor

log = logging.getLogger(__name__)


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


def temporal_runtime(metrics_port: int | None = None) -> Runtime | None:
    """A runtime exporting the SDK's metrics: for Prometheus on `metrics_port`, else to the OTLP
    metrics endpoint of the `OTEL_*` variables; None (the default runtime) when neither is set."""
    metrics: PrometheusConfig | OpenTelemetryConfig
    tags: dict[str, str] = {}
    if metrics_port is not None:
        metrics = PrometheusConfig(
            bind_address=f"0.0.0.0:{metrics_port}",
            durations_as_seconds=True,
            histogram_bucket_overrides=SDK_HISTOGRAM_BUCKETS,
        )
    else:
        otlp = otel.otlp_metrics_export()
        if otlp is None:
            return None
        url, headers = otlp
        metrics = OpenTelemetryConfig(
            url=url,
            headers=headers,
            http=True,  # OTLP/HTTP protobuf, as our own exporters
            durations_as_seconds=True,
            histogram_bucket_overrides=SDK_HISTOGRAM_BUCKETS,
        )
        tags = otel.service_attributes()  # the runtime's OTLP resource: ours, not its own
    try:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=metrics,
                global_tags=tags,
                # Otherwise a `service_name` label on every SDK point, beside the resource's.
                attach_service_name=not tags,
            )
        )
    except ValueError as err:  # the bridge's way of saying the port is taken
        where = f"SESSIONS_METRICS_PORT={metrics_port}" if metrics_port else "OTLP metrics"
        raise ConfigError(f"{where}: {err}") from None
    if metrics_port is not None:
        log.warning(
            "SESSIONS_METRICS_PORT: the Temporal SDK's metrics on :%s; the workflows' own (%s) "
            "need OTLP (Prometheus' exporter in the SDK refuses dotted names)",
            metrics_port,
            ", ".join(m.name for m in WORKFLOW_METRICS),
        )
    return runtime


def with_tracing(interceptors: Sequence[Any]) -> list[Any]:
    """A client's interceptors plus tracing (once), so a session's trace starts at its client."""
    chosen = list(interceptors)
    if not any(isinstance(i, TracingInterceptor) for i in chosen):
        chosen.append(tracing_interceptor())
    return chosen
