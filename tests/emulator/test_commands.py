"""Commands and files through the real e2b SDK against the emulator."""

from __future__ import annotations

import asyncio
import time

import pytest
from e2b import AsyncSandbox, CommandExitException
from e2b.exceptions import FileNotFoundException, TimeoutException

from emulator.testing import EmulatorHandle
from tests.fixtures.emulator_sandboxes import SandboxFactory


async def test_create_with_envs_metadata_and_timeout(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox(
        envs={"GREETING": "hi there"}, metadata={"team": "a"}, timeout=120
    ) as sbx:
        result = await sbx.commands.run('echo "$GREETING"; pwd; echo "$HOME"')
        assert result.stdout.splitlines() == ["hi there", "/home/user", "/home/user"]
        info = await sbx.get_info()
        assert info.metadata == {"team": "a"}
        assert info.template_id == "base"
        assert info.state == "running"
        assert 118 <= (info.end_at - info.started_at).total_seconds() <= 122


async def test_run_with_cwd_envs_and_stderr(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox(envs={"A": "from-create", "B": "from-create"}) as sbx:
        result = await sbx.commands.run(
            'pwd; echo "$A $B"; echo oops >&2', cwd="/tmp", envs={"B": "from-command"}
        )
        assert result.exit_code == 0
        assert result.stdout == "/tmp\nfrom-create from-command\n"
        assert result.stderr == "oops\n"
        seen: list[str] = []
        await sbx.commands.run("echo one; echo two", on_stdout=seen.append)
        assert "".join(seen) == "one\ntwo\n"


async def test_non_zero_exit_raises_with_output(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        with pytest.raises(CommandExitException) as exc:
            await sbx.commands.run("echo partial; echo broken >&2; exit 3")
        assert exc.value.exit_code == 3
        assert exc.value.stdout == "partial\n"
        assert exc.value.stderr == "broken\n"
        with pytest.raises(Exception, match="cwd"):
            await sbx.commands.run("true", cwd="/no/such/dir")


async def test_command_timeout_kills_the_process(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        started = time.monotonic()
        with pytest.raises(TimeoutException):
            await sbx.commands.run("sleep 30", timeout=1)
        assert time.monotonic() - started < 5
        await asyncio.sleep(0.3)
        assert await sbx.commands.list() == []


async def test_background_list_connect_and_kill(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        handle = await sbx.commands.run("echo started; sleep 30", background=True, timeout=0)
        processes = await sbx.commands.list()
        assert [p.pid for p in processes] == [handle.pid]
        assert processes[0].args[-1] == "echo started; sleep 30"

        other = await sbx.commands.connect(handle.pid, timeout=0)
        for _ in range(100):  # the first output must have reached us before the kill
            if "started" in handle.stdout:
                break
            await asyncio.sleep(0.05)
        assert await sbx.commands.kill(handle.pid) is True
        with pytest.raises(CommandExitException) as exc:
            await handle.wait()
        assert exc.value.exit_code == -1
        assert "started" in exc.value.stdout
        with pytest.raises(CommandExitException):
            await other.wait()
        assert await sbx.commands.list() == []
        assert await sbx.commands.kill(handle.pid) is False


async def test_stdin(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        handle = await sbx.commands.run("cat", background=True, stdin=True)
        await sbx.commands.send_stdin(handle.pid, "hello ")
        await sbx.commands.send_stdin(handle.pid, "stdin\n")
        await sbx.commands.close_stdin(handle.pid)
        result = await handle.wait()
        assert result.stdout == "hello stdin\n"


async def test_files_read_write_list_mkdir_remove(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        info = await sbx.files.write("/home/user/notes/a.txt", "first")
        assert info.path == "/home/user/notes/a.txt"
        await sbx.files.write("relative.bin", b"\x00\x01binary")
        assert await sbx.files.read("/home/user/notes/a.txt") == "first"
        assert await sbx.files.read("/home/user/relative.bin", format="bytes") == b"\x00\x01binary"
        # Written through the API, seen by commands (and the other way round).
        assert (await sbx.commands.run("cat ~/notes/a.txt")).stdout == "first"
        await sbx.commands.run("echo from-shell > /tmp/shell.txt")
        assert await sbx.files.read("/tmp/shell.txt") == "from-shell\n"

        assert await sbx.files.make_dir("/home/user/notes/sub") is True
        assert await sbx.files.make_dir("/home/user/notes/sub") is False
        entries = await sbx.files.list("/home/user/notes")
        assert {(e.name, e.type.value) for e in entries} == {("a.txt", "file"), ("sub", "dir")}
        assert await sbx.files.exists("/home/user/notes/a.txt")
        await sbx.files.remove("/home/user/notes")
        assert not await sbx.files.exists("/home/user/notes/a.txt")
        with pytest.raises(FileNotFoundException):
            await sbx.files.read("/home/user/notes/a.txt")
        with pytest.raises(FileNotFoundException):
            await sbx.files.list("/nope")


async def test_isolation_between_sandboxes(
    new_sandbox: SandboxFactory, emulator_env: EmulatorHandle
) -> None:
    if not emulator_env.core.isolated:
        pytest.skip("isolation needs Linux namespaces (root); see emulator/README.md")
    async with new_sandbox() as a, new_sandbox() as b:
        await b.files.write("/tmp/secret-of-b", "b only")
        await b.commands.run("echo b > /home/user/mine")
        hidden = await b.commands.run("sleep 321", background=True, timeout=0)
        result = await a.commands.run(
            "ls -A /tmp /home/user; ps -eo args | grep -c 'sleep 32[1]' || true"
        )
        assert "secret-of-b" not in result.stdout and "mine" not in result.stdout
        assert result.stdout.strip().endswith("0")
        assert not await a.files.exists("/tmp/secret-of-b")
        assert [p.pid for p in await a.commands.list()] == []
        # B still sees its own.
        assert await b.files.read("/tmp/secret-of-b") == "b only"
        assert "sleep 321" in (await b.commands.run("ps -eo args")).stdout
        assert [p.pid for p in await b.commands.list()] == [hidden.pid]


async def test_templates_start_command_and_donmai(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox(template="demo-runner") as sbx:
        processes = await sbx.commands.list()
        assert [p.tag for p in processes] == ["start_cmd"]
        for _ in range(50):
            if await sbx.files.exists("/home/user/runner.log"):
                log = await sbx.files.read("/home/user/runner.log")
                if "progress" in log:
                    break
            await asyncio.sleep(0.05)
        assert "runner started" in log and "runner progress: step 1" in log
    async with new_sandbox(template="donmai-worker") as sbx:
        assert (await sbx.commands.run("donmai --version")).stdout.startswith("donmai")
        lines: list[str] = []
        got = asyncio.Event()

        def on_stdout(text: str) -> None:
            lines.append(text)
            if "progress" in "".join(lines):
                got.set()

        handle = await sbx.commands.run(
            "donmai agent run --issue 7", background=True, on_stdout=on_stdout
        )
        await asyncio.wait_for(got.wait(), 5)
        assert "args: --issue 7" in "".join(lines)
        assert handle.exit_code is None  # keeps running
        await handle.kill()


async def test_unknown_template_is_not_found(emulator_env: EmulatorHandle) -> None:
    with pytest.raises(Exception, match="404.*template 'no-such-template' not found"):
        await AsyncSandbox.create(template="no-such-template")
