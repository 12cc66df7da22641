"""`TracedProvider`: a span, a latency sample and the sandbox gauges around every provider call.

It wraps any `SandboxProvider` (E2B's, or a wrapper of it), so the provider itself stays free of
telemetry. Span attributes are ids, the operation and its outcome: never an input's env, a
command line, or the credential the provider resolves.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind, Status, StatusCode

from provider.base import ListedSandbox, SandboxProvider
from provider.errors import ProviderError
from provider.models import (
    CapabilityProfile,
    CheckInput,
    CheckResult,
    ExecInput,
    ExecResult,
    KeepAliveInput,
    KeepAliveResult,
    PauseInput,
    PauseResult,
    PoolConfig,
    ProvisionInput,
    ProvisionResult,
    ResumeInput,
    ResumeResult,
    SandboxRef,
    TerminateInput,
    TerminateResult,
)
from telemetry import otel
from telemetry.instruments import (
    ERROR_TYPE,
    OPERATION,
    ORG,
    OUTCOME,
    SANDBOX,
    SESSION,
    STATE,
    TEMPLATE,
    instruments,
)
from telemetry.log_context import bind_sandbox

T = TypeVar("T")

_REMEMBERED = 10_000
"""Sandboxes whose template and state this worker remembers (it only sees its own calls)."""


class TracedProvider:
    """A `SandboxProvider` that observes another one; anything else is passed through."""

    def __init__(self, inner: SandboxProvider) -> None:
        self._inner = inner
        self.name = inner.name
        self._known: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id -> (template, state)

    @classmethod
    def wrap(cls, provider: SandboxProvider) -> SandboxProvider:
        """`provider` traced, once: wrapping a traced provider again returns it unchanged."""
        return provider if isinstance(provider, cls) else cls(provider)

    @property
    def inner(self) -> SandboxProvider:
        return self._inner

    def __getattr__(self, name: str) -> Any:  # anything a provider has beyond the protocol
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"TracedProvider({self._inner!r})"

    # ------------------------------------------------------------ the protocol

    async def provision(self, input: ProvisionInput) -> ProvisionResult:
        attrs = {SESSION: input.session_id, ORG: input.org_id, TEMPLATE: input.pool.template_id}
        result = await self._call(
            "provision",
            attrs,
            lambda: self._inner.provision(input),
            describe=lambda r: {SANDBOX: r.handle.sandbox_id},
        )
        handle = result.handle
        bind_sandbox(handle.sandbox_id)
        if self._remember(handle.sandbox_id, handle.template_id, "running") != "running":
            _count(1, "running", input.org_id)
        return result

    async def exec_command(self, input: ExecInput) -> ExecResult:
        return await self._call(
            "exec", self._ref_attrs(input.ref), lambda: self._inner.exec_command(input)
        )

    async def pause(self, input: PauseInput) -> PauseResult:
        result = await self._call(
            "pause", self._ref_attrs(input.ref), lambda: self._inner.pause(input)
        )
        self._moved(input.ref, "paused")
        return result

    async def resume(self, input: ResumeInput) -> ResumeResult:
        result = await self._call(
            "resume", self._ref_attrs(input.ref), lambda: self._inner.resume(input)
        )
        self._moved(input.ref, "running")
        return result

    async def keep_alive(self, input: KeepAliveInput) -> KeepAliveResult:
        return await self._call(
            "keep_alive", self._ref_attrs(input.ref), lambda: self._inner.keep_alive(input)
        )

    async def terminate(self, input: TerminateInput) -> TerminateResult:
        result = await self._call(
            "terminate", self._ref_attrs(input.ref), lambda: self._inner.terminate(input)
        )
        known = self._known.pop(input.ref.sandbox_id, None)
        # A sandbox this worker never saw is most likely running (sessions end by `finish`).
        state = known[1] if known else "running"
        _count(-1, state, input.ref.org_id)
        return result

    async def check(self, input: CheckInput) -> CheckResult:
        result = await self._call(
            "check", self._ref_attrs(input.ref), lambda: self._inner.check(input)
        )
        if not result.alive:  # lost: it counts no longer, whatever this worker last saw
            known = self._known.pop(input.ref.sandbox_id, None)
            if known is not None:
                _count(-1, known[1], input.ref.org_id)
        return result

    async def list_sandboxes(
        self, org_id: str, *, metadata: dict[str, str] | None = None
    ) -> list[ListedSandbox]:
        return await self._call(
            "list", {ORG: org_id}, lambda: self._inner.list_sandboxes(org_id, metadata=metadata)
        )

    def capabilities(self, pool: PoolConfig | None = None) -> CapabilityProfile:
        return self._inner.capabilities(pool)

    # ------------------------------------------------------------ helpers

    def _ref_attrs(self, ref: SandboxRef) -> dict[str, str]:
        bind_sandbox(ref.sandbox_id)
        attrs = {SANDBOX: ref.sandbox_id, ORG: ref.org_id}
        known = self._known.get(ref.sandbox_id)
        if known and known[0]:
            attrs[TEMPLATE] = known[0]
        return attrs

    def _remember(self, sandbox_id: str, template: str, state: str) -> str | None:
        """Record the sandbox's state; return the one it had (None: not known here)."""
        previous = self._known.pop(sandbox_id, None)
        self._known[sandbox_id] = (template, state)
        while len(self._known) > _REMEMBERED:
            self._known.popitem(last=False)
        return previous[1] if previous else None

    def _moved(self, ref: SandboxRef, state: str) -> None:
        known = self._known.get(ref.sandbox_id)
        before = self._remember(ref.sandbox_id, known[0] if known else "", state)
        if known is not None and before == state:
            return  # already there (a retried pause or resume)
        # Unknown here: another worker saw its last move, which can only be the opposite one.
        _count(1, state, ref.org_id)
        _count(-1, "running" if state == "paused" else "paused", ref.org_id)

    async def _call(
        self,
        operation: str,
        attrs: dict[str, str],
        call: Callable[[], Awaitable[T]],
        *,
        describe: Callable[[T], dict[str, str]] | None = None,
    ) -> T:
        inst = instruments()
        started = time.perf_counter()
        outcome = "ok"
        with otel.tracer().start_as_current_span(
            f"sandbox.{operation}",
            kind=SpanKind.CLIENT,
            attributes={OPERATION: operation, **attrs},
            record_exception=False,  # messages may quote provider responses: type only
            set_status_on_exception=False,
        ) as span:
            try:
                result = await call()
                if describe is not None:
                    span.set_attributes(describe(result))
                return result
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            except Exception as err:
                outcome = err.type if isinstance(err, ProviderError) else type(err).__name__
                span.set_attribute(ERROR_TYPE, outcome)
                span.set_status(Status(StatusCode.ERROR, outcome))
                inst.provider_errors.add(1, {OPERATION: operation, ERROR_TYPE: outcome})
                raise
            finally:
                span.set_attribute(OUTCOME, outcome)
                inst.provider_duration.record(
                    time.perf_counter() - started, {OPERATION: operation, OUTCOME: outcome}
                )


def _count(delta: int, state: str, org_id: str) -> None:
    """Move `sandbox.count` for one org and state (`running` or `paused`)."""
    instruments().sandbox_count.add(delta, {ORG: org_id, STATE: state})
