"""E2B's real limits, end to end: a sandbox E2B paused on its own (every worker down longer
than its timeout) is billed paused and taken back, and a session outlives E2B's maximum
lifetime by rolling its sandbox over (pause, resume), billed exactly.

Real dev server, real provider and SDK, the emulator answering as E2B does; the emulator's
clock is the wall clock, so these run in real time (seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from e2b import AsyncSandbox
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from common.failures import describe_failure
from common.settings import ProviderSettings
from emulator import DEMO_TEMPLATES
from emulator.testing import EmulatorHandle, running_emulator
from ledger import Ledger
from provider import E2BSandboxProvider, StaticCredentialSource
from provider.limits import TierLimits
from provider.models import PoolConfig
from tests.fixtures.stack import (
    Stack,
    save_history,
    serve_stack,
    state_is,
    wait_for,
)
from worker import build_worker
from workflows import ExecRequest, SandboxSession

SECOND = timedelta(seconds=1)


async def _auto_paused(emu: EmulatorHandle, sandbox_id: str) -> datetime:
    """Let the sandbox's timeout run out, as when no keep-alive reaches it; E2B pauses it."""
    await AsyncSandbox.set_timeout(
        sandbox_id, 1, api_key=emu.api_key, api_url=emu.api_url, retries=0
    )
    for _ in range(100):
        record = emu.record(sandbox_id)
        if record.state == "paused":
            paused = [t for t in record.transitions if t.event == "paused"]
            assert paused[-1].reason == "timeout"
            return paused[-1].at
        await asyncio.sleep(0.05)
    raise AssertionError("the emulator did not pause the sandbox at its timeout")


def _resumed_after(emu: EmulatorHandle, sandbox_id: str, moment: datetime) -> datetime:
    record = emu.record(sandbox_id)
    return next(t.at for t in record.transitions if t.event == "resumed" and t.at > moment)


async def test_a_sandbox_e2b_paused_while_every_worker_was_down_is_billed_paused_and_resumed(
    temporal_env: WorkflowEnvironment, emulator_faults: EmulatorHandle, ledger: Ledger
) -> None:
    emu = emulator_faults
    queue = f"tq-{uuid.uuid4()}"
    async with serve_stack(temporal_env.client, emu, ledger, task_queue=queue) as stack:
        handle = await stack.start(
            pool=PoolConfig(templateId="base", timeoutSeconds=30), keep_alive_interval_seconds=1
        )
        status = await wait_for(handle, state_is("running"))
        sandbox_id = status.sandbox_id or ""
        await handle.execute_update(
            SandboxSession.exec, ExecRequest(command="echo kept > /tmp/kept")
        )
    # Every worker is down: nobody extends the sandbox, its timeout runs out, E2B pauses it.
    paused_at = await _auto_paused(emu, sandbox_id)
    await asyncio.sleep(1.0)
    async with serve_stack(temporal_env.client, emu, ledger, task_queue=queue):
        status = await wait_for(
            handle,
            lambda s: s.state == "running" and any(g.state == "paused" for g in s.segments),
            timeout=30,
            what="the session to take its paused sandbox back",
        )
        paused = [g for g in status.segments if g.state == "paused"]
        assert len(paused) == 1
        # Billed paused from E2B's own pause, to the microsecond, not from when it was found.
        assert paused[0].start == paused_at
        resumed = _resumed_after(emu, sandbox_id, paused_at)
        assert paused[0].end is not None and abs(paused[0].end - resumed) < SECOND
        # Memory and files kept: the same sandbox, running again.
        assert status.sandbox_id == sandbox_id and emu.record(sandbox_id).state == "running"
        out = await handle.execute_update(SandboxSession.exec, ExecRequest(command="cat /tmp/kept"))
        assert out.stdout == "kept\n"
        await handle.signal("finish", {})
        result = await handle.result()
        await save_history(handle, "found_paused_by_e2b")
    record = emu.record(sandbox_id)
    assert record.state == "killed"
    cost = result.cost
    assert cost is not None
    # The ledger's account agrees with what E2B would bill, paused time at $0.
    assert abs(cost.paused_seconds - record.paused_seconds) < 1.0
    assert abs(cost.running_seconds - record.running_seconds) < 1.0
    assert cost.paused_seconds >= 0.9


