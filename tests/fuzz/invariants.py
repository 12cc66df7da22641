"""The invariants, checked after every session ended and the reconciler passed:

1. every workflow is closed, and none ever failed a workflow task (a wedged session); the
   `status` query answers while a session runs;
2. every sandbox the emulator ever created is killed, and has exactly one ledger row;
3. no ledger row bills a sandbox the emulator never created, or more running seconds than
   the sandbox lived;
4. no session reached a sandbox created for another session (activities it ran, its status,
   its exec output, its ledger row);
5. the secret planted in malformed inputs is in no worker log, no failure in any history, no
   answer a caller got;
6. a start that must be refused fails `InvalidInput` (non-retryable), at once;
7. no gate was decided by someone it did not allow (not among its approvers; its requester
   approving without `allow_self_approval`).

Also `Violation` (one broken invariant, with the message that triggered it) and the reading of
workflow histories the checks and the driver share (failed workflow tasks, failures, sandboxes
reached).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from common.ids import session_id_of, workflow_id_for
from ledger import CostEvent
from tests.fixtures.chaos import ledger_rows
from tests.fuzz.payloads import JSON_PLAIN, visible
from workflows import WORKFLOW_TYPE

if TYPE_CHECKING:
    from tests.fuzz.campaign import Campaign

_BENIGN_TASK_FAILURES = {
    # The server refused a completion because new events (a signal, an update) arrived
    # meanwhile; the SDK simply runs the task again. Not a failure of the workflow's code.
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_UPDATE,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_STICKY_TASK_QUEUE,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW,
}
_FORCE_CLOSE = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND
_TERMINATED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
INVARIANTS = {
    0: "fuzz-error",
    1: "wedged",
    2: "stray/lost/doubled",
    3: "phantom/overbilled",
    4: "cross-session",
    5: "secret-leak",
    6: "invalid-start",
    7: "unauthorised-decision",
}


@dataclass(frozen=True)
class Violation:
    invariant: int
    session: str
    what: str
    repro: str = ""

    def line(self) -> str:
        """One line, whatever the messages quoted in it hold."""
        name = INVARIANTS.get(self.invariant, "?")
        text = f"violation [{self.invariant} {name}] {self.session}: {visible(self.what, 600)}"
        return text + (f" | repro: {visible(self.repro, 400)}" if self.repro else "")


async def task_failures(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The messages of the workflow task failures in this run's history (benign ones left out)."""
    try:
        history = await handle.fetch_history()
    except Exception:  # noqa: BLE001
        return []
    return [text for _, text in _task_failures(history.events)]


def _task_failures(events: Any) -> list[tuple[float, str]]:
    found = []
    events = list(events)
    for e in events:
        if e.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            continue
        attrs = e.workflow_task_failed_event_attributes
        if attrs.cause in _BENIGN_TASK_FAILURES:
            continue
        if attrs.cause == _FORCE_CLOSE and events[-1].event_type == _TERMINATED:
            continue  # the task in flight when the workflow was terminated
        cause = WorkflowTaskFailedCause.Name(attrs.cause).removeprefix(
            "WORKFLOW_TASK_FAILED_CAUSE_"
        )
        found.append((_event_time(e), f"{cause}: {attrs.failure.message}"))
    return found


def _event_time(e: HistoryEvent) -> float:
    return e.event_time.seconds + e.event_time.nanos / 1e9


