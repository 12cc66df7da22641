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
from common.ids import MANAGED_BY, MANAGED_BY_KEY, workflow_id_for
from ledger import Ledger, Usage
from provider.base import ListedSandbox, SandboxProvider
from provider.errors import ProviderError, SandboxGone
from provider.models import SandboxRef, TerminateInput

SHARED_KEY_ORG = "*"
"""The org whose key lists the sandboxes when no org is named: the shared `E2B_API_KEY`."""

__all__ = [
    "FIND_STRAYS",
    "REAP_STRAY",
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
        return status.name  # RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED, ...

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
        event = Usage.running_since(stray.started_at).cost_event(
            session_id=stray.session_id,
            org_id=stray.org_id,
            issue_id=stray.issue_id,
            sandbox_id=stray.sandbox_id,
            template_id=stray.template_id,
            ended_at=ended_at,
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