async def test_a_command_on_a_sandbox_e2b_paused_says_so_and_the_session_takes_it_back(
    temporal_env: WorkflowEnvironment, emulator_faults: EmulatorHandle, ledger: Ledger
) -> None:
    emu = emulator_faults
    async with serve_stack(temporal_env.client, emu, ledger) as stack:
        # A keep-alive an hour away: the exec is what finds the sandbox paused.
        handle = await stack.start(
            pool=PoolConfig(templateId="base", timeoutSeconds=3600),
            keep_alive_interval_seconds=3600,
        )
        status = await wait_for(handle, state_is("running"))
        sandbox_id = status.sandbox_id or ""
        paused_at = await _auto_paused(emu, sandbox_id)
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await handle.execute_update(SandboxSession.exec, ExecRequest(command="true"))
        cause = caught.value.cause
        assert cause is not None
        assert describe_failure(cause).startswith("SandboxPaused: sandbox ")
        assert "the session resumes it" in describe_failure(cause)
        status = await wait_for(
            handle,
            lambda s: s.state == "running" and any(g.state == "paused" for g in s.segments),
            timeout=30,
            what="the session to resume the sandbox E2B paused",
        )
        assert [g.start for g in status.segments if g.state == "paused"] == [paused_at]
        out = await handle.execute_update(SandboxSession.exec, ExecRequest(command="echo again"))
        assert out.stdout == "again\n"
        await handle.signal("finish", {})
        result = await handle.result()
    assert result.outcome == "finished"


async def test_a_finish_requested_while_every_worker_was_down_bills_e2b_s_pause_as_paused(
    temporal_env: WorkflowEnvironment, emulator_faults: EmulatorHandle, ledger: Ledger
) -> None:
    """The workers are down longer than the sandbox's timeout (30 s, the least a pool allows):
    E2B pauses it; the platform finishes the session meanwhile. The session, which never got
    to a keep-alive, asks once before the kill and bills the pause as paused."""
    emu = emulator_faults
    queue = f"tq-{uuid.uuid4()}"
    async with serve_stack(temporal_env.client, emu, ledger, task_queue=queue) as stack:
        handle = await stack.start(
            pool=PoolConfig(templateId="base", timeoutSeconds=30), keep_alive_interval_seconds=10
        )
        sandbox_id = (await wait_for(handle, state_is("running"))).sandbox_id or ""
    for _ in range(400):  # its own timeout runs out, nobody extending it
        if emu.record(sandbox_id).state == "paused":
            break
        await asyncio.sleep(0.1)
    record = emu.record(sandbox_id)
    assert record.state == "paused" and record.transitions[-1].reason == "timeout"
    paused_at = record.transitions[-1].at
    await handle.signal("finish", {})  # the platform ends the session meanwhile
    await asyncio.sleep(1.0)
    async with serve_stack(temporal_env.client, emu, ledger, task_queue=queue):
        result = await handle.result()
    record = emu.record(sandbox_id)
    killed = record.killed_at
    assert killed is not None
    assert [t.event for t in record.transitions] == ["created", "paused", "killed"]
    assert result.cost is not None
    # Paused from E2B's pause to the kill: nothing of it billed as running.
    assert abs(result.cost.paused_seconds - (killed - paused_at).total_seconds()) < 0.5
    assert abs(result.cost.running_seconds - record.running_seconds) < 0.5
    assert result.cost.paused_seconds >= 1.0


# ---------------------------------------------------------------------------- the rollover

LIFETIME = 5
"""The strict emulator's maximum lifetime for these tests (E2B: 3600 s Hobby, 86400 s Pro)."""


@contextlib.asynccontextmanager
async def _capped(
    env: WorkflowEnvironment, ledger: Ledger, *, on_timeout: str = "pause"
) -> AsyncIterator[tuple[Stack, EmulatorHandle]]:
    """An emulator whose sandboxes live at most LIFETIME seconds a run, and a worker whose
    provider knows it (as `E2B_MAX_LIFETIME` would tell it)."""
    async with running_emulator(
        templates_file=DEMO_TEMPLATES, api_key="e2b_test_lifetime", **_lifetime_options(LIFETIME)
    ) as emu:
        provider = E2BSandboxProvider(
            credentials=StaticCredentialSource(emu.api_key),
            api_url=emu.api_url,
            sandbox_url=emu.sandbox_url,
            limits=TierLimits(max_lifetime_seconds=LIFETIME),
            settings=ProviderSettings.model_validate({"E2B_ON_TIMEOUT": on_timeout}),
        )
        queue = f"tq-{uuid.uuid4()}"
        async with build_worker(env.client, task_queue=queue, provider=provider, ledger=ledger):
            yield Stack(client=env.client, task_queue=queue, ledger=ledger, emulator=emu), emu
        assert emu.live_sandboxes() == []


@pytest_asyncio.fixture
async def capped(
    temporal_env: WorkflowEnvironment, ledger: Ledger
) -> AsyncIterator[tuple[Stack, EmulatorHandle]]:
    async with _capped(temporal_env, ledger) as pair:
        yield pair


def _lifetime_options(seconds: int) -> dict[str, Any]:
    # E2B's Pro tier with a short lifetime, and pauses of 0.1 s rather than 2 s.
    return {
        "tier": "pro",
        "max_lifetime": seconds,
        "pause_seconds_per_gib": 0.2,
        "resume_seconds": 0.1,
    }


