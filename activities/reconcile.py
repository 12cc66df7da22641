"""The stray-sandbox reconciler's activities, and the Schedule that runs it.

A stray is a sandbox this product created (metadata `managed-by`) whose session workflow is
closed or unknown: a create whose answer was lost, a terminate that gave up, a workflow
terminated by hand. Left alone it bills until E2B's own timeout. The reconciler kills it and
records its cost; the ledger's (session, sandbox) key keeps that row exactly-once, so a
sandbox its session already billed is never billed twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.sandbox import to_application_error
from ledger import CostEvent, Ledger
from provider.base import ListedSandbox, SandboxProvider
from provider.e2b import MANAGED_BY
from provider.errors import ProviderError, SandboxGone
from provider.models import SandboxRef, TerminateInput
from sessions.errors import ConfigError
from workflows.models import workflow_id_for

log = logging.getLogger(__name__)

MANAGED_BY_KEY = "managed-by"
"""The metadata key the E2B provider tags every sandbox it creates with (value `MANAGED_BY`)."""
SCHEDULE_ID = "sandbox-stray-reconciler"
WORKFLOW_ID = "sandbox-stray-reconciler"
SHARED_KEY_ORG = "*"
"""The org whose key lists the sandboxes when no org is named: the shared `E2B_API_KEY`."""

__all__ = [
    "SCHEDULE_ID",
    "ReapInput",
    "ReapResult",
    "ReconcileActivities",
    "ReconcileInput",
    "ReconcileResult",
    "ReconcilerSettings",
    "StraySandbox",
    "StraysResult",
    "ensure_reconciler_schedule",
]


class ReconcileInput(BaseModel):
    org_ids: list[str] = Field(default_factory=lambda: [SHARED_KEY_ORG], min_length=1)
    """Whose keys to list with; orgs sharing one key are listed once per org (and deduplicated)."""
    grace_seconds: float = Field(default=600.0, ge=0)
    """A sandbox younger than this is never a stray: its session may be starting right now."""


class StraySandbox(BaseModel):
    sandbox_id: str
    session_id: str
    org_id: str
    issue_id: str | None = None
    template_id: str
    started_at: datetime
    state: str
    session_status: str
    """`unknown` (no such workflow) or the closed workflow's status."""


class StraysResult(BaseModel):
    listed: int
    strays: list[StraySandbox]


class ReapInput(BaseModel):
    stray: StraySandbox


class ReapResult(BaseModel):
    sandbox_id: str
    killed: bool
    """False when the sandbox was already gone."""
    billed: bool
    """False when the ledger already had this (session, sandbox): nothing billed twice."""


class ReconcileResult(BaseModel):
    listed: int
    strays: int
    killed: int
    billed: int


