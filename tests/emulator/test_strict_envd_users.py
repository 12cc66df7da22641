"""Commands and files act as E2B's `user` (uid 1000), through the real e2b SDK.

As envd: the SDK names another user with `user=` (HTTP Basic `user:` on Connect calls, the
`username` query parameter on /files); `root` works, a name the sandbox does not have is
refused. Namespace mode only (root): the machine's own uid 1000 is someone else.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from e2b import AsyncSandbox, CommandExitException
from e2b.exceptions import AuthenticationException, InvalidArgumentException

from emulator.testing import EmulatorHandle, running_emulator
from tests.fixtures.emulator_sandboxes import SandboxFactory


@pytest.fixture
def isolated(emulator_env: EmulatorHandle) -> None:
    if not emulator_env.core.isolated:
        pytest.skip("running as `user` needs Linux namespaces (root); see emulator/README.md")


async def test_commands_run_as_user_uid_1000(new_sandbox: SandboxFactory, isolated: None) -> None:
    async with new_sandbox() as sbx:
        result = await sbx.commands.run(
            'id -u; id -g; id -un; whoami; echo "$HOME $USER $LOGNAME"; pwd; '
            "getent passwd 1000; stat -c '%U:%G %a' /home/user"
        )
        assert result.stdout.splitlines() == [
            "1000",
            "1000",
            "user",
            "user",
            "/home/user user user",
            "/home/user",
            "user:x:1000:1000::/home/user:/bin/bash",
            "user:user 755",
        ]
        for target in ("/root/x", "/etc/x"):
            with pytest.raises(CommandExitException) as exc:
                await sbx.commands.run(f"touch {target}")
            assert "Permission denied" in exc.value.stderr
        assert (await sbx.commands.run("touch ~/mine /tmp/mine && echo ok")).stdout == "ok\n"
        with pytest.raises(InvalidArgumentException, match="chdir /root: permission denied"):
            await sbx.commands.run("true", cwd="/root")


async def test_root_is_honoured_and_an_unknown_user_refused(
    new_sandbox: SandboxFactory, isolated: None
) -> None:
    async with new_sandbox() as sbx:
        result = await sbx.commands.run('id -un; echo "$HOME $USER"; pwd', user="root")
        assert result.stdout.splitlines() == ["root", "/root root", "/root"]
        # The sandbox's /root is its own: root writes there, the host's /root is untouched.
        await sbx.commands.run("touch /root/emulator-probe", user="root")
        assert not Path("/root/emulator-probe").exists()
        with pytest.raises(AuthenticationException, match="invalid username: 'ghost'"):
            await sbx.commands.run("true", user="ghost")
        with pytest.raises(AuthenticationException, match="invalid username: 'ghost'"):
            await sbx.files.list("/tmp", user="ghost")
        with pytest.raises(AuthenticationException, match="unknown user ghost"):
            await sbx.files.write("/tmp/x", "x", user="ghost")
        with pytest.raises(AuthenticationException, match="unknown user ghost"):
            await sbx.files.read("/etc/hostname", user="ghost")


async def test_the_host_passwd_is_never_touched(
    new_sandbox: SandboxFactory, isolated: None
) -> None:
    before = Path("/etc/passwd").read_bytes(), Path("/etc/group").read_bytes()
    async with new_sandbox() as sbx:
        inside = (await sbx.commands.run("cat /etc/passwd")).stdout
        assert "user:x:1000:1000::/home/user:/bin/bash" in inside.splitlines()
        assert [line for line in inside.splitlines() if line.split(":")[2] == "1000"] == [
            "user:x:1000:1000::/home/user:/bin/bash"
        ]
        # root inside may even rewrite its copy: it is the sandbox's own.
        await sbx.commands.run("echo extra:x:4242:4242::/tmp:/bin/sh >> /etc/passwd", user="root")
        assert (await sbx.commands.run("id -un 4242")).stdout == "extra\n"
    assert (Path("/etc/passwd").read_bytes(), Path("/etc/group").read_bytes()) == before


async def test_files_belong_to_the_requesting_user(
    new_sandbox: SandboxFactory, isolated: None
) -> None:
    async with new_sandbox() as sbx:
        await sbx.files.write("/home/user/a/b/file.txt", "x")
        await sbx.files.make_dir("/tmp/made/deep")
        await sbx.files.write_files(
            [{"path": "up1.txt", "data": b"1"}, {"path": "up2", "data": "2"}]
        )
        for path in ("/home/user/a", "/home/user/a/b", "/home/user/a/b/file.txt",
                     "/tmp/made", "/tmp/made/deep", "/home/user/up1.txt"):  # fmt: skip
            info = await sbx.files.get_info(path)
            assert (info.owner, info.group) == ("user", "user"), path
        listed = await sbx.commands.run("stat -c '%U:%G %n' a a/b a/b/file.txt up2 /tmp/made")
        assert {line.split()[0] for line in listed.stdout.splitlines()} == {"user:user"}
        # The user also decides where relative paths lead and who owns what is made.
        info = await sbx.files.write("relative.txt", "r", user="root")
        assert info.path == "/root/relative.txt"
        owned = await sbx.files.get_info("/root/relative.txt", user="root")
        assert (owned.owner, owned.group) == ("root", "root")
        assert (await sbx.files.read("~/relative.txt", user="root")) == "r"
        # An overwrite gives the file to the writer.
        await sbx.files.write("/tmp/shared", "by root", user="root")
        await sbx.files.write("/tmp/shared", "by user")
        assert (await sbx.files.get_info("/tmp/shared")).owner == "user"


async def test_template_files_and_start_cmd_are_users(
    new_sandbox: SandboxFactory, isolated: None
) -> None:
    async with new_sandbox(template="demo-runner") as sbx:
        [start] = await sbx.commands.list()
        for _ in range(50):
            if await sbx.files.exists("/home/user/runner.log"):
                break
            await asyncio.sleep(0.05)
        result = await sbx.commands.run(
            f"ps -o user= -p {start.pid}; stat -c %U ~/.local/bin/demo_runner.sh ~/runner.log "
            "~/.local ~/.local/bin ~/.profile"
        )
        assert set(result.stdout.split()) == {"user"}


async def test_process_mode_runs_as_the_emulators_own_user() -> None:
    """Without root nobody can switch users: `user` and `root` are both the emulator's own."""
    async with running_emulator(isolation="process") as emu:
        opts = {"api_key": emu.api_key, "api_url": emu.api_url, "sandbox_url": emu.sandbox_url}
        sbx = await AsyncSandbox.create(**opts)
        try:
            me = str(os.getuid())
            assert (await sbx.commands.run("id -u")).stdout.strip() == me
            assert (await sbx.commands.run("id -u", user="root")).stdout.strip() == me
            with pytest.raises(AuthenticationException, match="invalid username"):
                await sbx.commands.run("true", user="ghost")
            home = emu.core.manager.get(sbx.sandbox_id).runtime.home
            assert (await sbx.commands.run("pwd")).stdout == f"{home}\n"
        finally:
            await sbx.kill()
