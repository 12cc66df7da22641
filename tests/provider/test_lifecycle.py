"""Provision, pause, resume, keep-alive and terminate against the emulator, via the real SDK."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

import pytest

from emulator.testing import EmulatorHandle
from provider import (
    E2BSandboxProvider,
    InvalidRequest,
    KeepAliveInput,
    PauseInput,
    ResumeInput,
    SandboxGone,
    SandboxPaused,
    SandboxRef,
    TerminateInput,
    session_idempotency_key,
)
from provider._runner import RUNNER_LOG, RUNNER_PID_FILE
from tests.fixtures.provider import ORG, Sandboxes, eventually, make_provider, ref_of


async def test_provision_twice_creates_one_sandbox(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    inp = sandboxes.input(templateId="demo-runner")
    first = await sandboxes.provision(inp)
    again = await sandboxes.provision(inp)  # a retried activity

    assert again.handle.sandbox_id == first.handle.sandbox_id
    mine = [r for r in emulator_faults.records() if r.metadata.get("session_id") == inp.session_id]
    assert len(mine) == 1
    record = mine[0]
    assert record.template_id == "demo-runner"
    assert record.metadata == {
        "session_id": inp.session_id,
        "org_id": ORG,
        "issue_id": "ISSUE-1",
        "managed-by": "session-worker",
    }
    # Billing starts at the provider-confirmed start, the same on every attempt.
    assert first.handle.started_at == record.created_at == again.handle.started_at
    assert first.handle.template_id == "demo-runner" and first.runner is None
    assert not first.from_snapshot
    assert abs((record.end_at - record.created_at).total_seconds() - 120) < 1


def test_idempotency_key_is_valid_and_distinct_per_session() -> None:
    ids = ["abc-123", "ABC-123", "abc_123", "x" * 300, "é", "ses/1", "Ses/1"]
    keys = [session_idempotency_key(i) for i in ids]
    for key in keys:
        assert 1 <= len(key) <= 255 and all(
            c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in key
        )
    assert len(set(keys)) == len(ids)
    assert session_idempotency_key("abc-123") == "session-abc-123"
    assert session_idempotency_key("ABC-123") == session_idempotency_key("ABC-123")


async def test_inline_runner_keeps_running_and_is_launched_once(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    inp = sandboxes.input(templateId="donmai-worker", launchRunnerInline=True)
    result = await sandboxes.provision(inp)
    ref = ref_of(result)
    runner = result.runner
    assert runner is not None and runner.pid is not None
    assert runner.command == "donmai agent run" and runner.log_path == RUNNER_LOG

    # The provider that launched it is gone; the runner is not.
    del sandboxes.provider
    gc.collect()
    other = make_provider(emulator_faults)
    sandboxes.provider = other
    check = await sandboxes.exec(ref, f"sleep 0.3; kill -0 {runner.pid} && cat {RUNNER_PID_FILE}")
    assert check.exit_code == 0 and check.stdout.strip() == str(runner.pid)

    retried = await sandboxes.provision(inp)
    assert retried.handle.sandbox_id == ref.sandbox_id
    assert retried.runner is not None and retried.runner.pid == runner.pid
    count = await sandboxes.exec(ref, "ps -eo args | grep -c '[d]onmai agent run'")
    assert count.stdout.strip() == "1"

    async def logged() -> bool:
        log = await sandboxes.exec(ref, f"cat {RUNNER_LOG}")
        return "donmai agent started" in log.stdout

    await eventually(logged)


async def test_failing_runner_launch_is_invalid_and_kills_the_sandbox(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    inp = sandboxes.input(launchRunnerInline=True)
    # /tmp/donmai-runner.pid cannot be written when it is a directory.
    original = sandboxes.provider._launch_runner  # type: ignore[attr-defined]

    async def launch_into_a_broken_tmp(org_id, sandbox, command, **kw):  # type: ignore[no-untyped-def]
        await sandbox.commands.run(f"mkdir -p {RUNNER_PID_FILE}")
        return await original(org_id, sandbox, command, **kw)

    sandboxes.provider._launch_runner = launch_into_a_broken_tmp  # type: ignore[attr-defined,method-assign]
    with pytest.raises(InvalidRequest, match="runner launch .* exited"):
        await sandboxes.provision(inp)
    mine = [r for r in emulator_faults.records() if r.metadata.get("session_id") == inp.session_id]
    assert [r.state for r in mine] == ["killed"]


async def test_pause_resume_keeps_process_and_file(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    ref = ref_of(await sandboxes.provision())
    bg = await sandboxes.exec(
        ref, "echo kept > /home/user/note.txt; nohup sleep 600 >/dev/null 2>&1 & echo $!"
    )
    assert bg.exit_code == 0 and bg.stdout.strip().isdigit()

    before = datetime.now(UTC)
    paused = await provider.pause(PauseInput(ref=ref))
    assert not paused.already_paused and before <= paused.paused_at <= datetime.now(UTC)
    assert emulator_faults.record(ref.sandbox_id).state == "paused"
    again = await provider.pause(PauseInput(ref=ref))
    assert again.already_paused

    # A command must not silently resume (and bill) a paused sandbox.
    with pytest.raises(SandboxPaused, match="paused"):
        await sandboxes.exec(ref, "true")
    assert emulator_faults.record(ref.sandbox_id).state == "paused"

    resumed = await provider.resume(ResumeInput(ref=ref, timeout_seconds=600))
    record = emulator_faults.record(ref.sandbox_id)
    assert record.state == "running"
    # The timeout is always passed: not E2B's 5-minute default for a resumed sandbox.
    assert abs((record.end_at - resumed.resumed_at).total_seconds() - 600) < 2
    out = await sandboxes.exec(ref, f"kill -0 {bg.stdout.strip()} && cat /home/user/note.txt")
    assert (out.exit_code, out.stdout) == (0, "kept\n")

    await provider.resume(ResumeInput(ref=ref, timeout_seconds=600))  # running: fine
    assert emulator_faults.record(ref.sandbox_id).state == "running"


async def test_keep_alive_returns_the_new_expiry(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    ref = ref_of(await sandboxes.provision())
    result = await provider.keep_alive(KeepAliveInput(ref=ref, timeout_seconds=1800))
    record = emulator_faults.record(ref.sandbox_id)
    assert result.expires_at == record.end_at
    assert abs(result.expires_at - (datetime.now(UTC) + timedelta(seconds=1800))) < timedelta(
        seconds=5
    )


async def test_terminate_is_idempotent_and_a_dead_sandbox_is_gone(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    ref = ref_of(await sandboxes.provision())
    first = await provider.terminate(TerminateInput(ref=ref))
    assert not first.already_gone
    assert emulator_faults.record(ref.sandbox_id).state == "killed"
    second = await provider.terminate(TerminateInput(ref=ref))
    # Already gone: it ended at the provider's record of the first kill, not at the retry.
    assert second.already_gone and second.end_confirmed
    assert second.terminated_at == emulator_faults.record(ref.sandbox_id).killed_at
    assert second.terminated_at <= first.terminated_at

    calls = [
        provider.pause(PauseInput(ref=ref)),
        provider.resume(ResumeInput(ref=ref)),
        provider.keep_alive(KeepAliveInput(ref=ref)),
        sandboxes.exec(ref, "true"),
    ]
    for call in calls:
        with pytest.raises(SandboxGone) as info:
            await call
        assert not info.value.retryable and ref.sandbox_id in str(info.value)

    never = SandboxRef(org_id=ORG, sandbox_id="inosuchsandbox0000000")
    with pytest.raises(SandboxGone):
        await provider.pause(PauseInput(ref=never))
    assert (await provider.terminate(TerminateInput(ref=never))).already_gone


async def test_snapshot_pool_resumes_the_paused_sandbox(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    golden = ref_of(await sandboxes.provision())
    await sandboxes.exec(golden, "echo warmed > /home/user/cache.txt")
    await provider.pause(PauseInput(ref=golden))

    result = await sandboxes.provision(snapshotId=golden.sandbox_id, timeoutSeconds=900)
    assert result.from_snapshot and result.handle.sandbox_id == golden.sandbox_id
    record = emulator_faults.record(golden.sandbox_id)
    assert record.state == "running"
    assert abs((record.end_at - result.handle.started_at).total_seconds() - 900) < 2
    assert result.handle.started_at > record.created_at  # billed from the resume
    out = await sandboxes.exec(golden, "cat /home/user/cache.txt")
    assert out.stdout == "warmed\n"
    # Only the snapshot's sandbox exists for it: nothing new was created.
    assert sum(1 for r in emulator_faults.records() if r.sandbox_id == golden.sandbox_id) == 1


async def test_snapshot_that_does_not_exist_is_gone(sandboxes: Sandboxes) -> None:
    with pytest.raises(SandboxGone):
        await sandboxes.provision(snapshotId="inosuchsnapshot000000")
