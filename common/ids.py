"""The names that tie the layers together: workflow ids, the task queue, the sandbox tag.

They live here, below every layer, so that the provider, the activities, the workflows and the
CLI agree on them without importing each other.
"""

from __future__ import annotations

__all__ = [
    "CHECK_SANDBOX_SIGNAL",
    "CREATES_QUEUE_SUFFIX",
    "DEFAULT_TASK_QUEUE",
    "MANAGED_BY",
    "MANAGED_BY_KEY",
    "OWNER_KEY",
    "SESSION_WORKFLOW_PREFIX",
    "SESSION_WORKFLOW_TYPE",
    "creates_task_queue",
    "session_id_of",
    "workflow_id_for",
]

DEFAULT_TASK_QUEUE = "sandbox-sessions"
CREATES_QUEUE_SUFFIX = "-creates"


def creates_task_queue(task_queue: str) -> str:
    """The queue a session's sandbox creates run on: beside its own, paced by the server for
    the whole fleet (`max_task_queue_activities_per_second`), where no eager dispatch skips the
    pacing (eager activities run only on the workflow's own queue)."""
    return task_queue + CREATES_QUEUE_SUFFIX


SESSION_WORKFLOW_TYPE = "SandboxSession"
"""The session workflow's type name (CONTRACT.md)."""
SESSION_WORKFLOW_PREFIX = "session-"
"""A session's workflow id is its session id behind this prefix (CONTRACT.md)."""

MANAGED_BY_KEY = "managed-by"
MANAGED_BY = "session-worker"
"""Every sandbox this product creates carries metadata `managed-by: session-worker`, so the
stray reconciler can tell its own sandboxes from anything else on the same E2B team."""


CHECK_SANDBOX_SIGNAL = "check_sandbox"
"""The session's signal that asks it to check its sandbox with the provider now: the worker's
sandbox watch and `sessions dev` send it; from anyone it is a hint, never a verdict."""

OWNER_KEY = "session_run"
"""Sandbox metadata naming the session run (its first run id) that created the sandbox: every
reconnect checks it, so no other session, nor a later session under the same id, reaches it."""


def workflow_id_for(session_id: str) -> str:
    """`session-<session_id>`."""
    return SESSION_WORKFLOW_PREFIX + session_id


def session_id_of(workflow_id: str | None) -> str | None:
    """The session id in a session workflow's id; None for any other workflow id."""
    if workflow_id and workflow_id.startswith(SESSION_WORKFLOW_PREFIX):
        return workflow_id[len(SESSION_WORKFLOW_PREFIX) :]
    return None
