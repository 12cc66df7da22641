"""Helpers for the emulator's tests: sandboxes that are always killed afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from e2b import AsyncSandbox

from emulator.testing import EmulatorHandle

SandboxFactory = Callable[..., contextlib.AbstractAsyncContextManager[AsyncSandbox]]


@pytest.fixture
def new_sandbox(emulator_env: EmulatorHandle) -> SandboxFactory:
    """`async with new_sandbox(**create_kwargs) as sbx:` — killed on exit, whatever happened."""

    @contextlib.asynccontextmanager
    async def make(**kwargs: Any) -> AsyncIterator[AsyncSandbox]:
        sbx = await AsyncSandbox.create(**kwargs)
        try:
            yield sbx
        finally:
            await AsyncSandbox.kill(sbx.sandbox_id)

    return make
