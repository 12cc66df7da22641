"""The worker SIGKILLed in every phase of a session, then a new worker started: every session
finishes, is billed exactly once for the one sandbox it made, and no sandbox is left behind.

The six phases run at once, each with its own worker process, emulator, ledger and task queue:
a killed worker's in-flight activity is only noticed when its heartbeat or start-to-close
timeout expires (up to 60 s), so running them one after the other would take six times as long.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from emulator.testing import EmulatorHandle
from tests.fixtures.chaos import (
    Figures,
    WorkerProcess,
    activity_started,
    check_three_zeros,
    ledger_rows,
    local_step_started,
    start_session,
)
from tests.fixtures.stack import state_is, wait_for
from workflows import SandboxSession

RECOVERY = 150.0
"""Generous: a lost activity is retried after its 60 s timeout, on a busy 2-core machine."""
LATENCY = 5.0
"""Long enough that the kill lands inside the call."""


class Scenario:
    """One phase's stack: its emulator, ledger file, task queue and worker processes."""

    def __init__(self, phase: str, client: Client, emu: EmulatorHandle, tmp: Path) -> None:
        self.phase = phase
        self.client = client
        self.emu = emu
        self.queue = f"chaos-{phase}-{uuid.uuid4().hex[:6]}"
        self.ledger_path = tmp / f"{phase}.db"
        self.ledger_url = f"sqlite:///{self.ledger_path}"
        self.figures = Figures()
        self.workers: list[WorkerProcess] = []
        self.session_ids: list[str] = []

    async def start_worker(self) -> None:
        worker = WorkerProcess(
            address=self.client.service_client.config.target_host,
            queue=self.queue,
            ledger_url=self.ledger_url,
            emu=self.emu,
            log=self.ledger_path.with_suffix(".worker.log"),
        )
        self.workers.append(worker)
        await worker.start()

    async def kill_and_replace(self) -> None:
        self.workers[-1].kill()
        self.figures.kills += 1
        self.emu.set_latency()  # the new worker's calls are quick again
        await self.start_worker()

    async def session(self) -> WorkflowHandle[Any, Any]:
        self.figures.sessions += 1
        handle = await start_session(self.client, self.queue, self.phase)
        self.session_ids.append(handle.id.removeprefix("session-"))
        return handle

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


async def running(h: WorkflowHandle[Any, Any], timeout: float = RECOVERY) -> None:
    await wait_for(h, state_is("running"), timeout=timeout, what=f"{h.id} running")


async def paused_at_gate(h: WorkflowHandle[Any, Any]) -> None:
    await running(h)
    await h.signal("request_approval", {"gate": "deploy"})
    await wait_for(h, state_is("paused"), timeout=RECOVERY, what=f"{h.id} paused")


async def finish(h: WorkflowHandle[Any, Any]) -> str:
    await h.signal(SandboxSession.finish)
    return (await asyncio.wait_for(h.result(), RECOVERY)).outcome


async def approve(h: WorkflowHandle[Any, Any]) -> None:
    await h.signal("approve", {"gate": "deploy", "by": "chaos"})


# ------------------------------------------------------------------ one function per phase


async def kill_while_provisioning(s: Scenario) -> str:
    """Killed after E2B made the sandbox but before the activity reported it (the provider
    reads the start time next, slowed here): the retry must find that sandbox, not make one."""
    s.emu.set_latency(get=LATENCY)
    h = await s.session()
    await activity_started(h, "provision_sandbox")
    sid = s.session_ids[-1]
    made_by = asyncio.get_running_loop().time() + 60
    while not any(r.metadata.get("session_id") == sid for r in s.emu.records()):
        assert asyncio.get_running_loop().time() < made_by, f"E2B never made {sid}'s sandbox"
        await asyncio.sleep(0.05)
    await s.kill_and_replace()
    await running(h)
    return await finish(h)


async def kill_while_running(s: Scenario) -> str:
    h = await s.session()
    await running(h)
    await s.kill_and_replace()
    return await finish(h)


async def kill_while_paused_at_gate(s: Scenario) -> str:
    h = await s.session()
    await paused_at_gate(h)
    await s.kill_and_replace()
    await approve(h)
    await running(h)
    return await finish(h)


async def kill_while_resuming(s: Scenario) -> str:
    h = await s.session()
    await paused_at_gate(h)
    s.emu.set_latency(connect=LATENCY)
    await approve(h)
    await activity_started(h, "resume_sandbox")
    await asyncio.sleep(0.5)
    await s.kill_and_replace()
    await running(h)
    return await finish(h)


async def kill_while_terminating(s: Scenario) -> str:
    h = await s.session()
    await running(h)
    s.emu.set_latency(kill=LATENCY)
    await h.signal(SandboxSession.finish)
    await activity_started(h, "terminate_sandbox")
    await asyncio.sleep(0.5)
    await s.kill_and_replace()
    return (await asyncio.wait_for(h.result(), RECOVERY)).outcome


async def kill_while_writing_the_cost(s: Scenario) -> str:
    """The ledger's write lock held by someone else, so the insert is in flight at the kill."""
    h = await s.session()
    await running(h)
    lock = sqlite3.connect(s.ledger_path, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        await h.signal(SandboxSession.finish)
        await local_step_started(h, after="terminate_sandbox")  # record_cost runs there
        await asyncio.sleep(0.5)
        s.workers[-1].kill()
        s.figures.kills += 1
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    rows = len(await ledger_rows(s.ledger_url))
    s.figures.notes.append(f"rows at the kill={rows}")
    await s.start_worker()
    return (await asyncio.wait_for(h.result(), RECOVERY)).outcome


PHASES: dict[str, Callable[[Scenario], Awaitable[str]]] = {
    "provisioning": kill_while_provisioning,
    "running": kill_while_running,
    "paused": kill_while_paused_at_gate,
    "resuming": kill_while_resuming,
    "terminating": kill_while_terminating,
    "writing-cost": kill_while_writing_the_cost,
}


async def test_worker_killed_in_every_phase_loses_and_doubles_nothing(
    temporal_env: WorkflowEnvironment, make_emulator: Any, tmp_path: Path
) -> None:
    scenarios = [
        Scenario(phase, temporal_env.client, await make_emulator(), tmp_path) for phase in PHASES
    ]
    try:
        await asyncio.gather(*(s.start_worker() for s in scenarios))

        async def run(s: Scenario) -> str:
            try:
                return await PHASES[s.phase](s)
            except BaseException:
                print(f"\n--- {s.phase} worker log ---\n{s.workers[-1].tail()}")
                raise

        loop = asyncio.get_running_loop()
        began = loop.time()
        outcomes = await asyncio.gather(*(run(s) for s in scenarios))
        elapsed = loop.time() - began
    finally:
        for s in scenarios:
            s.stop()

    total = Figures()
    for s, outcome in zip(scenarios, outcomes, strict=True):
        await check_three_zeros(s.emu, s.ledger_url, s.session_ids, s.figures)
        print(f"\nkill while {s.figures.line(s.phase)} outcome={outcome}", end="")
        assert outcome == "finished", s.phase
        for name in ("sessions", "kills", "rows", "strays", "sandboxes"):
            setattr(total, name, getattr(total, name) + getattr(s.figures, name))
    print(f"\n{total.line('worker kills, all phases')} wall={elapsed:.1f}s")
    assert total.kills == len(PHASES)
    assert total.rows == total.sessions == total.sandboxes
    assert total.strays == 0
