"""The payload codec: env vars and every other payload are AES-GCM encrypted in Temporal's
history when `SESSIONS_PAYLOAD_KEYS` is set; keys rotate by id; a bad key is one clear error."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from common.codec import KEYS_ENV, EncryptionCodec, PayloadKeyError, data_converter
from common.errors import ConfigError
from common.settings import parse_keys
from ledger import Ledger
from sessions.codec_server import build_app
from tests.fixtures.cli import Cli
from tests.fixtures.http import serving_http
from tests.fixtures.security import (
    KEYS,
    connect_with_keys,
    failed_workflow_tasks,
    history_dict,
    history_texts,
    metadata,
    new_key,
    payloads_of,
)
from tests.fixtures.stack import Stack, serve_stack, state_is, wait_for
from tests.fixtures.temporal import answer, result_of, temporal_binary
from workflows import ExecRequest, GateDecision, GateRequest, SandboxSession

KEY_MATERIAL = new_key()


def search_attribute_names(history: dict[str, Any]) -> set[str]:
    """Every search attribute the run upserted: plain by design, so only the documented ones."""
    return {
        key
        for event in history["events"]
        for key in event.get("upsertWorkflowSearchAttributesEventAttributes", {})
        .get("searchAttributes", {})
        .get("indexedFields", {})
    }


def run_payloads(history: dict[str, Any]) -> list[dict[str, Any]]:
    """The payloads our code writes: inputs, results, signals, updates, memos, local activities'
    results (not headers, nor the SDK's own marker data: a `workflow.patched` marker's patch id,
    a local activity marker's sequence number, type and times; nor search attributes: visibility
    indexes them, so they are never encoded; see `search_attribute_names`)."""
    out = []
    for event in history["events"]:
        for name, attrs in event.items():
            if name == "markerRecordedEventAttributes" and attrs.get("markerName") == "core_patch":
                continue
            if (
                name == "markerRecordedEventAttributes"
                and attrs.get("markerName") == "core_local_activity"
            ):
                out.extend(payloads_of(attrs["details"]["result"]))
                continue
            if name == "upsertWorkflowSearchAttributesEventAttributes":
                continue
            if name.endswith("Attributes"):
                kept = {k: v for k, v in attrs.items() if k not in ("header", "memo")}
                out.extend(payloads_of(kept))
    return out


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (KEY_MATERIAL, "entry 1 must be KEY_ID:BASE64_KEY"),
        (f"k1:{KEY_MATERIAL[:-2]}!!", "entry 1 (key id 'k1'): the key is not valid base64"),
        (f"k1:{base64.b64encode(b'x' * 16).decode()}", "must be 32 bytes (AES-256), not 16"),
        (f"k1:{KEY_MATERIAL},k1:{new_key()}", "entry 2: key id 'k1' is listed twice"),
        (f"k 1:{KEY_MATERIAL}", "entry 1 must be KEY_ID:BASE64_KEY"),
        (f"k1:{KEY_MATERIAL},", "entry 2 must be KEY_ID:BASE64_KEY"),
    ],
    ids=["no-id", "not-base64", "short-key", "duplicate-id", "bad-id", "trailing-comma"],
)
@pytest.mark.fast
def test_a_malformed_key_variable_is_one_clear_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        data_converter(value)
    assert message in str(err.value)
    assert KEY_MATERIAL[:8] not in str(err.value)


@pytest.mark.fast
def test_encryption_is_off_by_default() -> None:
    assert data_converter(None).payload_codec is None
    assert data_converter("  ").payload_codec is None
    codec = data_converter(f"k2:{new_key()}, k1:{new_key()}").payload_codec
    assert isinstance(codec, EncryptionCodec) and codec.key_ids == ["k2", "k1"]


@pytest.mark.parametrize("command", [("status", "s1"), ("worker",)], ids=["status", "worker"])
async def test_the_cli_and_worker_refuse_a_bad_key_in_one_line(
    cli: Cli, command: tuple[str, ...]
) -> None:
    result = await cli(*command, env={KEYS_ENV: f"k1:{KEY_MATERIAL[:20]}"})
    line = result.one_error_line()
    assert f"{KEYS_ENV} entry 1 (key id 'k1'): the key" in line and result.code == 2
    assert KEY_MATERIAL[:20] not in result.err + result.out


async def test_without_keys_env_vars_are_plain_text_in_history(stack: Stack) -> None:
    """What the codec is for: the plain converter stores the sandbox's env as given."""
    secret = f"sk-plain-{uuid.uuid4().hex}"
    handle = await stack.start(env_vars={"OPENAI_API_KEY": secret})
    await wait_for(handle, state_is("running"))
    texts = history_texts(await history_dict(handle))
    assert any(secret in t for t in texts)
    await handle.signal("finish", {})
    await result_of(handle)