class Checks:
    """The invariants, after every session ended and the reconciler passed."""

    def __init__(self, campaign: Campaign) -> None:
        self.c = campaign
        self.stack = campaign.stack
        self.touched: dict[tuple[str, str, str], str] = {}
        """(workflow id, run id, sandbox id) -> the activity that reached it."""
        self.fresh: dict[str, float] = {}
        """Session runs started afresh (not continued-as-new) -> when they started."""

    async def run(self) -> None:
        runs = await self.all_runs()
        self.c.figures["workflow_runs"] = len(runs)
        for wid, run_id, wf_type in runs:
            await self.check_run(wid, run_id, wf_type)
        rows = await ledger_rows(self.stack.ledger_url)
        records = {r.sandbox_id: r for r in self.stack.emu.records()}
        self.c.figures["sandboxes"] = len(records)
        self.c.figures["ledger_rows"] = len(rows)
        self.check_sandboxes(records, rows)
        self.check_cross_session(records, rows)
        self.check_logs()
        self.check_answers()

    async def all_runs(self) -> list[tuple[str, str, str]]:
        """Every run on the campaign's task queue, from visibility (continued-as-new runs and
        restarts included); waits for visibility to list every id the campaign started."""
        client = self.stack.client
        wanted = {workflow_id_for(sid) for sid in self.c.started}
        runs: list[tuple[str, str, str]] = []
        for _ in range(50):
            runs = [
                (w.id, w.run_id, w.workflow_type)
                async for w in client.list_workflows(f'TaskQueue = "{self.stack.queue}"')
            ]
            if wanted <= {wid for wid, _, _ in runs}:
                break
            await asyncio.sleep(0.2)
        return runs

    async def check_run(self, wid: str, run_id: str, wf_type: str) -> None:
        handle = self.stack.client.get_workflow_handle(wid, run_id=run_id)
        sid = session_id_of(wid)
        desc = await handle.describe()
        if desc.status == WorkflowExecutionStatus.RUNNING:
            self.c.violation(1, sid or wid, f"run {run_id[:8]} still running after the campaign")
            with contextlib.suppress(Exception):
                await handle.terminate(reason="fuzz: left running")
        history = await handle.fetch_history()
        for at, text in _task_failures(history.events):
            self.c.violation(
                1,
                sid or wid,
                f"workflow task failed: {visible(text, 300)}",
                self.c.repro_at(sid, at),
            )
            if self.c.leak_at(text) >= 0:
                self.c.violation(5, sid or wid, "secret in a workflow task failure", "")
        for e in history.events:
            for where, text in _failure_texts(e):
                if self.c.leak_at(text) >= 0:
                    self.c.violation(
                        5,
                        sid or wid,
                        f"secret in the failure of {where}: {self.c.around_leak(text)}",
                        self.c.repro_at(sid, _event_time(e)),
                    )
        if wf_type == WORKFLOW_TYPE:
            await self.check_deciders(sid or wid, history.events)
            first = history.events[0] if history.events else None
            if first is not None and not (
                first.workflow_execution_started_event_attributes.continued_execution_run_id
            ):
                self.fresh[run_id] = _event_time(first)
            for e in history.events:
                for activity, sandbox in _sandboxes_reached(e):
                    self.touched.setdefault((wid, run_id, sandbox), activity)

    async def check_deciders(self, sid: str, events: Any) -> None:
        """Invariant 7, on the gates a finished session reports in its result."""
        last = events[-1] if events else None
        if last is None or last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            return
        payloads = last.workflow_execution_completed_event_attributes.result.payloads
        if not payloads:
            return
        (result,) = await self.stack.client.data_converter.decode(list(payloads)[:1])
        for gate in (result or {}).get("status", {}).get("gates", []):
            by, allowed = gate.get("decided_by"), [a.casefold() for a in gate.get("approvers", [])]
            if by is None:
                continue
            if allowed and by.casefold() not in allowed:
                self.c.violation(7, sid, f"gate {gate['gate']!r} decided by {by!r}", "")
            requester = gate.get("requested_by")
            if (
                gate.get("state") == "approved"
                and requester is not None
                and by.casefold() == requester.casefold()
                and not gate.get("allow_self_approval")
            ):
                self.c.violation(7, sid, f"gate {gate['gate']!r} approved by its requester", "")

    def check_sandboxes(self, records: dict[str, Any], rows: list[CostEvent]) -> None:
        tol = self.c.cfg.billing_tolerance
        per_sandbox: dict[str, list[CostEvent]] = {}
        for row in rows:
            per_sandbox.setdefault(row.sandbox_id, []).append(row)
        now = datetime.now(UTC)
        for sandbox, record in records.items():
            owner = record.metadata.get("session_id", "?")
            if record.state != "killed":
                self.c.violation(
                    2,
                    owner,
                    f"stray: sandbox {sandbox} still {record.state} after the reconciler",
                    self.last_of(owner),
                )
            billed = per_sandbox.get(sandbox, [])
            if not billed:
                reason = next((t.reason for t in record.transitions if t.event == "killed"), None)
                self.c.violation(
                    2,
                    owner,
                    f"lost: sandbox {sandbox} has no ledger row (killed: {reason})",
                    self.last_of(owner),
                )
            elif len(billed) > 1:
                who = ", ".join(f"{r.session_id} ({r.outcome})" for r in billed)
                other = next((r.session_id for r in billed if r.session_id != owner), owner)
                self.c.violation(
                    2,
                    owner,
                    f"doubled: sandbox {sandbox} billed {len(billed)} times: {who}",
                    self.c.start_of(other),
                )
            killed_by = next((t.reason for t in record.transitions if t.event == "killed"), None)
            for row in billed:
                if row.outcome == "lost" and killed_by == "api":
                    # Only its session's terminate killed it: nothing died behind its back.
                    self.c.violation(
                        3,
                        row.session_id,
                        f"false loss: sandbox {sandbox} ended `lost` though only its "
                        "session killed it (a forged hint believed?)",
                        self.last_of(row.session_id),
                    )
            life = ((record.killed_at or now) - record.created_at).total_seconds()
            for row in billed:
                if row.running_seconds > life + tol:
                    self.c.violation(
                        3,
                        row.session_id,
                        f"overbilled: sandbox {sandbox} billed {row.running_seconds:.1f}s "
                        f"running, lived {life:.1f}s",
                        self.last_of(row.session_id),
                    )
        for sandbox, billed in per_sandbox.items():
            if sandbox not in records:
                for row in billed:
                    self.c.violation(
                        3,
                        row.session_id,
                        f"phantom: ledger row for sandbox {sandbox} the emulator never created "
                        f"({row.running_seconds:.1f}s running, {row.outcome})",
                        self.last_of(row.session_id),
                    )

    def check_cross_session(self, records: dict[str, Any], rows: list[CostEvent]) -> None:
        def owner(sandbox: str) -> str:
            record = records.get(sandbox)
            return record.metadata.get("session_id", "?") if record is not None else "no one"

        for (wid, run_id, sandbox), activity in self.touched.items():
            sid = session_id_of(wid) or wid
            if owner(sandbox) != sid:
                self.c.reached(sid, owner(sandbox), sandbox, activity)
                continue
            began = self.fresh.get(run_id)
            created = records[sandbox].created_at.timestamp()
            if began is not None and created < began - 0.1:
                self.c.violation(
                    4,
                    sid,
                    f"a fresh run ({run_id[:8]}) reached sandbox {sandbox}, made "
                    f"{began - created:.1f}s before it started (by an earlier run under the "
                    f"same id; by {activity})",
                    self.c.repro_at(sid, began + 0.5),
                )
        for sid, sandbox in self.c.observed:
            if owner(sandbox) not in (sid, "no one"):
                self.c.reached(sid, owner(sandbox), sandbox, "status")
        for row in rows:
            if owner(row.sandbox_id) not in (row.session_id, "no one"):
                self.c.reached(row.session_id, owner(row.sandbox_id), row.sandbox_id, "ledger row")
        for (sid, made_for), entry in sorted(self.c.cross.items()):
            sandboxes = ", ".join(sorted(entry["sandboxes"])) or "?"
            said = "no one created" if made_for == "no one" else f"created for session {made_for}"
            self.c.violation(
                4,
                sid,
                f"reached sandbox {sandboxes} {said} (by {', '.join(sorted(entry['how']))})",
                self.c.start_of(sid),
            )

    def check_logs(self) -> None:
        """The secret in no worker log; hostile text (NUL, terminal escapes, forged lines)
        copied raw into a log is noted."""
        for log in sorted(self.stack.workdir.glob("worker-*.log")):
            text = log.read_bytes().decode(errors="replace")
            if self.c.leak_at(text) >= 0:
                for line in text.splitlines():
                    if self.c.leak_at(line) >= 0:
                        self.c.violation(
                            5,
                            _session_in(line) or log.name,
                            f"secret in {log.name}: {self.c.around_leak(line)}",
                        )
            for marker, what in _INJECTED.items():
                at = text.find(marker)
                if at >= 0:
                    lines = text[text.rfind("\n", 0, at) + 1 :].split("\n", 2)
                    shown = visible("\n".join(lines[:2]), 240)
                    self.c.note(f"{what} copied raw into {log.name}: {shown}")

    def check_answers(self) -> None:
        for sid, label, text in self.c.answers:
            if self.c.leak_at(text) >= 0:
                self.c.violation(
                    5, sid, f"secret in the answer to the caller: {self.c.around_leak(text)}", label
                )

    def last_of(self, sid: str) -> str:
        """What ended the session (its last ending, and the message sent just before it)."""
        labels = [label for _, label, *_ in self.c.sends.get(sid, [])]
        endings = [i for i, label in enumerate(labels) if label.startswith("ending ")]
        upto = endings[-1] if endings else len(labels)
        before = [
            label
            for label in labels[:upto]
            if not label.startswith(("query", "verdict", "cancel", "terminate", "ending"))
        ]
        last = before[-1] if before else ""
        return f"{labels[upto]} after {last}" if endings else last


