"""The provider interface the activities drive; E2B implements it, others could sit beside it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

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
    TerminateInput,
    TerminateResult,
)


class ListedSandbox(BaseModel):
    """A sandbox as the provider lists it: enough to find and bill a stray."""

    sandbox_id: str
    template_id: str
    state: Literal["running", "paused"]
    started_at: datetime
    metadata: dict[str, str] = Field(default_factory=dict)


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

    async def check(self, input: CheckInput) -> CheckResult:
        """Is the sandbox alive; if gone, when did it end (by the provider's own record)?

        Gone is a result, not an error; a sandbox of another session is `SandboxNotOwned`."""
        ...

    async def list_sandboxes(
        self, org_id: str, *, metadata: dict[str, str] | None = None
    ) -> list[ListedSandbox]:
        """The org's running and paused sandboxes whose metadata includes `metadata`."""
        ...

    def capabilities(self, pool: PoolConfig | None = None) -> CapabilityProfile: ...
