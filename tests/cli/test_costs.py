"""`sessions costs` as a person runs it: per UTC day, live while sessions run, and the end of a
sandbox the provider never confirmed; against the real stack (dev server, emulator, a
`sessions worker` subprocess, the ledger file)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger import SqlLedger, open_ledger
from tests.fixtures.cli import CliStack
from tests.fixtures.ledger_events import cost_event, segment_event
from tests.fixtures.stack import state_is

MIDNIGHT = datetime(2025, 3, 15, tzinfo=UTC)


async def _ledger(stack: CliStack) -> SqlLedger:
    """The same ledger file the CLI and its worker use."""
    return await open_ledger(stack.ledger_url)


async def test_costs_by_day_splits_running_time_at_utc_midnight(cli_stack: CliStack) -> None:
    cli = cli_stack.cli
    tag = uuid.uuid4().hex[:8]
    ledger = await _ledger(cli_stack)
    try:
        # A sandbox that ran 23:59:00 -> 00:01:30, another 10 s the next morning.
        await ledger.record_segment(
            segment_event(
                session_id=f"day-{tag}",
                sandbox_id=f"sbx-a-{tag}",
                started_at=MIDNIGHT - timedelta(seconds=60),
                ended_at=MIDNIGHT + timedelta(seconds=90),
            )
        )
        await ledger.record_segment(
            segment_event(
                session_id=f"day-{tag}",
                sandbox_id=f"sbx-b-{tag}",
                started_at=MIDNIGHT + timedelta(hours=8),
                ended_at=MIDNIGHT + timedelta(hours=8, seconds=10.25),
            )
        )
    finally:
        await ledger.close()

    days = json.loads((await cli("costs", "--by", "day", "--json")).ok().out)
    by_day = {row["day"]: row for row in days}
    assert by_day["2025-03-14"] == {"day": "2025-03-14", "sandboxes": 1, "running_seconds": 60.0}
    assert by_day["2025-03-15"] == {"day": "2025-03-15", "sandboxes": 2, "running_seconds": 100.25}
    assert [row["day"] for row in days] == sorted(by_day)  # oldest first

    table = (await cli("costs", "--by", "day", "--price-per-second", "1")).ok().out
    lines = table.splitlines()
    assert lines[0].split() == ["DAY", "SANDBOXES", "RUNNING", "COST"]
    assert ["2025-03-14", "1", "1m", "00s", "$60.00"] in [line.split() for line in lines], table
    assert ["2025-03-15", "2", "1m", "40s", "$100.25"] in [line.split() for line in lines], table
    assert lines[-1].startswith("total: ") and "$1 per running second" in lines[-1]

    rich = (await cli.on_terminal("costs", "--by", "day")).ok().out
    assert "2025-03-14" in rich and "━" in rich and "total:" in rich


async def test_a_finished_sessions_days_add_up_to_its_bill(cli_stack: CliStack) -> None:
    """Through the real worker: the session's running stretches reach the ledger with its cost
    event, and `costs --by day` counts them on today's row."""
    cli = cli_stack.cli
    sid = f"days-{uuid.uuid4().hex[:8]}"
    (await cli("start", "--org", "acme", "--session-id", sid)).ok()
    await cli_stack.wait_for(sid, state_is("running"), what="running")
    (await cli("gate", sid, "check")).ok()  # a pause: one running stretch closes
    await cli_stack.wait_for(sid, state_is("paused"), what="paused")
    (await cli("approve", sid, "check", "--by", "ana")).ok()
    await cli_stack.wait_for(sid, state_is("running"), what="resumed")
    await asyncio.sleep(0.5)
    (await cli("finish", sid, "--wait")).ok()

    [event] = [
        e for e in json.loads((await cli("costs", "--json")).ok().out) if e["session_id"] == sid
    ]
    assert event["end_confirmed"] is True and event["outcome"] == "finished"
    ledger = await _ledger(cli_stack)
    try:
        segments = await ledger.segments(session_id=sid)
    finally:
        await ledger.close()
    assert len(segments) == 2, segments  # before the gate, after it
    assert abs(sum(s.seconds for s in segments) - event["running_seconds"]) <= 0.002

    ended = datetime.fromisoformat(event["ended_at"]).date().isoformat()
    days = json.loads((await cli("costs", "--by", "day", "--json")).ok().out)
    [today] = [row for row in days if row["day"] == ended]
    assert today["sandboxes"] >= 1
    assert today["running_seconds"] >= event["running_seconds"] - 0.002


