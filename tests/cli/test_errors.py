"""Every wrong turn is one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from common.temporal import connect_cause
from tests.fixtures.cli import Cli

UNREACHABLE = ("--address", "127.0.0.1:1")
REFUSED = (
    "error: cannot reach Temporal at 127.0.0.1:1: is `sessions dev` running? (connection refused)"
)
"""Nobody listens on port 1: the whole line, the SDK's transport error reduced to its cause."""


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
        (("status", "s", *UNREACHABLE), REFUSED, 1),
        (("--address", "127.0.0.1:1", "list"), REFUSED, 1),
        (("start", "--org", "a", *UNREACHABLE), REFUSED, 1),
        (("approve", "s", "g", "--by", "x", *UNREACHABLE), REFUSED, 1),
        (("exec", "s", *UNREACHABLE, "--", "true"), REFUSED, 1),
        (("worker", *UNREACHABLE), REFUSED, 1),
        (
            ("status", "s", "--address", "nosuch.invalid:7233"),
            "cannot reach Temporal at nosuch.invalid:7233: is `sessions dev` running? "
            "(name not resolved)",
            1,
        ),
        (
            ("status", "s", "--address", "not an address"),
            "invalid Temporal address 'not an address' (--address, TEMPORAL_ADDRESS): ",
            2,
        ),
    ],
)
async def test_bad_input_and_unreachable_server(
    cli: Cli, args: tuple[str, ...], expected: str, code: int
) -> None:
    result = await cli(*args)
    line = result.one_error_line()
    assert expected in line, result
    assert "tonic" not in line and "Error(" not in line, line  # never the SDK's transport dump
    assert result.code == code and result.out == ""


@pytest.mark.parametrize(
    ("raw", "cause"),
    [  # what temporalio 1.x's `Client.connect` raises, verbatim
        (
            "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
            'ConnectError(ConnectError("tcp connect error", 127.0.0.1:1, Os { code: 111, kind: '
            'ConnectionRefused, message: "Connection refused" })))',
            "connection refused",
        ),
        (
            "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
            'ConnectError(ConnectError("dns error", Custom { kind: Uncategorized, error: "failed '
            'to lookup address information: Name or service not known" })))',
            "name not resolved",
        ),
        (
            "Failed client connect: `get_system_info` call error after connection: Status { code: "
            'Cancelled, message: "Timeout expired", source: Some(tonic::transport::Error('
            "Transport, TimeoutExpired(()))) }",
            "timed out",
        ),
        (
            "Failed client connect: `get_system_info` call error after connection: Status { code: "
            'Unimplemented, message: "grpc-status header missing, mapped from HTTP status code '
            '404", metadata: MetadataMap { headers: {} }, source: None }',
            "not a Temporal frontend: HTTP 404",
        ),
        (
            "Failed client connect: something new: tonic::transport::Error(Odd)",
            "something new: Odd",
        ),
    ],
)
def test_a_connect_error_is_reduced_to_its_cause(raw: str, cause: str) -> None:
    """A listener that never answers takes the SDK 30 s to give up: its message is checked here."""
    assert connect_cause(RuntimeError(raw)) == cause


async def test_sessions_alone_prints_its_help_on_stdout(cli: Cli) -> None:
    alone = await cli()
    assert (alone.code, alone.err) == (0, ""), alone
    assert alone.out.startswith("Usage: sessions [OPTIONS] COMMAND [ARGS]...\n"), alone
    assert "\nCommands:\n" in alone.out and "  start " in alone.out  # real lines, not `\n`
    assert alone.out == (await cli("--help")).ok().out


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("gate",), "error: Missing argument 'SESSION'. (see `sessions gate --help`)"),
        (("gate", "s"), "error: Missing argument 'GATE'. (see `sessions gate --help`)"),
        (("exec", "s"), "error: Missing argument 'COMMAND...'. (see `sessions exec --help`)"),
        (("--address", "h:1"), "error: Missing command. (see `sessions --help`)"),
    ],
)
async def test_missing_arguments_are_clicks_usage_error_in_one_line(
    cli: Cli, args: tuple[str, ...], line: str
) -> None:
    result = await cli(*args)
    assert result.one_error_line() == line
    assert (result.code, result.out) == (2, "")


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
