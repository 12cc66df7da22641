"""The bad-input table: every message and command, given malformed, wrong-typed, oversized,
unicode or out-of-order input, gets a clear answer or is logged and ignored — and none fails a
workflow task or loses data (each session still ends with its one ledger row).

Each row is one case: what is sent, and the answer, in the phase the session is in: running,
paused at a gate, resumed after it, or ended. The rows run alone and in any order
(`PhaseSessions`); docs/bad-input.md lists every row.
Messages go through a raw Temporal client (as `temporal workflow signal` or another SDK would
send them); the `sessions` CLI's commands are in test_bad_input_cli.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from sessions import SessionClient
from tests.fixtures import temporal
from tests.fixtures.security import failed_workflow_tasks
from tests.fixtures.stack import Stack, state_is, status_of, wait_for

GATE = "déploiement-🚀"
TITLE = "承認してください 🙏"
BY = "Zoë 🙂"
STATE_OF_PHASE = {"running": "running", "paused": "paused", "resumed": "running"}
ENDED = "workflow execution already completed"


@dataclass(frozen=True)
class Row:
    id: str
    phase: str
    """The session's phase the row is sent in; `then`: the phase it moves the session to."""
    send: tuple[str, str, tuple[Any, ...]]
    """("signal" | "update", name, payloads)."""
    answer: tuple[str, str]
    """("refused", text in the error) | ("ignored", text logged) | ("accepted", text in result)."""
    then: str | None = None


def signal(name: str, *payloads: Any) -> tuple[str, str, tuple[Any, ...]]:
    return ("signal", name, payloads)


def update(name: str, *payloads: Any) -> tuple[str, str, tuple[Any, ...]]:
    return ("update", name, payloads)


def refused(text: str) -> tuple[str, str]:
    return ("refused", text)


def ignored(text: str) -> tuple[str, str]:
    return ("ignored", text)


def accepted(text: str) -> tuple[str, str]:
    return ("accepted", text)


SECRET = "sk-never-echoed"
"""Planted in malformed payloads: no answer and no log line may quote it."""
NOT_OBJECT = "signal ignored: the payload must be one JSON object"
UNICODE_GATE = {"gate": GATE, "title": TITLE}
UNICODE_DECISION = {"gate": GATE, "by": BY, "comment": "ok ✓ — ship it 👍"}


def _json(data: bytes) -> RawValue:
    """A raw `json/plain` payload: what `temporal workflow start --input` sends, valid or not."""
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


def _with_session(arg: Any, session_id: str) -> Any:
    if isinstance(arg, RawValue) and b"%s" in arg.payload.data:
        data = arg.payload.data.replace(b"%s", session_id.encode())
        return RawValue(Payload(metadata=dict(arg.payload.metadata), data=data))
    return arg


