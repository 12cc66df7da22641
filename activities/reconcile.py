"""The stray-sandbox reconciler's activities (its workflow and Schedule: `workflows/reconciler.py`,
`worker.py`).

A stray is a sandbox this product created (metadata `managed-by`) whose session workflow is
closed or unknown: a create whose answer was lost, a terminate that gave up, a workflow
terminated by hand. Left alone it bills until E2B's own timeout. The reconciler kills it and
records its cost; the ledger's (session, sandbox) key keeps that row exactly-once, so a
sandbox its session already billed is never billed twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import ActivityConfig

from activities.sandbox import retry_policy, to_application_error
from common.ids import (
    MANAGED_BY,
    MANAGED_BY_KEY,
    SESSION_WORKFLOW_TYPE,
    session_id_of,
    workflow_id_for,
)
from ledger import CostEvent, Ledger, SegmentEvent, Usage
from ledger.billing import Segment
from provider.base import ListedSandbox, SandboxProvider
from provider.errors import ProviderError, SandboxGone
from provider.models import CheckInput, SandboxRef, TerminateInput
from telemetry.instruments import count_reaped, count_strays

SHARED_KEY_ORG = "*"
"""The org whose key lists the sandboxes when no org is named: the shared `E2B_API_KEY`."""

__all__ = [
    "BILL_TERMINATED",
    "FIND_STRAYS",
    "REAP_STRAY",
    "TERMINATED_WINDOW_SECONDS",
    "TerminatedInput",
    "TerminatedResult",
    "SHARED_KEY_ORG",
    "ReapInput",
    "ReapResult",
    "ReconcileActivities",
    "ReconcileInput",
    "ReconcileResult",
    "StraySandbox",
    "StraysResult",
]

_PASS_RETRY = retry_policy(maximum=30, attempts=5)
"""A pass is repeated by the Schedule anyway: a few tries, then leave it to the next pass."""

FIND_STRAYS = ActivityConfig(start_to_close_timeout=timedelta(minutes=2), retry_policy=_PASS_RETRY)
REAP_STRAY = ActivityConfig(start_to_close_timeout=timedelta(minutes=1), retry_policy=_PASS_RETRY)
BILL_TERMINATED = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=5), retry_policy=_PASS_RETRY
)
TERMINATED_WINDOW_SECONDS = 24 * 3600.0
"""How far back a pass looks for terminated sessions: passes run every few minutes, so a day
leaves room for a reconciler that was down for hours."""


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
    session_task_queue: str | None = None
    """The closed session's task queue: only a worker polling it can replay its record."""


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
    terminated_billed: int = 0
    """Sessions terminated after their sandbox's kill and before its cost was written."""


class TerminatedInput(BaseModel):
    window_seconds: float = Field(default=TERMINATED_WINDOW_SECONDS, gt=0)


