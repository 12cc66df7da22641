"""The worker's own metrics: what sandboxes cost, how many exist, how long gates and E2B take.

Names, units and attributes are listed in docs/observability.md. Attribute values are ids and
outcomes only, never a credential, command or environment value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import metrics

from telemetry import otel

if TYPE_CHECKING:
    from ledger import CostEvent

ORG = "org.id"
TEMPLATE = "sandbox.template.id"
SANDBOX = "sandbox.id"
SESSION = "session.id"
OPERATION = "sandbox.operation"
OUTCOME = "sandbox.outcome"
ERROR_TYPE = "error.type"
NOTIFY_SINK = "notify.sink"
"""`webhook` or `slack`."""
NOTIFY_ABOUT = "notify.about"
"""What a gate notice announced: `requested`, `reminder`, `approved`, `rejected`, `timed_out`."""
GATE_OUTCOME = "gate_outcome"
"""Underscores: Prometheus refuses dots in label names, and the SDK's metrics use this style."""

GATE_WAIT = "gate_wait_duration"
"""The workflows' own histogram (`workflow.metric_meter()`), exported with the SDK's metrics."""
ROLLOVERS = "sandbox_rollovers"
"""The workflows' counter of sandboxes paused and resumed before E2B's maximum lifetime."""
FOUND_PAUSED = "sandbox_found_paused"
"""The workflows' counter of sandboxes E2B paused on its own (keep-alives stopped)."""

_PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""E2B calls: tens of milliseconds (keep-alive) to minutes (a pause of a large sandbox, exec)."""
_GATE_BUCKETS = (10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
"""Humans: a minute to a week."""
SDK_HISTOGRAM_BUCKETS: dict[str, list[float]] = {GATE_WAIT: [float(b) for b in _GATE_BUCKETS]}
"""Bucket overrides for the Temporal runtime's exporters (its defaults suit milliseconds)."""


@dataclass(frozen=True)
class Instruments:
    running_seconds: metrics.Counter
    paused_seconds: metrics.Counter
    sandboxes_running: metrics.UpDownCounter
    sandboxes_paused: metrics.UpDownCounter
    provider_duration: metrics.Histogram
    provider_errors: metrics.Counter
    notify_deliveries: metrics.Counter
    notify_failures: metrics.Counter

    @classmethod
    def create(cls, meter: metrics.Meter) -> Instruments:
        return cls(
            running_seconds=meter.create_counter(
                "sandbox.running.seconds",
                unit="s",
                description="Sandbox seconds billed as running, recorded once per ledger row",
            ),
            paused_seconds=meter.create_counter(
                "sandbox.paused.seconds",
                unit="s",
                description="Sandbox seconds spent paused (not billed by E2B)",
            ),
            sandboxes_running=meter.create_up_down_counter(
                "sandboxes.running",
                unit="{sandbox}",
                description="Sandboxes running, as changed by this worker's provider calls",
            ),
            sandboxes_paused=meter.create_up_down_counter(
                "sandboxes.paused",
                unit="{sandbox}",
                description="Sandboxes paused, as changed by this worker's provider calls",
            ),
            provider_duration=meter.create_histogram(
                "sandbox.provider.duration",
                unit="s",
                description="Latency of each sandbox provider (E2B) call",
                explicit_bucket_boundaries_advisory=_PROVIDER_BUCKETS,
            ),
            provider_errors=meter.create_counter(
                "sandbox.provider.errors",
                unit="{error}",
                description="Failed sandbox provider calls, by operation and error type",
            ),
            notify_deliveries=meter.create_counter(
                "sessions.notify.deliveries",
                unit="{notice}",
                description="Gate notices a sink accepted (2xx), by sink and what they announced",
            ),
            notify_failures=meter.create_counter(
                "sessions.notify.failures",
                unit="{attempt}",
                description="Gate notice attempts a sink failed (retried until the bound)",
            ),
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
    inst = instruments()
    attrs = {ORG: event.org_id, TEMPLATE: event.template_id}
    inst.running_seconds.add(event.running_seconds, attrs)
    inst.paused_seconds.add(event.paused_seconds, attrs)


def count_notice(org_id: str, sink: str, about: str, *, delivered: bool) -> None:
    """One gate notice attempt on one sink: delivered, or failed (each failed attempt counts)."""
    inst = instruments()
    counter = inst.notify_deliveries if delivered else inst.notify_failures
    counter.add(1, {ORG: org_id, NOTIFY_SINK: sink, NOTIFY_ABOUT: about})
