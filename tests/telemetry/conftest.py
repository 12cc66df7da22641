"""In-memory OpenTelemetry for in-process tests, and a small OTLP/HTTP receiver for a worker
running as a subprocess."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import telemetry
from emulator.server import _Server as QuietServer  # uvicorn without signal handling
from tests.workflows.conftest import ledger  # noqa: F401  (a SQLite ledger per module)


@dataclass
class MemoryTelemetry:
    """Our spans and metrics, kept in memory."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str, **attrs: str) -> list[Any]:
        """Data points of metric `name` whose attributes include `attrs`."""
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        if all(point.attributes.get(k) == v for k, v in attrs.items()):
                            found.append(point)
        return found

    def value(self, name: str, **attrs: str) -> float:
        """A counter's (or up-down counter's) total over the matching points."""
        return sum(p.value for p in self.points(name, **attrs))

    def count(self, name: str, **attrs: str) -> int:
        """A histogram's number of samples over the matching points."""
        return sum(p.count for p in self.points(name, **attrs))


@pytest.fixture(scope="module")
def memory_telemetry() -> Iterator[MemoryTelemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    with telemetry.use(tracer_provider=tracer_provider, meter_provider=meter_provider):
        yield MemoryTelemetry(exporter, reader)
    meter_provider.shutdown()
    tracer_provider.shutdown()


def attr(point_or_span: Any, key: str) -> Any:
    return (point_or_span.attributes or {}).get(key)


# ---------------------------------------------------------------- OTLP receiver


@dataclass
class OtlpReceiver:
    url: str
    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)

    def span_list(self) -> list[Any]:
        return [
            span
            for req in self.traces
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def resources(self) -> list[dict[str, str]]:
        return [
            {a.key: a.value.string_value for a in rs.resource.attributes}
            for req in self.traces
            for rs in req.resource_spans
        ]

    def metric_names(self) -> set[str]:
        return {
            m.name
            for req in self.metrics
            for rm in req.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }

    def sum_points(self, name: str) -> list[Any]:
        return [
            p
            for req in self.metrics
            for rm in req.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.sum.data_points
        ]


@pytest_asyncio.fixture
async def otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    """Accepts OTLP/HTTP protobuf exports on POST /v1/traces and /v1/metrics."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver = OtlpReceiver(url=f"http://127.0.0.1:{sock.getsockname()[1]}")

    async def traces(request: Request) -> Response:
        receiver.traces.append(ExportTraceServiceRequest.FromString(await request.body()))
        return Response(b"", media_type="application/x-protobuf")

    async def metrics(request: Request) -> Response:
        receiver.metrics.append(ExportMetricsServiceRequest.FromString(await request.body()))
        return Response(b"", media_type="application/x-protobuf")

    app = Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/v1/metrics", metrics, methods=["POST"]),
        ]
    )
    server = QuietServer(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