class TerminatedResult(BaseModel):
    checked: int
    """Terminated sessions in the window with no ledger row."""
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
            status, queue = await self._session_status(session_id)
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
                    session_task_queue=queue,
                )
            )
        activity.logger.info("%d managed sandboxes listed, %d strays", len(listed), len(strays))
        count_strays([stray.org_id for stray in strays])
        return StraysResult(listed=len(listed), strays=strays)

    async def _session_status(self, session_id: str) -> tuple[str, str | None]:
        """The session workflow's status (RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED,
        ..., or `unknown`: no such workflow) and its task queue."""
        handle = self._client.get_workflow_handle(workflow_id_for(session_id))
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return "unknown", None
            raise
        status = description.status
        return (status.name if status else "unknown"), description.task_queue

    async def _session_record(self, workflow_id: str, run_id: str | None = None) -> dict | None:
        """A closed session's `status`, as its history leaves it (the query replays it on a
        worker); None when it does not answer (no such workflow, a history past retention)."""
        handle = self._client.get_workflow_handle(workflow_id, run_id=run_id)
        try:
            return await handle.query("status", result_type=dict, rpc_timeout=timedelta(seconds=15))
        except Exception as err:  # noqa: BLE001 - any failure: the caller falls back
            activity.logger.warning("%s's record unavailable: %s", workflow_id, type(err).__name__)
            return None

    async def _session_usage(self, stray: StraySandbox) -> Usage | None:
        """The running and paused spans the stray's (closed) session recorded; None when it
        has none for this sandbox (then the provider's record is all there is)."""
        if stray.session_task_queue != activity.info().task_queue:
            return None  # unknown, or another fleet's: no worker here can replay it
        status = await self._session_record(workflow_id_for(stray.session_id))
        return _spans(status, stray.sandbox_id) if status else None

    @activity.defn(name="bill_terminated_sessions")
    async def bill_terminated_sessions(self, input: TerminatedInput) -> TerminatedResult:
        """Bill sessions terminated after their sandbox died, whose cost no one wrote.

        Termination runs no workflow code. A session terminated while its sandbox lives is a
        stray (killed and billed by `reap_stray_sandbox`); one terminated between the kill and
        the cost row left a dead sandbox that no listing shows. Its history still says what it
        owes (`status.cost_owed`, computed from the kill's time), or, when the kill's answer
        never reached it, its spans, billed up to the termination.
        """
        since = datetime.now(UTC) - timedelta(seconds=input.window_seconds)
        # Only this queue's sessions: the query that reads a record is replayed by its workers.
        query = (
            f"WorkflowType = '{SESSION_WORKFLOW_TYPE}' AND ExecutionStatus = 'Terminated' "
            f"AND TaskQueue = '{activity.info().task_queue}' "
            f"AND CloseTime > '{since.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
        )
        checked = billed = 0
        async for execution in self._client.list_workflows(query):
            session_id = session_id_of(execution.id)
            if session_id is None or await self._ledger.events(session_id=session_id):
                continue
            checked += 1
            owed = await self._owed_by(execution.id, execution.run_id, execution.close_time)
            if owed is None:
                continue
            event, usage = owed
            if (await self._ledger.record(event, _segments(usage, event))).inserted:
                billed += 1
                activity.logger.info(
                    "terminated session %s billed for sandbox %s (%.3fs running)",
                    session_id,
                    event.sandbox_id,
                    event.running_seconds,
                )
        return TerminatedResult(checked=checked, billed=billed)

    async def _owed_by(
        self, workflow_id: str, run_id: str, closed_at: datetime | None
    ) -> tuple[CostEvent, Usage] | None:
        """What a terminated session owes, and the spans it is made of."""
        status = await self._session_record(workflow_id, run_id)  # None: the next pass tries
        if status is None:
            return None
        sandbox_id: str | None = status.get("sandbox_id")
        usage = _spans(status, sandbox_id) if sandbox_id else None
        if status.get("cost_owed"):
            owed = CostEvent.model_validate(status["cost_owed"])
            return owed, usage or Usage()
        if sandbox_id is None or usage is None or closed_at is None:
            return None  # no sandbox yet: one made after all is a stray, found alive
        org_id = status["org_id"]
        try:
            check = await self._provider.check(
                CheckInput(ref=SandboxRef(org_id=org_id, sandbox_id=sandbox_id))
            )
        except ProviderError as err:
            raise to_application_error(err) from None
        if check.alive:
            return None  # still running or paused: the stray path kills it and bills to then
        # Dead: to its end as the provider recorded it, else to the session's termination.
        recorded = check.ended_at if check.end_confirmed else None
        event = usage.cost_event(
            session_id=status["session_id"],
            org_id=org_id,
            issue_id=status.get("issue_id"),
            sandbox_id=sandbox_id,
            template_id=status["template_id"],
            ended_at=recorded or closed_at,  # never before the last transition (cost_event)
            outcome="cancelled",
            end_confirmed=recorded is not None,
        )
        return event, usage

    @activity.defn(name="reap_stray_sandbox")
    async def reap_stray_sandbox(self, input: ReapInput) -> ReapResult:
        """Kill, then bill: as its session recorded it (running and paused spans, the last
        one up to the kill) when the session's history still answers; else from its start to
        the kill, all of it as running (the only record left is the provider's)."""
        stray = input.stray
        ref = SandboxRef(org_id=stray.org_id, sandbox_id=stray.sandbox_id)
        try:
            result = await self._provider.terminate(TerminateInput(ref=ref))
            ended_at, killed = result.terminated_at, not result.already_gone
            confirmed = result.end_confirmed
        except SandboxGone:
            ended_at, killed, confirmed = datetime.now(UTC), False, False
        except ProviderError as err:
            raise to_application_error(err) from None
        usage = await self._session_usage(stray) or Usage.running_since(stray.started_at)
        event = usage.cost_event(
            session_id=stray.session_id,
            org_id=stray.org_id,
            issue_id=stray.issue_id,
            sandbox_id=stray.sandbox_id,
            template_id=stray.template_id,
            ended_at=ended_at,
            outcome="cancelled",
            end_confirmed=confirmed,
        )
        recorded = await self._ledger.record(event, _segments(usage, event))
        count_reaped(stray.org_id, killed=killed)
        activity.logger.info(
            "stray sandbox %s of session %s (%s): killed=%s billed=%s",
            stray.sandbox_id,
            stray.session_id,
            stray.session_status,
            killed,
            recorded.inserted,
        )
        return ReapResult(sandbox_id=stray.sandbox_id, killed=killed, billed=recorded.inserted)


def _segments(usage: Usage, event: CostEvent) -> list[SegmentEvent]:
    """The closed running stretches of `usage`, as the ledger's segments of `event`."""
    return usage.running_segment_events(
        session_id=event.session_id,
        org_id=event.org_id,
        issue_id=event.issue_id,
        sandbox_id=event.sandbox_id,
        template_id=event.template_id,
    )


def _spans(status: dict, sandbox_id: str) -> Usage | None:
    """The running and paused spans a session's `status` records for `sandbox_id`, if any."""
    segments = status.get("segments") or []
    if status.get("sandbox_id") != sandbox_id or not segments:
        return None
    return Usage(Segment.model_validate(s) for s in segments)