async def test_costs_live_grows_while_a_session_runs(cli_stack: CliStack) -> None:
    cli = cli_stack.cli
    sid = f"live-{uuid.uuid4().hex[:8]}"
    (await cli("start", "--org", "acme", "--issue", "ISS-9", "--session-id", sid)).ok()
    try:
        status = await cli_stack.wait_for(sid, state_is("running"), what="running")
        # What the ledger already holds of the session: a running stretch of an earlier sandbox.
        ledger = await _ledger(cli_stack)
        try:
            earlier = datetime(2024, 1, 1, tzinfo=UTC)
            await ledger.record_segment(
                segment_event(
                    session_id=sid,
                    sandbox_id=f"old-{sid}",
                    started_at=earlier,
                    ended_at=earlier + timedelta(seconds=100),
                )
            )
        finally:
            await ledger.close()

        first = await _live_row(cli_stack, sid)
        await asyncio.sleep(2.0)
        second = await _live_row(cli_stack, sid)
        assert (first["state"], first["org_id"], first["issue_id"]) == ("running", "acme", "ISS-9")
        assert first["sandbox_id"] == status.sandbox_id
        # 100 s recorded, plus the stretch running now, up to the moment of asking.
        assert first["running_seconds"] > 100
        grown = second["running_seconds"] - first["running_seconds"]
        as_of = datetime.fromisoformat(second["as_of"]) - datetime.fromisoformat(first["as_of"])
        assert 1.5 <= grown <= as_of.total_seconds() + 0.01, (first, second)
        assert first["paused_seconds"] == 0

        table = (await cli("costs", "--live", "--price-per-second", "1")).ok().out
        lines = table.splitlines()
        assert lines[0].split()[:3] == ["SESSION", "STATE", "ORG"]
        [row] = [line for line in lines if line.startswith(sid)]
        assert row.split()[1:4] == ["running", "acme", "ISS-9"] and "$10" in row
        assert lines[-1].startswith("total so far: ") and "as of " in lines[-1]

        # Paused at a gate, the running figure stops growing: a paused sandbox costs nothing.
        (await cli("gate", sid, "hold")).ok()
        await cli_stack.wait_for(sid, state_is("paused"), what="paused")
        held = await _live_row(cli_stack, sid)
        await asyncio.sleep(1.0)
        still = await _live_row(cli_stack, sid)
        assert still["state"] == "paused"
        assert abs(still["running_seconds"] - held["running_seconds"]) <= 0.001
        assert still["paused_seconds"] > held["paused_seconds"]
    finally:
        await cli("finish", sid, "--wait")
    # An ended session is no longer live.
    ended = json.loads((await cli("costs", "--live", "--json")).ok().out)
    assert sid not in [row["session_id"] for row in ended]


async def _live_row(stack: CliStack, sid: str) -> dict[str, Any]:
    rows = json.loads((await stack.cli("costs", "--live", "--json")).ok().out)
    [row] = [r for r in rows if r["session_id"] == sid]
    assert set(row) == {
        "session_id",
        "org_id",
        "issue_id",
        "sandbox_id",
        "template_id",
        "state",
        "running_seconds",
        "paused_seconds",
        "as_of",
    }
    return row


async def test_a_lost_sandbox_shows_where_its_bill_ends(cli_stack: CliStack) -> None:
    cli = cli_stack.cli
    sid = f"lost-{uuid.uuid4().hex[:8]}"
    ledger = await _ledger(cli_stack)
    try:
        await ledger.record(
            cost_event(session_id=sid, sandbox_id=f"sbx-{sid}", outcome="lost", end_confirmed=False)
        )
    finally:
        await ledger.close()
    [event] = [
        e for e in json.loads((await cli("costs", "--json")).ok().out) if e["session_id"] == sid
    ]
    assert (event["outcome"], event["end_confirmed"]) == ("lost", False)
    [row] = [line for line in (await cli("costs")).ok().out.splitlines() if line.startswith(sid)]
    assert " lost " in row and "(last seen)" in row


async def test_live_takes_no_by(cli_stack: CliStack) -> None:
    result = await cli_stack.cli("costs", "--live", "--by", "day")
    assert result.code == 2 and "--live" in result.err and "Traceback" not in result.err
