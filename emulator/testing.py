"""Helpers to run the emulator in tests and benchmarks: in-process or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .config import EmulatorConfig, FaultSettings, ScriptedFault
from .limits import Limits, LimitsUpdate
from .records import SandboxRecord
from .server import EmulatorCore, serve

__all__ = ["EmulatorHandle", "EmulatorProcess", "running_emulator"]


@dataclass
class _Urls:
    api_url: str
    sandbox_url: str
    api_key: str

    def env(self) -> dict[str, str]:
        """The variables that point the e2b SDK at this emulator."""
        return {
            "E2B_API_URL": self.api_url,
            "E2B_SANDBOX_URL": self.sandbox_url,
            "E2B_API_KEY": self.api_key,
            "E2B_DOMAIN": "localhost",
        }

    def admin(self) -> httpx.AsyncClient:
        """An HTTP client for the admin API (`/_emulator/...`), authenticated."""
        return httpx.AsyncClient(
            base_url=self.api_url, headers={"X-API-Key": self.api_key}, timeout=30
        )

    async def records_http(self) -> list[SandboxRecord]:
        async with self.admin() as c:
            r = await c.get("/_emulator/sandboxes")
            r.raise_for_status()
            return [SandboxRecord.model_validate(x) for x in r.json()]

    async def set_faults_http(self, faults: FaultSettings) -> None:
        async with self.admin() as c:
            (
                await c.put("/_emulator/faults", json=faults.model_dump(mode="json"))
            ).raise_for_status()

    async def limits_http(self) -> Limits:
        """`GET /_emulator/limits`: the limits in force."""
        async with self.admin() as c:
            r = await c.get("/_emulator/limits")
            r.raise_for_status()
            return _limits(r.json())

    async def set_limits_http(self, **change: Any) -> Limits:
        """`PUT /_emulator/limits` with these fields (see `EmulatorHandle.set_limits`)."""
        async with self.admin() as c:
            r = await c.put("/_emulator/limits", json=change)
            r.raise_for_status()
            return _limits(r.json())

    async def reset_http(self) -> None:
        async with self.admin() as c:
            (await c.post("/_emulator/reset")).raise_for_status()

    async def kill_http(self, sandbox_id: str, reason: str = "incident") -> None:
        """Kill a sandbox behind its owner's back, as an incident or E2B's lifetime limit."""
        async with self.admin() as c:
            r = await c.post(f"/_emulator/sandboxes/{sandbox_id}/kill", json={"reason": reason})
            r.raise_for_status()

    async def events_http(self, sandbox_id: str | None = None, **params: Any) -> httpx.Response:
        """`GET /events/sandboxes[/{id}]` with these query parameters, as E2B answers it."""
        path = "/events/sandboxes" + (f"/{sandbox_id}" if sandbox_id else "")
        async with self.admin() as c:
            return await c.get(path, params=params)


@dataclass
class EmulatorHandle(_Urls):
    """A running in-process emulator, with direct access to its state."""

    core: EmulatorCore = field(repr=False, default=None)  # type: ignore[assignment]

    def set_faults(self, faults: FaultSettings | None = None, **kwargs: Any) -> None:
        self.core.chaos.set_faults(faults or FaultSettings(**kwargs))

    def fail_next(
        self, operation: str, count: int = 1, status: int = 500, should_retry: bool | None = None
    ) -> None:
        """The next `count` calls of `operation` answer `status` (the SDK retries 429/502-504)."""
        self.core.chaos.add_scripted(
            ScriptedFault(
                operation=operation, count=count, status=status, should_retry=should_retry
            )
        )

    def limits(self) -> Limits:
        """The limits in force (tier figures, overrides, run-time changes)."""
        return self.core.governor.current.model_copy()

    def set_limits(self, **change: Any) -> Limits:
        """Change the limits now, e.g. `set_limits(max_lifetime=5, pause_seconds=0.5)` or
        `set_limits(tier="hobby")` (fields of `emulator.limits.LimitsUpdate`; None or 0 turns
        a rate or count off). A sandbox's lifetime cap is fixed when its run starts; the
        other figures apply at once. `reset()` restores the start-up limits."""
        return self.core.governor.update(LimitsUpdate(**change)).model_copy()

    def reset_limits(self) -> None:
        """Back to the limits the emulator was started with (sandboxes untouched)."""
        self.core.governor.reset()

    def set_latency(self, **latency: float) -> None:
        self.core.chaos.set_latency(latency)

    def reset_chaos(self) -> None:
        """Back to the latency and faults the emulator was started with."""
        self.core.chaos.reset()

    def records(self) -> list[SandboxRecord]:
        return [r.computed() for r in self.core.manager.records.values()]

    def record(self, sandbox_id: str) -> SandboxRecord:
        return self.core.manager.record(sandbox_id)

    def live_sandboxes(self) -> list[str]:
        return list(self.core.manager.sandboxes)

    async def kill(self, sandbox_id: str, reason: str = "incident") -> None:
        """Kill a sandbox behind its owner's back (the record says `reason`)."""
        await self.core.manager.kill(sandbox_id, reason=reason)

    async def reset(self) -> None:
        """Kill every sandbox, forget the records, restore latency, faults and limits."""
        await self.core.reset()


@contextlib.asynccontextmanager
async def running_emulator(**overrides: Any) -> AsyncIterator[EmulatorHandle]:
    """Start the emulator in this event loop on free ports (unless given); stop it on exit.

    `overrides` are `EmulatorConfig` fields, e.g. `tier="hobby"`, `max_lifetime=5`,
    `pause_seconds_per_gib=1.0`, `resume_seconds=0.2`, `max_running=3`, `create_rate=2`."""
    overrides.setdefault("port", 0)
    overrides.setdefault("envd_port", 0)
    overrides.setdefault("quiet", True)
    config = EmulatorConfig(**overrides)
    ready: asyncio.Future[EmulatorCore] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(config, on_ready=ready.set_result))
    waiting: list[asyncio.Future[Any]] = [ready, task]
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the start-up error
    core = ready.result()
    handle = EmulatorHandle(
        api_url=core.api_url, sandbox_url=core.sandbox_url, api_key=config.api_key or "", core=core
    )
    try:
        yield handle
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _limits(data: dict[str, Any]) -> Limits:
    data.pop("pause_seconds", None)  # derived, shown for people
    return Limits.model_validate(data)


class EmulatorProcess(_Urls):
    """`python -m emulator` as a child process on free ports (for tests needing a separate one)."""

    def __init__(self, *args: str, api_key: str = "e2b_test_emulator_key", env: dict | None = None):
        self._args = list(args)
        self._env = {**os.environ, **(env or {}), "E2B_API_KEY": api_key}
        self.proc: subprocess.Popen[str] | None = None
        self.start_line = ""
        """What the emulator printed first (`E2B emulator: API ... (namespaces, tier dev)`)."""
        super().__init__(api_url="", sandbox_url="", api_key=api_key)

    def start(self, timeout: float = 20) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--envd-port", "0", *self._args],
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"API (\S+)\s+envd (\S+)", line)
        if not m:
            err = (
                self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
            )
            self.stop()
            raise RuntimeError(f"emulator did not start: {line.strip()} {err.strip()}")
        self.api_url, self.sandbox_url = m.group(1), m.group(2)
        self.start_line = line.strip()
        return self

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
