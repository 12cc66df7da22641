"""What the session publishes and records about its gates: the search attributes and memo a
client finds it by, the audit rows, the notices, and the budgets that keep all of it inside
Temporal's limits.

Pure functions of the workflow's state (no clock, no I/O), so the workflow stays deterministic
and each rule is said once.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from temporalio.common import SearchAttributeKey

from activities.notify import GateNotice
from common.search import (
    MEMO_USAGE,
    MEMO_WAITING_GATES,
    SESSION_ISSUE,
    SESSION_ORG,
    SESSION_STATE,
    SESSION_WAITING_GATES,
)
from ledger import GateEvent, GateEventKind, NoticeAbout, Usage, gate_digest
from workflows.models import (
    ENDED_STATES,
    Gate,
    GateRequest,
    OnTimeout,
    SessionInput,
    SessionState,
    UsageMemo,
    WaitingGate,
)

__all__ = [
    "GATES_BYTES",
    "WAITING_NAMES_BYTES",
    "audit_rows",
    "carried",
    "gate_limit",
    "gate_row",
    "new_gate",
    "notice",
    "published_attributes",
    "published_memo",
    "request_budget_problem",
]

WAITING_NAMES_BYTES = 1800
"""The waiting gates' names, as the `SessionWaitingGates` value, fit in Temporal's limit on one
search attribute value (2 KB by default): past it, the upsert would fail every workflow task."""
GATES_BYTES = 1024 * 1024
"""All of a session's gates (a decided gate without its details) fit in 1 MiB, so the status
query's answer and a continued-as-new run's input stay well inside Temporal's 2 MB payloads."""


def new_gate(request: GateRequest, now: datetime) -> Gate:
    """The gate as requested (every field of the request), waiting from `now`."""
    return Gate(
        **request.model_dump(),
        requested_at=now,
        digest=gate_digest(request.summary, request.details),
    )


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _kept_size(gate: Gate) -> int:
    """What a gate weighs in the session's state: a decided one's details are not carried."""
    kept = gate if gate.state == "waiting" else gate.model_copy(update={"details": None})
    return len(kept.model_dump_json().encode("utf-8", "surrogatepass"))


def request_budget_problem(gates: list[Gate], request: GateRequest, now: datetime) -> str | None:
    """Why a gate request would not fit the session's limits; None when it fits."""
    waiting = [g.gate for g in gates if g.state == "waiting"] + [request.gate]
    if _size(waiting) > WAITING_NAMES_BYTES:
        return (
            f"too many gates wait at once ({len(waiting) - 1}): their names must fit in one "
            f"search attribute value ({WAITING_NAMES_BYTES} bytes); decide some first"
        )
    total = sum(_kept_size(g) for g in gates) + _kept_size(new_gate(request, now))
    if total > GATES_BYTES:
        return "this session's gates hold 1 MiB already; no more gate can be requested"
    return None


def carried(gates: list[Gate]) -> list[Gate]:
    """The gates a continued-as-new run takes over: a decided gate's details stay behind (its
    digest and the audit trail keep what was decided on)."""
    return [g if g.state == "waiting" else g.model_copy(update={"details": None}) for g in gates]


def gate_limit(gate: Gate, ceiling: float) -> tuple[float, OnTimeout]:
    """How long the gate may wait, and what its timeout does: its own timeout and policy, or
    the session's gate ceiling, which always ends the session."""
    if gate.timeout_seconds and gate.timeout_seconds < ceiling:
        return gate.timeout_seconds, gate.on_timeout
    return ceiling, "terminate"


def _paused_during(usage: Usage, start: datetime, end: datetime) -> float:
    total = 0.0
    for seg in usage.segments:
        if seg.state == "paused":
            lo, hi = max(seg.start, start), min(seg.end or end, end)
            total += max((hi - lo).total_seconds(), 0.0)
    return round(total, 3)


