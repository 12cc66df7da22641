"""The fuzz engine: hostile traffic generator, campaign driver and invariant checks.

A campaign starts session workflows the way a hostile platform would (a raw Temporal client,
payloads built byte by byte), drives each one through random and targeted messages, SIGKILLs
worker processes in the middle, ends every session (finish, cancel, terminate, or races of
them), runs one stray-reconciler pass, and then checks:

1. every workflow is closed, and none ever failed a workflow task (a wedged session); the
   `status` query answers while a session runs;
2. every sandbox the emulator ever created is killed, and has exactly one ledger row;
3. no ledger row bills a sandbox the emulator never created, or more running seconds than
   the sandbox lived;
4. no session reached a sandbox created for another session (activities it ran, its status,
   its exec output, its ledger row);
5. the secret planted in malformed inputs is in no worker log, no failure in any history, no
   answer a caller got;
6. a start that must be refused fails `InvalidInput` (non-retryable), at once.

A stray-reconciler pass runs every few seconds meanwhile (the Schedule, compressed) and once
more at the end, before the checks. Hostile text copied raw into a worker log and the
emulator's own errors are reported as notes, not violations.

Everything random comes from the seed; interleavings depend on timing, so a campaign is
reproducible in what it sends, not in the exact order things happen. Each violation names the
session and the message that triggered it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import random
import re
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from activities.reconcile import ReconcileInput
from common.ids import session_id_of, workflow_id_for
from emulator import DEMO_TEMPLATES
from emulator.testing import EmulatorHandle, running_emulator
from ledger import CostEvent
from tests.fixtures.chaos import DevServer, WorkerProcess, ledger_rows
from workflows import RECONCILER_WORKFLOW_TYPE, WORKFLOW_TYPE

__all__ = [
    "INVARIANTS",
    "CampaignConfig",
    "FuzzStack",
    "Generator",
    "Report",
    "Violation",
    "fuzz_stack",
    "run_campaign",
]

SECRET_PREFIX = "FUZZSECRET-"
MIB = 1 << 20
CHECK = 'printf %s "$FUZZ_SID"'
"""The exec that proves whose sandbox answered: every fuzz sandbox is created with FUZZ_SID."""
TASK_FAILING = "Workflow Task in failed state"
"""How the server refuses a query or an update to a workflow whose task keeps failing."""
JSON_PLAIN = b"json/plain"
BINARY_PLAIN = b"binary/plain"
_RUNNING = WorkflowExecutionStatus.RUNNING
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
}


@dataclass
class CampaignConfig:
    sessions: int = 60
    """Session ids to start (an invalid-start plan uses up to three)."""
    seed: int = 7
    kills: int = 2
    concurrency: int = 8
    workers: int = 2
    messages: tuple[int, int] = (15, 45)
    """Random messages per running session (gate cycles and exec checks included)."""
    huge_rate: float = 0.02
    """Share of hostile strings that are 1 MiB long."""
    restart_rate: float = 0.2
    """Share of ended sessions started again under the same id."""
    signal_timeout: float = 10.0
    update_timeout: float = 20.0
    state_timeout: float = 30.0
    """A state change (running, paused) may wait out a killed worker's activity (~20 s)."""
    close_timeout: float = 75.0
    verdict_timeout: float = 45.0
    """How long a start may take to be refused or to provision."""
    billing_tolerance: float = 2.0
    reconcile_every: float = 10.0
    """Seconds between two stray-reconciler passes during the campaign (one more at the end)."""


# ---------------------------------------------------------------------------------- payloads


def raw(data: bytes, encoding: bytes = JSON_PLAIN) -> RawValue:
    """A payload sent as given, bypassing the data converter."""
    return RawValue(Payload(metadata={"encoding": encoding}, data=data))


def js(value: Any) -> RawValue:
    """JSON as Python writes it: NaN and Infinity as bare tokens, non-ASCII escaped."""
    return raw(json.dumps(value, allow_nan=True).encode())


_REPEAT = re.compile(r"(.{1,8}?)\1{7,}", re.S)


def visible(text: str, limit: int = 220) -> str:
    """One printable line: repeats folded (`x×1048576`), control characters escaped."""
    text = _REPEAT.sub(lambda m: f"{m.group(1)}×{len(m.group(0)) // len(m.group(1))}", text)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(arg: RawValue, width: int = 160) -> str:
    encoding = arg.payload.metadata.get("encoding", b"").decode(errors="replace")
    data = arg.payload.data
    if encoding == "json/plain":
        return visible(data.decode("utf-8", "replace"), width)
    shown = visible(repr(data[:40]), 80) + ("…" if len(data) > 40 else "")
    return f"<{encoding} {len(data)}B {shown}>"


@dataclass
class Send:
    """One message to a session: a start, a signal, an update or a query."""

    kind: str
    name: str
    args: list[RawValue]
    shape: str = "valid"
    """What the generator did to the payload (`valid`, `binary`, `field:timeout_seconds`...)."""
    check_output: bool = False
    """A valid exec of `CHECK`: its stdout must be the session's own id."""
    note: str = ""
    """What is hostile about it, when the payload is too long to show that (a start)."""

    @property
    def label(self) -> str:
        """The message in one line (a start's payload cut short, its note said)."""
        width = 100 if self.kind == "start" else 160
        shown = ", ".join(describe(a, width) for a in self.args)
        case = f"{self.shape}: {self.note}" if self.note else self.shape
        return f"{self.kind} {visible(self.name, 40)}({shown}) [{case}]"

    @property
    def detail(self) -> str:
        """The message in full (but for 1 MiB strings, folded), for the sessions' log."""
        shown = ", ".join(describe(a, 4000) for a in self.args)
        case = f"{self.shape}: {self.note}" if self.note else self.shape
        return f"{self.kind} {visible(self.name, 40)}({shown}) [{case}]"


# ---------------------------------------------------------------------------------- generator

NASTY_STRINGS = [
    "",
    " ",
    "a\nb",
    "crlf\r\n",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;pwned\x07",
    "nul\x00byte",
    "tab\there",
    "\x7f",
    "\u202eevil",
    "\ud800",
    "déploiement-🚀",
    "  padded  ",
    "'; DROP TABLE cost_events;--",
    "$(id)",
    "%s%s%n",
    "{{7*7}}",
    "null",
]
NASTY_NUMBERS: list[Any] = [
    1e14,
    1e300,
    math.inf,
    -math.inf,
    math.nan,
    -1,
    0,
    -0.0,
    1e-300,
    0.001,
    2**63,
    10**40,
    True,
    "10",
]
ORGS = ["acme", "beta", "Zoë-org"]
ISSUES = [None, "ISS-1", "ISS-é🚀"]
SHAPES = (
    "valid valid field field field missing unknown not-object binary non-json truncated "
    "deep no-args two-args huge"
).split()
INVALID_STARTS = (
    "non-json truncated deep-300 binary not-object null no-args two-args unknown-field "
    "pool-unknown-field bad-session-id huge-org huge-env env-bad-name env-nul wrong-types "
    "keep-alive=-1 keep-alive=NaN gate-ceiling=-1 gate-ceiling=NaN pool.timeout=1e14 "
    "pool.timeout=1e300 pool.timeout=Infinity pool.timeout=NaN pool.timeout=-1"
).split()
"""Starts that must fail `InvalidInput`."""
EITHER_STARTS = (
    "keep-alive=1e14 keep-alive=1e300 keep-alive=Infinity gate-ceiling=1e14 "
    "gate-ceiling=1e300 gate-ceiling=Infinity gate-ceiling=0.001 org-control org-esc "
    "issue-newline issue-control"
).split()
"""Starts that may be refused (`InvalidInput`) or run, but must never wedge or misbill."""
FORGED_STARTS = (
    "carry-victim session-mismatch-victim carry-fake session-mismatch-ghost carry-ancient "
    "carry-paused-gate"
).split()
"""Starts that reach for what is not theirs: all must fail `InvalidInput`."""
ENDINGS = (
    "finish finish finish finish-noargs cancel terminate cancel-races-finish "
    "terminate-races-finish cancel-races-decision terminate-races-decision "
    "finish-races-decision cancel-while-terminating gate-timeout-terminate"
).split()


