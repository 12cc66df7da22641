"""A stack of its own for the reliability tests: dev server, a private emulator, ledger, worker.

The emulator is private because these tests count every sandbox on it and set account limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from emulator import DEMO_TEMPLATES
from emulator.testing import EmulatorHandle, running_emulator
from ledger import Ledger, open_ledger
from tests.workflows.conftest import Stack, _stack


@pytest_asyncio.fixture(scope="module")
async def private_emulator() -> AsyncIterator[EmulatorHandle]:
    async with running_emulator(templates_file=DEMO_TEMPLATES, api_key="e2b_reliability") as emu:
        yield emu


@pytest_asyncio.fixture(scope="module")
async def reliability_ledger(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ledger]:
    path: Path = tmp_path_factory.mktemp("reliability") / "ledger.db"
    led = await open_ledger(f"sqlite:///{path}")
    yield led
    await led.close()


@pytest_asyncio.fixture(scope="module")
async def rstack(
    temporal_env: WorkflowEnvironment, private_emulator: EmulatorHandle, reliability_ledger: Ledger
) -> AsyncIterator[Stack]:
    async for s in _stack(temporal_env.client, private_emulator, reliability_ledger):
        yield s
