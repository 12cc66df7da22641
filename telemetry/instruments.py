"""The worker's own metrics: what sandboxes cost, how many exist, how long gates and E2B take.

Names, units and attributes are listed in docs/observability.md. Attribute values are ids and
outcomes only, never a credential, command or environment value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from opentelemetry import metrics

from telemetry import otel

if TYPE_CHECKING:
    from ledger import CostEvent

ORG = "org.id"
TEMPLATE = "sandbox.template.id"
SANDBOX = "sandbox.id"
SESSION = "session.id"
STATE = "sandbox.state"
"""`running` or `paused`: one metric by state, as OpenTelemetry's `process.cpu.time` by mode."""
OPERATION = "sandbox.operation"
OUTCOME = "sandbox.outcome"
ERROR_TYPE = "error.type"
NOTIFY_SINK = "notify.sink"
"""`webhook` or `slack`."""
NOTIFY_ABOUT = "notify.about"
"""What a gate notice announced: `requested`, `reminder`, `approved`, `rejected`, `timed_out`."""
STRAY_KILLED = "sandbox.stray.killed"
"""`true`, or `false` when the stray was already gone (billed either way)."""
GATE_OUTCOME = "session.gate.outcome"
"""`approved`, `rejected` or `timed_out`."""


@dataclass(frozen=True)
class Metric:
    """One metric as OpenTelemetry names it: dotted lowercase, the unit as UCUM beside the name
    (never in it). `docs/observability.md` lists them; `deploy/check_monitoring.py` derives the
    names Prometheus shows from these, so alerts and dashboards use only metrics that exist."""

    name: str
    kind: Literal["counter", "updowncounter", "histogram"]
    unit: str
    description: str


SANDBOX_TIME = Metric(
    "sandbox.time", "counter", "s", "Sandbox seconds by state (running is billed), per ledger row"
)
SANDBOX_COUNT = Metric(
    "sandbox.count", "updowncounter", "{sandbox}", "Sandboxes by state, as this worker moved them"
)
PROVIDER_DURATION = Metric(
    "sandbox.provider.duration", "histogram", "s", "Latency of each sandbox provider (E2B) call"
)
PROVIDER_ERRORS = Metric(
    "sandbox.provider.errors",
    "counter",
    "{error}",
    "Failed sandbox provider calls, by operation and error type",
)
STRAYS_FOUND = Metric(
    "sandbox.stray.found",
    "counter",
    "{sandbox}",
    "Sandboxes the reconciler found without a running session (each pass counts them again)",
)
STRAYS_REAPED = Metric(
    "sandbox.stray.reaped", "counter", "{sandbox}", "Strays the reconciler killed and billed"
)
NOTIFY_DELIVERIES = Metric(
    "session.notify.deliveries",
    "counter",
    "{notice}",
    "Gate notices a sink accepted (2xx), by sink and what they announced",
)
NOTIFY_FAILURES = Metric(
    "session.notify.failures",
    "counter",
    "{attempt}",
    "Gate notice attempts a sink failed (retried until the bound)",
)
OWN_METRICS = (
    SANDBOX_TIME,
    SANDBOX_COUNT,
    PROVIDER_DURATION,
    PROVIDER_ERRORS,
    STRAYS_FOUND,
    STRAYS_REAPED,
    NOTIFY_DELIVERIES,
    NOTIFY_FAILURES,
)
"""Ours, on the OpenTelemetry SDK's meter (`telemetry.otel.meter()`)."""

