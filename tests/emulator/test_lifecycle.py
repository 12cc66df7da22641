"""Sandbox lifecycle through the real e2b SDK: list, pause/connect, timeouts, kill, idempotency."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from e2b import AsyncSandbox, SandboxQuery, SandboxState
from e2b.exceptions import SandboxNotFoundException, SandboxNotRunningException

from emulator.testing import EmulatorHandle
from tests.fixtures.emulator_sandboxes import SandboxFactory


async def _wait_for(predicate, timeout: float = 5.0, step: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await predicate():
            return value
        await asyncio.sleep(step)
    raise AssertionError("condition not met in time")


async def test_get_info_and_list_with_filters(new_sandbox: SandboxFactory) -> None:
    suite = uuid.uuid4().hex[:8]
    async with (
        new_sandbox(metadata={"suite": suite, "n": "1"}) as one,
        new_sandbox(metadata={"suite": suite, "n": "2"}) as two,
    ):

        async def listed(query: SandboxQuery, limit: int | None = None) -> list[list[str]]:
            paginator = AsyncSandbox.list(query=query, limit=limit)
            pages = []
            while paginator.has_next:
                pages.append([s.sandbox_id for s in await paginator.next_items()])
            return pages

        both = await listed(SandboxQuery(metadata={"suite": suite}))
        assert sorted(both[0]) == sorted([one.sandbox_id, two.sandbox_id])
        assert await listed(SandboxQuery(metadata={"suite": suite, "n": "2"})) == [[two.sandbox_id]]
        paged = await listed(SandboxQuery(metadata={"suite": suite}), limit=1)
        assert len(paged) == 2 and sorted(sum(paged, [])) == sorted(both[0])

        assert await one.pause() is True
        paused = await listed(SandboxQuery(metadata={"suite": suite}, state=[SandboxState.PAUSED]))
        assert paused == [[one.sandbox_id]]
        running = await listed(
            SandboxQuery(metadata={"suite": suite}, state=[SandboxState.RUNNING])
        )
        assert running == [[two.sandbox_id]]
        info = await AsyncSandbox.get_info(one.sandbox_id)
        assert info.state == SandboxState.PAUSED and info.metadata["n"] == "1"


async def test_pause_freezes_and_connect_resumes_the_same_processes(
    new_sandbox: SandboxFactory,
) -> None:
    async with new_sandbox() as sbx:
        # The counter lives in a shell variable: a restart would start again from 1.
        counter = await sbx.commands.run(
            "i=0; while :; do i=$((i+1)); echo $i >> /tmp/count; date +%s.%N >> /tmp/ts; "
            "sleep 0.05; done",
            background=True,
            timeout=0,
        )
        await _wait_for(lambda: sbx.files.exists("/tmp/count"))
        await asyncio.sleep(0.3)
        assert await sbx.pause() is True
        paused_at = time.time()
        assert await sbx.is_running() is False
        with pytest.raises(SandboxNotRunningException):
            await sbx.commands.run("true")
        with pytest.raises(SandboxNotRunningException):
            await sbx.files.read("/tmp/count")
        await asyncio.sleep(1.0)
        resumed_at = time.time()
        assert await sbx.pause() is False  # already paused: 409

        again = await AsyncSandbox.connect(sbx.sandbox_id)
        assert (await again.get_info()).state == SandboxState.RUNNING
        assert [p.pid for p in await again.commands.list()] == [counter.pid]
        await asyncio.sleep(0.3)
        counts = [int(x) for x in (await again.files.read("/tmp/count")).split()]
        stamps = [float(x) for x in (await again.files.read("/tmp/ts")).split()]
        assert counts == list(range(1, len(counts) + 1))  # memory intact, no restart
        assert not [t for t in stamps if paused_at + 0.05 < t < resumed_at - 0.05]
        assert stamps[-1] > resumed_at  # and it goes on after the resume
        # The stream that was open during the pause was cut, as on E2B.
        with pytest.raises(Exception):  # noqa: B017
            await counter.wait()


async def test_set_timeout_expiry_kills(
    new_sandbox: SandboxFactory, emulator_env: EmulatorHandle
) -> None:
    sbx = await AsyncSandbox.create(timeout=60)
    try:
        await sbx.commands.run("sleep 300", background=True, timeout=0)
        await sbx.set_timeout(1)
        info = await sbx.get_info()
        assert (info.end_at - info.started_at).total_seconds() < 10
        await _wait_for(lambda: _gone(sbx.sandbox_id), timeout=4)
        assert await sbx.is_running() is False
        record = emulator_env.record(sbx.sandbox_id)
        assert record.state == "killed" and record.transitions[-1].reason == "timeout"
    finally:
        await AsyncSandbox.kill(sbx.sandbox_id)


async def _gone(sandbox_id: str) -> bool:
    try:
        await AsyncSandbox.get_info(sandbox_id)
    except SandboxNotFoundException:
        return True
    return False


async def test_auto_pause_on_timeout(
    new_sandbox: SandboxFactory, emulator_env: EmulatorHandle
) -> None:
    async with new_sandbox(timeout=1, lifecycle={"on_timeout": "pause"}) as sbx:
        await sbx.files.write("/home/user/kept.txt", "still here")

        async def paused() -> bool:  # E2B says paused while pausing; the record, once done
            info = await sbx.get_info()
            done = emulator_env.record(sbx.sandbox_id).state == "paused"
            return info.state == SandboxState.PAUSED and done

        await _wait_for(paused, timeout=4)
        assert emulator_env.record(sbx.sandbox_id).transitions[-1].reason == "timeout"
        again = await AsyncSandbox.connect(sbx.sandbox_id, timeout=30)
        assert await again.files.read("/home/user/kept.txt") == "still here"
        info = await again.get_info()
        assert 25 < (info.end_at - info.started_at).total_seconds() or info.state == "running"


async def test_kill_ends_everything(emulator_env: EmulatorHandle) -> None:
    sbx = await AsyncSandbox.create()
    await sbx.commands.run("sleep 400", background=True, timeout=0)
    runtime = emulator_env.core.manager.get(sbx.sandbox_id).runtime
    await sbx.kill()
    assert await sbx.is_running() is False
    assert await AsyncSandbox.kill(sbx.sandbox_id) is False
    with pytest.raises(SandboxNotFoundException):
        await AsyncSandbox.get_info(sbx.sandbox_id)
    assert not runtime.root.exists()
    assert runtime.processes_alive() == 0
    record = emulator_env.record(sbx.sandbox_id)
    assert [t.event for t in record.transitions] == ["created", "killed"]


async def test_idempotency_key_returns_the_same_sandbox(emulator_env: EmulatorHandle) -> None:
    key = f"test-{uuid.uuid4().hex}"
    first, second = await asyncio.gather(
        AsyncSandbox.create(idempotency_key=key), AsyncSandbox.create(idempotency_key=key)
    )
    other = await AsyncSandbox.create(idempotency_key=key + "-other")
    try:
        assert first.sandbox_id == second.sandbox_id != other.sandbox_id
        await second.commands.run("true")
    finally:
        for s in (first, other):
            await s.kill()


async def test_records_account_for_running_and_paused_time(
    new_sandbox: SandboxFactory, emulator_env: EmulatorHandle
) -> None:
    started = time.monotonic()
    async with new_sandbox() as sbx:
        await sbx.pause()
        await asyncio.sleep(0.4)
        await AsyncSandbox.connect(sbx.sandbox_id)
    wall = time.monotonic() - started
    records = {r.sandbox_id: r for r in await emulator_env.records_http()}
    record = records[sbx.sandbox_id]
    assert [t.event for t in record.transitions] == ["created", "paused", "resumed", "killed"]
    assert record.paused_seconds >= 0.4
    assert abs(record.running_seconds + record.paused_seconds - wall) < 0.2
    assert sbx.sandbox_id not in emulator_env.live_sandboxes()


async def test_wrong_api_key_is_refused(emulator_env: EmulatorHandle) -> None:
    from e2b.exceptions import AuthenticationException

    with pytest.raises(AuthenticationException):
        await AsyncSandbox.create(api_key="e2b_wrong")
    with pytest.raises(AuthenticationException):
        await AsyncSandbox.list(api_key="e2b_wrong").next_items()
    assert os.environ["E2B_API_KEY"] == emulator_env.api_key