class Generator:
    """Hostile payloads, all drawn from one `random.Random`."""

    def __init__(self, rng: random.Random, secret: str, huge_rate: float = 0.02) -> None:
        self.rng = rng
        self.secret = secret
        self.huge_rate = huge_rate

    # ------------------------------------------------------------ values

    def string(self) -> str:
        if self.rng.random() < self.huge_rate:
            return self.rng.choice(["x" * MIB, self.secret + "y" * MIB])
        return self.rng.choice(NASTY_STRINGS)

    def number(self) -> Any:
        return self.rng.choice(NASTY_NUMBERS)

    def nested(self, depth: int) -> Any:
        value: Any = "deep"
        for _ in range(depth):
            value = {"a": value} if self.rng.random() < 0.5 else [value]
        return value

    def value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if r < 0.3:
            return self.number()
        if r < 0.6:
            return self.string()
        if r < 0.7:
            return self.rng.choice([None, True, False])
        if r < 0.8 and depth < 2:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if r < 0.93 and depth < 2:
            return {
                self.string()[:64]: self.value(depth + 1) for _ in range(self.rng.randint(0, 3))
            }
        return self.nested(self.rng.choice([20, 300]))

    def secret_env(self) -> dict[str, str]:
        return {"FUZZ_TOKEN": self.secret}

    # ------------------------------------------------------------ payload shapes

    def payload(
        self,
        valid: dict[str, Any],
        nasty: dict[str, Callable[[], Any]],
        *,
        secret_in: str | None = None,
        shapes: list[str] | None = None,
    ) -> tuple[list[RawValue], str]:
        """A valid object, or one of the hostile shapes of it; the secret is planted (in the
        `secret_in` env map) in every malformed one."""
        rng = self.rng
        shape = rng.choice(shapes or SHAPES)
        if shape == "valid":
            return [js(valid)], shape
        obj = dict(valid)
        if secret_in:
            obj[secret_in] = {**(obj.get(secret_in) or {}), **self.secret_env()}
        text = json.dumps(obj, allow_nan=True)
        if shape == "field":
            key = rng.choice(sorted(nasty))
            obj[key] = nasty[key]()
            return [js(obj)], f"field:{key}"
        if shape == "missing":
            key = rng.choice(sorted(obj))
            del obj[key]
            return [js(obj)], f"missing:{key}"
        if shape == "unknown":
            key = rng.choice(["bogus", "carry", "__class__", "force", "gate ", self.string()[:32]])
            obj[key] = self.value()
            return [js(obj)], "unknown-field"
        if shape == "not-object":
            return [js(rng.choice(["x", [obj], None, 5, 1.5, True, ""]))], shape
        if shape == "binary":
            data = rng.choice([text.encode(), bytes(rng.randrange(256) for _ in range(32))])
            return [raw(data, BINARY_PLAIN)], shape
        if shape == "non-json":
            return [raw(rng.choice(self.non_json(text)))], shape
        if shape == "truncated":
            return [raw(self.truncate(text).encode())], shape
        if shape == "deep":
            if rng.random() < 0.5:
                return [raw(b"[" * 300 + b"]" * 300)], "deep-300-raw"
            obj[rng.choice(sorted(obj))] = self.nested(300)
            return [js(obj)], "deep-300"
        if shape == "no-args":
            return [], shape
        if shape == "two-args":
            return [js(obj), js(obj)], shape
        # huge: one string field 1 MiB long
        strings = [k for k, v in obj.items() if isinstance(v, str)] or sorted(obj)
        key = rng.choice(strings)
        obj[key] = rng.choice(["x" * MIB, self.secret + "z" * MIB])
        return [js(obj)], f"huge:{key}"

    def non_json(self, text: str) -> list[bytes]:
        return [
            b"{not json",
            b"\xff\xfe\x00garbage",
            b"{'single': 'quotes'}",
            text.encode() + b"}}",
            b"NaNx",
            b"",
            text.encode().replace(b":", b"=", 1),
        ]

    def truncate(self, text: str) -> str:
        """Cut somewhere after the secret when it is there, so a parser's echo would show it."""
        at = text.find(self.secret)
        low = at + len(self.secret) if at >= 0 else 1
        return text[: self.rng.randint(min(low, len(text) - 1), len(text) - 1)]

    # ------------------------------------------------------------ messages

    def gate_request(self, gate: str, *, timeout: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"gate": gate}
        if self.rng.random() < 0.5:
            body["title"] = self.rng.choice(["Deploy", "承認してください 🙏", "multi\nline title"])
        if timeout is not None:
            body["timeout_seconds"] = timeout
            body["on_timeout"] = "reject"
        return body

    def decision(self, gate: str) -> dict[str, Any]:
        body: dict[str, Any] = {"gate": gate, "by": self.rng.choice(["ana", "Zoë 🙂", "bot"])}
        if self.rng.random() < 0.5:
            body["comment"] = self.rng.choice(["ok", "line1\nline2", "ship it 👍"])
        return body

    def exec_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"command": CHECK}
        if self.rng.random() < 0.5:
            body["timeout_seconds"] = self.rng.choice([5, 30, 120.5])
        return body

    def gate_nasties(self) -> dict[str, Callable[[], Any]]:
        return {
            "gate": self.string,
            "title": self.string,
            "timeout_seconds": self.number,
            "on_timeout": lambda: self.rng.choice(["explode", None, 5, "Terminate", ""]),
        }

    def decision_nasties(self) -> dict[str, Callable[[], Any]]:
        return {"gate": self.string, "by": self.string, "comment": self.string}

    def exec_nasties(self) -> dict[str, Callable[[], Any]]:
        s = self.secret
        return {
            "command": lambda: self.rng.choice(
                ["", "x" * (128 * 1024 + 1), 5, None, "\x00true", "exit 3", "sleep 0.2"]
            ),
            "env": lambda: self.rng.choice(
                [
                    {"BAD-NAME": s},
                    {"1X": s},
                    {"K": s + "\x00"},
                    {"K": s + "y" * 40000},
                    {"K": 5},
                    ["K", s],
                    {"": s},
                    {f"V{i}": s for i in range(300)},
                ]
            ),
            "cwd": lambda: self.rng.choice(["\x00", "../../../..", "x" * 5000, 5, "/nonexistent"]),
            "timeout_seconds": self.number,
        }

    def traffic(self, gates: list[str], new_gate: Callable[[], str]) -> Send:
        """One random message for a running (or paused) session."""
        rng = self.rng
        known = rng.choice(gates) if gates and rng.random() < 0.6 else rng.choice(["nope", "g"])
        kind = rng.choices(
            [
                "request_approval",
                "approve",
                "reject",
                "finish",
                "unknown-signal",
                "exec",
                "request_gate",
                "approve_gate",
                "reject_gate",
                "unknown-update",
                "status",
            ],
            weights=[8, 8, 6, 5, 4, 12, 8, 8, 6, 3, 6],
        )[0]
        if kind in ("request_approval", "request_gate"):
            # A valid request gets a short timeout: it pauses the sandbox, then resolves itself.
            valid = self.gate_request(new_gate(), timeout=round(rng.uniform(1, 3), 2))
            args, shape = self.payload(valid, self.gate_nasties())
            return Send("signal" if kind == "request_approval" else "update", kind, args, shape)
        if kind in ("approve", "reject", "approve_gate", "reject_gate"):
            args, shape = self.payload(self.decision(known), self.decision_nasties())
            return Send("signal" if kind in ("approve", "reject") else "update", kind, args, shape)
        if kind == "finish":  # never a valid finish: that is the ending's job
            junk = [
                ([js("now")], "not-object"),
                ([js({"force": True})], "unknown-field"),
                ([js(None)], "null"),
                ([js([])], "not-object"),
                ([raw(b"{}", BINARY_PLAIN)], "binary"),
                ([raw(b"{not json")], "non-json"),
                ([js({}), js({})], "two-args"),
                ([js(self.nested(300))], "deep-300"),
            ]
            args, shape = rng.choice(junk)
            return Send("signal", "finish", args, shape)
        if kind == "unknown-signal":
            name = rng.choice(
                ["approve_all", "FINISH", "Approve", "request-approval", "\x1b[2J", "x" * 300, ""]
            )
            args = rng.choice([[js(self.value())], [], [raw(b"\x00\x01", BINARY_PLAIN)]])
            return Send("signal", name, args, "unknown-name")
        if kind == "exec":
            args, shape = self.payload(self.exec_request(), self.exec_nasties(), secret_in="env")
            return Send("update", "exec", args, shape, check_output=shape == "valid")
        if kind == "unknown-update":
            name = rng.choice(["approve_all", "Exec", "finish", "status", "x" * 300])
            return Send("update", name, [js(self.value())], "unknown-name")
        if rng.random() < 0.2:
            return Send("query", "status", [js(self.value())], "extra-arg")
        return Send("query", "status", [], "valid")

    def targeted(self, gates: list[str]) -> Send:
        """One of the messages the issue names, for sure (the random ones may miss them):
        the five hostile numbers as exec and gate timeouts, bytes instead of an object, the
        wrong number of arguments, the secret in a refused exec's env."""
        rng = self.rng
        what = rng.choice(
            ["exec-timeout", "gate-timeout", "gate-timeout-signal", "bytes", "arity", "env"]
        )
        number = rng.choice([1e14, 1e300, math.inf, math.nan, -1])
        if what == "exec-timeout":
            body = {"command": CHECK, "timeout_seconds": number, "env": self.secret_env()}
            return Send("update", "exec", [js(body)], f"targeted:timeout={number}")
        if what.startswith("gate-timeout"):
            body = {"gate": f"t-{rng.randrange(1 << 16)}", "timeout_seconds": number}
            if what.endswith("signal"):
                return Send("signal", "request_approval", [js(body)], f"targeted:timeout={number}")
            return Send("update", "request_gate", [js(body)], f"targeted:timeout={number}")
        if what == "bytes":
            name = rng.choice(["exec", "request_gate", "approve_gate", "reject_gate"])
            data = json.dumps({"command": CHECK, "gate": "g", "by": "ana"}).encode()
            kind = "update"
            if rng.random() < 0.3:
                name, kind = rng.choice(["approve", "reject", "request_approval"]), "signal"
            return Send(kind, name, [raw(data, BINARY_PLAIN)], "targeted:binary")
        if what == "arity":
            name = rng.choice(["exec", "request_gate", "approve_gate"])
            body = {"command": CHECK, "gate": rng.choice(gates or ["g"]), "by": "ana"}
            args = rng.choice([[], [js(body), js(body)]])
            return Send("update", name, args, f"targeted:{len(args)}-args")
        env = rng.choice([{"BAD-NAME": self.secret}, {"K": self.secret + "\x00"}])
        return Send("update", "exec", [js({"command": CHECK, "env": env})], "targeted:env")

    # ------------------------------------------------------------ starts

    def valid_start(self, sid: str, **extra: Any) -> dict[str, Any]:
        rng = self.rng
        body: dict[str, Any] = {
            "session_id": sid,
            "org_id": rng.choice(ORGS),
            "issue_id": rng.choice(ISSUES),
            "pool": {"templateId": "base", "timeoutSeconds": rng.choice([30, 60, 900])},
            "env_vars": {"FUZZ_SID": sid},
        }
        r = rng.random()
        if r < 0.25:
            body["keep_alive_interval_seconds"] = rng.choice([1, 2.5])
        elif r < 0.4:
            body["continue_as_new_after_events"] = 50
        body.update(extra)
        return body

    def start(self, sid: str, case: str, victim: tuple[str, str] | None = None) -> Send:
        """The start for `case` (`valid`, or one of INVALID/EITHER/FORGED_STARTS)."""
        rng = self.rng
        if case == "valid":
            return Send("start", WORKFLOW_TYPE, [js(self.valid_start(sid))], "valid")
        body = self.valid_start(sid)
        body["env_vars"] = {**self.secret_env(), **body["env_vars"]}
        text = json.dumps(body, allow_nan=True)
        args: list[RawValue] = []
        changes: dict[str, Any] | None = None
        note = ""
        if case == "non-json":
            args, note = [raw(text.encode()[:-1] + b", oops}")], "', oops' before the last brace"
        elif case == "truncated":
            cut = self.truncate(text)
            args, note = [raw(cut.encode())], f"cut after {len(cut)} of {len(text)} bytes"
        elif case == "deep-300":
            changes = {"pool": self.nested(300)}
        elif case == "binary":
            args, note = [raw(text.encode(), BINARY_PLAIN)], "a valid input's JSON as binary/plain"
        elif case == "not-object":
            value = rng.choice(["x", [body], 5, True])
            args, note = [js(value)], f"a {type(value).__name__} instead of an object"
        elif case == "null":
            args = [js(None)]
        elif case == "no-args":
            args = []
        elif case == "two-args":
            args = [js(body), js(body)]
        elif case == "unknown-field":
            changes = {"bogus": self.value()}
        elif case == "pool-unknown-field":
            changes = {"pool": {**body["pool"], "bogus": 1}}
        elif case == "bad-session-id":
            changes = {"session_id": rng.choice(["../etc/passwd", "a b", "", "-x", "x" * 200, "é"])}
        elif case == "huge-org":
            changes = {"org_id": "o" * MIB}
        elif case == "huge-env":
            changes = {"env_vars": {"FUZZ_TOKEN": self.secret + "h" * MIB}}
        elif case == "env-bad-name":
            changes = {"env_vars": {"1BAD": self.secret, "FUZZ_SID": sid}}
        elif case == "env-nul":
            changes = {"env_vars": {"FUZZ_TOKEN": self.secret + "\x00"}}
        elif case == "wrong-types":
            field_, value = rng.choice(
                [("org_id", 5), ("pool", "base"), ("env_vars", ["a"]), ("issue_id", {"a": 1})]
            )
            changes = {field_: value}
        elif "=" in case:
            where, number = case.split("=")
            value = float(number)
            if where == "keep-alive":
                changes = {"keep_alive_interval_seconds": value}
            elif where == "gate-ceiling":
                changes = {"gate_ceiling_seconds": value}
            else:  # pool.timeout
                changes = {"pool": {**body["pool"], "timeoutSeconds": value}}
        elif case == "org-control":
            changes = {"org_id": rng.choice(["a\nb", "nul\x00org", "tab\torg"])}
        elif case == "org-esc":
            changes = {"org_id": "\x1b[31mred\x1b[0m"}
        elif case == "issue-newline":
            changes = {"issue_id": "ISS-1\nforged: line"}
        elif case == "issue-control":
            changes = {"issue_id": "\x1b]0;pwned\x07\x7f"}
        else:
            changes, note = self.forged(sid, case, victim)
        if changes is not None:
            args = [js({**body, **changes})]
            note = note or visible(json.dumps(changes, allow_nan=True), 140)
        return Send("start", WORKFLOW_TYPE, args, case, note=note)

    def forged(
        self, sid: str, case: str, victim: tuple[str, str] | None
    ) -> tuple[dict[str, Any], str]:
        """A start reaching for another session's sandbox or identity: the fields, and a note."""
        rng = self.rng
        victim_sid, sandbox = victim or ("", "")
        whose = f"session {victim_sid}'s sandbox" if victim else "a sandbox no one made"
        if case == "session-mismatch-victim" and victim:
            return {"session_id": victim_sid}, f"session_id {victim_sid} (a live session's)"
        if case.startswith("session-mismatch"):
            ghost = f"ghost-{rng.randrange(1 << 32):08x}"
            return {"session_id": ghost}, f"session_id {ghost} under workflow id session-{sid}"
        if case == "carry-fake" or not sandbox:
            sandbox, whose = f"ifuzzfake{rng.randrange(1 << 40):010x}", "a sandbox no one made"
        now = datetime.now(UTC)
        started = datetime(2001, 1, 1, tzinfo=UTC) if case == "carry-ancient" else now
        state = "paused" if case == "carry-paused-gate" else "running"
        gates = []
        if state == "paused":
            gates = [{"gate": "forged", "state": "waiting", "requested_at": now.isoformat()}]
        carry = {
            "state": state,
            "handle": {
                "sandbox_id": sandbox,
                "template_id": "base",
                "provider": "e2b",
                "started_at": started.isoformat(),
            },
            "gates": gates,
            "segments": [{"state": state, "start": started.isoformat(), "end": None}],
            "finish_requested": False,
            "runner_pid": None,
        }
        note = f"carry: {state} on {sandbox} ({whose}) since {started:%Y-%m-%d %H:%M:%S}"
        return {"carry": carry}, note


