"""`StraySandboxReconciler`: one pass that finds sandboxes no open session owns, kills and bills
them. Run by the Schedule `sandbox-stray-reconciler` (see activities/reconcile.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import (
        ReapInput,
        ReapResult,
        ReconcileActivities,
        ReconcileInput,
        ReconcileResult,
        StraysResult,
    )
    from activities.sandbox import NON_RETRYABLE_ERROR_TYPES

RECONCILER_WORKFLOW_TYPE = "StraySandboxReconciler"

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
"""A pass is repeated by the Schedule anyway: a few tries, then leave it to the next pass."""


@workflow.defn(name=RECONCILER_WORKFLOW_TYPE)
class StraySandboxReconciler:
    @workflow.run
    async def run(self, input: ReconcileInput) -> ReconcileResult:
        found: StraysResult = await workflow.execute_activity_method(
            ReconcileActivities.find_stray_sandboxes,
            input,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        outcomes = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    ReconcileActivities.reap_stray_sandbox,
                    ReapInput(stray=stray),
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=_RETRY,
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
        return ReconcileResult(
            listed=found.listed,
            strays=len(found.strays),
            killed=sum(r.killed for r in reaped),
            billed=sum(r.billed for r in reaped),
        )
