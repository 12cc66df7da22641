"""The bad-input table, second half: the `sessions` CLI.

Each row is a command, its exit code and its one line, in the phase the session is in (running,
paused, resumed, ended), against sessions started with the CLI and its encrypting `sessions worker`
subprocess; the rows run alone and in any order (`CliPhaseSessions`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ledger import open_ledger
from sessions import SessionClient
from tests.fixtures.cli import CliStack
from tests.fixtures.security import failed_workflow_tasks, wait_state

from .test_bad_input import BY, GATE, ROWS, START_ROWS, STATE_OF_PHASE, TITLE

DOC = Path(__file__).parents[2] / "docs" / "bad-input.md"

S = "{session}"
CLI_ROWS: list[tuple[str, str, tuple[str, ...], int, str]] = [
    # (id, phase, argv, exit code, text on stderr — or on stdout when the code is 0)
    (
        "cli-negative-timeout",
        "running",
        ("gate", S, "g", "--timeout", "-5"),
        2,
        "invalid duration '-5': it must be more than zero",
    ),
    (
        "cli-zero-timeout",
        "running",
        ("gate", S, "g", "--timeout", "0s"),
        2,
        "invalid duration '0s': it must be more than zero",
    ),
    (
        "cli-exec-negative-timeout",
        "running",
        ("exec", S, "--timeout", "-1m", "--", "true"),
        2,
        "invalid duration '-1m'",
    ),
    (
        "cli-exec-invalid-env-name",
        "running",
        ("exec", S, "--env", "BAD-NAME=1", "--", "true"),
        2,
        "--env: invalid variable name 'BAD-NAME'",
    ),
    (
        "cli-control-characters",
        "running",
        ("gate", S, "a\nb"),
        2,
        "invalid GateRequest: gate: gate contains control characters",
    ),
    (
        "cli-oversized-gate",
        "running",
        ("gate", S, "g" * 200),
        2,
        "gate: String should have at most 128 characters",
    ),
    (
        "cli-oversized-comment",
        "running",
        ("approve", S, "g", "--by", "a", "--comment", "c" * 5000),
        2,
        "comment: String should have at most 4000 characters",
    ),
    (
        "cli-oversized-org",
        "running",
        ("start", "--org", "o" * 300),
        2,
        "org_id: String should have at most 200 characters",
    ),
    (
        "cli-empty-org",
        "running",
        ("start", "--org", ""),
        2,
        "org_id: String should have at least 1 character",
    ),
    (
        "cli-oversized-env",
        "running",
        ("start", "--org", "a", "--env", "K=" + "v" * 40_000),
        2,
        "environment variable K is longer than 32768 bytes",
    ),
    (
        "cli-existing-session-id",
        "running",
        ("start", "--org", "a", "--session-id", S),
        1,
        "already exists: choose another --session-id",
    ),
    (
        "cli-unknown-gate",
        "running",
        ("approve", S, "nope", "--by", "ana"),
        1,
        "error: unknown gate 'nope' (gates: none)",
    ),
    (
        "cli-unicode-gate",
        "running",
        ("gate", S, GATE, "--title", TITLE),
        0,
        f"gate {GATE} requested",
    ),
    (
        "cli-exec-while-paused",
        "paused",
        ("exec", S, "--", "true"),
        1,
        f"error: session is paused at gate '{GATE}'",
    ),
    (
        "cli-gate-requested-twice",
        "paused",
        ("gate", S, GATE),
        1,
        f"error: gate '{GATE}' was already requested",
    ),
    (
        "cli-unicode-decision",
        "paused",
        ("approve", S, GATE, "--by", BY, "--comment", "ok ✓"),
        0,
        f"gate {GATE} approved by {BY}",
    ),
    (
        "cli-second-decision",
        "resumed",
        ("reject", S, GATE, "--by", "bo"),
        1,
        f"error: gate '{GATE}' is already approved by {BY}",
    ),
    ("cli-finish", "resumed", ("finish", S, "--wait"), 0, "finish requested"),
    ("cli-approve-after-finish", "ended", ("approve", S, GATE, "--by", "ana"), 1, "has ended"),
    ("cli-exec-after-finish", "ended", ("exec", S, "--", "true"), 1, "has ended"),
    ("cli-gate-after-finish", "ended", ("gate", S, "late"), 1, "has ended"),
    ("cli-finish-after-finish", "ended", ("finish", S), 1, "has ended"),
    ("cli-cancel-after-finish", "ended", ("cancel", S), 1, "has ended"),
]
CLI_THEN = {"cli-unicode-gate": "paused", "cli-unicode-decision": "resumed", "cli-finish": "ended"}


Row = tuple[str, str, tuple[str, ...], int, str]
CLI_TRANSITIONS = {row[1]: row for row in CLI_ROWS if row[0] in CLI_THEN}


class CliPhaseSessions:
    """Sessions started and steered with the CLI, by phase, so every row runs alone and in any
    order: a row that moves the session on gets a session of its own; the rows that must leave
    their session as it was share one per phase."""

    def __init__(self, stack: CliStack, client: SessionClient) -> None:
        self.stack, self.client = stack, client
        self.shared: dict[str, str] = {}
        self.opened: list[str] = []

    async def for_row(self, row: Row) -> str:
        if row[0] in CLI_THEN:
            return await self.walk_to(row[1])
        if row[1] not in self.shared:
            self.shared[row[1]] = await self.walk_to(row[1])
        return self.shared[row[1]]

    async def close(self) -> None:
        """End every session still open, so no sandbox outlives the module."""
        for session in self.opened:
            if (await self.client.status(session)).state not in ("finished", "failed", "cancelled"):
                await self.client.finish(session)
                await self.client.wait(session)

    async def walk_to(self, phase: str) -> str:
        started = await self.stack.cli("start", "--org", "acme", "--env", "KEEP=me")
        session = started.ok().out.strip()
        self.opened.append(session)
        await wait_state(self.client, session, STATE_OF_PHASE["running"])
        at = "running"
        while at != phase:
            row = CLI_TRANSITIONS[at]
            await self.run(session, row)
            at = CLI_THEN[row[0]]
        return session

    async def run(self, session: str, row: Row) -> None:
        case, _, argv, code, text = row
        result = await self.stack.cli(*(a.replace(S, session) for a in argv))
        if code == 0:
            assert text in result.ok().out, result
        else:
            assert text in result.one_error_line() and result.code == code, result
        then = CLI_THEN.get(case)
        if then and then != "ended":
            await wait_state(self.client, session, STATE_OF_PHASE[then])
        handle = self.client.client.get_workflow_handle(f"session-{session}")
        assert await failed_workflow_tasks(handle) == [], case
        if then == "ended":
            ledger = await open_ledger(self.stack.ledger_url)
            try:
                assert len(await ledger.events(session_id=session)) == 1
            finally:
                await ledger.close()


@pytest_asyncio.fixture(scope="module")
async def cli_sessions(
    secure_cli_stack: CliStack, secure_cli_client: SessionClient
) -> AsyncIterator[CliPhaseSessions]:
    phases = CliPhaseSessions(secure_cli_stack, secure_cli_client)
    yield phases
    await phases.close()


@pytest.mark.parametrize("row", CLI_ROWS, ids=[r[0] for r in CLI_ROWS])
async def test_command(cli_sessions: CliPhaseSessions, row: Row) -> None:
    session = await cli_sessions.for_row(row)
    await cli_sessions.run(session, row)


def test_the_table_is_documented() -> None:
    """docs/bad-input.md (and so the README) lists every case of this file."""
    text = DOC.read_text()
    ids = [r.id for r in ROWS] + [r[0] for r in START_ROWS] + [r[0] for r in CLI_ROWS]
    ids.append("finish-race")
    missing = [i for i in ids if f"`{i}`" not in text]
    assert not missing, f"cases missing from {DOC.name}: {missing}"
    readme = (DOC.parents[1] / "README.md").read_text()
    missing = [i for i in ids if f"`{i}`" not in readme]
    assert not missing, f"cases missing from README.md's copy of the table: {missing}"
