"""`Generator`: hostile payloads, messages and starts, all drawn from one `random.Random`, and
the start cases a campaign plans (refused, either, forged).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.common import RawValue

from tests.fuzz.payloads import (
    BINARY_PLAIN,
    CHECK,
    MIB,
    NASTY_NUMBERS,
    NASTY_STRINGS,
    Send,
    js,
    raw,
    visible,
)
from workflows import WORKFLOW_TYPE

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
        if self.rng.random() < 0.5:  # context, and who may decide: the deciders below or not
            body["summary"] = self.rng.choice(["Deploy v2", "rm -rf build 🧹", "x" * 500])
            body["details"] = self.rng.choice(["diff --git a/x b/x\n+1", "é" * 8000, ""])
            body["requested_by"] = self.rng.choice(["bot", "runner"])
            body["approvers"] = self.rng.sample(["ana", "ZOË 🙂", "bot", "carol"], 2)
            body["allow_self_approval"] = self.rng.random() < 0.3
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
            "summary": self.string,
            "details": lambda: self.rng.choice([self.string(), "d" * (16 * 1024 + 1), 5]),
            "approvers": lambda: self.rng.choice([self.string(), [self.string()], [5], {}]),
            "remind_at": lambda: self.rng.choice([self.number(), 1, 0, "half"]),
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
                "check",
            ],
            weights=[8, 8, 6, 5, 4, 12, 8, 8, 6, 3, 6, 4],
        )[0]
        if kind == "check":  # a forged hint: the session must ask E2B, never take its word
            args = rng.choice(
                [
                    [js({})],
                    [js({"sandbox_id": "someone-elses"})],
                    [],
                    [js({"sandbox_id": 5})],
                    [js([])],
                    [raw(b"{not json")],
                ]
            )
            return Send("signal", "check_sandbox", args, "forged-hint")
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
