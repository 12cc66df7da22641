"""How the runner gets its session on E2B, against the emulator (which behaves as E2B does here).

A template's start command ran when E2B built the template; a sandbox created from it resumes
that snapshot, so the start command never sees the envs a session is created with. Commands
started after create do (envd's /init). So the runner is launched inline, after create, with the
session's env given to the launch itself: that also holds for a snapshot pool, whose sandbox was
created for someone else.
"""

from __future__ import annotations

import uuid
from typing import Any

from e2b import AsyncSandbox

from emulator.testing import EmulatorHandle
from provider import PoolConfig, ProvisionInput, SandboxRef
from tests.fixtures.provider import ORG, Sandboxes, ref_of


def _sdk(emulator: EmulatorHandle) -> dict[str, Any]:
    return {
        "api_key": emulator.api_key,
        "api_url": emulator.api_url,
        "sandbox_url": emulator.sandbox_url,
    }


def _session(template: str, session_id: str, **pool: Any) -> ProvisionInput:
    return ProvisionInput(
        session_id=session_id,
        org_id=ORG,
        pool=PoolConfig.model_validate({"templateId": template, "timeoutSeconds": 120, **pool}),
        env_vars={"DONMAI_SESSION_ID": session_id, "DONMAI_ORG": ORG},
    )


async def _environ(sandboxes: Sandboxes, ref: SandboxRef, pid: int) -> dict[str, str]:
    """A process's environment, as the sandbox's own /proc shows it."""
    out = await sandboxes.exec(ref, f"tr '\\0' '\\n' < /proc/{pid}/environ")
    assert out.exit_code == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


async def test_a_template_start_command_never_sees_the_session_env(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    session_id = f"s-{uuid.uuid4()}"
    result = await sandboxes.provision(_session("demo-runner", session_id))
    ref = ref_of(result)
    sandbox = await AsyncSandbox.connect(ref.sandbox_id, **_sdk(emulator_faults))
    [start] = [p for p in await sandbox.commands.list() if p.tag == "start_cmd"]

    started_at_build = await _environ(sandboxes, ref, start.pid)
    assert started_at_build["RUNNER_LOG"] == "/home/user/runner.log"  # the template's own envs
    assert "DONMAI_SESSION_ID" not in started_at_build and "DONMAI_ORG" not in started_at_build
    # A command started after create gets the create-time envs (envd applies them).
    later = await sandboxes.exec(ref, 'echo "$DONMAI_SESSION_ID"')
    assert later.stdout.strip() == session_id


async def test_the_inline_runner_is_started_with_the_session_env(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    session_id = f"s-{uuid.uuid4()}"
    result = await sandboxes.provision(
        _session("donmai-worker", session_id, launchRunnerInline=True)
    )
    assert result.runner is not None and result.runner.pid is not None
    runner = await _environ(sandboxes, ref_of(result), result.runner.pid)
    assert runner["DONMAI_SESSION_ID"] == session_id and runner["DONMAI_ORG"] == ORG


async def test_a_snapshot_pools_runner_gets_this_sessions_env_not_the_snapshots(
    sandboxes: Sandboxes, emulator_faults: EmulatorHandle
) -> None:
    opts = _sdk(emulator_faults)
    snapshot = await AsyncSandbox.create(
        "donmai-worker", envs={"DONMAI_SESSION_ID": "whoever-made-the-snapshot"}, **opts
    )
    sandboxes.ids.add(snapshot.sandbox_id)
    assert await AsyncSandbox.pause(snapshot.sandbox_id, **opts)

    session_id = f"s-{uuid.uuid4()}"
    result = await sandboxes.provision(
        _session(
            "donmai-worker", session_id, snapshotId=snapshot.sandbox_id, launchRunnerInline=True
        )
    )
    assert result.from_snapshot and result.handle.sandbox_id == snapshot.sandbox_id
    assert result.runner is not None and result.runner.pid is not None
    runner = await _environ(sandboxes, ref_of(result), result.runner.pid)
    assert runner["DONMAI_SESSION_ID"] == session_id and runner["DONMAI_ORG"] == ORG
