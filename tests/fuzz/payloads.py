"""What hostile traffic is made of: the secret marker, payloads built byte by byte (bypassing
the data converter), the hostile strings and numbers, `Send` (one message to a session, shown
in one printable line) and `Answer` (what came back, an error as the caller saw it).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

SECRET_PREFIX = "FUZZSECRET-"
MIB = 1 << 20
CHECK = 'printf %s "$FUZZ_SID"'
"""The exec that proves whose sandbox answered: every fuzz sandbox is created with FUZZ_SID."""
JSON_PLAIN = b"json/plain"
BINARY_PLAIN = b"binary/plain"


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
        return self.line(100 if self.kind == "start" else 160)

    @property
    def detail(self) -> str:
        """The message in full (but for 1 MiB strings, folded), for the sessions' log."""
        return self.line(4000)

    def line(self, width: int) -> str:
        """The message, each argument shown up to `width` characters."""
        shown = ", ".join(describe(a, width) for a in self.args)
        case = f"{self.shape}: {self.note}" if self.note else self.shape
        return f"{self.kind} {visible(self.name, 40)}({shown}) [{case}]"


@dataclass
class Answer:
    ok: bool
    value: Any = None
    error: str | None = None
    timed_out: bool = False


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