async def test_with_a_key_history_holds_only_encrypted_payloads(secure_stack: Stack) -> None:
    stack = secure_stack
    secret = f"sk-enc-{uuid.uuid4().hex}"
    handle = await stack.start(env_vars={"OPENAI_API_KEY": secret})
    await wait_for(handle, state_is("running"))
    out = await answer(
        handle.execute_update(
            SandboxSession.exec, ExecRequest(command='printf %s "$OPENAI_API_KEY" | wc -c')
        )
    )
    assert out.stdout.strip() == str(len(secret))  # the sandbox got the real value
    await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="ship")))
    await wait_for(handle, state_is("paused"))
    await handle.signal("approve", {"gate": "ship", "by": "ana"})
    await wait_for(handle, state_is("running"))
    await handle.signal("finish", {})
    result = await result_of(handle)
    assert result.outcome == "finished" and result.cost_recorded

    history = await history_dict(handle)
    found = run_payloads(history)
    assert len(found) > 10
    assert {metadata(p, "encoding") for p in found} == {"binary/encrypted"}
    assert {metadata(p, "encryption-key-id") for p in found} == {"k1"}
    assert not any(secret in t for t in history_texts(history))
    # Plain, as visibility needs them: the session's state, org, issue and waiting gates' names
    # (and the SDK's patch ids); the gates' summaries and details go in the encrypted memo.
    assert search_attribute_names(history) == {
        "SessionState",
        "SessionOrg",
        "SessionIssue",
        "SessionWaitingGates",
        "TemporalChangeVersion",
    }
    assert any("upsertedMemo" in str(e) for e in history["events"])
    assert await failed_workflow_tasks(handle) == []
    assert len(await stack.ledger.events(session_id=result.status.session_id)) == 1


async def test_rotation_reads_old_payloads_and_writes_with_the_new_key(
    temporal_env: WorkflowEnvironment, emulator: Any, ledger: Ledger, cli: Cli
) -> None:
    k1, k2 = f"k1:{new_key()}", f"k2:{new_key()}"
    queue = f"rot-{uuid.uuid4().hex[:8]}"
    old = await connect_with_keys(temporal_env, k1)
    async with serve_stack(old, emulator, ledger, queue) as stack:
        handle = await stack.start(env_vars={"TOKEN": "t0k3n"})
        await wait_for(handle, state_is("running"))
        await answer(handle.execute_update(SandboxSession.request_gate, GateRequest(gate="g")))
        await wait_for(handle, state_is("paused"))
    # A new worker and client with the keys rotated: k2 encrypts, k1 still decrypts.
    new = await connect_with_keys(temporal_env, f"{k2},{k1}")
    async with serve_stack(new, emulator, ledger, queue):
        handle = new.get_workflow_handle(handle.id)
        await answer(
            handle.execute_update(SandboxSession.approve_gate, GateDecision(gate="g", by="x"))
        )
        await wait_for(handle, state_is("running"))
        out = await answer(
            handle.execute_update(SandboxSession.exec, ExecRequest(command="echo $TOKEN"))
        )
        assert out.stdout == "t0k3n\n"
        # A client whose keys lack the one a payload names: a clear error, no garbage.
        stale = await cli("status", handle.id.removeprefix("session-"), env={KEYS_ENV: k1})
        line = stale.one_error_line()
        assert "cannot decrypt a payload encrypted with key id 'k2'" in line, line
        await handle.signal("finish", {})
        await result_of(handle)

    events = (await history_dict(handle))["events"]
    first, last = events[0], events[-1]
    assert [metadata(p, "encryption-key-id") for p in run_payloads({"events": [first]})] == ["k1"]
    assert [metadata(p, "encryption-key-id") for p in run_payloads({"events": [last]})] == ["k2"]
    assert await failed_workflow_tasks(handle) == []


