"""Lifecycle as strict as E2B, through the SDK: a paused sandbox's timeout, the lifetime cap by
run, and the transitional states (pausing, resuming) that take time."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from e2b import AsyncSandbox, SandboxState
from e2b.exceptions import SandboxException, SandboxNotFoundException, SandboxNotRunningException

from emulator import state
from tests.emulator.strict import call, phase_is, private, wait_until


async def test_paused_sandbox_timeout_is_not_found_and_pausing_is_a_conflict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with private(monkeypatch, pause_seconds_per_gib=1.2) as emu:
        sbx = await AsyncSandbox.create(timeout=60)
        pausing = asyncio.create_task(sbx.pause())
        await phase_is(emu, sbx.sandbox_id, "pausing")
        # While pausing: timeout and refresh 409 with E2B's words, a second pause 409 (False).
        with pytest.raises(SandboxException) as conflict:
            await sbx.set_timeout(30)
        assert conflict.value.status_code == 409
        assert f'Sandbox "{sbx.sandbox_id}" is being paused' in str(conflict.value)
        r = await call(emu, "POST", f"/sandboxes/{sbx.sandbox_id}/refreshes", json={})
        assert r.status_code == 409
        r = await call(emu, "POST", f"/sandboxes/{sbx.sandbox_id}/pause", json={})
        assert r.status_code == 409
        assert r.json()["message"] == (
            f"Sandbox '{sbx.sandbox_id}' cannot be paused while in 'pausing' state"
        )
        assert await sbx.pause() is False  # the SDK reads any 409 as "already paused"
        assert (await sbx.get_info()).state == SandboxState.PAUSED  # as E2B reports pausing
        with pytest.raises(SandboxNotRunningException):
            await sbx.commands.run("true")  # envd: 502, as for paused
        assert await pausing is True  # the POST answered once the pause had completed
        assert emu.record(sbx.sandbox_id).state == "paused"
        # Paused: not in the running store, so 404 (not 204 as before).
        with pytest.raises(SandboxNotFoundException):
            await sbx.set_timeout(30)
        r = await call(emu, "POST", f"/sandboxes/{sbx.sandbox_id}/refreshes", json={})
        assert r.status_code == 404
        assert r.json()["message"] == (
            f"Sandbox \"{sbx.sandbox_id}\" doesn't exist or you don't have access to it"
        )
        await sbx.kill()
        with pytest.raises(SandboxNotFoundException):
            await sbx.set_timeout(30)  # killed: still 404


async def test_pause_takes_the_tiers_time_and_connect_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with private(monkeypatch, pause_seconds_per_gib=1.0, resume_seconds=0.4) as emu:
        assert emu.limits().pause_seconds == 0.5  # 512 MiB sandboxes
        sbx = await AsyncSandbox.create(timeout=60)
        started = time.monotonic()
        pausing = asyncio.create_task(sbx.pause())
        await phase_is(emu, sbx.sandbox_id, "pausing")
        # connect during the pause: E2B waits for the transition, then resumes (201).
        again = await AsyncSandbox.connect(sbx.sandbox_id, timeout=60)
        assert time.monotonic() - started >= 0.5 + 0.4
        assert await pausing is True
        assert (await again.get_info()).state == SandboxState.RUNNING
        events = [t.event for t in emu.record(sbx.sandbox_id).transitions]
        assert events == ["created", "paused", "resumed"]

        # While resuming: reported paused, envd 502, timeout and pause 409, connect waits.
        assert await again.pause() is True
        resuming = asyncio.create_task(AsyncSandbox.connect(sbx.sandbox_id, timeout=60))
        await phase_is(emu, sbx.sandbox_id, "resuming")
        assert (await AsyncSandbox.get_info(sbx.sandbox_id)).state == SandboxState.PAUSED
        with pytest.raises(SandboxNotRunningException):
            await again.commands.run("true")
        r = await call(emu, "POST", f"/sandboxes/{sbx.sandbox_id}/timeout", json={"timeout": 9})
        assert (r.status_code, r.json()["message"]) == (
            409, f'Sandbox "{sbx.sandbox_id}" is in resuming state',
        )  # fmt: skip
        r = await call(emu, "POST", f"/sandboxes/{sbx.sandbox_id}/pause", json={})
        assert r.status_code == 409 and "'resuming' state" in r.json()["message"]
        r = await call(emu, "POST", f"/sandboxes/{sbx.sandbox_id}/resume", json={})
        assert r.status_code == 409
        second = await call(emu, "POST", f"/v2/sandboxes/{sbx.sandbox_id}/connect", json={})
        assert second.status_code == 200  # waited for the resume, then found it running
        await resuming
        assert (await again.commands.run("echo back")).stdout == "back\n"
        # POST /resume of a running sandbox: 409, E2B's words.
        r = await call(emu, "POST", f"/sandboxes/{sbx.sandbox_id}/resume", json={})
        assert r.json()["message"] == f"Sandbox {sbx.sandbox_id} is already running"
        await again.kill()


async def test_each_run_is_capped_at_the_maximum_lifetime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with private(monkeypatch, max_lifetime=3, pause_seconds_per_gib=0) as emu:
        with pytest.raises(SandboxException, match="Timeout cannot be greater than 3 seconds"):
            await AsyncSandbox.create(timeout=4)
        sbx = await AsyncSandbox.create(timeout=2, lifecycle={"on_timeout": "pause"})
        first = await sbx.get_info()
        await sbx.set_timeout(3)  # asks past the cap: clamped, not refused
        info = await sbx.get_info()
        assert info.end_at - info.started_at <= timedelta(seconds=3)
        await AsyncSandbox.connect(sbx.sandbox_id, timeout=3)  # connect never goes past it
        assert (await sbx.get_info()).end_at - info.started_at <= timedelta(seconds=3)
        # The cap ends the run: the on-timeout action (pause) applies.
        await wait_until(lambda: emu.record(sbx.sandbox_id).state == "paused", timeout=6)
        assert emu.record(sbx.sandbox_id).transitions[-1].reason == "timeout"
        # A resume starts a new run: startedAt moves, the cap counts from there.
        again = await AsyncSandbox.connect(sbx.sandbox_id, timeout=3)
        resumed = await again.get_info()
        assert resumed.started_at > first.started_at + timedelta(seconds=2)
        assert emu.record(sbx.sandbox_id).run_started_at == resumed.started_at
        assert resumed.end_at - resumed.started_at <= timedelta(seconds=3)
        # A run already past its cap (E2B's race between the clock and the timer): 400.
        live = emu.core.manager.get(sbx.sandbox_id)
        live.started_at -= timedelta(seconds=10)
        live.end_at += timedelta(seconds=10)
        with pytest.raises(SandboxException, match="Max instance length exceeded") as exc:
            await again.set_timeout(1)
        assert exc.value.status_code == 400
        await again.kill()


async def test_a_paused_sandbox_lists_its_pause_time_as_its_end(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.json"
    async with private(monkeypatch, state_file=state_file) as emu:
        sbx = await AsyncSandbox.create(timeout=600)
        await sbx.pause()
        paused_at = time.time()
        info = await sbx.get_info()
        assert abs(info.end_at.timestamp() - paused_at) < 1  # E2B: the snapshot's time
        await AsyncSandbox.connect(sbx.sandbox_id, timeout=60)
        record = emu.record(sbx.sandbox_id)
        assert record.run_started_at is not None and record.run_started_at > record.created_at
        assert emu.core.state is not None
        await emu.core.state.save()
        saved = state.load(state_file)[sbx.sandbox_id]  # the new field survives the file
        assert saved.run_started_at == record.run_started_at
        await sbx.kill()
