"""A whole session stack for workflow tests: dev server, emulator, real provider and ledger."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from ledger import Ledger, open_ledger
from provider import E2BSandboxProvider
from provider.models import PoolConfig
from worker import build_worker
from workflows import SandboxSession, SessionInput, SessionStatus, workflow_id_for

HISTORIES = Path(__file__).parent.parent / "histories"


class StaticCredentials:
    """The emulator's one key for every org."""

    def __init__(self, key: str) -> None:
        self._key = key

    def api_key(self, org_id: str) -> str:
        return self._key


@dataclass
class Stack:
    client: Client
    task_queue: str
    ledger: Ledger
    emulator: Any

    async def start(
        self, *, org: str = "acme", issue: str | None = "ISS-1", **fields: Any
    ) -> WorkflowHandle[Any, Any]:
        session_id = fields.pop("session_id", None) or f"t-{uuid.uuid4().hex[:12]}"
        fields.setdefault("pool", PoolConfig(templateId="base"))
        inp = SessionInput(session_id=session_id, org_id=org, issue_id=issue, **fields)
        return await self.client.start_workflow(
            SandboxSession.run, inp, id=workflow_id_for(session_id), task_queue=self.task_queue
        )


async def status_of(handle: WorkflowHandle[Any, Any]) -> SessionStatus:
    return await handle.query(SandboxSession.status)


async def wait_for(
    handle: WorkflowHandle[Any, Any],
    predicate: Callable[[SessionStatus], bool],
    *,
    timeout: float = 30.0,
    what: str = "condition",
) -> SessionStatus:
    """Poll the status query until `predicate` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: SessionStatus | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await status_of(handle)
        if predicate(last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last status: {last}")


def state_is(*states: str) -> Callable[[SessionStatus], bool]:
    return lambda s: s.state in states


async def save_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With RECORD_HISTORIES=1, store this run's history for the replay test."""
    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(json.dumps(history.to_json_dict(), indent=1))


@pytest_asyncio.fixture(scope="module")
async def ledger(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ledger]:
    path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    led = await open_ledger(f"sqlite:///{path}")
    yield led
    await led.close()


async def _stack(
    client: Client, emulator: Any, ledger: Ledger, task_queue: str | None = None
) -> AsyncIterator[Stack]:
    provider = E2BSandboxProvider(
        credentials=StaticCredentials(emulator.api_key),
        api_url=emulator.api_url,
        sandbox_url=emulator.sandbox_url,
    )
    queue = task_queue or f"tq-{uuid.uuid4()}"
    worker = build_worker(client, task_queue=queue, provider=provider, ledger=ledger)
    async with worker:
        yield Stack(client=client, task_queue=queue, ledger=ledger, emulator=emulator)


@pytest_asyncio.fixture(scope="module")
async def stack(
    temporal_env: WorkflowEnvironment, emulator: Any, ledger: Ledger
) -> AsyncIterator[Stack]:
    async for s in _stack(temporal_env.client, emulator, ledger):
        yield s


@pytest_asyncio.fixture(scope="module")
async def skipping_stack(
    time_skipping_env: WorkflowEnvironment, emulator: Any, ledger: Ledger
) -> AsyncIterator[Stack]:
    async for s in _stack(time_skipping_env.client, emulator, ledger):
        yield s


Sleeper = Callable[[float], Awaitable[None]]