ROWS = [
    # ------------------------------------------------ signals: malformed / wrong-typed
    Row(
        "signal-payload-string", "running", signal("approve", "x"), ignored("approve " + NOT_OBJECT)
    ),
    Row("signal-payload-list", "running", signal("approve", [1]), ignored("approve " + NOT_OBJECT)),
    Row(
        "signal-payload-null", "running", signal("approve", None), ignored("approve " + NOT_OBJECT)
    ),
    Row("signal-no-payload", "running", signal("reject"), ignored("reject " + NOT_OBJECT)),
    Row(
        "signal-unknown-name",
        "running",
        signal("approve_all", {"gate": GATE, "by": BY}),
        ignored("signal 'approve_all' ignored: this workflow has no such signal"),
    ),
    Row(
        "signal-two-payloads",
        "running",
        signal("approve", {"gate": "a", "by": "b"}, {"gate": "c", "by": "d"}),
        ignored("approve " + NOT_OBJECT),
    ),
    Row(
        "finish-payload-string", "running", signal("finish", "now"), ignored("finish " + NOT_OBJECT)
    ),
    Row(
        "finish-unknown-key",
        "running",
        signal("finish", {"force": True}),
        ignored("finish signal ignored: force: Extra inputs are not permitted"),
    ),
    Row(
        "signal-gate-wrong-type",
        "running",
        signal("approve", {"gate": 5, "by": "ana"}),
        ignored("approve signal ignored: gate: Input should be a valid string"),
    ),
    Row(
        "signal-missing-by",
        "running",
        signal("approve", {"gate": "g"}),
        ignored("approve signal ignored: by: Field required"),
    ),
    Row(
        "signal-empty-gate",
        "running",
        signal("request_approval", {"gate": ""}),
        ignored("request_approval signal ignored: gate: gate must be non-empty"),
    ),
    Row(
        "signal-negative-timeout",
        "running",
        signal("request_approval", {"gate": "g", "timeout_seconds": -5}),
        ignored("timeout_seconds: Input should be greater than 0"),
    ),
    Row(
        "signal-bad-on-timeout",
        "running",
        signal("request_approval", {"gate": "g", "on_timeout": "explode"}),
        ignored("on_timeout: Input should be 'reject' or 'terminate'"),
    ),
    Row(
        "signal-oversized-gate",
        "running",
        signal("request_approval", {"gate": "g" * 100_000}),
        ignored("gate: String should have at most 128 characters"),
    ),
    Row(
        "signal-control-characters",
        "running",
        signal("request_approval", {"gate": "a\nb"}),
        ignored("gate: gate contains control characters"),
    ),
    Row(
        "signal-oversized-details",
        "running",
        signal("request_approval", {"gate": "g", "details": "d" * (16 * 1024 + 1)}),
        ignored("details: details is 16385 bytes; at most 16384 (16 KiB)"),
    ),
    Row(
        "signal-approvers-not-a-list",
        "running",
        signal("request_approval", {"gate": "g", "approvers": "ana,bo"}),
        ignored("approvers: Input should be a valid list"),
    ),
    Row(
        "signal-approvers-not-names",
        "running",
        signal("request_approval", {"gate": "g", "approvers": [{"name": "ana"}]}),
        ignored("approvers.0: Input should be a valid string"),
    ),
    Row(
        "update-approver-blank",
        "running",
        update("request_gate", {"gate": "g", "approvers": [" "]}),
        refused("each approver must be non-empty without surrounding spaces"),
    ),
    Row(
        "update-remind-at-out-of-range",
        "running",
        update("request_gate", {"gate": "g", "remind_at": 1.5}),
        refused("remind_at: Input should be less than 1"),
    ),
    Row(
        "signal-check-malformed",
        "running",
        signal("check_sandbox", {"sandbox_id": 5}),
        ignored("check_sandbox signal ignored: sandbox_id: Input should be a valid string"),
    ),
    Row(
        "signal-unknown-gate",
        "running",
        signal("approve", {"gate": "nope", "by": "ana"}),
        ignored("approve signal ignored: unknown gate 'nope'"),
    ),
    Row("signal-unknown-name", "running", signal("approve_all", {}), ignored("")),
    # ------------------------------------------------ updates: refused with the reason
    Row(
        "update-payload-string",
        "running",
        update("approve_gate", "x"),
        refused("invalid approve_gate request: payload: Input should be a valid dictionary"),
    ),
    Row(
        "update-payload-null",
        "running",
        update("approve_gate", None),
        refused("invalid approve_gate request: the payload must be one JSON object"),
    ),
    Row(
        "update-no-payload",
        "running",
        update("reject_gate"),
        refused("invalid reject_gate request: the payload must be one JSON object"),
    ),
    Row(
        "update-unknown-gate",
        "running",
        update("approve_gate", {"gate": "nope", "by": "ana"}),
        refused("unknown gate 'nope' (gates: none)"),
    ),
    Row(
        "update-unknown-key",
        "running",
        update("request_gate", {"gate": "g", "deadline": "friday"}),
        refused("invalid request_gate request: deadline: Extra inputs are not permitted"),
    ),
    Row(
        "update-negative-timeout",
        "running",
        update("request_gate", {"gate": "g", "timeout_seconds": -1}),
        refused("timeout_seconds: Input should be greater than 0"),
    ),
    Row(
        "exec-negative-timeout",
        "running",
        update("exec", {"command": "true", "timeout_seconds": -1}),
        refused("invalid exec request: timeout_seconds: Input should be greater than 0"),
    ),
    Row(
        "exec-invalid-env-name",
        "running",
        update("exec", {"command": "true", "env": {"BAD-NAME": "v"}}),
        refused("invalid exec request: env: invalid environment variable name 'BAD-NAME'"),
    ),
    Row(
        "exec-empty-command",
        "running",
        update("exec", {"command": ""}),
        refused("command: String should have at least 1 character"),
    ),
    Row(
        "exec-nul-command",
        "running",
        update("exec", {"command": "echo a\x00b"}),
        refused("invalid exec request: command: contains a NUL byte"),
    ),
    Row(
        "exec-oversized-command",
        "running",
        update("exec", {"command": "x" * (128 * 1024 + 1)}),
        refused("command: String should have at most 131072 characters"),
    ),
    # ------------------------------------------------ payloads the SDK cannot decode
    Row(
        "exec-bytes",
        "running",
        update("exec", b"sk-never-echoed"),
        refused("invalid exec request: the payload must be one JSON object"),
    ),
    Row(
        "exec-not-json",
        "running",
        update("exec", _json(b'{"command": "true", "env": {"K": "sk-never-echoed')),
        refused("invalid exec request: the payload is not valid JSON (malformed or truncated)"),
    ),
    Row(
        "exec-nested-json",
        "running",
        update("exec", _json(b'{"command": "true", "env": ' + b"[" * 300 + b"]" * 300 + b"}")),
        refused("invalid exec request: the payload's JSON is nested too deeply"),
    ),
    Row(
        "exec-infinite-timeout",
        "running",
        update("exec", _json(b'{"command": "true", "timeout_seconds": Infinity}')),
        refused("timeout_seconds: Input should be a finite number"),
    ),
    Row(
        "signal-not-json",
        "running",
        signal("approve", _json(b'{"gate": "g", "by": "sk-never-echoed')),
        ignored("approve signal ignored: the payload is not valid JSON (malformed or truncated)"),
    ),
    Row(
        "signal-bytes",
        "running",
        signal("finish", b"\x00\x01"),
        ignored("finish signal ignored: the payload must be one JSON object"),
    ),
    # ------------------------------------------------ text is data
    Row(
        "update-title-escape",
        "running",
        update("request_gate", {"gate": "g", "title": "ok\x1b]0;pwned\x07"}),
        refused("title: title contains control characters"),
    ),
    Row(
        "update-comment-escape",
        "running",
        update("approve_gate", {"gate": "g", "by": "ana", "comment": "fine\r\x1b[2K"}),
        refused("comment: comment contains control characters"),
    ),
    Row(
        "update-by-bidi",
        "running",
        update("approve_gate", {"gate": "g", "by": "ana\u202e"}),
        refused("by: gate and by contains control characters"),
    ),
    Row(
        "update-unknown-name",
        "running",
        update("approve_all", {}),
        refused("Update handler for 'approve_all' expected but not found"),
    ),
    # ------------------------------------------------ unicode, then out of order
    Row(
        "unicode-gate",
        "running",
        update("request_gate", UNICODE_GATE),
        accepted(GATE),
        then="paused",
    ),
    Row(
        "exec-while-paused",
        "paused",
        update("exec", {"command": "echo hi"}),
        refused(f"session is paused at gate '{GATE}'; exec runs only while the sandbox is running"),
    ),
    Row(
        "gate-requested-twice",
        "paused",
        update("request_gate", {"gate": GATE}),
        refused(f"gate '{GATE}' was already requested"),
    ),
    Row(
        "gate-requested-twice-signal",
        "paused",
        signal("request_approval", {"gate": GATE}),
        ignored(f"request_approval ignored: gate '{GATE}' was already requested"),
    ),
    Row(
        "oversized-comment",
        "paused",
        update("approve_gate", {"gate": GATE, "by": "ana", "comment": "c" * 4001}),
        refused("comment: String should have at most 4000 characters"),
    ),
    Row(
        "unicode-decision",
        "paused",
        update("approve_gate", UNICODE_DECISION),
        accepted(BY),
        then="resumed",
    ),
    Row(
        "second-decision",
        "resumed",
        update("reject_gate", {"gate": GATE, "by": "bo"}),
        refused(f"gate '{GATE}' is already approved by {BY}"),
    ),
    Row(
        "second-decision-signal",
        "resumed",
        signal("reject", {"gate": GATE, "by": "bo"}),
        ignored(f"reject signal ignored: gate '{GATE}' is already approved by {BY}"),
    ),
    Row("finish", "resumed", signal("finish", {}), accepted(""), then="ended"),
    Row(
        "approve-after-finish",
        "ended",
        update("approve_gate", {"gate": GATE, "by": "ana"}),
        refused(ENDED),
    ),
    Row(
        "approve-signal-after-finish",
        "ended",
        signal("approve", {"gate": GATE, "by": "ana"}),
        refused(ENDED),
    ),
    Row("exec-after-finish", "ended", update("exec", {"command": "true"}), refused(ENDED)),
    Row("finish-after-finish", "ended", signal("finish", {}), refused(ENDED)),
]
TRANSITIONS = {row.phase: row for row in ROWS if row.then}


