"""The provider against the emulator through the real e2b SDK; every sandbox killed afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from emulator.testing import EmulatorHandle
from provider import (
    E2BSandboxProvider,
    ExecInput,
    ExecResult,
    PoolConfig,
    ProvisionInput,
    ProvisionResult,
    SandboxRef,
    TerminateInput,
)
from provider.errors import SandboxGone

ORG = "acme"


class StaticKey:
    """One key for every org (the emulator's)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def api_key(self, org_id: str) -> str:
        return self._key

    def describe(self, org_id: str) -> str:
        return "the test's static key"


def make_provider(
    emulator: EmulatorHandle, key: str | None = None, **kwargs: Any
) -> E2BSandboxProvider:
    return E2BSandboxProvider(
        credentials=kwargs.pop("credentials", None) or StaticKey(key or emulator.api_key),
        api_url=emulator.api_url,
        sandbox_url=emulator.sandbox_url,
        **kwargs,
    )


@pytest.fixture
def provider(emulator_faults: EmulatorHandle) -> E2BSandboxProvider:
    return make_provider(emulator_faults)


class Sandboxes:
    """Provisions through the provider and remembers what to kill at the end."""

    def __init__(self, provider: E2BSandboxProvider) -> None:
        self.provider = provider
        self.ids: set[str] = set()

    def input(self, session_id: str | None = None, **pool: Any) -> ProvisionInput:
        pool.setdefault("timeoutSeconds", 120)
        return ProvisionInput(
            session_id=session_id or f"s-{uuid.uuid4()}",
            org_id=ORG,
            issue_id="ISSUE-1",
            pool=PoolConfig.model_validate(pool),
        )

    async def provision(self, inp: ProvisionInput | None = None, **pool: Any) -> ProvisionResult:
        result = await self.provider.provision(inp or self.input(**pool))
        self.ids.add(result.handle.sandbox_id)
        return result

    async def exec(self, ref: SandboxRef, command: str, **kwargs: Any) -> ExecResult:
        return await self.provider.exec_command(ExecInput(ref=ref, command=command, **kwargs))


def ref_of(result: ProvisionResult) -> SandboxRef:
    return SandboxRef(org_id=ORG, sandbox_id=result.handle.sandbox_id)


@pytest.fixture
async def sandboxes(provider: E2BSandboxProvider) -> AsyncIterator[Sandboxes]:
    tracker = Sandboxes(provider)
    yield tracker
    for sandbox_id in tracker.ids:
        try:
            await provider.terminate(
                TerminateInput(ref=SandboxRef(org_id=ORG, sandbox_id=sandbox_id))
            )
        except SandboxGone:
            pass


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