class ReconcileActivities:
    """Provider, Temporal client and ledger injected (one per worker)."""

    def __init__(self, provider: SandboxProvider, client: Client, ledger: Ledger) -> None:
        self._provider = provider
        self._client = client
        self._ledger = ledger

    @activity.defn(name="find_stray_sandboxes")
    async def find_stray_sandboxes(self, input: ReconcileInput) -> StraysResult:
        listed: dict[str, ListedSandbox] = {}
        for org_id in dict.fromkeys(input.org_ids):
            try:
                found = await self._provider.list_sandboxes(
                    org_id, metadata={MANAGED_BY_KEY: MANAGED_BY}
                )
            except ProviderError as err:
                raise to_application_error(err) from None
            listed.update((s.sandbox_id, s) for s in found)
        old_enough = datetime.now(UTC) - timedelta(seconds=input.grace_seconds)
        strays = []
        for sandbox in listed.values():
            session_id = sandbox.metadata.get("session_id")
            if not session_id or sandbox.started_at > old_enough:
                continue
            status = await self._session_status(session_id)
            if status == "RUNNING":
                continue
            strays.append(
                StraySandbox(
                    sandbox_id=sandbox.sandbox_id,
                    session_id=session_id,
                    org_id=sandbox.metadata.get("org_id") or input.org_ids[0],
                    issue_id=sandbox.metadata.get("issue_id"),
                    template_id=sandbox.template_id,
                    started_at=sandbox.started_at,
                    state=sandbox.state,
                    session_status=status,
                )
            )
        activity.logger.info("%d managed sandboxes listed, %d strays", len(listed), len(strays))
        return StraysResult(listed=len(listed), strays=strays)

    async def _session_status(self, session_id: str) -> str:
        handle = self._client.get_workflow_handle(workflow_id_for(session_id))
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return "unknown"
            raise
        status = description.status
        if status is None:
            return "unknown"
        return WorkflowExecutionStatus.Name(status).removeprefix("WORKFLOW_EXECUTION_STATUS_")

    @activity.defn(name="reap_stray_sandbox")
    async def reap_stray_sandbox(self, input: ReapInput) -> ReapResult:
        """Kill, then bill: from its start to the kill, all of it as running (E2B's bill has
        the exact split; a stray's pauses are not known here)."""
        stray = input.stray
        ref = SandboxRef(org_id=stray.org_id, sandbox_id=stray.sandbox_id)
        try:
            result = await self._provider.terminate(TerminateInput(ref=ref))
            ended_at, killed = result.terminated_at, not result.already_gone
        except SandboxGone:
            ended_at, killed = datetime.now(UTC), False
        except ProviderError as err:
            raise to_application_error(err) from None
        ended_at = max(ended_at, stray.started_at)
        seconds = (ended_at - stray.started_at).total_seconds()
        event = CostEvent(
            session_id=stray.session_id,
            org_id=stray.org_id,
            issue_id=stray.issue_id,
            sandbox_id=stray.sandbox_id,
            template_id=stray.template_id,
            started_at=stray.started_at,
            ended_at=ended_at,
            running_seconds=seconds,
            paused_seconds=0.0,
            wall_seconds=seconds,
            outcome="cancelled",
        )
        recorded = await self._ledger.record(event)
        activity.logger.info(
            "stray sandbox %s of session %s (%s): killed=%s billed=%s",
            stray.sandbox_id,
            stray.session_id,
            stray.session_status,
            killed,
            recorded.inserted,
        )
        return ReapResult(sandbox_id=stray.sandbox_id, killed=killed, billed=recorded.inserted)


class ReconcilerSettings(BaseModel):
    """`SESSIONS_RECONCILER` (`on`|`off`), `SESSIONS_RECONCILER_INTERVAL` and
    `SESSIONS_RECONCILER_GRACE` (seconds), `SESSIONS_RECONCILER_ORGS` (comma-separated)."""

    enabled: bool = True
    interval_seconds: float = Field(default=300.0, gt=0)
    input: ReconcileInput = Field(default_factory=ReconcileInput)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReconcilerSettings:
        env = os.environ if environ is None else environ
        switch = (env.get("SESSIONS_RECONCILER") or "on").strip().lower()
        if switch not in ("on", "off", "1", "0", "true", "false"):
            raise ConfigError(f"SESSIONS_RECONCILER must be on or off, not {switch!r}")
        orgs = [o.strip() for o in (env.get("SESSIONS_RECONCILER_ORGS") or "").split(",")]
        inp = ReconcileInput(
            org_ids=[o for o in orgs if o] or [SHARED_KEY_ORG],
            grace_seconds=_seconds(env, "SESSIONS_RECONCILER_GRACE", 600.0),
        )
        return cls(
            enabled=switch in ("on", "1", "true"),
            interval_seconds=_seconds(env, "SESSIONS_RECONCILER_INTERVAL", 300.0, positive=True),
            input=inp,
        )


def _seconds(env: Mapping[str, str], name: str, default: float, *, positive: bool = False) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be {'positive' if positive else 'at least 0'}")
    return value


async def ensure_reconciler_schedule(
    client: Client, task_queue: str, settings: ReconcilerSettings
) -> None:
    """Create the Schedule, or bring an existing one to these settings (safe on every start)."""
    from workflows.reconciler import StraySandboxReconciler

    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            StraySandboxReconciler.run,
            settings.input,
            id=WORKFLOW_ID,
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.interval_seconds))]
        ),
        # One pass at a time; a pass missed while the worker was down is not worth running late.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        log.info(
            "reconciler schedule %s created: every %ss", SCHEDULE_ID, settings.interval_seconds
        )
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(update)
