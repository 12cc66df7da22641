"""The stack a campaign runs on: a dev server of its own (or a given address), a private
emulator, a SQLite ledger and worker processes, with a client that stays quiet about 1 MiB
payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from emulator import DEMO_TEMPLATES
from emulator.testing import EmulatorHandle, running_emulator
from tests.fixtures.chaos import DevServer, WorkerProcess


@dataclass
class FuzzStack:
    """A dev server (or a given address), a private emulator, a SQLite ledger, worker processes."""

    client: Client
    address: str
    emu: EmulatorHandle
    queue: str
    ledger_url: str
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    async def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(
            address=self.address,
            queue=self.queue,
            ledger_url=self.ledger_url,
            emu=self.emu,
            log=self.workdir / f"worker-{len(self.workers)}.log",
        )
        self.workers.append(worker)
        return await worker.start()

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


_RUNTIME: Runtime | None = None


def _quiet_runtime() -> Runtime:
    """The fuzz client's own runtime: its 1 MiB payloads would print a size warning each."""
    global _RUNTIME
    if _RUNTIME is None:
        quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
        _RUNTIME = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))
    return _RUNTIME


@contextlib.asynccontextmanager
async def fuzz_stack(
    workdir: Path, *, address: str | None = None, workers: int = 2
) -> AsyncIterator[FuzzStack]:
    """Everything a campaign needs; a dev server of its own unless `address` is given."""
    workdir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        if address is None:
            server = DevServer(workdir / "temporal.db", workdir / "temporal.log")
            stack.callback(server.stop)
            await server.start()
            address = server.address
        client = await Client.connect(
            address, data_converter=pydantic_data_converter, runtime=_quiet_runtime()
        )
        emu = await stack.enter_async_context(
            running_emulator(templates_file=DEMO_TEMPLATES, api_key="e2b_fuzz")
        )
        fuzz = FuzzStack(
            client=client,
            address=address,
            emu=emu,
            queue=f"fuzz-{uuid.uuid4().hex[:8]}",
            ledger_url=f"sqlite:///{workdir / 'ledger.db'}",
            workdir=workdir,
        )
        stack.callback(fuzz.stop)
        await asyncio.gather(*(fuzz.start_worker() for _ in range(workers)))
        yield fuzz