GATE_WAIT = "session.gate.duration"
"""The workflows' own histogram (`workflow.metric_meter()`), exported with the SDK's metrics."""
ROLLOVERS = "sandbox.rollovers"
"""The workflows' counter of sandboxes paused and resumed before E2B's maximum lifetime."""
FOUND_PAUSED = "sandbox.found_paused"
"""The workflows' counter of sandboxes E2B paused on its own (keep-alives stopped)."""
WORKFLOW_METRICS = (
    Metric(GATE_WAIT, "histogram", "s", "From an approval gate's request to its decision"),
    Metric(ROLLOVERS, "counter", "{rollover}", "Sandboxes paused and resumed in time"),
    Metric(FOUND_PAUSED, "counter", "{sandbox}", "Sandboxes E2B paused on its own, taken back"),
)
"""Recorded in workflow code on the Temporal runtime's replay-safe meter: their dotted names
need the runtime's OTLP exporter (its Prometheus one accepts no dots)."""

_PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""E2B calls: tens of milliseconds (keep-alive) to minutes (a pause of a large sandbox, exec)."""
_GATE_BUCKETS = (10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
"""Humans: a minute to a week."""
SDK_HISTOGRAM_BUCKETS: dict[str, list[float]] = {GATE_WAIT: [float(b) for b in _GATE_BUCKETS]}
"""Bucket overrides for the Temporal runtime's exporters (its defaults suit milliseconds)."""


@dataclass(frozen=True)
class Instruments:
    sandbox_time: metrics.Counter
    sandbox_count: metrics.UpDownCounter
    provider_duration: metrics.Histogram
    provider_errors: metrics.Counter
    strays_found: metrics.Counter
    strays_reaped: metrics.Counter
    notify_deliveries: metrics.Counter
    notify_failures: metrics.Counter

    @classmethod
    def create(cls, meter: metrics.Meter) -> Instruments:
        def counter(m: Metric) -> metrics.Counter:
            return meter.create_counter(m.name, unit=m.unit, description=m.description)

        return cls(
            sandbox_time=counter(SANDBOX_TIME),
            sandbox_count=meter.create_up_down_counter(
                SANDBOX_COUNT.name, unit=SANDBOX_COUNT.unit, description=SANDBOX_COUNT.description
            ),
            provider_duration=meter.create_histogram(
                PROVIDER_DURATION.name,
                unit=PROVIDER_DURATION.unit,
                description=PROVIDER_DURATION.description,
                explicit_bucket_boundaries_advisory=_PROVIDER_BUCKETS,
            ),
            provider_errors=counter(PROVIDER_ERRORS),
            strays_found=counter(STRAYS_FOUND),
            strays_reaped=counter(STRAYS_REAPED),
            notify_deliveries=counter(NOTIFY_DELIVERIES),
            notify_failures=counter(NOTIFY_FAILURES),
        )


_cache: list[Instruments] = []


def instruments() -> Instruments:
    """The instruments on the current meter, created once (again after `otel.use()`)."""
    if not _cache:
        _cache.append(Instruments.create(otel.meter()))
    return _cache[0]


otel.on_change(_cache.clear)


def count_billed_seconds(event: CostEvent) -> None:
    """Count a newly inserted ledger row's seconds: call only when the row was inserted, so the
    counters add up to the ledger exactly."""
    time = instruments().sandbox_time
    attrs = {ORG: event.org_id, TEMPLATE: event.template_id}
    time.add(event.running_seconds, {**attrs, STATE: "running"})
    time.add(event.paused_seconds, {**attrs, STATE: "paused"})


def count_notice(org_id: str, sink: str, about: str, *, delivered: bool) -> None:
    """One gate notice attempt on one sink: delivered, or failed (each failed attempt counts)."""
    inst = instruments()
    counter = inst.notify_deliveries if delivered else inst.notify_failures
    counter.add(1, {ORG: org_id, NOTIFY_SINK: sink, NOTIFY_ABOUT: about})


def count_strays(org_ids: list[str]) -> None:
    """Strays one reconciler pass found, one org id each."""
    counter = instruments().strays_found
    for org_id in org_ids:
        counter.add(1, {ORG: org_id})


def count_reaped(org_id: str, *, killed: bool) -> None:
    """A stray reaped: killed now (`killed`), or found already gone; billed either way."""
    instruments().strays_reaped.add(1, {ORG: org_id, STRAY_KILLED: str(killed).lower()})