def gate_row(gate: Gate, event: GateEventKind, *, session: SessionInput, usage: Usage) -> GateEvent:
    """The audit row of a gate's request or its ending (decision, timeout)."""
    known: dict[str, Any] = {
        "session_id": session.session_id,
        "org_id": session.org_id,
        "issue_id": session.issue_id,
        "gate": gate.gate,
        "event": event,
        "digest": gate.digest or gate_digest(gate.summary, gate.details),
    }
    if event == "requested":
        return GateEvent(**known, at=gate.requested_at, by=gate.requested_by)
    assert gate.decided_at is not None
    return GateEvent(
        **known,
        at=gate.decided_at,
        by=gate.decided_by,
        comment=gate.comment,
        waited_seconds=gate.waited_seconds,
        paused_seconds=_paused_during(usage, gate.requested_at, gate.decided_at),
    )


def audit_rows(gates: list[Gate], *, session: SessionInput, usage: Usage) -> list[GateEvent]:
    """Every gate's request and ending rows: the final cost record writes those not yet in the
    ledger, so each is there exactly once whatever became of the notices."""
    rows = []
    for gate in gates:
        rows.append(gate_row(gate, "requested", session=session, usage=usage))
        if gate.state != "waiting":
            rows.append(gate_row(gate, gate.state, session=session, usage=usage))
    return rows


_NOTICE_FIELDS = frozenset(set(GateNotice.model_fields) & set(Gate.model_fields)) - {
    "timeout_seconds",
    "on_timeout",
}
"""What a notice copies from the gate as it stands (its text, who asked and decided, when)."""


def notice(
    gate: Gate,
    about: NoticeAbout,
    *,
    session: SessionInput,
    sandbox_id: str | None,
    usage: Usage,
    now: datetime,
) -> GateNotice:
    """The `notify_gate` activity's input: the audit row, and what the sinks announce."""
    limit, policy = gate_limit(gate, session.gate_ceiling_seconds)
    event: GateEvent | None = None
    if about == "requested":
        event = gate_row(gate, "requested", session=session, usage=usage)
    elif about != "reminder":
        event = gate_row(gate, about, session=session, usage=usage)
    return GateNotice(
        **gate.model_dump(include=set(_NOTICE_FIELDS)),
        about=about,
        event=event,
        session_id=session.session_id,
        org_id=session.org_id,
        issue_id=session.issue_id,
        sandbox_id=sandbox_id,
        timeout_seconds=limit,  # the effective limit and policy, not the gate's own
        on_timeout=policy,
        running_seconds=usage.seconds("running", now),
        paused_seconds=usage.seconds("paused", now),
    )


def _waiting(state: SessionState, gates: list[Gate]) -> list[Gate]:
    return [] if state in ENDED_STATES else [g for g in gates if g.state == "waiting"]


def published_attributes(
    state: SessionState, session: SessionInput, gates: list[Gate]
) -> dict[SearchAttributeKey[Any], Any]:
    """The search attributes' values now (None: unset)."""
    return {
        SESSION_STATE: state,
        SESSION_ORG: session.org_id,
        SESSION_ISSUE: session.issue_id,
        SESSION_WAITING_GATES: [g.gate for g in _waiting(state, gates)] or None,
    }


def published_memo(state: SessionState, gates: list[Gate], usage: Usage) -> dict[str, Any]:
    """The memo's values now (None: the key removed): the waiting gates' context and the
    sandbox's seconds, as of its last transition (they change only there, so the memo does
    too)."""
    as_of = usage.latest
    last = usage.segments[-1] if usage.segments else None
    figures = None
    if as_of is not None:
        figures = UsageMemo(
            running_seconds=usage.seconds("running", as_of),
            paused_seconds=usage.seconds("paused", as_of),
            as_of=as_of,
            state=last.state if last is not None and last.end is None else None,
        ).model_dump(mode="json")
    waiting = [
        WaitingGate.model_validate(g.model_dump(include=set(WaitingGate.model_fields)))
        for g in _waiting(state, gates)
    ]
    return {
        # None removes the key (as Temporal does for an empty list): absent means none waits.
        MEMO_WAITING_GATES: [w.model_dump(mode="json") for w in waiting] or None,
        MEMO_USAGE: figures,
    }
