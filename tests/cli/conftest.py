"""The CLI as a person runs it: `python -m sessions ...` subprocesses against a real stack.

One stack for the whole package: the session-scoped dev server and emulator, a ledger file, and
a `sessions worker` subprocess on a task queue of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from sessions import SessionClient
from workflows.models import SessionStatus

_SCRUB_PREFIXES = ("TEMPORAL_", "E2B_", "SESSIONS_", "LEDGER_", "EMULATOR_")
_SCRUB_RICH = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would point the CLI elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_RICH
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return (
            f"sessions {' '.join(self.args)} -> {self.code}\nstdout: {self.out}\nstderr: {self.err}"
        )

    def ok(self) -> Result:
        assert self.code == 0, str(self)
        return self

    def one_error_line(self) -> str:
        """The contract: one clear line on stderr, a non-zero exit, no traceback."""
        assert self.code != 0, str(self)
        assert "Traceback" not in self.err, str(self)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, str(self)
        assert lines[0].startswith("error: "), str(self)
        return lines[0]


@dataclass
class Cli:
    """Runs `python -m sessions` without blocking the event loop (the emulator lives in it)."""

    env: dict[str, str]
    cwd: Path

    async def __call__(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> Result:
        proc = await self.spawn(*args, env=env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"sessions {' '.join(args)} did not end in {timeout}s") from None
        assert proc.returncode is not None
        return Result(args, proc.returncode, out.decode(), err.decode())

    async def spawn(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sessions",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
        )

    async def on_terminal(self, *args: str, columns: int = 160) -> Result:
        """Run with stdout on a pseudo-terminal, as a person at a shell would see it."""
        leader, follower = pty.openpty()
        env = {**self.env, "COLUMNS": str(columns), "TERM": "xterm-256color"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sessions",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=follower,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=self.cwd,
        )
        os.close(follower)
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    return
                if not data:
                    return
                chunks.append(data)

        reader = asyncio.get_running_loop().run_in_executor(None, drain)
        err = await asyncio.wait_for(proc.stderr.read(), 60)  # type: ignore[union-attr]
        await asyncio.wait_for(proc.wait(), 60)
        await asyncio.wait_for(reader, 10)
        os.close(leader)
        out = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
        assert proc.returncode is not None
        return Result(args, proc.returncode, out, err.decode())


@dataclass
class CliStack:
    cli: Cli
    client: SessionClient
    task_queue: str
    ledger_url: str
    worker_log: list[str] = field(default_factory=list)

    async def wait_for(
        self,
        session_id: str,
        predicate: Callable[[SessionStatus], bool],
        *,
        timeout: float = 30,
        what: str = "condition",
    ) -> SessionStatus:
        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(Exception):
                last = await self.client.status(session_id)
                if predicate(last):
                    return last
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}; last status: {last}\nworker: {self.worker_log[-20:]}"
        )


def state_is(*states: str) -> Callable[[SessionStatus], bool]:
    return lambda s: s.state in states


async def _drain(stream: asyncio.StreamReader, sink: list[str]) -> None:
    while line := await stream.readline():
        sink.append(line.decode(errors="replace").rstrip())


def make_cli(
    temporal_env: WorkflowEnvironment, home: Path, *, prefix: str, **extra_env: str
) -> Cli:
    """The CLI pointed at the test dev server, a ledger file and a task queue of its own."""
    env = clean_env(
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        SESSIONS_TASK_QUEUE=f"{prefix}-{uuid.uuid4().hex[:8]}",
        LEDGER_URL=f"sqlite:///{home / 'ledger.db'}",
        SESSIONS_DATA_DIR=str(home / "data"),
        # Its `sessions worker` must not leave a Schedule behind on the shared dev server.
        SESSIONS_RECONCILER="off",
        **extra_env,
    )
    return Cli(env=env, cwd=home)


@pytest_asyncio.fixture(scope="package")
async def cli(temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI pointed at the test dev server, a ledger file and a task queue of its own."""
    return make_cli(temporal_env, tmp_path_factory.mktemp("cli"), prefix="cli")


@pytest_asyncio.fixture(scope="package")
async def cli_stack(
    cli: Cli, temporal_env: WorkflowEnvironment, emulator: Any
) -> AsyncIterator[CliStack]:
    """A `sessions worker` subprocess (provider on the emulator) serving the CLI's queue."""
    queue = cli.env["SESSIONS_TASK_QUEUE"]
    worker = await cli.spawn("worker", env={**emulator.env(), "LOG_LEVEL": "INFO"})
    log: list[str] = []
    assert worker.stderr is not None
    ready = asyncio.get_running_loop().time() + 30
    while not any("polling task queue" in line for line in log):
        line = await asyncio.wait_for(worker.stderr.readline(), 30)
        if not line or asyncio.get_running_loop().time() > ready:
            pytest.fail(f"`sessions worker` did not start: {log[-10:]}", pytrace=False)
        log.append(line.decode(errors="replace").rstrip())
    drainer = asyncio.create_task(_drain(worker.stderr, log))
    client = SessionClient(temporal_env.client, task_queue=queue)
    try:
        yield CliStack(
            cli=cli,
            client=client,
            task_queue=queue,
            ledger_url=cli.env["LEDGER_URL"],
            worker_log=log,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(worker.wait(), 60)
        await drainer
        assert code == 0, f"`sessions worker` exited {code} on SIGTERM: {log[-10:]}"
