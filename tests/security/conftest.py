"""Stacks for the security tests: the workflow stack (plain and encrypting) and the CLI's.

The plain stack and the CLI's worker subprocess are the ones of tests/workflows and tests/cli;
here the CLI (and its worker) run with payload encryption on, as a production setup would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.json_format import MessageToDict
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from ledger import Ledger
from sessions import SessionClient
from sessions.codec import KEYS_ENV
from sessions.connect import connect_temporal
from tests.cli.conftest import Cli, make_cli
from tests.cli.conftest import cli_stack as cli_stack  # noqa: F401 - re-exported fixture
from tests.workflows.conftest import Stack, _stack
from tests.workflows.conftest import ledger as ledger  # noqa: F401 - re-exported fixture
from tests.workflows.conftest import stack as stack  # noqa: F401 - re-exported fixture


def new_key() -> str:
    """A fresh AES-256 key, base64, as the docs tell people to make one."""
    return base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()


KEYS = f"k1:{new_key()}"
"""The keys the encrypting stacks run with."""


@contextlib.contextmanager
def payload_keys(value: str | None) -> Iterator[None]:
    """`SESSIONS_PAYLOAD_KEYS` set (or unset) for what `connect_temporal` builds meanwhile."""
    with pytest.MonkeyPatch.context() as mp:
        if value is None:
            mp.delenv(KEYS_ENV, raising=False)
        else:
            mp.setenv(KEYS_ENV, value)
        yield


async def connect_with_keys(env: WorkflowEnvironment, keys: str | None) -> Client:
    """A client built by `connect_temporal`, as the CLI and the worker build theirs."""
    with payload_keys(keys):
        return await connect_temporal(address=env.client.service_client.config.target_host)


@contextlib.asynccontextmanager
async def serving(
    client: Client, emulator: Any, ledger: Ledger, task_queue: str | None = None
) -> AsyncIterator[Stack]:
    """A worker on `client` (so with its data converter) for as long as the block runs."""
    gen = _stack(client, emulator, ledger, task_queue)
    try:
        yield await anext(gen)
    finally:
        await gen.aclose()


@pytest_asyncio.fixture(scope="module")
async def secure_stack(
    temporal_env: WorkflowEnvironment,
    emulator: Any,
    ledger: Ledger,  # noqa: F811
) -> AsyncIterator[Stack]:
    """Client and worker both encrypting with `KEYS`."""
    client = await connect_with_keys(temporal_env, KEYS)
    async with serving(client, emulator, ledger) as s:
        yield s


@pytest_asyncio.fixture(scope="package")
async def cli(temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI (and the `sessions worker` of `cli_stack`) with payload encryption on."""
    home = tmp_path_factory.mktemp("secure-cli")
    return make_cli(temporal_env, home, prefix="sec", **{KEYS_ENV: KEYS})


@pytest_asyncio.fixture(scope="package")
async def cli_client(temporal_env: WorkflowEnvironment, cli: Cli) -> SessionClient:
    """A typed client that reads what the CLI's encrypting worker writes."""
    client = await connect_with_keys(temporal_env, KEYS)
    return SessionClient(client, task_queue=cli.env["SESSIONS_TASK_QUEUE"])


async def wait_state(client: SessionClient, session_id: str, state: str) -> None:
    """Poll the status query (through a client that can decrypt it) until `state`."""
    deadline = asyncio.get_running_loop().time() + 30
    while (last := await client.status(session_id)).state != state:
        assert asyncio.get_running_loop().time() < deadline, f"never {state}: {last}"
        await asyncio.sleep(0.1)


async def history_dict(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The whole event history, every run of it, as stored (payloads not decoded)."""
    return (await handle.fetch_history()).to_json_dict()


def payloads_of(history: dict[str, Any]) -> list[dict[str, Any]]:
    """Every payload in a history's JSON form: `{"metadata": {...}, "data": base64}`."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "encoding" in (node.get("metadata") or {}):
                found.append(node)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(history)
    return found


def metadata(payload: dict[str, Any], key: str) -> str:
    return base64.b64decode(payload["metadata"].get(key, "")).decode()


def history_texts(history: dict[str, Any]) -> list[str]:
    """The history as raw JSON, and every payload's bytes decoded from base64, as text."""
    texts = [json.dumps(history, ensure_ascii=False)]
    for p in payloads_of(history):
        texts.append(base64.b64decode(p.get("data", "")).decode(errors="replace"))
    return texts


async def failed_workflow_tasks(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    """WorkflowTaskFailed events: each one is a bug (a task that could not complete)."""
    history = await handle.fetch_history()
    return [
        MessageToDict(e.workflow_task_failed_event_attributes)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
