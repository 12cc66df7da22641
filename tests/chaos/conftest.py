"""Chaos helpers: workers as real processes (so SIGKILL is real), a dev server on a database
file (so it can be restarted), and the checks behind "nothing lost, nothing doubled, no strays".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from emulator import DEMO_TEMPLATES
from emulator.testing import EmulatorHandle, running_emulator
from ledger import CostEvent, open_ledger
from provider.models import PoolConfig
from tests.fixtures.temporal import temporal_binary
from workflows import SandboxSession, SessionInput, workflow_id_for

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """`python worker.py` against the given Temporal, emulator and ledger; its log in a file."""

    def __init__(
        self, *, address: str, queue: str, ledger_url: str, emu: EmulatorHandle, log: Path
    ):
        self.env = {
            **os.environ,
            **emu.env(),
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_NAMESPACE": "default",
            "SESSIONS_TASK_QUEUE": queue,
            "LEDGER_URL": ledger_url,
            "SESSIONS_RECONCILER": "off",
            "LOG_LEVEL": "INFO",
        }
        for name in ("E2B_DEBUG", "E2B_TIER", "E2B_CREATE_RATE", "E2B_MAX_CONCURRENT"):
            self.env.pop(name, None)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 60) -> WorkerProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = asyncio.get_running_loop().time() + timeout
        while b"worker polling task queue" not in self.log.read_bytes()[offset:]:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"worker did not start:\n{self.tail()}")
            await asyncio.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye to the server; in-flight activities are simply lost."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def activity_started(
    handle: WorkflowHandle[Any, Any], activity_type: str, *, timeout: float = 60
) -> int:
    """Wait until a worker is running `activity_type` for this workflow; its attempt number."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if (
                pending.activity_type.name == activity_type
                and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            ):
                return pending.attempt
        await asyncio.sleep(0.1)
    raise AssertionError(f"{activity_type} never started for {handle.id}")


@dataclass
class Figures:
    """What a chaos test prints, so CI logs show what was done and found."""

    sessions: int = 0
    kills: int = 0
    restarts: int = 0
    faults: int = 0
    rows: int = 0
    strays: int = 0
    sandboxes: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (
            f"{name}: sessions={self.sessions} kills={self.kills} server_restarts={self.restarts} "
            f"faults_injected={self.faults} sandboxes={self.sandboxes} ledger_rows={self.rows} "
            f"stray_sandboxes={self.strays}{extra}"
        )


async def ledger_rows(ledger_url: str) -> list[CostEvent]:
    ledger = await open_ledger(ledger_url)
    try:
        return await ledger.events()
    finally:
        await ledger.close()


async def check_three_zeros(
    emu: EmulatorHandle, ledger_url: str, session_ids: list[str], figures: Figures
) -> None:
    """Zero lost cost events, zero double-billed, zero stray sandboxes."""
    rows = await ledger_rows(ledger_url)
    records = [r for r in emu.records() if r.metadata.get("session_id") in session_ids]
    figures.rows += len(rows)
    figures.sandboxes += len(records)
    figures.strays += len(emu.live_sandboxes())
    keys = [(r.session_id, r.sandbox_id) for r in rows]
    assert len(keys) == len(set(keys)), f"a (session, sandbox) billed twice: {keys}"
    assert sorted(r.session_id for r in rows) == sorted(session_ids), "one cost row per session"
    created = {(r.metadata["session_id"], r.sandbox_id) for r in records}
    assert set(keys) == created, "each row bills the one sandbox its session created"
    assert emu.live_sandboxes() == [], "no sandbox left running or paused"


@pytest.fixture
def chaos_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest_asyncio.fixture
async def make_emulator() -> AsyncIterator[Callable[[], Any]]:
    """Private emulators: latency set for one scenario must not slow another."""
    stack = contextlib.AsyncExitStack()

    async def make() -> EmulatorHandle:
        return await stack.enter_async_context(
            running_emulator(templates_file=DEMO_TEMPLATES, api_key="e2b_chaos")
        )

    async with stack:
        yield make


def session_input(session_id: str) -> SessionInput:
    return SessionInput(session_id=session_id, org_id="acme", pool=PoolConfig(templateId="base"))


async def start_session(client: Client, queue: str, prefix: str) -> WorkflowHandle[Any, Any]:
    sid = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return await client.start_workflow(
        SandboxSession.run, session_input(sid), id=workflow_id_for(sid), task_queue=queue
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevServer:
    """`temporal server start-dev` on a database file and fixed ports, so it can restart."""

    def __init__(self, db: Path, log: Path) -> None:
        self.port = free_port()
        self.args = [
            temporal_binary(),
            "server",
            "start-dev",
            "--db-filename",
            str(db),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--http-port",
            str(free_port()),
            "--headless",
            "--log-level",
            "error",
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await Client.connect(self.address)  # asks the server for its system info
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.proc.poll() is not None or asyncio.get_running_loop().time() > deadline:
                    log = self.log.read_text()
                    raise AssertionError(f"dev server did not start:\n{log}") from None
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def client(self) -> Client:
        return await Client.connect(self.address, data_converter=pydantic_data_converter)


@pytest_asyncio.fixture
async def persistent_server(tmp_path: Path) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path / "temporal.db", tmp_path / "temporal.log")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def workers_stopped(*workers: WorkerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for w in workers:
            w.stop()
