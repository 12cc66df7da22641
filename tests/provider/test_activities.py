"""The sandbox activities: error conversion, heartbeats, cancellation, and the retry policy
under a real Temporal worker against the emulator's fault injection."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities import EXEC, KEEP_ALIVE, PAUSE, PROVISION, RESUME, TERMINATE, SandboxActivities
from activities.sandbox import CHECK, EXEC_INTERRUPTED
from emulator.testing import EmulatorHandle
from provider import (
    E2BSandboxProvider,
    ExecInput,
    ProvisionResult,
    SandboxRef,
    TerminateInput,
    default_credentials,
)
from tests.fixtures.provider import Sandboxes, make_provider, ref_of
from tests.fixtures.temporal import result_of

from ._workflows import ProvisionWorkflow

BAD_KEY = "e2b_f00dfeedbadc0ffee_refused"
NON_RETRYABLE = {"CredentialsMissing", "ProviderAuthError", "InvalidRequest", "SandboxGone"}


@pytest.fixture
async def ref(sandboxes: Sandboxes) -> SandboxRef:
    return ref_of(await sandboxes.provision())


def _env(**info: object) -> tuple[ActivityEnvironment, list[tuple]]:
    env = ActivityEnvironment()
    beats: list[tuple] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    env.info = dataclasses.replace(env.info, **info)  # type: ignore[arg-type]
    return env, beats


def test_every_policy_lists_the_non_retryable_types() -> None:
    for config in (PROVISION, EXEC, PAUSE, RESUME, KEEP_ALIVE, TERMINATE, CHECK):
        retry = config["retry_policy"]
        assert retry is not None
        assert NON_RETRYABLE | {"ExecTimeout"} <= set(retry.non_retryable_error_types or [])
        assert config["start_to_close_timeout"] is not None
    assert EXEC["start_to_close_timeout"] >= timedelta(seconds=600 + 30)  # type: ignore[operator]
    assert EXEC["heartbeat_timeout"] is not None
    assert TERMINATE["schedule_to_close_timeout"] >= timedelta(hours=1)  # type: ignore[operator]
    assert TERMINATE["retry_policy"].maximum_attempts == 0  # type: ignore[union-attr]


async def test_exec_heartbeats_while_the_command_runs(
    provider: E2BSandboxProvider, ref: SandboxRef
) -> None:
    env, beats = _env(heartbeat_timeout=timedelta(seconds=0.6))
    result = await env.run(
        SandboxActivities(provider).exec_command,
        ExecInput(ref=ref, command="sleep 1.2; echo finished"),
    )
    assert (result.exit_code, result.stdout) == (0, "finished\n")
    assert len(beats) >= 3 and all(b == ("exec-running",) for b in beats)


async def test_exec_lost_mid_command_is_not_repeated(
    provider: E2BSandboxProvider, sandboxes: Sandboxes, ref: SandboxRef
) -> None:
    env, _ = _env(attempt=2, heartbeat_details=["exec-running"])
    with pytest.raises(ApplicationError) as info:
        await env.run(
            SandboxActivities(provider).exec_command,
            ExecInput(ref=ref, command="touch /tmp/ran-twice"),
        )
    assert info.value.type == EXEC_INTERRUPTED and info.value.non_retryable
    assert (await sandboxes.exec(ref, "test -e /tmp/ran-twice")).exit_code == 1
    # A retry after a failure before the command started does run it.
    env, _ = _env(attempt=2, heartbeat_details=[])
    done = await env.run(
        SandboxActivities(provider).exec_command, ExecInput(ref=ref, command="echo once")
    )
    assert done.stdout == "once\n"


async def test_cancelled_exec_stops_the_command(
    provider: E2BSandboxProvider, sandboxes: Sandboxes, ref: SandboxRef
) -> None:
    env, _ = _env(heartbeat_timeout=timedelta(seconds=0.6))
    task = asyncio.create_task(
        env.run(
            SandboxActivities(provider).exec_command,
            ExecInput(ref=ref, command="sleep 44.5"),
        )
    )
    await asyncio.sleep(0.5)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    left = await sandboxes.exec(ref, "ps -eo args | grep -c '[s]leep 44.5'")
    assert left.stdout.strip() == "0"


async def test_provider_errors_become_application_errors(
    provider: E2BSandboxProvider, ref: SandboxRef, emulator_faults: EmulatorHandle
) -> None:
    acts = SandboxActivities(provider)
    env, _ = _env()
    with pytest.raises(ApplicationError) as timeout:
        await env.run(acts.exec_command, ExecInput(ref=ref, command="sleep 9", timeout_seconds=0.3))
    assert timeout.value.type == "ExecTimeout" and timeout.value.non_retryable

    # Another worker than the one that created the sandbox asks E2B first (get_info).
    elsewhere = SandboxActivities(make_provider(emulator_faults))
    emulator_faults.fail_next("get", 1, 429)
    with pytest.raises(ApplicationError) as limited:
        await env.run(elsewhere.exec_command, ExecInput(ref=ref, command="true"))
    assert limited.value.type == "RateLimited" and not limited.value.non_retryable
    assert limited.value.next_retry_delay == timedelta(seconds=1)

    await env.run(acts.terminate_sandbox, TerminateInput(ref=ref))
    again = await env.run(acts.terminate_sandbox, TerminateInput(ref=ref))
    assert again.already_gone
    with pytest.raises(ApplicationError) as gone:
        await env.run(acts.exec_command, ExecInput(ref=ref, command="true"))
    assert gone.value.type == "SandboxGone" and gone.value.non_retryable
    assert gone.value.next_retry_delay is None


async def _run_provision(
    env: WorkflowEnvironment, provider: E2BSandboxProvider, sandboxes: Sandboxes
) -> tuple[ProvisionResult | WorkflowFailureError, list[int], str]:
    """Run the test workflow; its result (or failure), the activity attempts started, the
    whole history as JSON."""
    queue = f"provider-{uuid.uuid4()}"
    acts = SandboxActivities(provider)
    inp = sandboxes.input()
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ProvisionWorkflow],
        activities=[acts.provision_sandbox],
    ):
        handle = await env.client.start_workflow(
            ProvisionWorkflow.run, inp, id=f"provision-{inp.session_id}", task_queue=queue
        )
        outcome: ProvisionResult | WorkflowFailureError
        try:
            outcome = await result_of(handle)
            sandboxes.ids.add(outcome.handle.sandbox_id)
        except WorkflowFailureError as err:
            outcome = err
        history = await handle.fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    return outcome, attempts, history.to_json()


async def test_burst_of_429s_ends_in_success_under_the_retry_policy(
    temporal_env: WorkflowEnvironment,
    sandboxes: Sandboxes,
    emulator_faults: EmulatorHandle,
) -> None:
    emulator_faults.fail_next("create", 3, 429)
    started = time.monotonic()
    result, attempts, history = await _run_provision(temporal_env, sandboxes.provider, sandboxes)
    elapsed = time.monotonic() - started
    assert isinstance(result, ProvisionResult)
    assert attempts == [4]  # the started event records the attempt that completed
    assert 3 <= elapsed < 15  # three 1 s delays (the default Retry-After), not exponential
    assert emulator_faults.record(result.handle.sandbox_id).state == "running"
    assert emulator_faults.api_key not in history


async def test_refused_key_fails_at_once_without_the_key(
    temporal_env: WorkflowEnvironment, emulator_faults: EmulatorHandle, sandboxes: Sandboxes
) -> None:
    provider = make_provider(
        emulator_faults, credentials=default_credentials({"E2B_API_KEY__ACME": BAD_KEY})
    )
    started = time.monotonic()
    outcome, attempts, history = await _run_provision(temporal_env, provider, sandboxes)
    assert time.monotonic() - started < 5
    assert isinstance(outcome, WorkflowFailureError)
    assert attempts == [1]
    activity_error = outcome.cause
    assert isinstance(activity_error, ActivityError)
    app = activity_error.cause
    assert isinstance(app, ApplicationError)
    assert app.type == "ProviderAuthError" and app.non_retryable
    assert "E2B_API_KEY__ACME" in app.message and BAD_KEY not in app.message
    assert activity_error.retry_state == RetryState.NON_RETRYABLE_FAILURE
    assert BAD_KEY not in history
