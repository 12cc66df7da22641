"""No secret leaks: sessions started with an org credential and secret env vars, run to the end
through a gate and an exec, leave none of them in Temporal's history (raw, or with every payload
decoded from base64), in the worker's, workflow's and activities' logs, or in span attributes.

Payload encryption is on (`SESSIONS_PAYLOAD_KEYS`), as it must be in production: without it the
sandbox's env vars are the workflow's input, stored as given (test_codec.py shows it).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from ledger import Ledger
from sessions import SessionClient
from tests.fixtures.cli import CliStack
from tests.fixtures.security import (
    KEYS,
    connect_with_keys,
    failed_workflow_tasks,
    history_dict,
    history_texts,
    wait_state,
)
from tests.fixtures.stack import serve_stack, state_is, wait_for
from tests.fixtures.telemetry import MemoryTelemetry
from tests.fixtures.temporal import answer, result_of
from workflows import ExecRequest, GateDecision, GateRequest, SandboxSession

CHECK = 'printf %s "$OPENAI_API_KEY$DB_PASSWORD" | sha256sum'
"""Proves the sandbox got both values without ever printing them."""


def new_secrets() -> tuple[str, str]:
    return f"sk-secret-{uuid.uuid4().hex}", f"pw-secret-{uuid.uuid4().hex}"


def digest(*values: str) -> str:
    return hashlib.sha256("".join(values).encode()).hexdigest()


def span_texts(telemetry: MemoryTelemetry) -> list[str]:
    """Every span's name, attributes, event attributes and status, as text."""
    texts = []
    for span in telemetry.spans():
        texts.append(span.name)
        texts.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
        for event in span.events:
            texts.append(event.name)
            texts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
        texts.append(str(span.status.description or ""))
    return texts


def leaks(secrets: dict[str, str], where: dict[str, Iterable[str]]) -> list[str]:
    return [
        f"{name} in {place}"
        for place, texts in where.items()
        for text in texts
        for name, value in secrets.items()
        if value in text
    ]


async def test_in_process_session_leaks_nothing(
    temporal_env: WorkflowEnvironment,
    emulator: Any,
    ledger: Ledger,
    memory_telemetry: MemoryTelemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api_key, password = new_secrets()
    client = await connect_with_keys(temporal_env, KEYS)  # traced into memory_telemetry
    async with serve_stack(client, emulator, ledger) as stack:
        handle = await stack.start(env_vars={"OPENAI_API_KEY": api_key})
        await wait_for(handle, state_is("running"))
        out = await answer(
            handle.execute_update(
                SandboxSession.exec, ExecRequest(command=CHECK, env={"DB_PASSWORD": password})
            )
        )
        assert out.stdout.split()[0] == digest(api_key, password)
        await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="merge")))
        await wait_for(handle, state_is("paused"))
        await answer(
            handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="merge", by="a"))
        )
        await wait_for(handle, state_is("running"))
        await handle.signal("finish", {})
        result = await result_of(handle)
    assert result.outcome == "finished" and result.cost_recorded

    history = history_texts(await history_dict(handle))
    logs = [caplog.text, *(r.getMessage() for r in caplog.records)]
    spans = span_texts(memory_telemetry)
    assert spans and any("exec" in s.lower() for s in spans)  # the spans were recorded here
    secrets = {"org credential": emulator.api_key, "env var": api_key, "exec env": password}
    found = leaks(secrets, {"history": history, "logs": logs, "span": spans})
    assert not found, found
    assert await failed_workflow_tasks(handle) == []
    print(
        f"\nsecrets: 3 values checked in {len(history)} history texts, "
        f"{len(caplog.records)} log records, {len(memory_telemetry.spans())} spans: none found"
    )


async def test_cli_session_leaks_nothing(
    secure_cli_stack: CliStack, secure_cli_client: SessionClient, emulator: Any
) -> None:
    cli_stack, cli_client = secure_cli_stack, secure_cli_client
    cli, api_key, password = cli_stack.cli, *new_secrets()
    outputs: list[str] = []

    async def run(*args: str) -> str:
        result = (await cli(*args)).ok()
        outputs.extend((result.out, result.err))
        return result.out

    session = (await run("start", "--org", "acme", "--env", f"OPENAI_API_KEY={api_key}")).strip()
    await wait_state(cli_client, session, "running")
    await run("gate", session, "merge")
    await wait_state(cli_client, session, "paused")
    await run("approve", session, "merge", "--by", "ana")
    await wait_state(cli_client, session, "running")
    out = await run("exec", session, "--env", f"DB_PASSWORD={password}", "--", CHECK)
    assert out.split()[0] == digest(api_key, password)
    await run("finish", session, "--wait")

    handle = cli_client.client.get_workflow_handle(f"session-{session}")
    secrets = {"org credential": emulator.api_key, "env var": api_key, "exec env": password}
    where = {
        "history": history_texts(await history_dict(handle)),
        "worker log": cli_stack.worker_log,
        "cli output": outputs,
    }
    found = leaks(secrets, where)
    assert not found, found
    assert await failed_workflow_tasks(handle) == []