class PhaseSessions:
    """Sessions by phase, so that every row runs alone and in any order.

    A row that moves the session on (`then`) gets a session of its own, walked to the row's
    phase; every other row must leave its session as it found it (the row checks that), so the
    rows of one phase share one session, made on first use.
    """

    SIGNALS_PER_SESSION = 15
    """A session logs its first 20 ignored signals one by one, then one in a hundred (so a
    flood cannot flood the log): each row's line must be among the first ones."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.shared: dict[str, WorkflowHandle[Any, Any]] = {}
        self.opened: list[WorkflowHandle[Any, Any]] = []
        self.signals: dict[str, int] = {}

    async def for_row(self, row: Row) -> WorkflowHandle[Any, Any]:
        if row.then:
            return await self.walk_to(row.phase)
        if row.send[0] == "signal":
            self.signals[row.phase] = self.signals.get(row.phase, 0) + 1
            if self.signals[row.phase] % self.SIGNALS_PER_SESSION == 0:
                self.shared.pop(row.phase, None)  # a fresh session: its log budget untouched
        if row.phase not in self.shared:
            self.shared[row.phase] = await self.walk_to(row.phase)
        return self.shared[row.phase]

    async def close(self) -> None:
        """End every session still open, so no sandbox outlives the module."""
        for handle in self.opened:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.signal("finish", {})
                await temporal.result_of(handle)

    async def walk_to(self, phase: str) -> WorkflowHandle[Any, Any]:
        handle = await self.stack.start(env_vars={"KEEP": "me"})
        self.opened.append(handle)
        await wait_for(handle, state_is("running"), what="running")
        at = "running"
        while at != phase:
            row = TRANSITIONS[at]
            await send_row(self.stack, handle, row, [])
            assert row.then is not None
            at = row.then
        return handle


async def send(handle: WorkflowHandle[Any, Any], row: Row) -> tuple[str, str]:
    """Send the row's message; what came back, as (kind, text)."""
    kind, name, payloads = row.send
    try:
        if kind == "signal":
            await handle.signal(name, args=list(payloads))
            return ("sent", "")
        result = await temporal.answer(handle.execute_update(name, args=list(payloads)))
    except WorkflowUpdateFailedError as err:
        return ("refused", str(err.cause))
    except RPCError as err:
        return ("refused", str(err))
    return ("accepted", str(result))


