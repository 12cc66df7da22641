"""The names our metrics and the Temporal SDK's take in Prometheus, through the collector.

The collector's `prometheus` exporter (deploy/otel-collector.yaml) turns an OTLP metric into
Prometheus series the way OpenTelemetry's Prometheus compatibility rules say: dots become
underscores, the unit is appended as a word (`s` → `_seconds`; annotations such as `{sandbox}`
are dropped), a monotonic counter gets `_total`, a histogram `_bucket`, `_sum` and `_count`, and
an up-down counter is a gauge. `deploy/check_monitoring.py` holds alerts and dashboards to
these names; `tests/telemetry` checks them against what a worker really exports.
"""

from __future__ import annotations

import re

from telemetry.instruments import OWN_METRICS, WORKFLOW_METRICS, Metric

_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}

SDK_PREFIX = "temporal_"
SDK_COUNTERS = (
    "activity_execution_cancelled",
    "activity_execution_failed",
    "activity_poll_no_task",
    "activity_task_received",
    "local_activity_execution_cancelled",
    "local_activity_execution_failed",
    "local_activity_total",
    "long_request",
    "long_request_failure",
    "request",
    "request_failure",
    "sticky_cache_hit",
    "sticky_cache_miss",
    "sticky_cache_total_forced_eviction",
    "worker_start",
    "workflow_cancelled",
    "workflow_completed",
    "workflow_continue_as_new",
    "workflow_failed",
    "workflow_task_execution_failed",
    "workflow_task_queue_poll_empty",
    "workflow_task_queue_poll_succeed",
)
SDK_HISTOGRAMS = (
    "activity_execution_latency",
    "activity_schedule_to_start_latency",
    "activity_succeed_endtoend_latency",
    "local_activity_execution_latency",
    "local_activity_succeed_endtoend_latency",
    "long_request_latency",
    "request_latency",
    "workflow_endtoend_latency",
    "workflow_task_execution_latency",
    "workflow_task_replay_latency",
    "workflow_task_schedule_to_start_latency",
)
SDK_GAUGES = (
    "num_pollers",
    "sticky_cache_size",
    "worker_task_slots_available",
    "worker_task_slots_used",
)
"""The Core SDK's worker and client metrics (Temporal's SDK metrics reference, and sdk-core's
`telemetry/metrics.rs`), without their `temporal_` prefix. Histograms are durations: in seconds
with `durations_as_seconds` (telemetry/temporal.py), so their OTLP unit is `s`."""


def sdk_metrics() -> tuple[Metric, ...]:
    """The SDK's metrics as the worker's runtime exports them over OTLP."""
    return (
        *(Metric(SDK_PREFIX + n, "counter", "", "") for n in SDK_COUNTERS),
        *(Metric(SDK_PREFIX + n, "histogram", "s", "") for n in SDK_HISTOGRAMS),
        *(Metric(SDK_PREFIX + n, "updowncounter", "", "") for n in SDK_GAUGES),
    )


def series_names(metric: Metric) -> set[str]:
    """The Prometheus names a metric's series carry once through the collector."""
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", metric.name)
    unit = "" if metric.unit.startswith("{") else _UNIT_WORDS.get(metric.unit, metric.unit)
    if unit and not name.endswith(f"_{unit}"):
        name = f"{name}_{unit}"
    if metric.kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if metric.kind == "counter":
        return {name if name.endswith("_total") else f"{name}_total"}
    return {name}


def known_series() -> dict[str, Metric]:
    """Every series name a Prometheus behind the collector can have from this worker."""
    return {
        series: metric
        for metric in (*OWN_METRICS, *WORKFLOW_METRICS, *sdk_metrics())
        for series in series_names(metric)
    }
