"""The workflows and their messages: `SandboxSession` (one per agent session) and
`StraySandboxReconciler` (one pass of the stray-sandbox Schedule).

Importing this package loads neither the e2b SDK nor SQLAlchemy: workflow code sees only the
activities' method names, the providers' and the ledger's values, and `common`. The worker passes
those modules, and this package itself, through to the workflow sandbox
(`worker.PASSTHROUGH_MODULES`), so every run shares one copy of them instead of importing its own.
Hence no module here keeps state between runs: constants only.
"""

from workflows.models import (
    DEFAULT_TASK_QUEUE,
    WORKFLOW_TYPE,
    ExecRequest,
    FinishRequest,
    Gate,
    GateDecision,
    GateRequest,
    SessionInput,
    SessionResult,
    SessionStatus,
    UsageMemo,
    WaitingGate,
    workflow_id_for,
)
from workflows.reconciler import (
    RECONCILER_SCHEDULE_ID,
    RECONCILER_WORKFLOW_ID,
    RECONCILER_WORKFLOW_TYPE,
    StraySandboxReconciler,
)
from workflows.session import SandboxSession

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "RECONCILER_SCHEDULE_ID",
    "RECONCILER_WORKFLOW_ID",
    "RECONCILER_WORKFLOW_TYPE",
    "WORKFLOW_TYPE",
    "ExecRequest",
    "FinishRequest",
    "Gate",
    "GateDecision",
    "GateRequest",
    "SandboxSession",
    "SessionInput",
    "SessionResult",
    "SessionStatus",
    "StraySandboxReconciler",
    "UsageMemo",
    "WaitingGate",
    "workflow_id_for",
]
