"""The search attributes and memo a session publishes, so a client finds it without asking a
worker (CONTRACT.md): `temporal workflow list --query "SessionWaitingGates = 'deploy'"`.

They live below every layer: the workflow upserts them, the worker checks at start that the
namespace has them, and the CLI and `SessionClient` query them.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = [
    "MEMO_USAGE",
    "MEMO_WAITING_GATES",
    "SEARCH_ATTRIBUTES",
    "SESSION_ISSUE",
    "SESSION_ORG",
    "SESSION_STATE",
    "SESSION_WAITING_GATES",
]

SESSION_STATE = SearchAttributeKey.for_keyword("SessionState")
"""The session's state (`provisioning` … `lost`)."""
SESSION_ORG = SearchAttributeKey.for_keyword("SessionOrg")
SESSION_ISSUE = SearchAttributeKey.for_keyword("SessionIssue")
"""Unset when the session has no issue."""
SESSION_WAITING_GATES = SearchAttributeKey.for_keyword_list("SessionWaitingGates")
"""The gates waiting for a decision now; unset when none waits (and once the session ended)."""

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    SESSION_STATE,
    SESSION_ORG,
    SESSION_ISSUE,
    SESSION_WAITING_GATES,
)
"""Every search attribute the session workflow upserts: the namespace must have all of them."""

MEMO_WAITING_GATES = "waiting_gates"
"""Memo key: the waiting gates' context, a list of `workflows.models.WaitingGate` objects;
absent when none waits (Temporal drops a memo key set to an empty list)."""
MEMO_USAGE = "usage"
"""Memo key: the sandbox's seconds so far, a `workflows.models.UsageMemo` object."""
