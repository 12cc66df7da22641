"""A batch of sessions against a flaky E2B: 5% of calls 5xx, bursts of 429 with Retry-After,
injected latency. Every session still finishes, billed once, with nothing left running."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from emulator.config import FaultSettings
from emulator.testing import EmulatorHandle
from ledger import open_ledger
from provider import E2BSandboxProvider, StaticCredentialSource
from provider.limits import TIERS
from tests.fixtures.chaos import Figures, check_three_zeros, ledger_rows, start_session
from tests.fixtures.stack import state_is, wait_for
from worker import build_worker
from workflows import SandboxSession

SESSIONS = 15
TIMEOUT = 120.0


async def one_session(h: WorkflowHandle[Any, Any]) -> str:
    """Provision, pause at a gate, resume on approval, finish."""
    await wait_for(h, state_is("running"), timeout=TIMEOUT, what="running")
    await h.signal("request_approval", {"gate": "review"})
    await wait_for(h, state_is("paused"), timeout=TIMEOUT, what="paused")
    await h.signal("approve", {"gate": "review", "by": "chaos"})
    await wait_for(h, state_is("running"), timeout=TIMEOUT, what="resumed")
    await h.signal(SandboxSession.finish)
    return (await asyncio.wait_for(h.result(), TIMEOUT)).outcome


async def bursts_of_429(emu: EmulatorHandle) -> None:
    """Every 3 s, half a second in which nearly every call answers 429 with Retry-After."""
    faults = emu.core.chaos.faults
    while True:
        await asyncio.sleep(2.5)
        faults.rate_limit_rate = 0.9
        await asyncio.sleep(0.5)
        faults.rate_limit_rate = 0.0


async def test_a_batch_survives_5xx_429_bursts_and_latency(
    temporal_env: WorkflowEnvironment, make_emulator: Any, tmp_path: Path
) -> None:
    emu: EmulatorHandle = await make_emulator()
    emu.set_faults(FaultSettings(error_rate=0.05, error_status=500, retry_after=1, seed=6))
    emu.set_latency(create=0.3, pause=0.3, connect=0.2, kill=0.2, get=0.05, list=0.05)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = await open_ledger(ledger_url)
    provider = E2BSandboxProvider(
        credentials=StaticCredentialSource(emu.api_key),
        api_url=emu.api_url,
        sandbox_url=emu.sandbox_url,
        limits=TIERS["pro"],  # the limiter's listing calls meet the faults too
    )
    client = temporal_env.client
    queue = "chaos-faults"
    figures = Figures(sessions=SESSIONS)
    bursts = asyncio.create_task(bursts_of_429(emu))
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        async with build_worker(client, task_queue=queue, provider=provider, ledger=ledger):
            handles = [await start_session(client, queue, "faults") for _ in range(SESSIONS)]
            outcomes = await asyncio.gather(*(one_session(h) for h in handles))
    finally:
        bursts.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bursts
        await ledger.close()
    elapsed = loop.time() - began
    injected = dict(emu.core.chaos.injected)
    emu.reset_chaos()

    figures.faults = sum(injected.values())
    session_ids = [h.id.removeprefix("session-") for h in handles]
    await check_three_zeros(emu, ledger_url, session_ids, figures)
    # The seconds billed are the seconds E2B saw running, give or take the calls' latency.
    drift = 0.0
    records = {r.sandbox_id: r for r in emu.records()}
    for row in await ledger_rows(ledger_url):
        drift = max(drift, abs(row.running_seconds - records[row.sandbox_id].running_seconds))
    figures.notes.append(f"max billed-vs-E2B drift={drift:.2f}s; by kind {injected}")
    print(f"\n{figures.line('faults batch')} wall={elapsed:.1f}s")
    assert outcomes == ["finished"] * SESSIONS
    kinds = {kind.split(":")[1] for kind in injected}
    assert "429" in kinds and "500" in kinds, f"both kinds of fault were injected: {injected}"
    assert drift < 5.0
