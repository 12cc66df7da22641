"""Observability for the worker: traces, metrics, structured logs and health checks.

Configured only by the standard `OTEL_*` variables (see docs/observability.md): without an
OTLP endpoint nothing is exported. `setup()` once at start-up; the rest is wired in worker.py.
"""

from telemetry.instruments import Instruments, count_billed_seconds, instruments
from telemetry.otel import Telemetry, build, meter, setup, tracer, use
from telemetry.provider import TracedProvider
from telemetry.temporal import (
    temporal_runtime,
    tracing_interceptor,
    with_tracing,
    worker_interceptors,
)

__all__ = [
    "Instruments",
    "Telemetry",
    "TracedProvider",
    "build",
    "instruments",
    "meter",
    "count_billed_seconds",
    "setup",
    "temporal_runtime",
    "tracer",
    "tracing_interceptor",
    "use",
    "with_tracing",
    "worker_interceptors",
]
