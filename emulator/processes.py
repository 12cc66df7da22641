"""A process started through envd: its output fanned out to every stream attached to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Literal

from .runtime import Spawned

EventKind = Literal["stdout", "stderr", "end", "closed"]


@dataclass
class ProcessEvent:
    kind: EventKind
    data: bytes = b""
    exit_code: int = 0
    exited: bool = True
    status: str = ""
    error: str | None = None
    """For `end`: envd's error text of a failed wait (`exit status 3`, `signal: killed`)."""
    message: str = ""
    """For `closed`: why the stream was cut (sandbox paused or killed)."""


@dataclass
class ProcessConfig:
    cmd: str
    args: list[str]
    envs: dict[str, str]
    cwd: str | None
    """As the client gave it (listed back so); relative and `~` paths are the user's home's."""
    tag: str | None = None
    stdin: bool = False


_SIGNAL_STATUS = {
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGINT: "interrupt",
}


@dataclass
class ManagedProcess:
    spawned: Spawned
    config: ProcessConfig
    subscribers: set[asyncio.Queue[ProcessEvent]] = field(default_factory=set)
    end: ProcessEvent | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.spawned.pid

    @property
    def running(self) -> bool:
        return self.end is None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def subscribe(self) -> asyncio.Queue[ProcessEvent]:
        queue: asyncio.Queue[ProcessEvent] = asyncio.Queue()
        if self.end is not None:
            queue.put_nowait(self.end)
        else:
            self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[ProcessEvent]) -> None:
        self.subscribers.discard(queue)

    def _publish(self, event: ProcessEvent) -> None:
        for queue in list(self.subscribers):
            queue.put_nowait(event)

    def cut_streams(self, message: str) -> None:
        """End every attached stream (the process itself is untouched).

        Called by the control plane on pause and kill; each stream then ends the way E2B's
        does for that case (envd_process.stream_cut_error reads the sandbox's state)."""
        self._publish(ProcessEvent("closed", message=message))
        self.subscribers.clear()

    async def _pump(self, reader: asyncio.StreamReader | None, kind: EventKind) -> None:
        if reader is None:
            return
        while chunk := await reader.read(32 * 1024):
            self._publish(ProcessEvent(kind, data=chunk))

    async def _run(self) -> None:
        proc = self.spawned.proc
        pumps = [
            asyncio.create_task(self._pump(proc.stdout, "stdout")),
            asyncio.create_task(self._pump(proc.stderr, "stderr")),
        ]
        rc = await proc.wait()
        # A background child may keep the pipes open; don't wait for it forever.
        _, pending = await asyncio.wait(pumps, timeout=0.5)
        for task in pending:
            task.cancel()
        if rc >= 0:
            status = f"exit status {rc}"
            self.end = ProcessEvent(
                "end", exit_code=rc, exited=True, status=status, error=status if rc else None
            )
        else:
            sig = signal.Signals(-rc)
            status = f"signal: {_SIGNAL_STATUS.get(sig, sig.name.lower())}"
            self.end = ProcessEvent("end", exit_code=-1, exited=False, status=status, error=status)
        self._publish(self.end)
        self.subscribers.clear()

    def send_signal(self, sig: int) -> None:
        if self.spawned.host_pid <= 0 or not self.running:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.spawned.host_pid, sig)

    async def write_stdin(self, data: bytes) -> None:
        stdin = self.spawned.proc.stdin
        if stdin is None or stdin.is_closing():
            raise BrokenPipeError("stdin is not open")
        stdin.write(data)
        await stdin.drain()

    def close_stdin(self) -> None:
        stdin = self.spawned.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()

    async def wait(self) -> ProcessEvent:
        if self._task is not None:
            await asyncio.shield(self._task)
        assert self.end is not None
        return self.end
