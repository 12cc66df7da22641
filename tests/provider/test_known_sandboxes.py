"""A worker that created or resumed a session's sandbox talks to it directly: its commands
need no call to E2B's API (fewer round trips, nothing counted against E2B's rate limits),
and its resume no owner check, yet the shortcut never serves another session, never resumes
a sandbox paused behind the worker's back, and says when the sandbox is gone.

Against the emulator through the real SDK; an API outage injected on `get` and `connect`
proves which calls were not made.
"""

from __future__ import annotations

import uuid

import pytest

from emulator.testing import EmulatorHandle
from provider import ExecInput, PauseInput, ProvisionResult, ResumeInput, SandboxRef
from provider.errors import SandboxGone, SandboxNotOwned, SandboxPaused
from tests.fixtures.provider import ORG, Sandboxes, make_provider

OUTAGE = 10
"""More failures injected than the calls a test could make: any call to the API fails."""


async def _provision(sandboxes: Sandboxes, **change: str) -> tuple[ProvisionResult, SandboxRef]:
    """A sandbox and the session's own ref to it (as the workflow makes it)."""
    inp = sandboxes.input(session_id=change.pop("session_id", None))
    inp = inp.model_copy(update={"owner": change.pop("owner", "run-1")})
    created = await sandboxes.provision(inp)
    ref = SandboxRef(
        org_id=ORG,
        sandbox_id=created.handle.sandbox_id,
        session_id=inp.session_id,
        owner=created.handle.owner,
    )
    return created, ref


def _api_down(emu: EmulatorHandle) -> None:
    emu.fail_next("get", OUTAGE, 503, should_retry=False)
    emu.fail_next("connect", OUTAGE, 503, should_retry=False)


async def test_commands_and_resumes_in_sandboxes_this_worker_runs_need_no_api_call(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    _, ref = await _provision(sandboxes)
    _api_down(emulator_faults)
    out = await sandboxes.provider.exec_command(ExecInput(ref=ref, command="echo direct"))
    assert (out.exit_code, out.stdout) == (0, "direct\n")

    emulator_faults.reset_chaos()
    await sandboxes.provider.pause(PauseInput(ref=ref))
    emulator_faults.fail_next("get", OUTAGE, 503, should_retry=False)
    await sandboxes.provider.resume(ResumeInput(ref=ref, timeout_seconds=60))  # connect only
    emulator_faults.fail_next("connect", OUTAGE, 503, should_retry=False)
    out = await sandboxes.provider.exec_command(ExecInput(ref=ref, command="echo resumed"))
    assert out.stdout == "resumed\n"


async def test_another_worker_asks_e2b_first(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    """A worker that never saw the sandbox checks it (owner, state) before its command."""
    _, ref = await _provision(sandboxes)
    elsewhere = make_provider(emulator_faults)
    _api_down(emulator_faults)
    with pytest.raises(Exception, match="injected failure of get"):
        await elsewhere.exec_command(ExecInput(ref=ref, command="true"))
    emulator_faults.reset_chaos()
    out = await elsewhere.exec_command(ExecInput(ref=ref, command="echo checked"))
    assert out.stdout == "checked\n"


async def test_a_known_sandbox_never_serves_another_session(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    mine, theirs = f"owner-a-{uuid.uuid4().hex[:8]}", f"owner-b-{uuid.uuid4().hex[:8]}"
    created, ref = await _provision(sandboxes, session_id=mine, owner="run-a")
    victim = created.handle.sandbox_id
    await sandboxes.provider.exec_command(ExecInput(ref=ref, command="true"))
    # Same worker, same sandbox id, another session (or another run of the same session).
    for session_id, owner in ((theirs, "run-b"), (mine, "run-old")):
        stranger = SandboxRef(org_id=ORG, sandbox_id=victim, session_id=session_id, owner=owner)
        with pytest.raises(SandboxNotOwned, match="belongs to another session"):
            await sandboxes.provider.exec_command(
                ExecInput(ref=stranger, command="touch /tmp/reached")
            )
        with pytest.raises(SandboxNotOwned):
            await sandboxes.provider.resume(ResumeInput(ref=stranger, timeout_seconds=60))
    check = await sandboxes.provider.exec_command(
        ExecInput(ref=ref, command="test -e /tmp/reached")
    )
    assert check.exit_code == 1  # the stranger's command never ran


async def test_a_sandbox_paused_behind_the_worker_is_refused_not_resumed(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    _, ref = await _provision(sandboxes)
    await sandboxes.provider.exec_command(ExecInput(ref=ref, command="true"))
    await make_provider(emulator_faults).pause(PauseInput(ref=ref))  # by another worker
    with pytest.raises(SandboxPaused, match="paused"):
        await sandboxes.provider.exec_command(ExecInput(ref=ref, command="true"))
    assert emulator_faults.record(ref.sandbox_id).state == "paused"


async def test_a_sandbox_killed_behind_the_worker_is_gone(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    _, ref = await _provision(sandboxes)
    await sandboxes.provider.exec_command(ExecInput(ref=ref, command="true"))
    await emulator_faults.kill(ref.sandbox_id)
    with pytest.raises(SandboxGone):
        await sandboxes.provider.exec_command(ExecInput(ref=ref, command="true"))
