"""The provider interface the activities drive; E2B implements it, others could sit beside it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from provider.models import (
    CapabilityProfile,
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
    TerminateInput,
    TerminateResult,
)


@runtime_checkable
class SandboxProvider(Protocol):
    """A sandbox substrate. Every call is safe to repeat: Temporal retries activities.

    Failures are raised as `provider.errors.ProviderError` subclasses.
    """

    name: str

    async def provision(self, input: ProvisionInput) -> ProvisionResult: ...

    async def exec_command(self, input: ExecInput) -> ExecResult: ...

    async def pause(self, input: PauseInput) -> PauseResult: ...

    async def resume(self, input: ResumeInput) -> ResumeResult: ...

    async def keep_alive(self, input: KeepAliveInput) -> KeepAliveResult: ...

    async def terminate(self, input: TerminateInput) -> TerminateResult: ...

    def capabilities(self, pool: PoolConfig | None = None) -> CapabilityProfile: ...
