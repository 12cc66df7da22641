"""Provisioning within E2B's create rate and concurrency limits: many sessions started at once
all provision, none fails, and E2B (the emulator enforcing the limits) never has to say 429."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.client import WorkflowHandle

from common.errors import ConfigError
from common.settings import ProviderSettings
from emulator.testing import EmulatorHandle
from ledger import Ledger
from provider import E2BSandboxProvider, StaticCredentialSource
from provider.limits import TierLimits
from tests.fixtures.reliability import max_in_window, refused_429, start_sessions
from tests.fixtures.stack import state_is, wait_for
from tests.fixtures.temporal import result_of
from worker import build_worker
from workflows import SandboxSession

RATE = 2.0
MAX_RUNNING = 3
SESSIONS = 8


def test_tiers_and_overrides_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def limits(**env: str) -> TierLimits:
        for name in ("E2B_TIER", "E2B_CREATE_RATE", "E2B_MAX_CONCURRENT", "E2B_MAX_LIFETIME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return TierLimits.from_settings(ProviderSettings.load())

    assert limits() == TierLimits()  # unset: no pacing, the 429 path only
    assert limits(E2B_TIER="hobby") == TierLimits(1.0, 20, 3600)
    assert limits(E2B_TIER="Pro") == TierLimits(5.0, 100, 86_400)
    assert limits(
        E2B_TIER="pro", E2B_CREATE_RATE="2.5", E2B_MAX_CONCURRENT="0", E2B_MAX_LIFETIME="600"
    ) == TierLimits(2.5, None, 600)
    assert limits(E2B_TIER="hobby", E2B_MAX_LIFETIME="0").max_lifetime_seconds is None
    assert limits(E2B_MAX_LIFETIME="7200") == TierLimits(None, None, 7200)
    for bad in (
        {"E2B_TIER": "gold"},
        {"E2B_CREATE_RATE": "fast"},
        {"E2B_MAX_CONCURRENT": "-1"},
        {"E2B_MAX_LIFETIME": "-5"},
        {"E2B_MAX_LIFETIME": "1h"},
        {"E2B_ON_TIMEOUT": "hibernate"},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            limits(**bad)


async def _run_sessions(
    client, emu: EmulatorHandle, ledger: Ledger, limits: TierLimits, n: int, hold: float
) -> list[str]:
    """Start `n` sessions at once on a worker with `limits`; finish each `hold` s after it runs."""
    provider = E2BSandboxProvider(
        credentials=StaticCredentialSource(emu.api_key),
        api_url=emu.api_url,
        sandbox_url=emu.sandbox_url,
        limits=limits,
    )
    queue = f"tq-{uuid.uuid4()}"

    async def one(handle: WorkflowHandle) -> str:
        await wait_for(handle, state_is("running"), timeout=120, what="session running")
        await asyncio.sleep(hold)
        await handle.signal(SandboxSession.finish)
        return (await result_of(handle, timeout=120)).outcome

    async with build_worker(client, task_queue=queue, provider=provider, ledger=ledger):
        handles = await start_sessions(client, queue, n, "rl")
        return await asyncio.gather(*(one(h) for h in handles))


def _max_overlap(emu: EmulatorHandle, ids: set[str]) -> int:
    marks = []
    for r in emu.records():
        if r.sandbox_id in ids:
            marks += [(r.created_at.timestamp(), 1), ((r.killed_at or r.end_at).timestamp(), -1)]
    running = peak = 0
    for _, step in sorted(marks, key=lambda m: (m[0], m[1])):
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture
def limited_emulator(private_emulator: EmulatorHandle) -> AsyncIterator[EmulatorHandle]:
    private_emulator.set_limits(create_rate=RATE, max_running=MAX_RUNNING)
    yield private_emulator
    private_emulator.reset_limits()


async def test_many_sessions_at_once_stay_within_the_limits(
    temporal_client, limited_emulator: EmulatorHandle, reliability_ledger: Ledger
) -> None:
    emu = limited_emulator
    before = {r.sandbox_id for r in emu.records()}
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes = await _run_sessions(
        temporal_client,
        emu,
        reliability_ledger,
        TierLimits(create_rate=RATE, max_concurrent=MAX_RUNNING),
        SESSIONS,
        hold=2.5,  # long enough for the running limit to bind
    )
    elapsed = loop.time() - started
    new = [r for r in emu.records() if r.sandbox_id not in before]
    refused = refused_429(emu)
    per_second = max_in_window([r.created_at for r in new], 0.9)
    overlap = _max_overlap(emu, {r.sandbox_id for r in new})
    print(
        f"\nrate limits (limiter on, {RATE:g}/s, {MAX_RUNNING} running): sessions={SESSIONS} "
        f"finished={outcomes.count('finished')} creates={len(new)} refused_429={refused} "
        f"max_creates_in_0.9s={per_second} max_running={overlap} wall={elapsed:.1f}s"
    )
    assert outcomes == ["finished"] * SESSIONS
    assert len(new) == SESSIONS, "one sandbox per session"
    assert refused == 0, "the limiter kept every create within E2B's limits"
    assert per_second <= RATE
    assert overlap == MAX_RUNNING, "the running limit was reached, and held"
    assert emu.live_sandboxes() == []


async def test_without_the_limiter_the_429s_are_retried_and_nothing_fails(
    temporal_client, limited_emulator: EmulatorHandle, reliability_ledger: Ledger
) -> None:
    """The backstop for workers sharing one key: E2B's 429 is a retryable failure."""
    emu = limited_emulator
    outcomes = await _run_sessions(temporal_client, emu, reliability_ledger, TierLimits(), 5, 2.0)
    refused = refused_429(emu)
    print(f"\nrate limits (limiter off): sessions=5 refused_429={refused} outcomes={outcomes}")
    assert refused > 0, "without pacing, E2B refuses creates"
    assert outcomes == ["finished"] * 5
    assert emu.live_sandboxes() == []
