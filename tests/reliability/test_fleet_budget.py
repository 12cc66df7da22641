"""One E2B budget for the whole fleet: three workers on one key never create faster than the
rate together, and a create at E2B's concurrency limit holds no worker slot while it waits.

E2B limits each team's create rate (the emulator here answers 429 past it, as E2B does). Each
worker process pacing itself to the rate lets N replicas create N times too fast; the fleet's
pace is set on the server instead (`worker.SessionWorker`: the creates queue with
`max_task_queue_activities_per_second`). The control case shows the per-process pace failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle

from common.codec import data_converter
from emulator.testing import EmulatorHandle
from ledger import Ledger
from provider import E2BSandboxProvider, StaticCredentialSource
from provider.limits import CAPACITY_RETRY_SECONDS, TierLimits
from provider.models import ProvisionInput, ProvisionResult
from tests.fixtures.reliability import max_in_window, refused_429, start_sessions
from tests.fixtures.stack import state_is, wait_for
from tests.fixtures.temporal import result_of
from worker import build_worker
from workflows import ExecRequest, SandboxSession

RATE = 2.0
WORKERS = 3
SESSIONS = 12


SLOW_REPLICA_LAG = 0.25
"""Seconds one replica of three takes to get from its task to E2B (a busy pod)."""


class _CountingProvider(E2BSandboxProvider):
    """The real provider, counting the creates this worker made (which worker did what);
    `lag` delays each of its creates, as a busy replica's would be."""

    def __init__(self, emu: EmulatorHandle, limits: TierLimits, *, lag: float = 0.0) -> None:
        super().__init__(
            credentials=StaticCredentialSource(emu.api_key),
            api_url=emu.api_url,
            sandbox_url=emu.sandbox_url,
            limits=limits,
        )
        self.provisions = 0
        self.lag = lag

    async def provision(self, input: ProvisionInput) -> ProvisionResult:
        await asyncio.sleep(self.lag)
        result = await super().provision(input)
        self.provisions += 1
        return result


@contextlib.asynccontextmanager
async def _fleet(
    client: Client, queue: str, providers: list[_CountingProvider], ledger: Ledger, **options
):
    """One worker per provider, each on its own connection, as replicas would be."""
    target = client.service_client.config.target_host
    async with contextlib.AsyncExitStack() as stack:
        for provider in providers:
            own = await Client.connect(
                target, namespace=client.namespace, data_converter=data_converter()
            )
            await stack.enter_async_context(
                build_worker(own, task_queue=queue, provider=provider, ledger=ledger, **options)
            )
        yield


async def _finish(handle: WorkflowHandle) -> str:
    await wait_for(handle, state_is("running"), timeout=120, what="session running")
    await handle.signal(SandboxSession.finish)
    return (await result_of(handle, timeout=120)).outcome


async def _run_fleet(
    client: Client, emu: EmulatorHandle, ledger: Ledger, *, fleet_rate: float | None
) -> tuple[list[str], list[_CountingProvider], list]:
    """SESSIONS sessions started at once on WORKERS workers, the first of them slow; each
    worker paces itself to RATE (as before), and the fleet rate, when given, is set on the
    server."""
    providers = [
        _CountingProvider(emu, TierLimits(create_rate=RATE), lag=SLOW_REPLICA_LAG if i == 0 else 0)
        for i in range(WORKERS)
    ]
    before = {r.sandbox_id for r in emu.records()}
    queue = f"fleet-{uuid.uuid4()}"
    async with _fleet(client, queue, providers, ledger, creates_per_second=fleet_rate):
        handles = await start_sessions(client, queue, SESSIONS, "fleet")
        outcomes = await asyncio.gather(*(_finish(h) for h in handles))
    created = [r.created_at for r in emu.records() if r.sandbox_id not in before]
    return outcomes, providers, created


def test_the_fleet_rate_leaves_e2b_a_create_to_spare() -> None:
    """The server's first burst (ceil of its rate, plus one as the queue loads) fits E2B's
    bucket wherever E2B's holds more than one, and the fleet never asks more than 80 %."""
    assert TierLimits(create_rate=5.0).fleet_create_rate == 4.0  # Pro
    assert TierLimits(create_rate=1.0).fleet_create_rate == 0.8  # Hobby: no spare to give
    assert TierLimits(create_rate=2.0).fleet_create_rate == 1.0  # not 1.6: both bursts 2
    assert TierLimits(create_rate=None).fleet_create_rate is None
    for tenths in range(1, 301):
        rate = tenths / 10
        fleet = TierLimits(create_rate=rate).fleet_create_rate
        assert fleet is not None and 0 < fleet <= 0.8 * rate + 1e-9, rate
        if math.ceil(rate) > 1:
            assert math.ceil(fleet) < math.ceil(rate), rate


@pytest.fixture
def rate_limited_emulator(private_emulator: EmulatorHandle):
    private_emulator.set_limits(create_rate=RATE, max_running=None)
    yield private_emulator
    private_emulator.reset_limits()