async def test_a_session_outlives_e2b_s_maximum_lifetime_by_rolling_its_sandbox_over(
    capped: tuple[Stack, EmulatorHandle],
) -> None:
    stack, emu = capped
    handle = await stack.start(
        pool=PoolConfig(templateId="base", timeoutSeconds=30),  # shortened to the cap
        keep_alive_interval_seconds=1,
        lifetime_rollover_seconds=2,
    )
    status = await wait_for(handle, state_is("running"))
    sandbox_id = status.sandbox_id or ""
    # A process and a file that must survive: the same sandbox, memory and all.
    await handle.execute_update(
        SandboxSession.exec,
        ExecRequest(command="echo kept > /tmp/kept; nohup sleep 6001 >/dev/null 2>&1 & echo $!"),
    )
    created = emu.record(sandbox_id).created_at
    # Two rollovers (about 3 s apart with these figures), and the sandbox older than a lifetime.
    status = await wait_for(
        handle,
        lambda s: (
            s.state == "running"  # not in the middle of a rollover's pause and resume
            and s.rollovers >= 2
            and datetime.now(UTC) - created > timedelta(seconds=LIFETIME + 1)
        ),
        timeout=4 * LIFETIME,
        what="two rollovers past E2B's maximum lifetime",
    )
    assert status.state == "running" and status.sandbox_id == sandbox_id
    assert status.rollovers >= 2
    assert status.run_ends_at is not None
    out = await handle.execute_update(
        SandboxSession.exec, ExecRequest(command="cat /tmp/kept; pgrep -c -f 'sleep 6001'")
    )
    assert out.stdout == "kept\n1\n"
    record = emu.record(sandbox_id)
    runs = [t for t in record.transitions if t.event in ("created", "resumed")]
    # No run ever reached the cap: each ended in a pause before it.
    pauses = [t for t in record.transitions if t.event == "paused"]
    assert len(pauses) == len(runs) - 1  # every run but the current one ended in a pause
    for start, pause in zip(runs, pauses, strict=False):
        assert pause.reason == "api"
        assert (pause.at - start.at).total_seconds() < LIFETIME
    await handle.signal("finish", {})
    result = await handle.result()
    await save_history(handle, "lifetime_rollover")
    record = emu.record(sandbox_id)
    assert result.cost is not None
    assert abs(result.cost.running_seconds - record.running_seconds) < 1.0
    assert abs(result.cost.paused_seconds - record.paused_seconds) < 1.0


async def test_without_rollover_a_sandbox_created_to_die_is_lost_at_the_cap(
    temporal_env: WorkflowEnvironment, ledger: Ledger
) -> None:
    """The cap is real: with rollover off and `E2B_ON_TIMEOUT=kill`, E2B kills the sandbox at
    its maximum lifetime whatever the keep-alives ask, and the session ends `lost`."""
    async with _capped(temporal_env, ledger, on_timeout="kill") as (stack, emu):
        handle = await stack.start(
            pool=PoolConfig(templateId="base", timeoutSeconds=30),
            keep_alive_interval_seconds=1,
            lifetime_rollover_seconds=None,
        )
        sandbox_id = (await wait_for(handle, state_is("running"))).sandbox_id or ""
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(handle.result(), 4 * LIFETIME)
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "SandboxLost"
        assert "was lost while the session was running" in str(cause)
        record = emu.record(sandbox_id)
        assert record.state == "killed" and record.transitions[-1].reason == "timeout"
        lived = (record.transitions[-1].at - record.created_at).total_seconds()
        assert LIFETIME - 0.5 <= lived <= LIFETIME + 1.0


async def test_without_rollover_the_safety_net_pauses_at_the_cap_and_the_session_resumes(
    capped: tuple[Stack, EmulatorHandle],
) -> None:
    """With rollover off, E2B pauses the sandbox at the cap (`on_timeout: pause`): the session
    bills the gap paused and resumes it, so even then the sandbox survives."""
    stack, emu = capped
    handle = await stack.start(
        pool=PoolConfig(templateId="base", timeoutSeconds=30),
        keep_alive_interval_seconds=1,
        lifetime_rollover_seconds=None,
    )
    sandbox_id = (await wait_for(handle, state_is("running"))).sandbox_id or ""
    status = await wait_for(
        handle,
        lambda s: s.state == "running" and any(g.state == "paused" for g in s.segments),
        timeout=4 * LIFETIME,
        what="the paused-at-the-cap sandbox taken back",
    )
    assert status.sandbox_id == sandbox_id and status.rollovers == 0
    record = emu.record(sandbox_id)
    paused = next(t for t in record.transitions if t.event == "paused")
    assert paused.reason == "timeout"
    assert [g.start for g in status.segments if g.state == "paused"][0] == paused.at
    await handle.signal("finish", {})
    result = await handle.result()
    assert result.outcome == "finished"