# ---------------------------------------------------------------------------------- results


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


@dataclass
class Report:
    seed: int
    sessions: int = 0
    messages: int = 0
    kills: int = 0
    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Worth a look, not an invariant broken: hostile text copied raw into a log, the
    emulator's own errors."""

    def summary(self) -> str:
        return (
            f"fuzz: {self.sessions} sessions, {self.messages} messages, {self.kills} worker kills, "
            f"{len(self.violations)} violations (seed {self.seed})"
        )

    def figures_line(self) -> str:
        return "fuzz figures: " + ", ".join(f"{k}={v}" for k, v in self.figures.items())


# ---------------------------------------------------------------------------------- the stack


@dataclass
class FuzzStack:
    """A dev server (or a given address), a private emulator, a SQLite ledger, worker processes."""

    client: Client
    address: str
    emu: EmulatorHandle
    queue: str
    ledger_url: str
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    async def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(
            address=self.address,
            queue=self.queue,
            ledger_url=self.ledger_url,
            emu=self.emu,
            log=self.workdir / f"worker-{len(self.workers)}.log",
        )
        self.workers.append(worker)
        return await worker.start()

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


_RUNTIME: Runtime | None = None


def _quiet_runtime() -> Runtime:
    """The fuzz client's own runtime: its 1 MiB payloads would print a size warning each."""
    global _RUNTIME
    if _RUNTIME is None:
        quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
        _RUNTIME = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))
    return _RUNTIME