async def send_row(
    stack: Stack, handle: WorkflowHandle[Any, Any], row: Row, records: list[Any]
) -> None:
    got_kind, got = await send(handle, row)
    want_kind, want = row.answer
    assert SECRET not in got, (row.id, got)
    if (got_kind, want_kind) == ("sent", "accepted"):
        got_kind = "accepted"  # a signal is accepted once Temporal has it
    if want_kind == "ignored":
        assert got_kind == "sent", (row.id, got)
        status = await status_of(handle)  # answered after the signal was handled
        assert status.state == STATE_OF_PHASE[row.phase], (row.id, status)
        if want:
            await wait_for_log(records, want, row.id)
        assert not [r for r in records if SECRET in r.getMessage()], row.id
    else:
        assert (got_kind, want in got) == (want_kind, True), (row.id, got_kind, got)
    if row.then == "ended":
        result = await temporal.result_of(handle)
        assert result.outcome == "finished" and result.cost_recorded
        rows = await stack.ledger.events(session_id=result.status.session_id)
        assert len(rows) == 1, rows
        assert [(g.gate, g.title, g.decided_by) for g in result.status.gates] == [(GATE, TITLE, BY)]
    elif row.then:
        await wait_for(handle, state_is(STATE_OF_PHASE[row.then]), what=row.then)
    assert await failed_workflow_tasks(handle) == [], row.id


