"""The provider reads E2B's real answers for what they are: a paused sandbox's 404, a sandbox
changing state (409), a concurrency 429 without Retry-After, a sandbox E2B paused on its own.

Against the emulator, which answers as E2B does (`emulator/README.md`), through the real SDK.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from e2b import AsyncSandbox

from common.settings import ProviderSettings
from emulator.testing import EmulatorHandle
from provider import (
    CheckInput,
    ExecInput,
    KeepAliveInput,
    PauseInput,
    ResumeInput,
    SandboxRef,
    TerminateInput,
)
from provider.errors import InvalidRequest, RateLimited, SandboxGone, SandboxPaused
from tests.fixtures.provider import ORG, Sandboxes, make_provider, ref_of


async def _auto_paused(emu: EmulatorHandle, sandbox_id: str) -> datetime:
    """Let E2B's timeout run out (as when every worker is down) and wait for its pause."""
    await AsyncSandbox.set_timeout(
        sandbox_id, 1, api_key=emu.api_key, api_url=emu.api_url, retries=0
    )
    for _ in range(100):
        record = emu.record(sandbox_id)
        paused = [t for t in record.transitions if t.event == "paused"]
        if paused and record.state == "paused":
            assert paused[-1].reason == "timeout"
            return paused[-1].at
        await asyncio.sleep(0.05)
    raise AssertionError("the emulator did not pause the sandbox at its timeout")


async def test_sandboxes_are_created_to_pause_not_die_when_nobody_extends_them(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    created = await sandboxes.provision()
    record = emulator_faults.record(created.handle.sandbox_id)
    assert record.auto_pause is True
    info = await AsyncSandbox.get_info(
        created.handle.sandbox_id, api_key=emulator_faults.api_key, api_url=emulator_faults.api_url
    )
    assert info.lifecycle is not None and info.lifecycle["on_timeout"] == "pause"


async def test_e2b_on_timeout_kill_creates_sandboxes_that_die_at_their_timeout(
    emulator_faults: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2B_ON_TIMEOUT", "kill")
    tracker = Sandboxes(make_provider(emulator_faults, settings=ProviderSettings.load()))
    created = await tracker.provision()
    try:
        assert emulator_faults.record(created.handle.sandbox_id).auto_pause is False
    finally:
        await tracker.provider.terminate(TerminateInput(ref=ref_of(created)))


async def test_a_keep_alive_reads_a_sandbox_e2b_paused_as_paused_not_gone(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    created = await sandboxes.provision()
    paused_at = await _auto_paused(emulator_faults, created.handle.sandbox_id)
    # E2B answers 404 to a paused sandbox's set_timeout: the provider asks before believing it.
    result = await sandboxes.provider.keep_alive(
        KeepAliveInput(ref=ref_of(created), timeout_seconds=60)
    )
    assert result.state == "paused"
    assert result.paused_at == paused_at  # E2B's lifecycle record, to the microsecond
    # Nothing was resumed or extended behind the session's back.
    assert emulator_faults.record(created.handle.sandbox_id).state == "paused"


async def test_a_check_gives_the_time_e2b_paused_the_sandbox(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    created = await sandboxes.provision()
    paused_at = await _auto_paused(emulator_faults, created.handle.sandbox_id)
    result = await sandboxes.provider.check(CheckInput(ref=ref_of(created)))
    assert (result.alive, result.state, result.paused_at) == (True, "paused", paused_at)


async def test_pausing_a_sandbox_e2b_already_paused_bills_from_e2b_s_pause(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    created = await sandboxes.provision()
    paused_at = await _auto_paused(emulator_faults, created.handle.sandbox_id)
    await asyncio.sleep(0.3)
    result = await sandboxes.provider.pause(PauseInput(ref=ref_of(created)))
    assert result.already_paused is True
    assert result.paused_at == paused_at  # not the moment the session asked


async def test_a_command_on_a_sandbox_e2b_paused_is_refused_as_paused_and_resumes_nothing(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    created = await sandboxes.provision()
    await _auto_paused(emulator_faults, created.handle.sandbox_id)
    with pytest.raises(SandboxPaused, match="paused"):
        await sandboxes.provider.exec_command(ExecInput(ref=ref_of(created), command="true"))
    assert emulator_faults.record(created.handle.sandbox_id).state == "paused"
    # The session resumes it; then commands run again, files and memory kept.
    await sandboxes.provider.resume(ResumeInput(ref=ref_of(created), timeout_seconds=60))
    out = await sandboxes.exec(ref_of(created), "echo back")
    assert out.stdout == "back\n"


async def test_a_keep_alive_of_a_killed_sandbox_is_still_gone(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    created = await sandboxes.provision()
    await emulator_faults.kill(created.handle.sandbox_id)
    with pytest.raises(SandboxGone):
        await sandboxes.provider.keep_alive(KeepAliveInput(ref=ref_of(created), timeout_seconds=60))


async def test_a_keep_alive_never_reaches_another_session_s_paused_sandbox(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    """The paused path reads the sandbox's metadata, so it checks the owner like the others."""
    owned = sandboxes.input(session_id="owner-a")
    owned = owned.model_copy(update={"owner": "run-a"})
    created = await sandboxes.provision(owned)
    await _auto_paused(emulator_faults, created.handle.sandbox_id)
    stranger = SandboxRef(
        org_id=ORG, sandbox_id=created.handle.sandbox_id, session_id="owner-b", owner="run-b"
    )
    with pytest.raises(Exception, match="belongs to another session"):
        await sandboxes.provider.keep_alive(KeepAliveInput(ref=stranger, timeout_seconds=60))


async def test_the_concurrency_429_without_retry_after_is_retried_after_a_second(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    first = await sandboxes.provision()
    running = len([r for r in emulator_faults.records() if r.state == "running"])
    emulator_faults.set_limits(max_running=running)
    with pytest.raises(RateLimited) as caught:
        await sandboxes.provision()
    assert caught.value.retryable and caught.value.retry_after == 1.0
    assert "running" in str(caught.value) or "concurrent" in str(caught.value)
    assert first.handle.sandbox_id


async def test_an_endpoint_the_emulator_lacks_is_a_clear_refusal_not_a_lost_sandbox(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    """501 (not implemented) must never read as 404 (sandbox gone): the session would end."""
    from provider._e2b_errors import mapped

    created = await sandboxes.provision()
    with pytest.raises(InvalidRequest, match="not implement"):
        with mapped("read metrics"):
            await AsyncSandbox.get_metrics(
                created.handle.sandbox_id,
                api_key=emulator_faults.api_key,
                api_url=emulator_faults.api_url,
            )
    assert emulator_faults.record(created.handle.sandbox_id).state == "running"


def _now() -> datetime:
    return datetime.now(UTC)


async def test_the_keep_alive_gives_no_run_end_when_nothing_caps_it(
    sandboxes: Sandboxes,
) -> None:
    created = await sandboxes.provision()
    result = await sandboxes.provider.keep_alive(
        KeepAliveInput(ref=ref_of(created), timeout_seconds=60)
    )
    assert result.state == "running" and result.run_ends_at is None
    assert abs(result.expires_at - (_now() + timedelta(seconds=60))) < timedelta(seconds=5)
