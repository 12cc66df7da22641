"""The session workflow and its messages.

Names are imported on first use: the workflow sandbox imports this package afresh for every run,
and an eager import here would load a second copy of the message models beside the passed-through
ones (pydantic then refuses a `SandboxHandle` from an activity as "not a SandboxHandle").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        workflow_id_for,
    )
    from workflows.session import SandboxSession

_MODELS = (
    "DEFAULT_TASK_QUEUE",
    "WORKFLOW_TYPE",
    "ExecRequest",
    "FinishRequest",
    "Gate",
    "GateDecision",
    "GateRequest",
    "SessionInput",
    "SessionResult",
    "SessionStatus",
    "workflow_id_for",
)


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        return getattr(importlib.import_module("workflows.models"), name)
    if name == "SandboxSession":
        return importlib.import_module("workflows.session").SandboxSession
    raise AttributeError(f"module 'workflows' has no attribute {name!r}")


__all__ = [
    "DEFAULT_TASK_QUEUE",
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
    "workflow_id_for",
]