@contextlib.asynccontextmanager
async def fuzz_stack(
    workdir: Path, *, address: str | None = None, workers: int = 2
) -> AsyncIterator[FuzzStack]:
    """Everything a campaign needs; a dev server of its own unless `address` is given."""
    workdir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        if address is None:
            server = DevServer(workdir / "temporal.db", workdir / "temporal.log")
            stack.callback(server.stop)
            await server.start()
            address = server.address
        client = await Client.connect(
            address, data_converter=pydantic_data_converter, runtime=_quiet_runtime()
        )
        emu = await stack.enter_async_context(
            running_emulator(templates_file=DEMO_TEMPLATES, api_key="e2b_fuzz")
        )
        fuzz = FuzzStack(
            client=client,
            address=address,
            emu=emu,
            queue=f"fuzz-{uuid.uuid4().hex[:8]}",
            ledger_url=f"sqlite:///{workdir / 'ledger.db'}",
            workdir=workdir,
        )
        stack.callback(fuzz.stop)
        await asyncio.gather(*(fuzz.start_worker() for _ in range(workers)))
        yield fuzz


# ---------------------------------------------------------------------------------- driving


@dataclass
class Answer:
    ok: bool
    value: Any = None
    error: str | None = None
    timed_out: bool = False


@dataclass
class Plan:
    index: int
    kind: str
    """`valid`, `invalid` (a batch of starts that must be refused), `either`, `forged`."""
    cases: list[str]
    sids: list[str]