@pytest.mark.fast
async def test_an_unknown_key_id_or_a_wrong_key_fails_clearly() -> None:
    writer = EncryptionCodec(parse_keys(f"k9:{new_key()}"))
    [encrypted] = await writer.encode([data_converter().payload_converter.to_payload("hi")])
    with pytest.raises(PayloadKeyError, match="key id 'k9': SESSIONS_PAYLOAD_KEYS has 'k1'"):
        await EncryptionCodec(parse_keys(f"k1:{new_key()}")).decode([encrypted])
    with pytest.raises(PayloadKeyError, match="not the one that encrypted it"):
        await EncryptionCodec(parse_keys(f"k9:{new_key()}")).decode([encrypted])
    plain = data_converter().payload_converter.to_payload("hi")
    assert await writer.decode([plain]) == [plain]  # written before encryption was on


async def test_the_codec_server_lets_the_temporal_cli_read_a_history(
    secure_stack: Stack, temporal_env: WorkflowEnvironment
) -> None:
    secret = f"sk-show-{uuid.uuid4().hex}"
    handle = await secure_stack.start(env_vars={"OPENAI_API_KEY": secret})
    await wait_for(handle, state_is("running"))
    await handle.signal("finish", {})
    await result_of(handle)

    codec = data_converter(KEYS).payload_codec
    assert isinstance(codec, EncryptionCodec)
    app = build_app(codec, auth="Bearer let-me-in")
    async with serving_http(app) as url:
        address = temporal_env.client.service_client.config.target_host
        show = ("workflow", "show", "-w", handle.id, "--address", address, "-o", "json")
        plain = await temporal_cli(*show)
        wrong = await temporal_cli(  # refused (401): the CLI retries until its timeout
            *show, "--codec-endpoint", url, "--codec-auth", "Bearer no", "--command-timeout", "2s"
        )
        decoded = await temporal_cli(
            *show, "--codec-endpoint", url, "--codec-auth", "Bearer let-me-in"
        )
    assert any(secret in t for t in shown_texts(decoded))
    assert not any(secret in t for t in shown_texts(plain) + shown_texts(wrong))
    assert wrong.startswith("Error")
    encodings = {metadata(p, "encoding") for p in payloads_of(json.loads(plain))}
    assert "binary/encrypted" in encodings


def shown_texts(output: str) -> list[str]:
    """`temporal workflow show -o json` output, with its payloads decoded from base64."""
    try:
        return history_texts(json.loads(output))
    except ValueError:
        return [output]  # an error message


async def temporal_cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode(errors="replace")


async def test_failure_messages_are_encrypted_too(secure_stack: Stack) -> None:
    session_id = f"enc-{uuid.uuid4().hex[:8]}"
    handle = await secure_stack.client.start_workflow(
        "SandboxSession",
        {"session_id": session_id, "org_id": "acme", "pool": {"bogus": "sk-in-a-failure"}},
        id=f"session-{session_id}",
        task_queue=secure_stack.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as err:
        await result_of(handle)
    assert "pool.bogus: Extra inputs are not permitted" in str(err.value.cause)
    texts = history_texts(await history_dict(handle))
    assert not any("pool.bogus" in t or "sk-in-a-failure" in t for t in texts)
    assert any("Encoded failure" in t for t in texts)
