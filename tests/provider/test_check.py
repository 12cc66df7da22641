"""check() and terminate() of a sandbox lost behind the workflow's back: its end is the
provider's record (E2B's lifecycle events), read through the real SDK from the emulator."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from e2b import AsyncSandbox
from temporalio.testing import ActivityEnvironment

from activities.sandbox import CHECK, SandboxActivities
from common.settings import ProviderSettings
from emulator.records import SandboxRecord
from emulator.testing import EmulatorHandle
from provider import (
    CheckInput,
    CheckResult,
    E2BSandboxProvider,
    PauseInput,
    PoolConfig,
    ProvisionInput,
    SandboxNotOwned,
    SandboxRef,
    TerminateInput,
)
from tests.fixtures.provider import ORG, Sandboxes, make_provider, ref_of

CLOSE = timedelta(milliseconds=50)


async def _killed(emu: EmulatorHandle, sandbox_id: str, timeout: float = 5.0) -> SandboxRecord:
    deadline = time.monotonic() + timeout
    while (record := emu.record(sandbox_id)).state != "killed":
        assert time.monotonic() < deadline, "the sandbox was not killed in time"
        await asyncio.sleep(0.05)
    return record


def _ended(result: CheckResult, record: SandboxRecord) -> None:
    """Gone, with the end the emulator recorded (not the moment of the check)."""
    assert (result.alive, result.state, result.end_confirmed) == (False, "gone", True)
    assert result.ended_at is not None and record.killed_at is not None
    assert abs(result.ended_at - record.killed_at) < CLOSE
    assert result.ended_at == record.killed_at  # to the microsecond, in fact
    assert result.checked_at > result.ended_at


async def test_a_running_then_paused_sandbox_is_alive(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    ref = ref_of(await sandboxes.provision())
    before = datetime.now(UTC)
    running = await provider.check(CheckInput(ref=ref))
    assert (running.alive, running.state, running.ended_at) == (True, "running", None)
    assert before <= running.checked_at <= datetime.now(UTC)

    await provider.pause(PauseInput(ref=ref))
    paused = await provider.check(CheckInput(ref=ref))
    assert (paused.alive, paused.state, paused.ended_at) == (True, "paused", None)
    # Asking never resumes (nor bills) it.
    assert emulator_faults.record(ref.sandbox_id).state == "paused"


async def test_a_sandbox_killed_by_its_timeout_ends_at_its_record(
    emulator_faults: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Created to die at its timeout (`E2B_ON_TIMEOUT=kill`; by default E2B would pause it).
    monkeypatch.setenv("E2B_ON_TIMEOUT", "kill")
    provider = make_provider(emulator_faults, settings=ProviderSettings.load())
    sandboxes = Sandboxes(provider)
    ref = ref_of(await sandboxes.provision())
    # E2B ends a sandbox nobody extends: shorten its lifetime as its limit would.
    await AsyncSandbox.set_timeout(ref.sandbox_id, 1, **_sdk(emulator_faults))
    record = await _killed(emulator_faults, ref.sandbox_id)
    assert record.transitions[-1].reason == "timeout"
    await asyncio.sleep(0.3)  # found later than it died: billed to its death, not to now
    _ended(await provider.check(CheckInput(ref=ref)), record)
    assert await provider.sandbox_end(ORG, ref.sandbox_id) == record.killed_at


async def test_a_sandbox_killed_by_an_incident_ends_at_its_record(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    ref = ref_of(await sandboxes.provision())
    await provider.pause(PauseInput(ref=ref))
    await emulator_faults.kill_http(ref.sandbox_id)  # the admin API: out of band
    record = emulator_faults.record(ref.sandbox_id)
    assert record.transitions[-1].reason == "incident"
    _ended(await provider.check(CheckInput(ref=ref)), record)


async def test_without_the_provider_s_record_the_end_is_unconfirmed(
    sandboxes: Sandboxes,
    provider: E2BSandboxProvider,
    emulator_faults: EmulatorHandle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ref = ref_of(await sandboxes.provision())
    await emulator_faults.kill(ref.sandbox_id)
    # An API without the events route answers 404 there: no record, no error.
    emulator_faults.fail_next("events", status=404)
    gone = await provider.check(CheckInput(ref=ref))
    assert (gone.alive, gone.state, gone.ended_at, gone.end_confirmed) == (
        False,
        "gone",
        None,
        False,
    )
    # A failure reading the events leaves the end unconfirmed: one line, never an error.
    emulator_faults.fail_next("events", status=500, should_retry=False)
    with caplog.at_level(logging.WARNING, logger="provider.e2b"):
        failed = await provider.check(CheckInput(ref=ref))
    assert (failed.state, failed.ended_at, failed.end_confirmed) == ("gone", None, False)
    lines = [r.getMessage() for r in caplog.records if r.name == "provider.e2b"]
    assert len(lines) == 1 and "unconfirmed" in lines[0] and ref.sandbox_id in lines[0]
    assert emulator_faults.api_key not in caplog.text
    # A sandbox E2B never had has no end on record either.
    never = SandboxRef(org_id=ORG, sandbox_id="inosuchsandbox0000000")
    unknown = await provider.check(CheckInput(ref=never))
    assert (unknown.state, unknown.ended_at, unknown.end_confirmed) == ("gone", None, False)
    # Once the events answer again, the end is known.
    record = emulator_faults.record(ref.sandbox_id)
    _ended(await provider.check(CheckInput(ref=ref)), record)


async def test_another_session_s_sandbox_is_not_checked(
    sandboxes: Sandboxes, provider: E2BSandboxProvider
) -> None:
    inp = ProvisionInput(
        session_id="check-owner", owner="run-1", org_id=ORG, pool=PoolConfig(timeoutSeconds=120)
    )
    result = await sandboxes.provision(inp)
    mine = SandboxRef(
        org_id=ORG, sandbox_id=result.handle.sandbox_id, session_id="check-owner", owner="run-1"
    )
    assert (await provider.check(CheckInput(ref=mine))).alive
    theirs = mine.model_copy(update={"owner": "run-2"})
    with pytest.raises(SandboxNotOwned):
        await provider.check(CheckInput(ref=theirs))


async def test_terminate_of_a_sandbox_already_gone_returns_its_recorded_end(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    ref = ref_of(await sandboxes.provision())
    await emulator_faults.kill_http(ref.sandbox_id)
    record = emulator_faults.record(ref.sandbox_id)
    await asyncio.sleep(0.3)
    late = await provider.terminate(TerminateInput(ref=ref))
    assert late.already_gone and late.end_confirmed
    assert late.terminated_at == record.killed_at  # not the moment terminate noticed

    # A retried terminate (the first kill went through) bills to that kill, not the retry.
    other = ref_of(await sandboxes.provision())
    first = await provider.terminate(TerminateInput(ref=other))
    assert not first.already_gone and first.end_confirmed
    retried = await provider.terminate(TerminateInput(ref=other))
    assert retried.already_gone and retried.end_confirmed
    killed_at = emulator_faults.record(other.sandbox_id).killed_at
    assert retried.terminated_at == killed_at and killed_at <= first.terminated_at

    # Without the provider's record: now, and said to be unconfirmed.
    emulator_faults.fail_next("events", status=404)
    before = datetime.now(UTC)
    blind = await provider.terminate(TerminateInput(ref=other))
    assert blind.already_gone and not blind.end_confirmed
    assert before <= blind.terminated_at <= datetime.now(UTC)


async def test_sandbox_end_is_none_while_alive(
    sandboxes: Sandboxes, provider: E2BSandboxProvider
) -> None:
    ref = ref_of(await sandboxes.provision())
    assert await provider.sandbox_end(ORG, ref.sandbox_id) is None
    await provider.terminate(TerminateInput(ref=ref))
    assert await provider.sandbox_end(ORG, ref.sandbox_id) is not None


async def test_the_check_activity_answers_gone_as_a_result(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    ref = ref_of(await sandboxes.provision())
    acts = SandboxActivities(provider)
    alive = await ActivityEnvironment().run(acts.check_sandbox, CheckInput(ref=ref))
    assert alive.alive and alive.state == "running"
    await emulator_faults.kill(ref.sandbox_id)
    gone = await ActivityEnvironment().run(acts.check_sandbox, CheckInput(ref=ref))
    _ended(gone, emulator_faults.record(ref.sandbox_id))


def test_the_check_options() -> None:
    assert CHECK["start_to_close_timeout"] == timedelta(seconds=30)
    assert CHECK["schedule_to_close_timeout"] == timedelta(minutes=5)
    retry = CHECK["retry_policy"]
    assert retry is not None and retry.maximum_interval == timedelta(seconds=10)
    assert {"SandboxNotOwned", "ProviderAuthError"} <= set(retry.non_retryable_error_types or [])


def _sdk(emu: EmulatorHandle) -> dict[str, str]:
    return {"api_key": emu.api_key, "api_url": emu.api_url, "sandbox_url": emu.sandbox_url}
