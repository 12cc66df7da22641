"""The state file: after a restart the emulator still tells when the old sandboxes died."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2b import AsyncSandbox
from e2b.exceptions import SandboxNotFoundException

from common.errors import ConfigError
from emulator import DEMO_TEMPLATES, EmulatorConfig, EmulatorError, SandboxRecord, Transition
from emulator.server import config_from_options
from emulator.state import HEARTBEAT_SECONDS, StateFile
from emulator.testing import EmulatorProcess, running_emulator

KEY = "e2b_state_file_test"


def _opts(emu: Any) -> dict[str, Any]:
    return {"api_key": emu.api_key, "api_url": emu.api_url, "sandbox_url": emu.sandbox_url}


def _killed_event(events: list[dict[str, Any]]) -> datetime:
    (killed,) = [e for e in events if e["type"] == "sandbox.lifecycle.killed"]
    return datetime.fromisoformat(killed["timestamp"])


async def test_a_restart_from_the_file_knows_when_the_old_sandboxes_died(tmp_path: Path) -> None:
    state = tmp_path / "emulator" / "state.json"  # its directory is made on the first write
    async with running_emulator(state_file=state, api_key=KEY) as first:
        opts = _opts(first)
        running = await AsyncSandbox.create(**opts)
        paused = await AsyncSandbox.create(**opts)
        assert await AsyncSandbox.pause(paused.sandbox_id, **opts)
        stopping = datetime.now(UTC)
    stopped = datetime.now(UTC)
    assert [p.name for p in state.parent.iterdir()] == ["state.json"]  # no temporary left

    async with running_emulator(state_file=state, api_key=KEY) as second:
        assert second.live_sandboxes() == []
        for sbx in (running, paused):
            record = second.record(sbx.sandbox_id)
            assert record.state == "killed"
            assert record.transitions[-1].reason == "shutdown"
            killed_at = record.killed_at
            assert killed_at is not None and stopping <= killed_at <= stopped
            r = await second.events_http(sbx.sandbox_id, limit=100)
            assert r.status_code == 200 and _killed_event(r.json()) == killed_at
            # Dead, as any dead sandbox: not reachable, not killable again.
            with pytest.raises(SandboxNotFoundException):
                await AsyncSandbox.get_info(sbx.sandbox_id, **_opts(second))
            with pytest.raises(SandboxNotFoundException):
                await AsyncSandbox.connect(sbx.sandbox_id, **_opts(second))
            assert await AsyncSandbox.kill(sbx.sandbox_id, **_opts(second)) is False
        kinds = [e["type"] for e in (await second.events_http(paused.sandbox_id)).json()]
        assert kinds == [f"sandbox.lifecycle.{k}" for k in ("killed", "paused", "created")]
        # The paused one was billed nothing after its pause, the running one up to the stop.
        assert second.record(paused.sandbox_id).paused_seconds > 0
        assert second.record(running.sandbox_id).paused_seconds == 0
        team = (await second.events_http(types="sandbox.lifecycle.killed")).json()
        assert {e["sandboxId"] for e in team} == {running.sandbox_id, paused.sandbox_id}
        # A new sandbox lives beside the old records, and the file follows.
        fresh = await AsyncSandbox.create(**_opts(second))
        await AsyncSandbox.kill(fresh.sandbox_id, **_opts(second))
    saved = StateFile.model_validate_json(state.read_bytes())
    assert {r.sandbox_id for r in saved.records} == {
        running.sandbox_id,
        paused.sandbox_id,
        fresh.sandbox_id,
    }


async def test_after_a_crash_the_live_sandboxes_died_at_the_last_write(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with EmulatorProcess("--state-file", str(state), api_key=KEY) as first:
        running = await AsyncSandbox.create(**_opts(first))
        paused = await AsyncSandbox.create(**_opts(first))
        await AsyncSandbox.pause(paused.sandbox_id, **_opts(first))
        await asyncio.sleep(1.5)  # nothing changes meanwhile: only the heartbeat writes
        assert first.proc is not None
        first.proc.kill()  # SIGKILL: no shutdown, nothing written after this
        crashed = datetime.now(UTC)
        first.proc.wait()
    saved = StateFile.model_validate_json(state.read_bytes())
    # Rewritten while sandboxes lived: the crash is known to well under a second.
    assert crashed - timedelta(seconds=HEARTBEAT_SECONDS + 0.2) <= saved.saved_at <= crashed
    assert HEARTBEAT_SECONDS <= 0.5
    assert {r.sandbox_id: r.state for r in saved.records} == {
        running.sandbox_id: "running",
        paused.sandbox_id: "paused",
    }

    with EmulatorProcess("--state-file", str(state), api_key=KEY) as second:
        for sbx in (running, paused):
            r = await second.events_http(sbx.sandbox_id, limit=100)
            assert _killed_event(r.json()) == saved.saved_at
        records = {r.sandbox_id: r for r in await second.records_http()}
        assert {records[s.sandbox_id].transitions[-1].reason for s in (running, paused)} == {
            "shutdown"
        }
        with pytest.raises(SandboxNotFoundException):
            await AsyncSandbox.connect(paused.sandbox_id, **_opts(second))
    # The second emulator rewrote the file: the sandboxes are dead there now.
    again = StateFile.model_validate_json(state.read_bytes())
    assert {r.state for r in again.records} == {"killed"}


async def test_the_file_drops_what_is_past_retention(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    now = datetime.now(UTC)

    def record(sandbox_id: str, killed_days_ago: float) -> SandboxRecord:
        return SandboxRecord(
            sandbox_id=sandbox_id,
            template_id="base",
            state="killed",
            created_at=now - timedelta(days=killed_days_ago, hours=1),
            end_at=now,
            transitions=[
                Transition(event="created", at=now - timedelta(days=killed_days_ago, hours=1)),
                Transition(event="killed", at=now - timedelta(days=killed_days_ago), reason="api"),
            ],
        )

    old, recent = record("iold0000000000000000", 8), record("irecent0000000000000", 6)
    state.write_text(StateFile(saved_at=now, records=[old, recent]).model_dump_json())
    async with running_emulator(state_file=state, api_key=KEY) as emu:
        assert (await emu.events_http(old.sandbox_id)).status_code == 404
        assert _killed_event((await emu.events_http(recent.sandbox_id)).json()) == recent.killed_at
    kept = json.loads(state.read_text())["records"]
    assert [r["sandbox_id"] for r in kept] == [recent.sandbox_id]


async def test_a_file_that_is_not_the_emulator_s_stops_the_start(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"sandboxes": "of someone else"}')
    with pytest.raises(EmulatorError, match="move it away"):
        async with running_emulator(state_file=state, templates_file=DEMO_TEMPLATES):
            pass
    assert state.read_text() == '{"sandboxes": "of someone else"}'  # left as it was


def test_the_state_file_is_an_option_and_a_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert EmulatorConfig().state_file is None
    monkeypatch.setenv("EMULATOR_STATE_FILE", str(tmp_path / "env.json"))
    assert EmulatorConfig().state_file == tmp_path / "env.json"
    chosen = config_from_options({"state_file": str(tmp_path / "flag.json")})
    assert chosen.state_file == tmp_path / "flag.json"  # the option wins over the variable
    with pytest.raises(ConfigError, match="--state-file"):
        config_from_options({"state_file": 7.5j})
