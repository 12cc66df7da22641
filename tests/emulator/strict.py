"""Helpers for the strict-API tests: a private emulator with the limits a test needs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from emulator.sandbox import Phase
from emulator.testing import EmulatorHandle, running_emulator

KEY = "e2b_strict_test_key"


@contextlib.asynccontextmanager
async def private(mp: pytest.MonkeyPatch, **overrides: Any) -> AsyncIterator[EmulatorHandle]:
    """An emulator of its own (limits changed freely), the SDK pointed at it; emptied after."""
    async with running_emulator(api_key=KEY, **overrides) as emu:
        mp.delenv("E2B_DEBUG", raising=False)
        for name, value in emu.env().items():
            mp.setenv(name, value)
        try:
            yield emu
        finally:
            await emu.reset()


async def wait_until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def phase_is(emu: EmulatorHandle, sandbox_id: str, phase: Phase) -> None:
    await wait_until(lambda: emu.core.manager.get(sandbox_id).phase == phase)


async def call(emu: EmulatorHandle, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with emu.admin() as client:
        return await client.request(method, path, **kwargs)
