"""Sandbox activities: one per provider call, with the provider injected, and their options
(`workflow.ActivityConfig`s the workflow passes with `**`).

Every activity is safe to retry: provision creates with an idempotency key, pause/resume/
terminate are idempotent. Provider failures become `ApplicationError`s whose `type` is the
provider error's class name and whose `non_retryable` flag says whether a retry can help.
Credentials are resolved by the provider inside the activity; nothing secret is logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ActivityConfig

from activities._heartbeat import heartbeating
from activities._retry import backoff
from provider.base import SandboxProvider
from provider.errors import ProviderError
from provider.models import (
    EXEC_DEFAULT_TIMEOUT_SECONDS,
    CheckInput,
    CheckResult,
    ExecInput,
    ExecResult,
    KeepAliveInput,
    KeepAliveResult,
    PauseInput,
    PauseResult,
    ProvisionInput,
    ProvisionResult,
    ResumeInput,
    ResumeResult,
    TerminateInput,
    TerminateResult,
)

T = TypeVar("T")

EXEC_INTERRUPTED = "ExecInterrupted"
"""A previous attempt was lost while its command ran: repeating the command is not safe."""

NON_RETRYABLE_ERROR_TYPES = [
    "CredentialsMissing",
    "ProviderAuthError",
    "InvalidRequest",
    "SandboxGone",
    "SandboxNotOwned",
    "SandboxPaused",
    "ExecTimeout",
]
"""Errors no retry can fix (also flagged `non_retryable` on the error itself)."""

_EXEC_RUNNING = "exec-running"

__all__ = [
    "CHECK",
    "EXEC",
    "EXEC_INTERRUPTED",
    "KEEP_ALIVE",
    "NON_RETRYABLE_ERROR_TYPES",
    "PAUSE",
    "PROVISION",
    "PROVISION_PACED",
    "RESUME",
    "TERMINATE",
    "SandboxActivities",
    "exec_config",
    "retry_policy",
    "to_application_error",
]


def retry_policy(
    *,
    initial: float = 1.0,
    maximum: float = 30.0,
    attempts: int = 0,
    extra_non_retryable: tuple[str, ...] = (),
) -> RetryPolicy:
    """Exponential backoff from `initial` to `maximum` seconds; `attempts` 0: until the
    activity's schedule-to-close timeout. Never retries what no retry can fix."""
    return backoff(
        initial=initial,
        maximum=maximum,
        attempts=attempts,
        non_retryable=(*NON_RETRYABLE_ERROR_TYPES, *extra_non_retryable),
    )


_LOST_WORKER = timedelta(seconds=20)
"""How soon an attempt on a worker that died is retried elsewhere (heartbeats every few seconds):
a crash then costs a session about 20 s, not a minute, while a slow E2B call (a pause is ~4 s
per GiB) keeps heartbeating and is never cut short by it."""

PROVISION = ActivityConfig(
    # A create, a start-time read and the runner launch; E2B creates in well under a second.
    start_to_close_timeout=timedelta(minutes=3),
    heartbeat_timeout=_LOST_WORKER,
    # Creation is idempotent (the session's key): keep trying through 429s and outages for
    # ten minutes, then fail the session rather than hold it forever.
    schedule_to_close_timeout=timedelta(minutes=10),
    retry_policy=retry_policy(maximum=30),
)
PROVISION_PACED = ActivityConfig(
    **{
        **PROVISION,
        # On the creates queue a create waits its turn behind the fleet's rate, and at E2B's
        # concurrency limit it is retried with no worker slot held: both may take a while
        # under a burst (1,000 starts at Hobby's 1/s take 17 minutes). An hour bounds it.
        "schedule_to_close_timeout": timedelta(hours=1),
    }
)
EXEC = ActivityConfig(
    # The command's own timeout (the seed's 600 s by default) plus the connect and the kill;
    # the workflow raises this floor for a longer command timeout.
    start_to_close_timeout=timedelta(seconds=EXEC_DEFAULT_TIMEOUT_SECONDS + 60),
    heartbeat_timeout=timedelta(seconds=30),
    # Retried only while the command has not started: the provider marks a failure after the
    # start non-retryable, and an attempt lost while its command ran (worker crash, heartbeat
    # timeout) is refused by the next one (`ExecInterrupted`). A command may push, publish or
    # pay: running it twice is worse than reporting one failure.
    retry_policy=retry_policy(maximum=10, attempts=3, extra_non_retryable=(EXEC_INTERRUPTED,)),
)
PAUSE = ActivityConfig(
    # A pause snapshots memory, about 4 s per GiB.
    start_to_close_timeout=timedelta(minutes=5),
    heartbeat_timeout=_LOST_WORKER,
    schedule_to_close_timeout=timedelta(minutes=30),
    retry_policy=retry_policy(maximum=30),
)
RESUME = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=2),
    heartbeat_timeout=_LOST_WORKER,
    schedule_to_close_timeout=timedelta(minutes=30),
    retry_policy=retry_policy(maximum=30),
)
KEEP_ALIVE = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    # Short enough to leave the sandbox's own timeout (>= 30 s past the last extension) room.
    schedule_to_close_timeout=timedelta(minutes=5),
    retry_policy=retry_policy(maximum=10),
)
TERMINATE = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=1),
    heartbeat_timeout=_LOST_WORKER,
    # A stray sandbox costs money until E2B's own timeout ends it; keep trying for E2B's
    # maximum sandbox lifetime, after which it cannot exist anyway.
    schedule_to_close_timeout=timedelta(hours=24),
    retry_policy=retry_policy(maximum=300),
)

