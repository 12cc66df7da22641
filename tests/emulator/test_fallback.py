"""The unprivileged fallback (plain processes) still behaves like E2B for one sandbox."""

from __future__ import annotations

import asyncio
import os

import pytest
from e2b import AsyncSandbox

from emulator.testing import running_emulator


async def test_process_mode_runs_pauses_and_kills(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_emulator(isolation="process") as emu:
        assert emu.core.isolated is False
        opts = {"api_key": emu.api_key, "api_url": emu.api_url, "sandbox_url": emu.sandbox_url}
        sbx = await AsyncSandbox.create(envs={"X": "1"}, **opts)
        runtime = emu.core.manager.get(sbx.sandbox_id).runtime
        # /home/user is the sandbox's own directory, HOME points at it.
        result = await sbx.commands.run('echo "$X"; pwd; echo hi > "$HOME/f"')
        lines = result.stdout.splitlines()
        assert lines[0] == "1" and lines[1] == str(runtime.home)
        assert await sbx.files.read("/home/user/f") == "hi\n"

        handle = await sbx.commands.run(
            "while :; do date +%s.%N >> $HOME/ts; sleep 0.05; done", background=True, timeout=0
        )
        await asyncio.sleep(0.3)
        await sbx.pause()
        size = os.path.getsize(runtime.home / "ts")
        await asyncio.sleep(0.4)
        assert os.path.getsize(runtime.home / "ts") == size  # frozen
        sbx = await AsyncSandbox.connect(sbx.sandbox_id, **opts)
        await asyncio.sleep(0.3)
        assert os.path.getsize(runtime.home / "ts") > size
        host_pid = handle.pid  # plain processes: the sandbox pid is the host pid
        await sbx.kill()
        await asyncio.sleep(0.1)
        with pytest.raises(ProcessLookupError):
            os.kill(host_pid, 0)
        assert not runtime.root.exists()
