"""OpenTelemetry set-up from the standard `OTEL_*` variables, and the tracer and meter in use.

Nothing is exported unless an OTLP endpoint (or a console exporter) is configured, so a laptop
run costs nothing. Tests swap in their own providers with `use()` instead of touching the
process-wide globals, which OpenTelemetry lets a process set only once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.util.re import parse_env_headers

log = logging.getLogger(__name__)

INSTRUMENTATION_SCOPE = "session_worker"
DEFAULT_SERVICE_NAME = "session-worker"

_override: dict[str, Any] = {}
_listeners: list[Callable[[], None]] = []
_installed: Telemetry | None = None


def tracer() -> trace.Tracer:
    """The tracer for our spans: a test's provider if `use()` set one, else the global one."""
    provider = _override.get("tracer_provider")
    if provider is not None:
        return provider.get_tracer(INSTRUMENTATION_SCOPE)
    return trace.get_tracer(INSTRUMENTATION_SCOPE)


def meter() -> metrics.Meter:
    """The meter for our instruments: a test's provider if `use()` set one, else the global."""
    provider = _override.get("meter_provider")
    if provider is not None:
        return provider.get_meter(INSTRUMENTATION_SCOPE)
    return metrics.get_meter(INSTRUMENTATION_SCOPE)


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` when `use()` swaps providers (instrument caches reset themselves)."""
    _listeners.append(listener)


@contextlib.contextmanager
def use(*, tracer_provider: Any = None, meter_provider: Any = None) -> Iterator[None]:
    """Route our spans and metrics to these providers for the duration (tests)."""
    saved = dict(_override)
    _override.update(tracer_provider=tracer_provider, meter_provider=meter_provider)
    _changed()
    try:
        yield
    finally:
        _override.clear()
        _override.update(saved)
        _changed()


def _changed() -> None:
    for listener in _listeners:
        listener()


# ---------------------------------------------------------------- set-up from the environment


@dataclass
class Telemetry:
    """The SDK providers built from the environment (None: that signal is not exported)."""

    tracer_provider: Any = None
    meter_provider: Any = None
    exporters: dict[str, str] = field(default_factory=dict)

    def shutdown(self, timeout_millis: int = 5000) -> None:
        """Flush what is buffered and stop the exporters; safe to call twice."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is None:
                continue
            try:
                provider.shutdown(timeout_millis=timeout_millis)
            except TypeError:  # TracerProvider.shutdown takes no timeout
                provider.shutdown()
            except Exception as err:  # an unreachable collector must not fail the exit
                log.warning("telemetry shutdown: %s", err)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _exporter_choice(env: Mapping[str, str], signal: str) -> str:
    """`otlp`, `console` or `none`: OTEL_<SIGNAL>_EXPORTER, else otlp when an endpoint is set."""
    chosen = (env.get(f"OTEL_{signal}_EXPORTER") or "").strip().lower()
    has_endpoint = bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )
    if chosen in ("", "otlp"):
        return "otlp" if has_endpoint else "none"
    if chosen in ("console", "none"):
        return chosen
    log.warning("OTEL_%s_EXPORTER=%s is not supported here (otlp, console, none)", signal, chosen)
    return "none"


def otlp_metrics_export() -> tuple[str, dict[str, str]] | None:
    """(URL, headers) where OTLP/HTTP metrics go, by the same variables our own exporter reads
    (`OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`, `..._HEADERS`); None when metrics are not exported
    over OTLP. The Temporal runtime pushes the SDK's metrics there too."""
    env = os.environ
    if _truthy(env.get("OTEL_SDK_DISABLED")) or _exporter_choice(env, "METRICS") != "otlp":
        return None
    url = (env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or "").strip()
    if not url:
        url = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip().rstrip("/") + "/v1/metrics"
    raw = env.get("OTEL_EXPORTER_OTLP_METRICS_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    return url, dict(parse_env_headers(raw or "", liberal=True))  # as OTel's own exporters do


def resource() -> Any:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, with `session-worker` as the default name
    and the host name (a pod's name) as the default `service.instance.id`: the collector turns
    these into Prometheus' `job` and `instance`, so each worker's cumulative series stay apart."""
    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource

    res = Resource.create({})
    defaults = {}
    if str(res.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    if not res.attributes.get(SERVICE_INSTANCE_ID):
        defaults[SERVICE_INSTANCE_ID] = socket.gethostname()
    return res.merge(Resource(defaults)) if defaults else res


def service_attributes() -> dict[str, str]:
    """The resource's `service.*` attributes, for the Temporal runtime's exporter to carry too
    (the same `job` and `instance` for the SDK's metrics as for ours)."""
    return {k: str(v) for k, v in resource().attributes.items() if k.startswith("service.")}


def build() -> Telemetry:
    """Providers for the signals the environment asks to export; nothing when none is asked.

    The SDK's exporters and processors read the rest (endpoints, headers, intervals) themselves.
    """
    env = os.environ
    result = Telemetry()
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return result
    traces, metric_exp = _exporter_choice(env, "TRACES"), _exporter_choice(env, "METRICS")
    if traces == metric_exp == "none":
        return result
    protocol = (env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if "otlp" in (traces, metric_exp) and protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: only http/protobuf is supported", protocol)
    res = resource()
    if traces != "none":
        result.tracer_provider = _tracer_provider(res, traces)
        result.exporters["traces"] = traces
    if metric_exp != "none":
        result.meter_provider = _meter_provider(res, metric_exp)
        result.exporters["metrics"] = metric_exp
    return result


def _tracer_provider(res: Any, kind: str) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter: Any = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=res, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _meter_provider(res: Any, kind: str) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter: Any = OTLPMetricExporter()
    else:
        exporter = ConsoleMetricExporter()
    return MeterProvider(
        resource=res,
        metric_readers=[PeriodicExportingMetricReader(exporter)],
        shutdown_on_exit=False,
    )


def setup() -> Telemetry:
    """Build from the environment and install as the process-wide providers (once)."""
    global _installed
    if _installed is not None:
        return _installed
    built = build()
    if built.tracer_provider is not None:
        trace.set_tracer_provider(built.tracer_provider)
    if built.meter_provider is not None:
        metrics.set_meter_provider(built.meter_provider)
    if built.exporters:
        log.info(
            "telemetry: exporting %s",
            ", ".join(f"{signal} ({kind})" for signal, kind in sorted(built.exporters.items())),
        )
    _installed = built
    return built