async def wait_for_log(records: list[Any], text: str, what: str) -> None:
    for _ in range(100):
        if any(text in r.getMessage() for r in records):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: no log line with {text!r}")


@pytest_asyncio.fixture(scope="module")
async def sessions(stack: Stack) -> AsyncIterator[PhaseSessions]:
    phases = PhaseSessions(stack)
    yield phases
    await phases.close()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
async def test_message(sessions: PhaseSessions, row: Row, caplog: pytest.LogCaptureFixture) -> None:
    handle = await sessions.for_row(row)
    await send_row(sessions.stack, handle, row, caplog.records)


async def test_messages_racing_finish_are_refused_clearly(stack: Stack) -> None:
    """Sent right behind `finish`: refused as ending (or ended), never as "running"."""
    handle = await stack.start()
    await wait_for(handle, state_is("running"))
    await handle.signal("finish", {})
    clear = ("session is ending (finish requested)", "session is terminating", ENDED)
    for name, payload in (("exec", {"command": "true"}), ("request_gate", {"gate": "late"})):
        row = Row("finish-race", "running", update(name, payload), refused(""))
        kind, text = await send(handle, row)
        assert kind == "refused" and any(c in text for c in clear), (name, text)
    result = await temporal.result_of(handle)
    assert len(await stack.ledger.events(session_id=result.status.session_id)) == 1
    assert result.status.gates == []
    assert await failed_workflow_tasks(handle) == []


# ---------------------------------------------------------------- the workflow's input


