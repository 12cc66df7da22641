"""Temporal activities, each class with its dependencies injected: the sandbox's (a provider),
the billing ledger's, and the stray reconciler's; beside each, its `workflow.ActivityConfig`s."""

from activities.ledger import RECORD_COST, LedgerActivities, RecordCostInput, RecordCostResult
from activities.reconcile import (
    ReapInput,
    ReapResult,
    ReconcileActivities,
    ReconcileInput,
    ReconcileResult,
    StraySandbox,
    StraysResult,
    TerminatedInput,
    TerminatedResult,
)
from activities.sandbox import (
    EXEC,
    KEEP_ALIVE,
    NON_RETRYABLE_ERROR_TYPES,
    PAUSE,
    PROVISION,
    RESUME,
    TERMINATE,
    SandboxActivities,
    exec_config,
    to_application_error,
)

__all__ = [
    "EXEC",
    "KEEP_ALIVE",
    "NON_RETRYABLE_ERROR_TYPES",
    "PAUSE",
    "PROVISION",
    "RECORD_COST",
    "RESUME",
    "TERMINATE",
    "LedgerActivities",
    "ReapInput",
    "ReapResult",
    "ReconcileActivities",
    "ReconcileInput",
    "ReconcileResult",
    "RecordCostInput",
    "RecordCostResult",
    "SandboxActivities",
    "StraySandbox",
    "StraysResult",
    "TerminatedInput",
    "TerminatedResult",
    "exec_config",
    "to_application_error",
]