CHECK = ActivityConfig(
    # One get-info, and for a gone sandbox one read of its lifecycle events.
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_close_timeout=timedelta(minutes=5),
    retry_policy=retry_policy(maximum=10),
)


def exec_config(command_timeout_seconds: float) -> ActivityConfig:
    """`EXEC`, with room for a command allowed longer than the default: the activity must be
    allowed to outlive the command it runs."""
    floor = timedelta(seconds=command_timeout_seconds + 60)
    current = EXEC["start_to_close_timeout"]
    if current is not None and current >= floor:
        return EXEC
    config = EXEC.copy()
    config["start_to_close_timeout"] = floor
    return config


def to_application_error(err: ProviderError) -> ApplicationError:
    """The one conversion of provider errors for Temporal: type, retryability, retry delay."""
    return ApplicationError(
        err.message,
        type=err.type,
        non_retryable=not err.retryable,
        next_retry_delay=timedelta(seconds=err.retry_after) if err.retry_after else None,
    )


async def _run(call: Awaitable[T], *details: Any) -> T:
    """Await the provider call, heartbeating meanwhile (so a cancel reaches us and a lost
    worker is noticed), with provider errors converted for Temporal."""
    try:
        return await heartbeating(call, *details)
    except ProviderError as err:
        activity.logger.info("%s failed: %s: %s", activity.info().activity_type, err.type, err)
        raise to_application_error(err) from None


class SandboxActivities:
    """The sandbox activities, bound to one provider (one per worker, shared by all tasks)."""

    def __init__(
        self,
        provider: SandboxProvider,
        *,
        on_live: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self._provider = provider
        self._on_live = on_live
        """Told (sandbox id, session id) of each sandbox provisioned or resumed here: the
        sandbox watch then misses none that dies before its first listing."""

    def _live(self, sandbox_id: str, session_id: str | None) -> None:
        if self._on_live is not None:
            self._on_live(sandbox_id, session_id)

    @activity.defn(name="provision_sandbox")
    async def provision_sandbox(self, input: ProvisionInput) -> ProvisionResult:
        activity.logger.info(
            "provision session=%s org=%s template=%s snapshot=%s runner_inline=%s",
            input.session_id,
            input.org_id,
            input.pool.template_id,
            input.pool.snapshot_id,
            input.pool.launch_runner_inline,
        )
        result = await _run(self._provider.provision(input))
        self._live(result.handle.sandbox_id, input.session_id)
        return result

    @activity.defn(name="exec_command")
    async def exec_command(self, input: ExecInput) -> ExecResult:
        info = activity.info()
        if info.attempt > 1 and _EXEC_RUNNING in (info.heartbeat_details or ()):
            raise ApplicationError(
                f"a previous attempt of this command in sandbox {input.ref.sandbox_id} was lost "
                "while it ran; it is not run again",
                type=EXEC_INTERRUPTED,
                non_retryable=True,
            )
        activity.logger.info(
            "exec sandbox=%s timeout=%ss", input.ref.sandbox_id, input.timeout_seconds
        )
        return await _run(self._provider.exec_command(input), _EXEC_RUNNING)

    @activity.defn(name="pause_sandbox")
    async def pause_sandbox(self, input: PauseInput) -> PauseResult:
        activity.logger.info("pause sandbox=%s", input.ref.sandbox_id)
        return await _run(self._provider.pause(input))

    @activity.defn(name="resume_sandbox")
    async def resume_sandbox(self, input: ResumeInput) -> ResumeResult:
        activity.logger.info("resume sandbox=%s", input.ref.sandbox_id)
        result = await _run(self._provider.resume(input))
        self._live(input.ref.sandbox_id, input.ref.session_id)
        return result

    @activity.defn(name="keep_alive_sandbox")
    async def keep_alive_sandbox(self, input: KeepAliveInput) -> KeepAliveResult:
        return await _run(self._provider.keep_alive(input))

    @activity.defn(name="check_sandbox")
    async def check_sandbox(self, input: CheckInput) -> CheckResult:
        """Whether the sandbox lives; a gone one comes back with its end (a result, not an
        error), so the session bills it to when the provider says it ended."""
        result = await _run(self._provider.check(input))
        if not result.alive:
            activity.logger.info(
                "sandbox=%s gone, end %s",
                input.ref.sandbox_id,
                result.ended_at.isoformat() if result.ended_at else "unconfirmed",
            )
        return result

    @activity.defn(name="terminate_sandbox")
    async def terminate_sandbox(self, input: TerminateInput) -> TerminateResult:
        activity.logger.info("terminate sandbox=%s", input.ref.sandbox_id)
        return await _run(self._provider.terminate(input))