async def test_three_workers_never_create_faster_than_the_fleet_rate(
    temporal_client: Client, rate_limited_emulator: EmulatorHandle, reliability_ledger: Ledger
) -> None:
    """One of the three replicas reaches E2B SLOW_REPLICA_LAG late with every create, so a
    create it was handed arrives nearer the next one on time (at 80 % of E2B's rate alone,
    1.6/s here, this refused a create in two runs of three)."""
    emu = rate_limited_emulator
    fleet_rate = TierLimits(create_rate=RATE).fleet_create_rate
    assert fleet_rate is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes, providers, created = await _run_fleet(
        temporal_client, emu, reliability_ledger, fleet_rate=fleet_rate
    )
    wall = loop.time() - started
    refused, busiest = refused_429(emu), max_in_window(created, 1.0)
    split = [p.provisions for p in providers]
    print(
        f"\nfleet budget ({WORKERS} workers, one {SLOW_REPLICA_LAG:g} s slow, E2B at {RATE:g}/s, "
        f"the creates queue at {fleet_rate:g}/s): "
        f"sessions={SESSIONS} creates={len(created)} per worker={split} refused_429={refused} "
        f"max_creates_in_1s={busiest} wall={wall:.1f}s"
    )
    assert outcomes == ["finished"] * SESSIONS
    assert len(created) == SESSIONS
    assert sum(1 for n in split if n) >= 2, f"the creates were spread over the fleet: {split}"
    assert refused == 0, "E2B never had to refuse a create"
    # The server hands out its burst (ceil of its rate) plus one when the queue loads, then
    # its rate: no second holds more than that, however many workers run.
    burst = math.ceil(fleet_rate) + 1
    assert busiest <= burst + math.ceil(fleet_rate), busiest
    # From the first create to the last, less a second for the first create's own lag.
    span = (max(created) - min(created)).total_seconds()
    assert span >= (SESSIONS - burst - 2) / fleet_rate, span
    assert emu.live_sandboxes() == []


async def test_control_workers_pacing_only_themselves_exceed_the_rate_together(
    temporal_client: Client, rate_limited_emulator: EmulatorHandle, reliability_ledger: Ledger
) -> None:
    """Before the fleet budget: each replica paced to the rate, three of them three times over
    it; E2B refuses, the 429s are retried, nothing fails but the rate is broken."""
    emu = rate_limited_emulator
    outcomes, providers, created = await _run_fleet(
        temporal_client, emu, reliability_ledger, fleet_rate=None
    )
    refused = refused_429(emu)
    print(
        f"\nper-process pacing only ({WORKERS} workers x {RATE:g}/s): refused_429={refused} "
        f"per worker={[p.provisions for p in providers]}"
    )
    assert outcomes == ["finished"] * SESSIONS
    assert refused > 0, "three self-paced workers together went past E2B's rate"


@pytest.fixture
def full_emulator(private_emulator: EmulatorHandle):
    private_emulator.set_limits(create_rate=None, max_running=1)
    yield private_emulator
    private_emulator.reset_limits()


async def test_a_create_at_the_concurrency_limit_waits_without_holding_a_slot(
    temporal_client: Client, full_emulator: EmulatorHandle, reliability_ledger: Ledger
) -> None:
    """E2B runs one sandbox for the team; a second session's create is refused by the worker
    (`AtCapacity`) and retried by Temporal: between attempts no worker runs it, and the worker
    keeps serving (the first session's command runs). When the first ends, the second runs."""
    emu = full_emulator
    provider = _CountingProvider(emu, TierLimits(max_concurrent=1))
    queue = f"full-{uuid.uuid4()}"
    async with _fleet(temporal_client, queue, [provider], reliability_ledger):
        (first,) = await start_sessions(temporal_client, queue, 1, "full")
        await wait_for(first, state_is("running"), timeout=60, what="first running")
        (second,) = await start_sessions(temporal_client, queue, 1, "full")
        seen: Counter[str] = Counter()
        attempts, message = 0, ""
        deadline = asyncio.get_running_loop().time() + 3 * CAPACITY_RETRY_SECONDS + 5
        while attempts < 3 and asyncio.get_running_loop().time() < deadline:
            described = await second.describe()
            for pending in described.raw_description.pending_activities:
                seen[PendingActivityState.Name(pending.state)] += 1
                attempts = pending.attempt
                message = pending.last_failure.message
            await asyncio.sleep(0.1)
        # The worker still serves: a command in the first session runs meanwhile.
        result = await first.execute_update(
            SandboxSession.exec,
            ExecRequest(command="echo served"),
            rpc_timeout=timedelta(seconds=30),
        )
        print(f"\nat capacity: attempts={attempts} pending states={dict(seen)} last={message!r}")
        assert result.stdout.strip() == "served"
        assert attempts >= 3, "the create was tried again, attempt after attempt"
        assert "limit of 1 sandboxes running at once" in message
        # Between attempts the task waits on the server, not in a worker's slot.
        assert seen["PENDING_ACTIVITY_STATE_SCHEDULED"] > seen["PENDING_ACTIVITY_STATE_STARTED"]
        assert (await second.query(SandboxSession.status)).state == "provisioning"
        assert await _finish(first) == "finished"
        assert await _finish(second) == "finished"
    assert refused_429(emu) == 0, "the worker asked before creating: E2B never refused"
