"""The Temporal server restarted on its database in the middle of a session, once while an
activity is in flight and once while the session waits at a gate: the session carries on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from emulator.testing import EmulatorHandle
from ledger import open_ledger
from provider import E2BSandboxProvider, StaticCredentialSource
from tests.fixtures.chaos import (
    DevServer,
    Figures,
    activity_started,
    check_three_zeros,
    start_session,
)
from tests.fixtures.stack import state_is, wait_for
from worker import build_worker
from workflows import SandboxSession

TIMEOUT = 90.0


async def restart(server: DevServer, figures: Figures) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()
    server.stop()
    await server.start()
    figures.restarts += 1
    return loop.time() - began


async def test_session_carries_on_across_server_restarts(
    persistent_server: DevServer, make_emulator: Any, tmp_path: Path
) -> None:
    emu: EmulatorHandle = await make_emulator()
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = await open_ledger(ledger_url)
    provider = E2BSandboxProvider(
        credentials=StaticCredentialSource(emu.api_key),
        api_url=emu.api_url,
        sandbox_url=emu.sandbox_url,
    )
    figures = Figures(sessions=1)
    client = await persistent_server.client()
    queue = "chaos-restart"
    downtimes = []
    try:
        async with build_worker(client, task_queue=queue, provider=provider, ledger=ledger):
            h = await start_session(client, queue, "restart")
            await wait_for(h, state_is("running"), timeout=TIMEOUT, what="running")
            # 1: the server goes away while the pause call is in flight.
            emu.set_latency(pause=3.0)
            await h.signal("request_approval", {"gate": "deploy"})
            await activity_started(h, "pause_sandbox")
            downtimes.append(await restart(persistent_server, figures))
            await wait_for(h, state_is("paused"), timeout=TIMEOUT, what="paused")
            emu.set_latency()
            # 2: the server goes away while the session waits at the gate.
            downtimes.append(await restart(persistent_server, figures))
            await h.signal("approve", {"gate": "deploy", "by": "chaos"})
            await wait_for(h, state_is("running"), timeout=TIMEOUT, what="resumed")
            await h.signal(SandboxSession.finish)
            result = await asyncio.wait_for(h.result(), TIMEOUT)
    finally:
        await ledger.close()
    await check_three_zeros(emu, ledger_url, [h.id.removeprefix("session-")], figures)
    gate = result.status.gates[0]
    figures.notes.append("downtimes=" + ",".join(f"{d:.1f}s" for d in downtimes))
    print(f"\n{figures.line('server restarts')}")
    assert result.outcome == "finished"
    assert (gate.state, gate.decided_by) == ("approved", "chaos")
    assert result.status.paused_seconds > 0