def _failure_texts(e: HistoryEvent) -> list[tuple[str, str]]:
    """Every failure in an event (its message, stack trace, causes and details decoded)."""
    found: list[tuple[str, str]] = []
    kind = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_").lower()

    def take(key: str, value: Any) -> bool:
        if key.lower().endswith("failure") and isinstance(value, dict):
            found.append((kind, _decoded(value)))
            return True
        return False

    _walk(MessageToDict(e), take)
    return found


def _decoded(failure: dict[str, Any]) -> str:
    """A failure as JSON, with every base64 `data` field decoded next to it."""
    texts = [json.dumps(failure, ensure_ascii=False)]

    def take(key: str, value: Any) -> bool:
        if key == "data" and isinstance(value, str):
            with contextlib.suppress(Exception):
                texts.append(base64.b64decode(value).decode(errors="replace"))
            return True
        return False

    _walk(failure, take)
    return "\n".join(texts)


def _sandboxes_reached(e: HistoryEvent) -> list[tuple[str, str]]:
    """(activity, sandbox id) for every sandbox an activity of this event was given or made."""
    if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        attrs = e.activity_task_scheduled_event_attributes
        name, payloads = attrs.activity_type.name, attrs.input.payloads
    elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        name, payloads = (
            "an activity result",
            e.activity_task_completed_event_attributes.result.payloads,
        )
    else:
        return []
    found: list[tuple[str, str]] = []
    for payload in payloads:
        if payload.metadata.get("encoding") != JSON_PLAIN:
            continue
        try:
            value = json.loads(payload.data)
        except ValueError:
            continue
        for sandbox in _values_of(value, "sandbox_id"):
            found.append((name, sandbox))
    return found


def _values_of(node: Any, key: str) -> list[str]:
    out: list[str] = []

    def take(k: str, v: Any) -> bool:
        if k == key and isinstance(v, str):
            out.append(v)
            return True
        return False

    _walk(node, take)
    return out


def _walk(node: Any, take: Callable[[str, Any], bool]) -> None:
    """Every key and value in nested dicts and lists, in order: `take(key, value)` says whether
    it kept the value (else the walk goes on inside it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not take(key, value):
                _walk(value, take)
    elif isinstance(node, list):
        for value in node:
            _walk(value, take)


_INJECTED = {
    "\x00": "a NUL byte",
    "\x1b]0;pwned": "a terminal escape (OSC title)",
    "\x1b[31mred": "a terminal escape (colour)",
    "\nforged: line": "a forged log line (newline in an id)",
}
"""Hostile text the campaign sends, as it would look copied raw into a log."""


_SID = re.compile(r"fz\d+-[0-9a-f]{4}-\d{3}")


def _session_in(text: str) -> str | None:
    m = _SID.search(text)
    return m.group(0) if m else None
