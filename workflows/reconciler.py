"""`StraySandboxReconciler`: one pass that finds sandboxes no open session owns, kills and bills
them. Run by the Schedule `sandbox-stray-reconciler`, which the worker keeps (worker.py)."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():  # also passed through at the worker (worker.py)
    from activities.reconcile import (
        BILL_TERMINATED,
        FIND_STRAYS,
        REAP_STRAY,
        ReapInput,
        ReapResult,
        ReconcileActivities,
        ReconcileInput,
        ReconcileResult,
        StraysResult,
        TerminatedInput,
        TerminatedResult,
    )

RECONCILER_WORKFLOW_TYPE = "StraySandboxReconciler"
RECONCILER_SCHEDULE_ID = "sandbox-stray-reconciler"
RECONCILER_WORKFLOW_ID = "sandbox-stray-reconciler"


@workflow.defn(name=RECONCILER_WORKFLOW_TYPE)
class StraySandboxReconciler:
    @workflow.run
    async def run(self, input: ReconcileInput) -> ReconcileResult:
        found: StraysResult = await workflow.execute_activity_method(
            ReconcileActivities.find_stray_sandboxes, input, **FIND_STRAYS
        )
        outcomes = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    ReconcileActivities.reap_stray_sandbox, ReapInput(stray=stray), **REAP_STRAY
                )
                for stray in found.strays
            ),
            return_exceptions=True,
        )
        reaped: list[ReapResult] = []
        for stray, outcome in zip(found.strays, outcomes, strict=True):
            if isinstance(outcome, ActivityError):
                workflow.logger.warning("stray %s not reaped: %s", stray.sandbox_id, outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                reaped.append(outcome)
        terminated = TerminatedResult(checked=0, billed=0)
        if workflow.patched("bill-terminated-sessions"):
            # After the strays: a terminated session's live sandbox is billed to its kill there.
            terminated = await workflow.execute_activity_method(
                ReconcileActivities.bill_terminated_sessions, TerminatedInput(), **BILL_TERMINATED
            )
        return ReconcileResult(
            listed=found.listed,
            strays=len(found.strays),
            killed=sum(r.killed for r in reaped),
            billed=sum(r.billed for r in reaped),
            terminated_billed=terminated.billed,
        )
