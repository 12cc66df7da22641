"""Every wrong turn is one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.fixtures.cli import Cli

UNREACHABLE = ("--address", "127.0.0.1:1")


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (("start", "--org", "a", "--bogus"), "No such option '--bogus'", 2),
        (("start",), "Missing option '--org'", 2),
        (("frobnicate",), "No such command 'frobnicate'", 2),
        (("start", "--org", "a", "--env", "NOEQUALS"), "--env expects NAME=VALUE", 2),
        (("start", "--org", "a", "--env", "1BAD=x"), "invalid variable name '1BAD'", 2),
        (("start", "--org", "a", "--session-id", "has space"), "session id must be", 2),
        (("gate", "s", "g", "--timeout", "5x"), "invalid duration '5x'", 2),
        (("gate", "s", "g", "--on-timeout", "explode"), "'explode' is not one of", 2),
        (("approve", "s", "g"), "Missing option '--by'", 2),
        (("exec", "s"), "Missing argument 'COMMAND...'", 2),
        (("costs", "--by", "planet"), "'planet' is not one of", 2),
        (("status", "s", *UNREACHABLE), "cannot reach Temporal at 127.0.0.1:1", 1),
        (("--address", "127.0.0.1:1", "list"), "cannot reach Temporal at 127.0.0.1:1", 1),
        (("start", "--org", "a", *UNREACHABLE), "cannot reach Temporal at 127.0.0.1:1", 1),
        (("approve", "s", "g", "--by", "x", *UNREACHABLE), "cannot reach Temporal", 1),
    ],
)
async def test_bad_input_and_unreachable_server(
    cli: Cli, args: tuple[str, ...], expected: str, code: int
) -> None:
    result = await cli(*args)
    assert expected in result.one_error_line(), result
    assert result.code == code and result.out == ""


@pytest.mark.parametrize(
    "args",
    [
        ("status", "nosuch"),
        ("status", "nosuch", "--json"),
        ("gate", "nosuch", "deploy"),
        ("approve", "nosuch", "deploy", "--by", "ana"),
        ("reject", "nosuch", "deploy", "--by", "ana"),
        ("exec", "nosuch", "--", "true"),
        ("finish", "nosuch"),
        ("cancel", "nosuch"),
    ],
)
async def test_unknown_session(cli: Cli, args: tuple[str, ...]) -> None:
    result = await cli(*args)
    assert result.one_error_line() == "error: no session nosuch"
    assert result.code == 1 and result.out == ""


async def test_a_bad_ledger_url_and_price_are_one_line(cli: Cli) -> None:
    bad = await cli("costs", env={"LEDGER_URL": "mysql://u:secret@db/x"})
    line = bad.one_error_line()
    assert "not supported" in line and "secret" not in line
    price = await cli("costs", env={"SESSIONS_PRICE_PER_SECOND": "cheap"})
    assert "SESSIONS_PRICE_PER_SECOND must be a number" in price.one_error_line()


async def test_no_worker_is_said_in_one_line_naming_the_sessions_queue(
    cli: Cli, temporal_env: WorkflowEnvironment
) -> None:
    queue = f"nobody-{uuid.uuid4().hex[:6]}"
    sid = (await cli("start", "--org", "a", "--task-queue", queue)).ok().out.strip()
    quick = {"SESSIONS_WORKER_TIMEOUT": "1s"}
    try:
        for args in (("status", sid), ("gate", sid, "g"), ("exec", sid, "--", "true")):
            result = await cli(*args, env=quick)
            line = result.one_error_line()
            assert f"no worker answered for session {sid} (task queue {queue})" in line, line
        listed = json.loads((await cli("list", "--json", env=quick)).ok().out)
        [row] = [r for r in listed if r["session_id"] == sid]
        assert (row["state"], row["workflow_status"], row["org_id"]) == ("unknown", "RUNNING", None)
    finally:
        await temporal_env.client.get_workflow_handle(f"session-{sid}").terminate("test over")