def error_text(err: BaseException) -> str:
    """An error and its causes, as a caller sees them."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = getattr(current, "cause", None) or current.__cause__
    return " <- ".join(parts)


class SessionDriver:
    """Drives one session id: its start, its traffic, its ending, maybe a restart."""

    def __init__(self, campaign: Campaign, sid: str, rng: random.Random) -> None:
        self.c = campaign
        self.cfg = campaign.cfg
        self.sid = sid
        self.rng = rng
        self.gen = Generator(rng, campaign.secret, campaign.cfg.huge_rate)
        self.wid = workflow_id_for(sid)
        self.handle: WorkflowHandle[Any, Any] = campaign.stack.client.get_workflow_handle(self.wid)
        self.gates: list[str] = []
        self._gate_no = 0
        self.wedged = False
        self.query_failed = False
        campaign.sends.setdefault(sid, [])

    # ------------------------------------------------------------ sending

    def new_gate(self) -> str:
        self._gate_no += 1
        name = self.rng.choice(["deploy", "publish", "déploiement-🚀", "pay"])
        return f"{name}-{self._gate_no}"

    def log(self, label: str, outcome: str) -> None:
        self.c.sends[self.sid].append((time.time(), label, outcome, ""))

    async def send(self, s: Send) -> Answer:
        self.c.messages += 1
        began = time.time()
        self.c.sends[self.sid].append((began, s.label, "...", s.detail))
        index = len(self.c.sends[self.sid]) - 1
        answer = await self._send(s)
        outcome = "ok" if answer.ok else ("timeout" if answer.timed_out else answer.error or "")
        self.c.sends[self.sid][index] = (began, s.label, visible(outcome, 300), s.detail)
        if answer.error:
            self.c.answers.append((self.sid, s.label, answer.error))
            if TASK_FAILING in answer.error:
                self.wedged = True
        if answer.ok and s.check_output:
            self.check_exec_output(answer.value, s.label)
        if answer.timed_out and s.kind in ("update", "query"):
            await self.check_wedged()
        return answer

    async def _send(self, s: Send) -> Answer:
        client = self.c.stack.client
        try:
            if s.kind == "start":
                await asyncio.wait_for(
                    client.start_workflow(
                        s.name, args=s.args, id=self.wid, task_queue=self.c.stack.queue
                    ),
                    self.cfg.signal_timeout,
                )
                self.handle = client.get_workflow_handle(self.wid)
                self.c.started.add(self.sid)
                return Answer(True)
            if s.kind == "signal":
                await asyncio.wait_for(
                    self.handle.signal(s.name, args=s.args), self.cfg.signal_timeout
                )
                return Answer(True)
            if s.kind == "update":
                value = await asyncio.wait_for(
                    self.handle.execute_update(s.name, args=s.args), self.cfg.update_timeout
                )
                return Answer(True, value)
            value = await asyncio.wait_for(
                self.handle.query(s.name, args=s.args), self.cfg.signal_timeout
            )
            return Answer(True, value)
        except TimeoutError:
            return Answer(False, timed_out=True)
        except Exception as err:  # noqa: BLE001 - every refusal is an answer to record
            return Answer(False, error=error_text(err))

    def check_exec_output(self, value: Any, label: str) -> None:
        stdout = value.get("stdout") if isinstance(value, dict) else None
        if stdout is not None and stdout != self.sid:
            self.c.reached(self.sid, visible(stdout, 80) or "?", "?", "exec output")

    async def status(self) -> dict[str, Any] | None:
        """The `status` query (counted as a message), its sandbox noted for the checks."""
        s = Send("query", "status", [], "valid")
        self.c.messages += 1
        try:
            value = await asyncio.wait_for(self.handle.query("status"), self.cfg.signal_timeout)
        except WorkflowQueryFailedError as err:
            if not self.query_failed and not self.wedged:
                self.query_failed = True
                self.c.violation(
                    1, self.sid, f"status query failed: {visible(str(err), 200)}", self.last_send()
                )
            self.log(s.label, f"failed: {err}")
            return None
        except Exception as err:  # noqa: BLE001 - a killed worker, a closed workflow: retried
            text = error_text(err)
            self.log(s.label, visible(text, 200))
            if TASK_FAILING in text:
                self.wedged = True
            return None
        if isinstance(value, dict):
            self.c.observe(self.sid, value)
            if value.get("error"):
                self.c.answers.append((self.sid, "status.error", str(value["error"])))
            return value
        return None

    def last_send(self) -> str:
        sends = [label for _, label, *_ in self.c.sends[self.sid] if not label.startswith("query")]
        return sends[-1] if sends else ""

    async def describe(self) -> tuple[WorkflowExecutionStatus | None, int]:
        try:
            desc = await self.handle.describe()
        except Exception:  # noqa: BLE001 - not started, or the server is busy
            return None, 0
        raw_desc = desc.raw_description
        attempt = (
            raw_desc.pending_workflow_task.attempt
            if raw_desc.HasField("pending_workflow_task")
            else 0
        )
        return desc.status, attempt

    async def check_wedged(self) -> bool:
        status, attempt = await self.describe()
        if status == _RUNNING and attempt >= 2:
            failures = await task_failures(self.handle)
            if failures:
                self.wedged = True
        return self.wedged

    async def wait_state(self, states: set[str], timeout: float | None = None) -> str | None:
        """Poll `status` until the state is one of `states`, the workflow closes, or time runs
        out; the last state seen (`closed` when the workflow closed)."""
        deadline = time.monotonic() + (timeout or self.cfg.state_timeout)
        last: str | None = None
        polls = 0
        while time.monotonic() < deadline and not self.wedged:
            value = await self.status()
            self.c.messages -= 1  # polling is not traffic
            if value is not None:
                last = value.get("state")
                if last in states:
                    return last
            polls += 1
            if polls % 5 == 0:
                status, _ = await self.describe()
                if status is not None and status != _RUNNING:
                    return "closed"
                await self.check_wedged()
            await asyncio.sleep(0.2)
        return last

    async def wait_closed(self, timeout: float | None = None) -> str:
        """`closed`, `wedged` (a workflow task keeps failing), or `hung` (neither)."""
        deadline = time.monotonic() + (timeout or self.cfg.close_timeout)
        wedged_since: float | None = None
        while time.monotonic() < deadline:
            status, attempt = await self.describe()
            if status is not None and status != _RUNNING:
                return "closed"
            if attempt >= 2 and await task_failures(self.handle):
                wedged_since = wedged_since or time.monotonic()
                if time.monotonic() - wedged_since > 3:
                    self.wedged = True
                    return "wedged"
            await asyncio.sleep(0.5)
        return "hung"

    async def cancel(self) -> None:
        self.c.messages += 1
        try:
            await self.handle.cancel()
            self.log("cancel", "ok")
        except Exception as err:  # noqa: BLE001
            self.log("cancel", visible(error_text(err), 200))

    async def terminate(self, reason: str = "fuzz") -> None:
        self.c.messages += 1
        try:
            await self.handle.terminate(reason=reason)
            self.log(f"terminate ({reason})", "ok")
        except Exception as err:  # noqa: BLE001
            self.log(f"terminate ({reason})", visible(error_text(err), 200))

    async def close_or_terminate(self, why: str) -> str:
        """Wait for the workflow to close; a wedged or hung one is terminated (and reported).

        A session may rightly still wait for a human (a gate the traffic requested without a
        timeout queued before the ending's own): a valid `finish` after a while must end it.
        """
        first = min(45.0, self.cfg.close_timeout)
        outcome = await self.wait_closed(first)
        if outcome == "hung":
            if "cancel" in why:
                self.c.violation(
                    1, self.sid, f"still open {first:.0f}s after {why}", self.last_send()
                )
            await self.send(Send("signal", "finish", [js({})], "valid"))
            outcome = await self.wait_closed(self.cfg.close_timeout - first)
        if outcome == "hung":
            state = await self.status()
            self.c.violation(
                1,
                self.sid,
                f"not closed {self.cfg.close_timeout:.0f}s after {why} and a finish "
                f"(state {state and state.get('state')}, no failed workflow task)",
                self.last_send(),
            )
        if outcome != "closed":
            await self.terminate(f"fuzz: {outcome} after {why}")
        return outcome

    # ------------------------------------------------------------ flows

    async def run_valid(self, start: Send, *, gate_cycle: bool = False) -> None:
        answer = await self.send(start)
        if not answer.ok:
            self.c.violation(0, self.sid, f"a valid start was refused: {answer.error}", start.label)
            return
        await self.drive(gate_cycle=gate_cycle)

    async def drive(self, *, gate_cycle: bool = False, short: bool = False) -> None:
        """Traffic on a started session, then its ending, then what follows an ending."""
        await self.wait_state({"running", "paused"})
        low, high = self.cfg.messages
        count = self.rng.randint(3, 6) if short else self.rng.randint(low, high)
        if gate_cycle:
            await self.gate_cycle()
        await self.exec_check()
        for _ in range(0 if short else 3):
            await self.send(self.gen.targeted(self.gates))
        for _ in range(count):
            if self.wedged:
                break
            r = self.rng.random()
            if r < 0.1:
                await self.gate_cycle()
            elif r < 0.2:
                await self.exec_check()
            elif r < 0.23:
                await self.duplicate_start()
            else:
                send = self.gen.traffic(self.gates, self._new_known_gate)
                await self.send(send)
            if self.rng.random() < 0.3:
                await asyncio.sleep(self.rng.uniform(0, 0.3))
        ending = self.rng.choice(ENDINGS)
        if self.wedged:
            ending = "finish"
        await self.end(ending)
        await self.after_end()

    def _new_known_gate(self) -> str:
        name = self.new_gate()
        self.gates.append(name)
        return name

    async def exec_check(self) -> None:
        args = [js({"command": CHECK})]
        await self.send(Send("update", "exec", args, "valid", check_output=True))

    async def duplicate_start(self) -> None:
        await self.send(Send("start", WORKFLOW_TYPE, [js(self.gen.valid_start(self.sid))], "dup"))

    async def gate_cycle(self) -> None:
        gate = self._new_known_gate()
        answer = await self.send(
            Send("update", "request_gate", [js(self.gen.gate_request(gate))], "valid")
        )
        if not answer.ok:
            return
        await self.wait_state({"paused"})
        for _ in range(self.rng.randint(0, 3)):
            await self.send(self.gen.traffic(self.gates, self._new_known_gate))
        await self.decide(gate)
        if await self.wait_state({"running"}, timeout=10) == "paused":
            await self.settle()
            await self.wait_state({"running"})

    async def settle(self) -> None:
        """Approve every gate still waiting (the traffic may have queued one with no timeout)."""
        value = await self.status()
        for gate in (value or {}).get("gates") or []:
            if gate.get("state") == "waiting":
                body = {"gate": gate.get("gate"), "by": "fuzz-settle"}
                await self.send(Send("signal", "approve", [js(body)], "valid"))

    async def decide(self, gate: str) -> None:
        name = self.rng.choice(["approve", "reject", "approve_gate", "reject_gate"])
        kind = "update" if name.endswith("_gate") else "signal"
        await self.send(Send(kind, name, [js(self.gen.decision(gate))], "valid"))

    async def end(self, ending: str) -> None:
        finish = Send("signal", "finish", [js({})], "valid")
        if ending == "finish":
            await self.send(finish)
        elif ending == "finish-noargs":
            await self.send(Send("signal", "finish", [], "no-args"))
        elif ending == "cancel":
            await self.cancel()
        elif ending == "terminate":
            await self.terminate()
        elif ending == "cancel-races-finish":
            await asyncio.gather(self.send(finish), self.cancel())
        elif ending == "terminate-races-finish":
            await self.send(finish)
            await asyncio.sleep(self.rng.uniform(0, 0.5))
            await self.terminate()
        elif ending.endswith("-races-decision"):
            gate = self._new_known_gate()
            await self.send(Send("update", "request_gate", [js({"gate": gate})], "valid"))
            await self.wait_state({"paused"})
            if ending == "cancel-races-decision":
                await asyncio.gather(self.decide(gate), self.cancel())
            elif ending == "terminate-races-decision":
                await asyncio.gather(self.decide(gate), self.terminate())
            else:
                await asyncio.gather(self.decide(gate), self.send(finish))
        elif ending == "cancel-while-terminating":
            await self.send(finish)
            await self.wait_state({"terminating"}, timeout=5)
            await self.cancel()
        else:  # gate-timeout-terminate
            body = {"gate": self._new_known_gate(), "timeout_seconds": 1, "on_timeout": "terminate"}
            await self.send(Send("update", "request_gate", [js(body)], "valid"))
        self.log(f"ending {ending}", "")
        await self.close_or_terminate(f"ending {ending}")

    async def after_end(self) -> None:
        """Messages to an ended session; sometimes the same id started again."""
        if self.rng.random() < 0.5:
            await self.send(Send("signal", "approve", [js({"gate": "late", "by": "ana"})]))
            await self.send(Send("update", "exec", [js({"command": CHECK})]))
            await self.status()
        if self.rng.random() < self.cfg.restart_rate:
            start = Send("start", WORKFLOW_TYPE, [js(self.gen.valid_start(self.sid))], "restart")
            if (await self.send(start)).ok:
                await self.wait_state({"running", "paused"})
                await self.exec_check()
                await self.send(Send("signal", "finish", [js({})], "valid"))
                await self.close_or_terminate("finish after a restart")

    async def verdict(self) -> tuple[str, str]:
        """What became of a start: (`refused`, type) / (`accepted`, state) / (`wedged`, failure)
        / (`failed`, type and message) / (`hung`, state) / (`closed`, status)."""
        deadline = time.monotonic() + self.cfg.verdict_timeout
        wedged_since: float | None = None
        state: str | None = None
        while time.monotonic() < deadline:
            status, attempt = await self.describe()
            if status is not None and status != _RUNNING:
                return await self.failure_of_closed(status)
            if attempt >= 2:
                failures = await task_failures(self.handle)
                if failures:
                    wedged_since = wedged_since or time.monotonic()
                    if time.monotonic() - wedged_since > 3:
                        self.wedged = True
                        return "wedged", failures[0]
            value = await self.status()
            self.c.messages -= 1
            if value is not None:
                state = value.get("state")
                if state in ("running", "paused"):
                    return "accepted", state
            await asyncio.sleep(0.3)
        return "hung", f"state {state}"

    async def failure_of_closed(self, status: WorkflowExecutionStatus) -> tuple[str, str]:
        try:
            await asyncio.wait_for(self.handle.result(), self.cfg.signal_timeout)
        except WorkflowFailureError as err:
            self.c.answers.append((self.sid, "result", error_text(err)))
            cause = err.cause
            if isinstance(cause, ApplicationError):
                if cause.type == "InvalidInput" and cause.non_retryable:
                    return "refused", "InvalidInput"
                return "failed", f"{cause.type} (non_retryable={cause.non_retryable}): {cause}"
            return "closed", f"{status.name}: {error_text(err)}"
        except Exception as err:  # noqa: BLE001
            return "closed", f"{status.name}: {error_text(err)}"
        return "closed", status.name

    async def run_checked_start(self, start: Send, expect: str) -> None:
        """A start that must be refused (`refuse`) or may be (`either`): judged, then, if it
        ran, driven like any session so its consequences are checked too."""
        answer = await self.send(start)
        if not answer.ok:
            self.log("start refused at the door", answer.error or "")
            return
        verdict, detail = await self.verdict()
        self.log(f"verdict {verdict}", detail)
        self.c.figures["starts_" + verdict] = self.c.figures.get("starts_" + verdict, 0) + 1
        if verdict == "refused":
            return
        if verdict in ("wedged", "hung"):
            if expect == "refuse":
                self.c.violation(
                    6, self.sid, f"{start.shape}: not refused, {verdict}: {detail}", start.label
                )
            elif verdict == "hung":
                what = f"{start.shape}: neither refused nor running ({detail})"
                self.c.violation(1, self.sid, what, start.label)
            await self.terminate(f"fuzz: start {verdict}")
            return
        if verdict in ("failed", "closed"):
            self.c.violation(
                6, self.sid, f"{start.shape}: ended {detail}, not InvalidInput", start.label
            )
            return
        # accepted: it runs
        if expect == "refuse":
            value = await self.status()
            sandbox = value.get("sandbox_id") if value else None
            self.c.violation(
                6,
                self.sid,
                f"{start.shape}: accepted (state {detail}, sandbox {sandbox})",
                start.label,
            )
        await self.drive(gate_cycle=True, short=expect == "refuse")


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


# ---------------------------------------------------------------------------------- campaign


class Campaign:
    def __init__(self, cfg: CampaignConfig, stack: FuzzStack) -> None:
        self.cfg = cfg
        self.stack = stack
        self.rng = random.Random(cfg.seed)
        self.tag = uuid.uuid4().hex[:4]
        self.secret = f"{SECRET_PREFIX}{uuid.uuid4().hex}"
        tail = self.secret.removeprefix(SECRET_PREFIX)
        self._fragments = [tail[i : i + 12] for i in range(len(tail) - 11)]
        """Any 12 characters of the secret's random part count as a leak: an error message
        that shortens what it echoes (pydantic's `input_value='{"...ET-3f2a..."}'`) still
        shows part of a real secret."""
        self.notes: list[str] = []
        """What is not an invariant broken but worth a look (log injection, emulator errors)."""
        self.messages = 0
        self.kills = 0
        self.sends: dict[str, list[tuple[float, str, str, str]]] = {}
        """Per session: (when, the message in short, the answer, the message in full)."""
        self.answers: list[tuple[str, str, str]] = []
        """(session, what was sent, the error or text the caller got back)."""
        self.observed: set[tuple[str, str]] = set()
        """(session, sandbox) pairs the `status` query showed."""
        self.victims: dict[str, str] = {}
        """Running (valid) sessions' sandboxes, for the forged starts to reach for."""
        self.valid: set[str] = set()
        self.started: set[str] = set()
        self._victim_rng = random.Random(f"{cfg.seed}:victims")
        self._kill_rng = random.Random(f"{cfg.seed}:kills")
        self.figures: dict[str, int] = {}
        self.cross: dict[tuple[str, str], dict[str, set[str]]] = {}
        """(session, the session a sandbox it reached was created for) -> sandboxes, and how."""
        self._violations: dict[tuple[int, str, str], Violation] = {}
        self._passes = 0
        self.emulator_errors: dict[str, int] = {}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def leak_at(self, text: str) -> int:
        """Where a piece of the secret starts in `text`; -1 when there is none."""
        found = [at for f in self._fragments if (at := text.find(f)) >= 0]
        return min(found) if found else -1

    def around_leak(self, text: str, width: int = 90) -> str:
        at = self.leak_at(text)
        return visible(text[max(0, at - width) : at + 60], 2 * width + 40)

    def violation(self, invariant: int, session: str, what: str, repro: str = "") -> None:
        key = (invariant, session, re.sub(r"\d+(\.\d+)?", "#", what)[:120])
        self._violations.setdefault(key, Violation(invariant, session, what, repro))

    def observe(self, sid: str, status: dict[str, Any]) -> None:
        sandbox = status.get("sandbox_id")
        if sandbox:
            self.observed.add((sid, sandbox))
            own = status.get("session_id") == sid and sandbox not in self.victims.values()
            if status.get("state") == "running" and own and sid in self.valid:
                self.victims.setdefault(sid, sandbox)

    def reached(self, sid: str, owner: str, sandbox: str, how: str) -> None:
        """Evidence that session `sid` reached a sandbox created for `owner`."""
        entry = self.cross.setdefault((sid, owner), {"sandboxes": set(), "how": set()})
        if sandbox != "?":
            entry["sandboxes"].add(sandbox)
        entry["how"].add(how)

    # ------------------------------------------------------------ plans

    def plans(self) -> list[Plan]:
        """Valid sessions, batches of invalid starts, `either` starts and forged starts, in a
        fixed rotation so that even a small campaign covers each kind; cases in seeded order."""
        rotation = ["valid", "forged", "invalid", "valid", "either", "invalid"]
        rotation += ["valid", "forged", "either", "invalid", "valid", "valid"]
        decks = {
            "invalid": _deck(self.rng, INVALID_STARTS),
            "either": _deck(self.rng, EITHER_STARTS),
            "forged": _deck(self.rng, FORGED_STARTS),
        }
        plans: list[Plan] = []
        used = 0
        while used < self.cfg.sessions:
            kind = rotation[len(plans) % len(rotation)]
            count = min(3, self.cfg.sessions - used) if kind == "invalid" else 1
            cases = [next(decks[kind]) for _ in range(count)] if kind != "valid" else ["valid"]
            sids = [f"fz{self.cfg.seed}-{self.tag}-{used + i:03d}" for i in range(count)]
            plans.append(Plan(len(plans), kind, cases, sids))
            used += count
        return plans

    async def drive(self, plan: Plan) -> None:
        for case, sid in zip(plan.cases, plan.sids, strict=True):
            rng = random.Random(f"{self.cfg.seed}:{plan.index}:{case}")
            driver = SessionDriver(self, sid, rng)
            try:
                if plan.kind == "valid":
                    self.valid.add(sid)
                    await driver.run_valid(driver.gen.start(sid, "valid"))
                elif plan.kind == "forged":
                    victim = await self.victim(sid)
                    await driver.run_checked_start(driver.gen.start(sid, case, victim), "refuse")
                else:
                    expect = "refuse" if plan.kind == "invalid" else "either"
                    await driver.run_checked_start(driver.gen.start(sid, case), expect)
            except Exception:  # a bug in the fuzz suite itself: say so, loudly
                self.violation(0, sid, "driver error: " + traceback.format_exc(limit=3))

    async def victim(self, sid: str) -> tuple[str, str] | None:
        deadline = time.monotonic() + self.cfg.state_timeout
        while not self.victims and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if not self.victims:
            return None
        victim = self._victim_rng.choice(sorted(self.victims))
        return victim, self.victims[victim]

    async def kill_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        live = self.stack.live_workers()
        if not live:
            return
        victim = self._kill_rng.choice(live)
        victim.kill()
        self.kills += 1
        await self.stack.start_worker()

    async def run(self) -> Report:
        plans = self.plans()
        gate = asyncio.Semaphore(self.cfg.concurrency)
        kill_at = {
            round((k + 1) * len(plans) / (self.cfg.kills + 1)): k for k in range(self.cfg.kills)
        }
        tasks: list[asyncio.Task[None]] = []
        killers: list[asyncio.Task[None]] = []

        async def one(plan: Plan) -> None:
            try:
                await self.drive(plan)
            finally:
                gate.release()

        passes = asyncio.create_task(self.reconcile_every(self.cfg.reconcile_every))
        for plan in plans:
            await gate.acquire()
            if plan.index in kill_at:
                delay = self._kill_rng.uniform(0.5, 3.0)
                killers.append(asyncio.create_task(self.kill_later(delay)))
            tasks.append(asyncio.create_task(one(plan)))
        await asyncio.gather(*tasks)
        await asyncio.gather(*killers)
        passes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await passes
        self.figures["live_sandboxes_at_the_end"] = len(self.stack.emu.live_sandboxes())
        await self.reconcile()
        await Checks(self).run()
        for text, count in self.emulator_errors.items():
            self.note(f"the emulator logged ×{count}: {visible(text, 240)}")
        report = Report(
            seed=self.cfg.seed,
            sessions=sum(len(p.sids) for p in plans),
            messages=self.messages,
            kills=self.kills,
            violations=sorted(self._violations.values(), key=lambda v: (v.invariant, v.session)),
            figures=self.figures,
            notes=self.notes,
        )
        self.write_sends()
        return report

    async def reconcile_every(self, seconds: float) -> None:
        """The reconciler's Schedule, compressed: a pass every few seconds while sessions run
        (shorter than any fuzz sandbox's timeout, as a deployment's interval must be)."""
        while True:
            await asyncio.sleep(seconds)
            await self.reconcile()

    async def reconcile(self) -> None:
        """One stray-reconciler pass with every sandbox judged (grace 0)."""
        client = self.stack.client
        self._passes += 1
        try:
            handle = await client.start_workflow(
                RECONCILER_WORKFLOW_TYPE,
                ReconcileInput(org_ids=["*"], grace_seconds=0),
                id=f"fuzz-reconcile-{self.tag}-{self._passes}",
                task_queue=self.stack.queue,
            )
            result = await asyncio.wait_for(handle.result(), 180)
        except Exception as err:  # noqa: BLE001
            self.violation(2, "reconciler", f"a reconciler pass failed: {error_text(err)}")
            return
        self.figures["reconciler_passes"] = self._passes
        for key in ("strays", "killed", "billed"):
            name = f"reconciler_{key}"
            self.figures[name] = self.figures.get(name, 0) + int(result.get(key, 0))

    def write_sends(self) -> None:
        """Every session's messages and answers, for reproducing a violation by hand."""
        path = self.stack.workdir / "fuzz-sessions.json"
        out = {
            sid: [
                {
                    "at": datetime.fromtimestamp(t, UTC).isoformat(),
                    "sent": detail or label,
                    "answer": answer,
                }
                for t, label, answer, detail in sends
            ]
            for sid, sends in self.sends.items()
        }
        path.write_text(json.dumps(out, indent=1, ensure_ascii=False))

    def repro_at(self, sid: str | None, at: float) -> str:
        """The message sent to `sid` last before `at` (what a failure at `at` followed), after
        the start's case when the start was a hostile one."""
        sends = [
            label
            for t, label, *_ in self.sends.get(sid or "", [])
            if t <= at + 0.05 and not label.startswith(("query", "ending", "verdict"))
        ]
        if not sends:
            return ""
        start = self.start_case(sid or "")
        if start and not sends[-1].startswith("start"):
            return f"{sends[-1]} (after a start [{start}])"
        return sends[-1]

    def start_case(self, sid: str) -> str | None:
        """The case of the session's first start when it was not a valid one."""
        for _, label, *_ in self.sends.get(sid, []):
            if label.startswith("start"):
                case = label.rsplit("[", 1)[-1].rstrip("]")
                return None if case == "valid" else case
        return None


def _deck(rng: random.Random, cases: list[str]) -> Iterator[str]:
    """The cases in a seeded order, over and over."""
    order = list(cases)
    rng.shuffle(order)
    while True:
        yield from order


# ---------------------------------------------------------------------------------- checks


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
        if desc.status == _RUNNING:
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
            first = history.events[0] if history.events else None
            if first is not None and not (
                first.workflow_execution_started_event_attributes.continued_execution_run_id
            ):
                self.fresh[run_id] = _event_time(first)
            for e in history.events:
                for activity, sandbox in _sandboxes_reached(e):
                    self.touched.setdefault((wid, run_id, sandbox), activity)

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
                    self.start_of(other),
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
                self.start_of(sid),
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

    def start_of(self, sid: str) -> str:
        starts = [label for _, label, *_ in self.c.sends.get(sid, []) if label.startswith("start")]
        return starts[0] if starts else ""


def _failure_texts(e: HistoryEvent) -> list[tuple[str, str]]:
    """Every failure in an event (its message, stack trace, causes and details decoded)."""
    found: list[tuple[str, str]] = []
    kind = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_").lower()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.lower().endswith("failure") and isinstance(value, dict):
                    found.append((kind, _decoded(value)))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(MessageToDict(e))
    return found


def _decoded(failure: dict[str, Any]) -> str:
    """A failure as JSON, with every base64 `data` field decoded next to it."""
    texts = [json.dumps(failure, ensure_ascii=False)]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    with contextlib.suppress(Exception):
                        texts.append(base64.b64decode(value).decode(errors="replace"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(failure)
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
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                out.append(v)
            else:
                out.extend(_values_of(v, key))
    elif isinstance(node, list):
        for v in node:
            out.extend(_values_of(v, key))
    return out


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


# ---------------------------------------------------------------------------------- entry


class _EmulatorErrors(logging.Handler):
    """The in-process emulator's own warnings and errors, kept as notes instead of printed."""

    def __init__(self, seen: dict[str, int]) -> None:
        super().__init__(logging.WARNING)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.seen[text] = self.seen.get(text, 0) + 1


async def run_campaign(cfg: CampaignConfig, workdir: Path, *, address: str | None = None) -> Report:
    """Start a stack (a dev server of its own unless `address`), run the campaign, check."""
    logger = logging.getLogger("emulator")
    seen: dict[str, int] = {}
    handler = _EmulatorErrors(seen)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        async with fuzz_stack(workdir, address=address, workers=cfg.workers) as stack:
            campaign = Campaign(cfg, stack)
            campaign.emulator_errors = seen
            return await campaign.run()
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