START_ROWS = [
    (
        "start-pool-unknown-key",
        {"pool": {"templateId": "base", "bogus": 1}},
        "pool.bogus: Extra inputs are not permitted",
    ),
    (
        "start-pool-short-timeout",
        {"pool": {"timeoutSeconds": 5}},
        "pool.timeoutSeconds: Input should be greater than or equal to 30",
    ),
    (
        "start-invalid-env-name",
        {"env_vars": {"1BAD": "sk-never-echoed"}},
        "env_vars: invalid environment variable name '1BAD'",
    ),
    (
        "start-negative-keep-alive",
        {"keep_alive_interval_seconds": -1},
        "keep_alive_interval_seconds: Input should be greater than or equal to 1",
    ),
    # numbers that would overflow a timer, or are not numbers at all
    (
        "start-huge-keep-alive",
        {"keep_alive_interval_seconds": 1e14},
        "keep_alive_interval_seconds: Input should be less than or equal to 86400",
    ),
    (
        "start-huge-gate-ceiling",
        {"gate_ceiling_seconds": 1e300},
        "gate_ceiling_seconds: Input should be less than or equal to 31536000",
    ),
    (
        "start-infinite-keep-alive",
        (
            _json(
                b'{"session_id": "%s", "org_id": "acme", "keep_alive_interval_seconds": Infinity}'
            ),
        ),
        "keep_alive_interval_seconds: Input should be a finite number",
    ),
    (
        "start-nan-gate-ceiling",
        (_json(b'{"session_id": "%s", "org_id": "acme", "gate_ceiling_seconds": NaN}'),),
        "gate_ceiling_seconds: Input should be a finite number",
    ),
    (
        "start-zero-rollover",
        {"lifetime_rollover_seconds": 0},
        "lifetime_rollover_seconds: Input should be greater than or equal to 1",
    ),
    (
        "start-huge-rollover",
        {"lifetime_rollover_seconds": 1e14},
        "lifetime_rollover_seconds: Input should be less than or equal to 86400",
    ),
    (
        "start-nan-rollover",
        (_json(b'{"session_id": "%s", "org_id": "acme", "lifetime_rollover_seconds": NaN}'),),
        "lifetime_rollover_seconds: Input should be a finite number",
    ),
    (
        "start-huge-events",
        {"continue_as_new_after_events": 10**30},
        "continue_as_new_after_events: Input should be less than or equal to 1000000",
    ),
    # payloads that are not JSON: undecodable inside the SDK, they used to fail every task
    ("start-not-json", (_json(b"not json {"),), "not valid JSON"),
    (
        "start-truncated-json",
        (_json(b'{"session_id": "%s", "org_id": "acme", "env_vars": {"K": "sk-never-echoed'),),
        "not valid JSON (malformed or truncated)",
    ),
    ("start-nested-json", (_json(b"[" * 300 + b"]" * 300),), "nested too deeply"),
    ("start-bytes", (b"sk-never-echoed",), "the payload must be one JSON object"),
    (
        "start-unknown-encoding",
        (RawValue(Payload(metadata={"encoding": b"json/sk-never-echoed"}, data=b"{}")),),
        "is not JSON",
    ),
    # text is data: no control characters in ids
    ("start-org-escape", {"org_id": "acme\x1b[31m"}, "org_id: the id contains control characters"),
    (
        "start-issue-newline",
        {"issue_id": "ISS-1\nforged line"},
        "issue_id: the id contains control characters",
    ),
    (
        "start-issue-bidi",
        {"issue_id": "ISS-\u202e1"},
        "issue_id: the id contains control characters",
    ),
    # identity and integrity: the input must name this workflow's session, carry is internal
    (
        "start-other-session",
        {"session_id": "someone-else"},
        "session_id 'someone-else' does not match the workflow id",
    ),
    (
        "start-forged-carry",
        {
            "carry": {
                "state": "running",
                "handle": {
                    "sandbox_id": "never-created",
                    "template_id": "base",
                    "started_at": "2000-01-01T00:00:00Z",
                },
                "gates": [],
                "segments": [{"state": "running", "start": "2000-01-01T00:00:00Z"}],
            }
        },
        "carry is set only by the session's own continue-as-new",
    ),
    (
        "start-oversized-org",
        {"org_id": "o" * 300},
        "org_id: String should have at most 200 characters",
    ),
    ("start-not-object", "x", "the payload must be one JSON object"),
    ("start-two-inputs", ({"session_id": "x", "org_id": "a"}, {}), "takes one argument"),
    ("start-null", None, "the payload must be one JSON object"),
    ("start-no-input", (), "the payload must be one JSON object"),
]


@pytest.mark.parametrize(
    ("payload", "answer"), [r[1:] for r in START_ROWS], ids=[r[0] for r in START_ROWS]
)
async def test_start_input(stack: Stack, payload: Any, answer: str) -> None:
    """A raw client's bad input fails the workflow with the reason, never its task."""
    session_id = f"bad-{uuid.uuid4().hex[:10]}"
    if isinstance(payload, dict):
        args = [{"session_id": session_id, "org_id": "acme", **payload}]
    else:
        args = list(payload) if isinstance(payload, tuple) else [payload]
        args = [_with_session(a, session_id) for a in args]
    handle = await stack.client.start_workflow(
        "SandboxSession", args=args, id=f"session-{session_id}", task_queue=stack.task_queue
    )
    with pytest.raises(WorkflowFailureError) as err:
        await temporal.result_of(handle)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
    assert answer in cause.message and "sk-never-echoed" not in cause.message
    status = await status_of(handle)
    assert (status.state, status.sandbox_id) == ("failed", None)
    assert status.error and answer in status.error
    assert await failed_workflow_tasks(handle) == []
    assert await stack.ledger.events(session_id=session_id) == []


async def test_typed_client_checks_the_pool_before_sending(stack: Stack) -> None:
    client = SessionClient(stack.client, task_queue=stack.task_queue)
    with pytest.raises(ValueError, match="bogus\n  Extra inputs are not permitted"):
        await client.start("acme", session_id="never-started", pool={"bogus": 1})
    with pytest.raises(RPCError, match="not found"):
        await stack.client.get_workflow_handle("session-never-started").describe()
