"""Whole sessions driven through the `sessions` CLI, in both output modes."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

from emulator.testing import EmulatorHandle
from tests.fixtures.cli import CliStack, Result
from tests.fixtures.stack import state_is

STATUS_KEYS = {
    "session_id",
    "org_id",
    "issue_id",
    "state",
    "sandbox_id",
    "template_id",
    "gates",
    "running_seconds",
    "paused_seconds",
    "error",
}
GATE_KEYS = {"gate", "title", "state", "requested_at", "decided_at", "decided_by", "comment"}
COST_KEYS = {
    "session_id",
    "org_id",
    "issue_id",
    "sandbox_id",
    "template_id",
    "started_at",
    "ended_at",
    "running_seconds",
    "paused_seconds",
    "wall_seconds",
    "outcome",
}


async def test_a_whole_session_through_the_cli(cli_stack: CliStack) -> None:
    cli = cli_stack.cli
    started = (
        await cli(
            "start",
            "--org",
            "acme",
            "--issue",
            "ISS-7",
            "--template",
            "demo-runner",
            "--env",
            "GREETING=hello",
            "--env",
            "EMPTY=",
        )
    ).ok()
    sid = started.out.strip()
    assert started.out == sid + "\n" and len(sid) == 12  # only the id: `S=$(sessions start ...)`
    await cli_stack.wait_for(sid, state_is("running"), what="running")

    # exec: output on the right streams, the command's own exit code
    run = await cli("exec", sid, "--", 'echo "$GREETING"; echo oops >&2; exit 3')
    assert (run.code, run.out, run.err) == (3, "hello\n", "oops\n"), run
    words = (await cli("exec", sid, "--", "printf", "%s|", "a b", "$HOME")).ok()
    assert words.out == "a b|$HOME|"  # several words are one argv, quoted, never re-split

    # a gate pauses the sandbox; exec is refused while it waits
    gate = (await cli("gate", sid, "deploy", "--title", "Ship it", "--timeout", "15m")).ok()
    assert "deploy" in gate.out
    await cli_stack.wait_for(sid, state_is("paused"), what="paused at the gate")
    paused_exec = await cli("exec", sid, "--", "true")
    assert "paused at gate 'deploy'" in paused_exec.one_error_line()
    assert "already requested" in (await cli("gate", sid, "deploy")).one_error_line()

    status = json.loads((await cli("status", sid, "--json")).ok().out)
    assert STATUS_KEYS <= status.keys()
    assert (status["session_id"], status["org_id"], status["issue_id"]) == (sid, "acme", "ISS-7")
    assert (status["state"], status["template_id"]) == ("paused", "demo-runner")
    assert status["sandbox_id"] and status["running_seconds"] > 0
    [g] = status["gates"]
    assert GATE_KEYS <= g.keys()
    assert (g["gate"], g["title"], g["state"], g["decided_by"]) == (
        "deploy",
        "Ship it",
        "waiting",
        None,
    )

    plain = (await cli("status", sid)).ok().out
    assert "\x1b[" not in plain and "━" not in plain  # not a terminal: plain text
    for expected in (f"session   {sid}", "state     paused", "deploy", "waiting", "Ship it"):
        assert expected in plain, plain

    # deciding: unknown gate, then approve, then a second decision
    unknown = (await cli("approve", sid, "nope", "--by", "ana")).one_error_line()
    assert "unknown gate 'nope'" in unknown and "deploy" in unknown
    approved = (await cli("approve", sid, "deploy", "--by", "ana", "--comment", "lgtm")).ok()
    assert "approved by ana" in approved.out
    decided = (await cli("reject", sid, "deploy", "--by", "bob")).one_error_line()
    assert "already approved by ana" in decided
    await cli_stack.wait_for(sid, state_is("running"), what="resumed")
    assert (await cli("exec", sid, "--", "echo back")).ok().out == "back\n"

    # finish --wait reports the end; the session then takes no more messages
    finished = (await cli("finish", sid, "--wait")).ok()
    assert "finish requested" in finished.out
    assert "finished" in finished.err.splitlines()[-1]
    assert "has ended" in (await cli("finish", sid)).one_error_line()
    ended = (await cli("exec", sid, "--", "true")).one_error_line()
    assert ended == f"error: session {sid} has ended: `sessions status {sid}` says how", ended
    assert "has ended" in (await cli("approve", sid, "deploy", "--by", "x")).one_error_line()

    final = json.loads((await cli("status", sid, "--json")).ok().out)
    assert final["state"] == "finished" and final["paused_seconds"] > 0
    assert final["gates"][0]["state"] == "approved"
    assert (final["gates"][0]["decided_by"], final["gates"][0]["comment"]) == ("ana", "lgtm")

    # the ledger: the contract's event, summed per org, and as a table with dollars
    events = json.loads((await cli("costs", "--json")).ok().out)
    [event] = [e for e in events if e["session_id"] == sid]
    assert COST_KEYS <= set(event)  # the contract's keys (more may follow)
    assert (event["org_id"], event["issue_id"], event["template_id"], event["outcome"]) == (
        "acme",
        "ISS-7",
        "demo-runner",
        "finished",
    )
    assert event["sandbox_id"] == final["sandbox_id"] and event["paused_seconds"] > 0
    by_org = json.loads((await cli("costs", "--by", "org", "--json")).ok().out)
    [acme] = [row for row in by_org if row["org_id"] == "acme"]
    assert set(acme) == {"org_id", "sessions", "running_seconds", "paused_seconds", "wall_seconds"}
    assert acme["sessions"] >= 1 and acme["running_seconds"] >= event["running_seconds"]
    table = (await cli("costs", "--price-per-second", "1")).ok().out
    assert sid in table and "total:" in table and "$1 per running second" in table

    listed = json.loads((await cli("list", "--json")).ok().out)
    [row] = [r for r in listed if r["session_id"] == sid]
    assert STATUS_KEYS <= row.keys() and row["state"] == "finished"
    assert row["workflow_status"] == "COMPLETED" and row["workflow_id"] == f"session-{sid}"
    lines = (await cli("list")).ok().out.splitlines()
    assert lines[0].split()[:3] == ["SESSION", "STATE", "ORG"]
    assert any(line.split()[:3] == [sid, "finished", "acme"] for line in lines[1:])

    # the same commands on a terminal: Rich tables, durations, dollars
    rich_status = (await cli.on_terminal("status", sid)).ok().out
    assert sid in rich_status and "finished" in rich_status and "gates" in rich_status
    assert "━" in rich_status and "ana" in rich_status and "$" in rich_status
    rich_list = (await cli.on_terminal("list")).ok().out
    assert sid in rich_list and "━" in rich_list
    rich_costs = (await cli.on_terminal("costs", "--by", "issue")).ok().out
    assert "ISS-7" in rich_costs and "total:" in rich_costs and "━" in rich_costs


async def test_start_wait_shows_progress_and_cancel_ends_it(cli_stack: CliStack) -> None:
    cli = cli_stack.cli
    sid = f"wait-{uuid.uuid4().hex[:8]}"
    waiting = await cli.spawn("start", "--org", "beta", "--session-id", sid, "--wait")
    try:
        await cli_stack.wait_for(sid, state_is("running"), what="running")
        await asyncio.sleep(0.7)  # let --wait see and print "running"
        assert "cancel requested" in (await cli("cancel", sid)).ok().out
        out, err = await asyncio.wait_for(waiting.communicate(), 60)
    finally:
        if waiting.returncode is None:
            waiting.kill()
    lines = err.decode().strip().splitlines()
    assert out.decode() == sid + "\n"
    assert waiting.returncode == 1
    states = [line.split()[0] for line in lines[:-1]]
    assert "running" in states and states[-1] == "cancelled", lines
    assert lines[-1] == f"error: session {sid} was cancelled"

    assert "has ended" in (await cli("cancel", sid)).one_error_line()
    status = json.loads((await cli("status", sid, "--json")).ok().out)
    assert status["state"] == "cancelled"
    events = json.loads((await cli("costs", "--json")).ok().out)
    assert [e["outcome"] for e in events if e["session_id"] == sid] == ["cancelled"]

    again = await cli("start", "--org", "beta", "--session-id", sid)
    assert f"session {sid} already exists" in again.one_error_line()


async def test_a_failed_exec_names_its_cause_not_the_layer(
    cli_stack: CliStack, emulator: EmulatorHandle
) -> None:
    """The provider's own words reach the person, not Temporal's "Activity task failed": the
    update's failure (`WorkflowUpdateFailedError` > `ActivityError` > `ApplicationError`) is
    unwrapped to its cause, its type said once."""
    cli = cli_stack.cli
    sid = (await cli("start", "--org", "acme")).ok().out.strip()
    try:
        running = await cli_stack.wait_for(sid, state_is("running"), what="running")
        missing = await cli("exec", sid, "--cwd", "/nonexistent", "--", "pwd")
        line = missing.one_error_line()
        assert line.startswith("error: InvalidRequest: "), line
        assert "cwd '/nonexistent' does not exist" in line and missing.code == 1, line
        slow = await cli("exec", sid, "--timeout", "1", "--", "sleep", "5")
        line = slow.one_error_line()
        assert line.startswith("error: ExecTimeout: ") and "ran past 1s" in line, line
        assert slow.code == 1 and slow.out == ""
        assert (await cli("exec", sid, "--", "echo still here")).ok().out == "still here\n"

        # The sandbox is lost while a command runs in it (killed behind the session's back).
        waiting = await cli.spawn("exec", sid, "--", "sleep 30")
        await asyncio.sleep(1.5)  # the command has started
        await emulator.kill(running.sandbox_id or "")
        out, err = await asyncio.wait_for(waiting.communicate(), 60)
        lost = Result(("exec",), waiting.returncode or 0, out.decode(), err.decode())
        line = lost.one_error_line()
        assert line.startswith("error: SandboxGone: ") and running.sandbox_id in line, line
        assert "SandboxGone: SandboxGone" not in line and lost.code == 1, line
        for wrong in (line, missing.err, slow.err):
            assert "Activity task failed" not in wrong and "ActivityError" not in wrong
        ended = await cli_stack.wait_for(sid, state_is("lost"), what="lost", timeout=30)
        assert ended.error and running.sandbox_id in ended.error
    finally:
        await cli("finish", sid, "--wait")


_SECONDS = re.compile(r'"(\w+_seconds)": (-?[0-9.e+-]+)')


def _seconds_printed(out: str) -> dict[str, str]:
    """Every `*_seconds` number of a `--json` output, as printed (checked: at most 3 decimals)."""
    found = _SECONDS.findall(out)
    for key, number in found:
        assert re.fullmatch(r"-?\d+(\.\d{1,3})?", number), f"{key} printed as {number}"
    return dict(found)


async def _timed_status(cli: Any, sid: str) -> tuple[float, dict[str, Any], float]:
    """`status --json`, and the monotonic times just before and after it ran."""
    before = time.monotonic()
    out = (await cli("status", sid, "--json")).ok().out
    after = time.monotonic()
    _seconds_printed(out)
    return before, json.loads(out), after


async def test_seconds_are_counted_at_the_moment_of_asking(cli_stack: CliStack) -> None:
    """A running session's seconds grow with the caller's clock, between workflow tasks too:
    two `status --json` 1.5 s apart differ by those 1.5 s (not frozen at the worker's last
    task, then jumping); `list` agrees; while paused, running stands still and paused grows."""
    cli = cli_stack.cli
    sid = (await cli("start", "--org", "acme")).ok().out.strip()
    try:
        await cli_stack.wait_for(sid, state_is("running"), what="running")
        t0, first, t1 = await _timed_status(cli, sid)
        await asyncio.sleep(1.5)
        t2, second, t3 = await _timed_status(cli, sid)
        grew = second["running_seconds"] - first["running_seconds"]
        assert t2 - t1 - 0.01 <= grew <= t3 - t0 + 0.01, (first, second, t0, t1, t2, t3)
        assert second["paused_seconds"] == first["paused_seconds"] == 0

        t4 = time.monotonic()
        out = (await cli("list", "--json")).ok().out
        t5 = time.monotonic()
        _seconds_printed(out)
        [row] = [r for r in json.loads(out) if r["session_id"] == sid]
        grew = row["running_seconds"] - second["running_seconds"]
        assert t4 - t3 - 0.01 <= grew <= t5 - t2 + 0.01, (row, second)  # `list` counts alike

        (await cli("gate", sid, "hold")).ok()
        await cli_stack.wait_for(sid, state_is("paused"), what="paused")
        t0, first, t1 = await _timed_status(cli, sid)
        await asyncio.sleep(1.5)
        t2, second, t3 = await _timed_status(cli, sid)
        assert second["running_seconds"] == first["running_seconds"] > 0  # billed time stops
        grew = second["paused_seconds"] - first["paused_seconds"]
        assert t2 - t1 - 0.01 <= grew <= t3 - t0 + 0.01, (first, second)
    finally:
        (await cli("finish", sid, "--wait")).ok()
    # An ended session keeps the workflow's figures: its bill, the same at every reading.
    final = (await cli("status", sid, "--json")).ok().out
    await asyncio.sleep(0.5)
    assert (await cli("status", sid, "--json")).ok().out == final
    assert _seconds_printed(final)["running_seconds"]


async def test_a_gate_timeout_that_ends_the_session_says_so(cli_stack: CliStack) -> None:
    """A gate whose timeout policy is `terminate` ends the session, and `status` says why:
    not a bare `finished` that looks like someone called `finish`."""
    cli = cli_stack.cli
    sid = (await cli("start", "--org", "acme")).ok().out.strip()
    await cli_stack.wait_for(sid, state_is("running"), what="running")
    gate = await cli("gate", sid, "late", "--timeout", "1s", "--on-timeout", "terminate")
    gate.ok()
    await cli_stack.wait_for(sid, state_is("finished"), what="finished", timeout=30)

    text = (await cli("status", sid)).ok().out
    shown = (await cli("status", sid, "--json")).ok().out

    reason = "gate 'late' timed out after 1s: its on_timeout policy `terminate` ended the session"
    assert re.search(r"^ended\s+" + re.escape(reason) + "$", text, re.M), text
    assert json.loads(shown)["end_reason"] == reason
