"""Streams through the real e2b SDK: a command cut by a kill or a pause, directory watching,
and what the emulator's envd does not do (UNIMPLEMENTED / 501, never a silent 404)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from e2b import AsyncSandbox, PtySize
from e2b.envd.filesystem import filesystem_pb as pb
from e2b.exceptions import (
    NotFoundException,
    SandboxException,
    SandboxNotRunningException,
    TimeoutException,
)
from e2b.sandbox.filesystem.watch_handle import FilesystemEvent, FilesystemEventType

from emulator.testing import EmulatorHandle
from tests.fixtures.emulator_sandboxes import SandboxFactory

KILLED = "The sandbox was killed or reached its end of life while the request was in flight"


async def _until(check: Callable[[], bool], timeout: float = 3) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("how", ["sdk", "admin"])
async def test_a_kill_during_a_command_is_sandbox_not_running(
    new_sandbox: SandboxFactory, emulator_env: EmulatorHandle, how: str
) -> None:
    async with new_sandbox() as sbx:
        handle = await sbx.commands.run("sleep 30", background=True, timeout=0)
        exits: list[Exception | None] = []
        await sbx.files.watch_dir("/tmp", lambda e: None, on_exit=exits.append, timeout=0)
        if how == "sdk":
            await AsyncSandbox.kill(sbx.sandbox_id)
        else:
            await emulator_env.kill(sbx.sandbox_id)
        with pytest.raises(SandboxNotRunningException, match=KILLED):
            await asyncio.wait_for(handle.wait(), 5)
        await _until(lambda: bool(exits))  # the watch ends the same way
        assert len(exits) == 1 and isinstance(exits[0], SandboxNotRunningException)
        assert KILLED in str(exits[0])


async def test_a_pause_during_a_command_is_a_cancelled_stream(
    new_sandbox: SandboxFactory,
) -> None:
    async with new_sandbox() as sbx:
        handle = await sbx.commands.run("echo before; sleep 30", background=True, timeout=0)
        await asyncio.sleep(0.2)
        await sbx.pause()
        with pytest.raises(TimeoutException, match="paused") as exc:
            await asyncio.wait_for(handle.wait(), 5)
        assert "cancelled by the server or a proxy" in str(exc.value)
        again = await AsyncSandbox.connect(sbx.sandbox_id)
        resumed = await again.commands.connect(handle.pid, timeout=0)
        await again.commands.kill(handle.pid)
        with pytest.raises(SandboxException):  # killed: exit -1
            await resumed.wait()


def _seen(events: list[FilesystemEvent]) -> set[tuple[str, str]]:
    return {(e.name, e.type.value) for e in events}


async def test_watch_dir_reports_envds_events(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        await sbx.files.make_dir("/home/user/w/sub")
        events: list[FilesystemEvent] = []
        handle = await sbx.files.watch_dir("/home/user/w", events.append, include_entry=True)
        await sbx.files.write("/home/user/w/a.txt", "hello")
        await _until(lambda: ("a.txt", "write") in _seen(events))
        created = next(e for e in events if e.type == FilesystemEventType.CREATE)
        assert created.name == "a.txt" and created.entry is not None
        assert (created.entry.path, created.entry.size) in (("/home/user/w/a.txt", 0),
                                                            ("/home/user/w/a.txt", 5))  # fmt: skip
        # The entry is read when the event is handled (as envd does): the write's last event
        # sees the file given to its writer.
        me = (await sbx.commands.run("id -un")).stdout.strip()  # `user` with namespaces
        await _until(lambda: [e.entry.owner for e in events if e.entry][-1] == me)
        await sbx.commands.run("chmod 600 ~/w/a.txt; mv ~/w/a.txt ~/w/b.txt; rm ~/w/b.txt")
        await sbx.commands.run("touch ~/w/sub/deep")  # not recursive: not seen
        await _until(lambda: ("b.txt", "remove") in _seen(events))
        assert {("a.txt", "chmod"), ("a.txt", "rename"), ("b.txt", "create")} <= _seen(events)
        assert not [e for e in events if e.name.startswith("sub/")]
        for e in events:  # REMOVE and RENAME never carry an entry; the others do when it exists
            if e.type in (FilesystemEventType.REMOVE, FilesystemEventType.RENAME):
                assert e.entry is None
        await handle.stop()

        deep: list[FilesystemEvent] = []
        recursive = await sbx.files.watch_dir("/home/user/w", deep.append, recursive=True)
        await sbx.commands.run("mkdir -p ~/w/new/inner && sleep 0.2 && echo x > ~/w/new/inner/f")
        await sbx.files.write("/home/user/w/sub/g", "g")
        await _until(lambda: {("new/inner/f", "write"), ("sub/g", "write")} <= _seen(deep))
        assert all(e.entry is None for e in deep)  # include_entry not asked
        await recursive.stop()


async def test_watch_dir_refusals_and_timeout(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        with pytest.raises(NotFoundException):
            await sbx.files.watch_dir("/home/user/missing", lambda e: None)
        await sbx.files.write("/home/user/plain", "x")
        with pytest.raises(SandboxException, match="not a directory"):
            await sbx.files.watch_dir("/home/user/plain", lambda e: None)
        ended: list[Exception | None] = []
        await sbx.files.watch_dir("/tmp", lambda e: None, on_exit=ended.append, timeout=0.5)
        await _until(lambda: bool(ended))
        assert isinstance(ended[0], TimeoutException)


async def test_polled_watchers(new_sandbox: SandboxFactory) -> None:
    """CreateWatcher / GetWatcherEvents / RemoveWatcher, envd's non-streaming watch."""
    async with new_sandbox() as sbx:
        rpc = sbx.files._rpc  # the SDK's own Connect client (it has no wrapper for these)
        created = await rpc.create_watcher(pb.CreateWatcherRequest(path="/tmp"))
        await sbx.files.write("/tmp/polled", "x")
        names: set[tuple[str, int]] = set()

        async def poll() -> None:
            got = await rpc.get_watcher_events(
                pb.GetWatcherEventsRequest(watcher_id=created.watcher_id)
            )
            names.update((e.name, e.type.value) for e in got.events)

        for _ in range(50):
            await poll()
            if ("polled", pb.EventType.WRITE.value) in names:
                break
            await asyncio.sleep(0.05)
        assert ("polled", pb.EventType.CREATE.value) in names
        await rpc.remove_watcher(pb.RemoveWatcherRequest(watcher_id=created.watcher_id))
        with pytest.raises(Exception, match="not found"):
            await poll()


async def test_what_the_emulator_does_not_do_says_so(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        with pytest.raises(SandboxException, match="UNIMPLEMENTED.*PTY"):
            await sbx.pty.create(size=PtySize(rows=24, cols=80), on_data=lambda d: None)
        with pytest.raises(SandboxException, match="UNIMPLEMENTED.*PTY"):
            await sbx.pty.resize(1, PtySize(rows=24, cols=80))
        headers = {"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token}
        async with httpx.AsyncClient(base_url=sbx.envd_api_url, headers=headers) as http:
            for call in (http.get("/no/such/route"), http.post("/snapshot")):
                r = await call
                assert r.status_code == 501, r.text
                assert "not implemented by the emulator" in r.json()["message"]
