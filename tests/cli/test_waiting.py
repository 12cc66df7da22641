"""`sessions list --waiting`: the gates waiting now, from one visibility query, no worker asked."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from common.search import SESSION_ORG, SESSION_STATE, SESSION_WAITING_GATES
from sessions import SessionClient
from tests.fixtures.cli import Cli, CliStack, make_cli, running_cli_stack
from tests.fixtures.stack import state_is
from tests.fixtures.temporal import temporal_binary

VISIBLE = 20.0
"""Seconds visibility may take to show an upsert (the dev server's is near instant)."""


async def waiting_rows(
    cli: Cli, *args: str, until: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """`sessions list --waiting --json ARGS`, asked again until `until` holds (visibility is
    eventually consistent)."""
    deadline = asyncio.get_running_loop().time() + VISIBLE
    while True:
        rows = json.loads((await cli("list", "--waiting", "--json", *args)).ok().out)
        if until(rows) or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.3)


async def park(stack: CliStack, org: str, issue: str, gate: str, *extra: str) -> str:
    cli = stack.cli
    sid = (await cli("start", "--org", org, "--issue", issue)).ok().out.strip()
    (await cli("gate", sid, gate, *extra)).ok()
    await stack.wait_for(sid, state_is("paused"), what=f"{sid} paused at {gate}")
    return sid


async def test_waiting_gates_show_with_their_context_and_filter(cli_stack: CliStack) -> None:
    cli = cli_stack.cli
    org, other = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    one = await park(
        cli_stack,
        org,
        "ISS-1",
        "deploy",
        "--summary",
        "Deploy v2 to staging",
        "--requested-by",
        "runner-7",
        "--approver",
        "ana",
        "--timeout",
        "1h",
    )
    two = await park(cli_stack, org, "ISS-2", "migrate", "--title", "Run the migration")
    three = await park(cli_stack, other, "ISS-1", "publish")

    rows = await waiting_rows(cli, "--org", org, until=lambda r: len(r) == 2)
    assert [r["session_id"] for r in rows] == [two, one]  # newest waiting first
    first = rows[1]
    assert (first["org_id"], first["issue_id"], first["state"]) == (org, "ISS-1", "paused")
    [gate] = first["gates"]
    assert gate["gate"] == "deploy" and gate["summary"] == "Deploy v2 to staging"
    assert gate["requested_by"] == "runner-7" and gate["approvers"] == ["ana"]
    assert gate["timeout_seconds"] == 3600 and gate["waiting_since"] is not None
    assert first["usage"]["running_seconds"] > 0 and first["usage"]["state"] == "paused"

    by_issue = await waiting_rows(cli, "--org", org, "--issue", "ISS-1", until=lambda r: True)
    assert [r["session_id"] for r in by_issue] == [one]
    assert three in {r["session_id"] for r in await waiting_rows(cli, until=lambda r: True)}

    table = (await cli("list", "--waiting", "--org", org)).ok().out
    header, *lines = table.splitlines()
    assert header.split()[:5] == ["SESSION", "ORG", "ISSUE", "GATE", "SUMMARY"]
    [deploy] = [line for line in lines if line.startswith(one)]
    for word in ("ISS-1", "deploy", "Deploy v2 to staging", "runner-7", "ana", "59m"):
        assert word in deploy, table
    [migrate] = [line for line in lines if line.startswith(two)]
    assert "Run the migration" in migrate and "anyone" in migrate

    # `--org` filters the plain list too; a decided gate leaves the waiting list
    plain = json.loads((await cli("list", "--json", "--org", org)).ok().out)
    assert {r["session_id"] for r in plain} == {one, two}
    (await cli("approve", one, "deploy", "--by", "ana")).ok()
    rows = await waiting_rows(cli, "--org", org, until=lambda r: len(r) == 1)
    assert [r["session_id"] for r in rows] == [two]

    for sid in (one, two, three):
        (await cli("finish", sid)).ok()
    assert await waiting_rows(cli, "--org", org, until=lambda r: not r) == []
    nothing = (await cli("list", "--waiting", "--org", org)).ok()
    assert nothing.out == "" and "no gates waiting" in nothing.err


async def test_the_list_answers_with_no_worker_running(
    temporal_env: WorkflowEnvironment, emulator: Any, tmp_path: Path
) -> None:
    cli = make_cli(temporal_env, tmp_path, prefix="nowork")
    client = SessionClient(temporal_env.client, task_queue=cli.env["SESSIONS_TASK_QUEUE"])
    org = f"alone-{uuid.uuid4().hex[:6]}"
    async with running_cli_stack(cli, client, emulator) as stack:
        sid = await park(stack, org, "ISS-9", "deploy", "--summary", "ship it")
    # the worker is gone: the list still answers, from visibility alone
    rows = await waiting_rows(cli, "--org", org, until=lambda r: len(r) == 1)
    assert [(r["session_id"], r["gates"][0]["summary"]) for r in rows] == [(sid, "ship it")]
    [waiting] = await client.waiting(org_id=org)
    assert waiting.session_id == sid and waiting.gates[0].gate == "deploy"
    async with running_cli_stack(cli, client, emulator):
        (await cli("finish", sid, "--wait")).ok()


async def test_an_org_with_a_quote_is_matched_exactly(cli_stack: CliStack) -> None:
    cli = cli_stack.cli
    org = f"o'brien-{uuid.uuid4().hex[:6]}"
    sid = await park(cli_stack, org, "ISS-1", "deploy")
    rows = await waiting_rows(cli, "--org", org, until=lambda r: len(r) == 1)
    assert [r["session_id"] for r in rows] == [sid]
    # a quote cannot end the literal early and widen the query
    assert await waiting_rows(cli, "--org", "x' OR SessionOrg != '", until=lambda r: True) == []
    refused = await cli("list", "--waiting", "--org", 'a"b')
    assert "--org may not contain a double quote or a backslash" in refused.one_error_line()
    (await cli("finish", sid)).ok()


async def test_a_gate_the_memo_does_not_describe_shows_by_name(
    temporal_env: WorkflowEnvironment,
) -> None:
    """A session whose memo lags (or an older one) still lists its waiting gates by name."""
    org = f"bare-{uuid.uuid4().hex[:6]}"
    handle = await temporal_env.client.start_workflow(
        "SandboxSession",
        {"session_id": "bare", "org_id": org},
        id=f"session-bare-{org}",
        task_queue=f"nobody-{org}",  # no worker: it never runs
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SESSION_ORG, org),
                SearchAttributePair(SESSION_STATE, "paused"),
                SearchAttributePair(SESSION_WAITING_GATES, ["deploy", "publish"]),
            ]
        ),
        memo={"waiting_gates": [{"gate": "publish", "requested_at": "2026-01-01T00:00:00Z"}]},
    )
    try:
        client = SessionClient(temporal_env.client)
        rows: list[Any] = []
        for _ in range(60):
            rows = await client.waiting(org_id=org)
            if rows:
                break
            await asyncio.sleep(0.3)
        [row] = rows
        assert [(g.gate, g.requested_at is None) for g in row.gates] == [
            ("deploy", True),
            ("publish", False),
        ]
        assert row.usage is None and row.state == "paused"
    finally:
        await handle.terminate()


async def test_a_worker_stops_at_start_without_the_search_attributes(tmp_path: Path) -> None:
    bare = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error"
    )
    try:
        cli = make_cli(bare, tmp_path, prefix="bare")
        result = await cli("worker")
        line = result.one_error_line()
        assert result.code == 2, result
        assert line == (
            "error: namespace default lacks the search attributes SessionState, SessionOrg, "
            "SessionIssue, SessionWaitingGates: create them with `temporal operator "
            "search-attribute create --namespace default --name SessionState --type Keyword "
            "--name SessionOrg --type Keyword --name SessionIssue --type Keyword "
            "--name SessionWaitingGates --type KeywordList` (Temporal Cloud: see README, "
            "Search attributes)"
        ), line
    finally:
        await bare.shutdown()


@pytest.mark.parametrize("value", ["a\\b", 'a"b'])
async def test_the_client_refuses_a_literal_it_cannot_match(
    temporal_env: WorkflowEnvironment, value: str
) -> None:
    from sessions.errors import ConfigError

    with pytest.raises(ConfigError, match="may not contain a double quote or a backslash"):
        await SessionClient(temporal_env.client).waiting(issue_id=value)
