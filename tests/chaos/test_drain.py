"""A rollout stops a worker with SIGTERM while a user's command runs: the worker drains
(`SESSIONS_DRAIN_TIMEOUT`), the command finishes and answers, and the session carries on on the
replacement. With a drain shorter than the command, the command is cut short and the session
says so: the control case, which is what the 30 s drain did to every command in a rollout.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from common.failures import describe_failure
from tests.fixtures.chaos import WorkerProcess, activity_started, start_session, workers_stopped
from tests.fixtures.stack import state_is, wait_for
from workflows import ExecRequest, SandboxSession

COMMAND_SECONDS = 6


def _worker(client: Client, emu: Any, queue: str, tmp: Path, name: str, drain: str):
    worker = WorkerProcess(
        address=client.service_client.config.target_host,
        queue=queue,
        ledger_url=f"sqlite:///{tmp / 'ledger.db'}",
        emu=emu,
        log=tmp / f"{name}.log",
    )
    worker.env["SESSIONS_DRAIN_TIMEOUT"] = drain
    return worker


@dataclass
class _Drained:
    handle: Any
    command: asyncio.Task[Any]
    first: WorkerProcess
    termed: float


@contextlib.asynccontextmanager
async def _long_command_then_sigterm(
    client: Client, emu: Any, tmp: Path, drain: str
) -> AsyncIterator[_Drained]:
    """A session whose command runs on `first` when it gets SIGTERM, with a replacement up;
    both workers stopped when the block ends, however it ends."""
    queue = f"drain-{uuid.uuid4().hex[:8]}"
    first = _worker(client, emu, queue, tmp, "first", drain)
    second = _worker(client, emu, queue, tmp, "second", drain)
    with workers_stopped(first, second):
        await first.start()
        handle = await start_session(client, queue, "drain")
        await wait_for(handle, state_is("running"), timeout=60, what="running")
        command = asyncio.create_task(
            handle.execute_update(
                SandboxSession.exec,
                ExecRequest(command=f"sleep {COMMAND_SECONDS}; echo done after the drain began"),
            )
        )
        await activity_started(handle, "exec_command")
        await asyncio.sleep(1)  # the command runs in the sandbox
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
        termed = asyncio.get_running_loop().time()
        await second.start()  # the rollout's replacement (maxSurge) comes up meanwhile
        yield _Drained(handle, command, first, termed)


async def test_sigterm_during_a_long_command_lets_it_finish_and_the_session_carry_on(
    temporal_client: Client, make_emulator: Any, chaos_dir: Path
) -> None:
    emu = await make_emulator()
    async with _long_command_then_sigterm(temporal_client, emu, chaos_dir, "60s") as run:
        result = await asyncio.wait_for(run.command, 60)
        assert (result.exit_code, result.stdout.strip()) == (0, "done after the drain began")
        assert run.first.proc is not None
        code = await asyncio.to_thread(run.first.proc.wait, 30)
        drained_in = asyncio.get_running_loop().time() - run.termed
        print(
            f"\ndrain: the command finished, the old worker exited {code} after {drained_in:.1f}s"
        )
        assert code == 0, run.first.tail()
        assert drained_in < 30, "the worker left as soon as its command was done, not at 60 s"
        assert "stopping: draining in-flight tasks (up to 0:01:00" in run.first.tail(80)
        # The session carries on, on the replacement.
        again = await run.handle.execute_update(SandboxSession.exec, ExecRequest(command="echo on"))
        assert again.stdout.strip() == "on"
        await run.handle.signal(SandboxSession.finish)
        assert (await asyncio.wait_for(run.handle.result(), 60)).outcome == "finished"


async def test_control_a_drain_shorter_than_the_command_cuts_it_short(
    temporal_client: Client, make_emulator: Any, chaos_dir: Path
) -> None:
    emu = await make_emulator()
    async with _long_command_then_sigterm(temporal_client, emu, chaos_dir, "2s") as run:
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await asyncio.wait_for(run.command, 60)
        said = describe_failure(failed.value.cause)  # as `sessions exec` says it
        print(f"\ndrain 2s < command {COMMAND_SECONDS}s: the user is told {said!r}")
        assert said.startswith("ExecInterrupted: a previous attempt of this command"), said
