"""Text is data: whatever a session, a gate or an old ledger row holds is shown escaped, never as
raw control or bidi characters; a bad argument is one line and exit 2 before anything connects.

Pure: the CLI runs in this process (`sessions.cli.main(argv)`), against a fake client or a SQLite
ledger in a temporary directory; no Temporal server.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from common.errors import ConfigError
from common.text import first_unsafe
from common.units import parse_duration
from ledger import open_ledger
from ledger.models import CostEvent, CostSummary
from sessions import SessionFailed, render
from sessions.cli import EXEC_TIMEOUT_MAX_SECONDS, GATE_TIMEOUT_MAX_SECONDS, _text, main
from sessions.client import SessionClient, SessionListing
from workflows.models import ExecRequest, Gate, GateRequest, SessionStatus

pytestmark = pytest.mark.fast

HOSTILE = (
    "ok\x1b[2J\x1b]8;;http://evil.example\x07click\x1b]8;;\x07\r\nforged: line\x00\x7f"
    "\x9b31m\u202eevil\u2066iso\u2069\u2028 [link=http://evil.example]markup[/link] \t end"
)
"""ESC (erase screen, OSC 8 hyperlink), BEL, CR LF, NUL, DEL, C1 CSI, a bidi override, an isolate,
a line separator, Rich markup and a tab: everything a row of data could hold to drive a terminal."""

VISIBLE = ("\\x1b[2J", "\\x1b]8;;", "\\x07", "\\r\\n", "\\x00", "\\x7f", "\\x9b", "\\u202e")
"""How some of it must appear instead: escaped, visible."""

_RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
"""What must never reach the terminal (a newline ends the output's own lines)."""
_RICH_SGR = re.compile("\x1b\\[[0-9;]*m")
"""Rich's own colours on a terminal (the data's ESC is escaped, so none of these come from it)."""

NOW = datetime(2026, 11, 27, 3, 26, 36, tzinfo=UTC)


def assert_clean(out: str, *, terminal: bool = False) -> None:
    shown = _RICH_SGR.sub("", out) if terminal else out
    raw = sorted({f"U+{ord(c):04X}" for c in _RAW.findall(shown)})
    assert not raw, f"raw control characters {raw} in:\n{out!r}"
    assert "\ud800" not in shown


def assert_visible(out: str) -> None:
    for escaped in VISIBLE:
        assert escaped in out, f"{escaped!r} not shown in:\n{out}"


# ---------------------------------------------------------------- data written before validation


def hostile_status(state: str = "failed") -> SessionStatus:
    gate = Gate.model_construct(
        gate=HOSTILE,
        title=HOSTILE,
        state="rejected",
        requested_at=NOW,
        decided_at=NOW,
        decided_by=HOSTILE,
        comment=HOSTILE,
    )
    return SessionStatus.model_construct(
        session_id="s-1",
        org_id=HOSTILE,
        issue_id=HOSTILE,
        state=state,
        sandbox_id=HOSTILE,
        template_id=HOSTILE,
        gates=[gate],
        running_seconds=25.921362000000002,
        paused_seconds=4.6680000001,
        error=HOSTILE,
    )


def hostile_listing(status: SessionStatus | None) -> SessionListing:
    return SessionListing.model_construct(
        session_id=HOSTILE,
        workflow_id="session-x",
        workflow_status="RUNNING",
        started_at=NOW,
        closed_at=None,
        status=status,
    )


def hostile_event() -> CostEvent:
    return CostEvent.model_construct(
        session_id=HOSTILE,
        org_id=HOSTILE,
        issue_id=HOSTILE,
        sandbox_id=HOSTILE,
        template_id=HOSTILE,
        started_at=NOW,
        ended_at=NOW,
        running_seconds=6.576000000000001,
        paused_seconds=4.668,
        wall_seconds=11.243907,
        outcome="finished",
    )


@pytest.fixture(params=[False, True], ids=["plain", "terminal"])
def terminal(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both output modes: plain text, and Rich on a (forced, very wide) terminal."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    if request.param:
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("COLUMNS", "4000")
    assert render.is_terminal() is request.param
    return bool(request.param)


# ---------------------------------------------------------------- the one helper


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\x1b", "\\x1b"),
        ("\r", "\\r"),
        ("\n", "\\n"),
        ("\t", "\\t"),
        ("\x07", "\\x07"),
        ("\x00", "\\x00"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),
        ("\x9b", "\\x9b"),
        ("\u202a", "\\u202a"),
        ("\u202e", "\\u202e"),
        ("\u2066", "\\u2066"),
        ("\u2069", "\\u2069"),
        ("\u2028", "\\u2028"),
        ("\udcff", "\\udcff"),
    ],
)
def test_safe_shows_each_control_and_bidi_character_escaped(char: str, shown: str) -> None:
    assert render.safe(f"a{char}b") == f"a{shown}b"
    assert first_unsafe(f"a{char}b") == char


def test_safe_leaves_ordinary_text_alone_and_is_idempotent() -> None:
    text = "déploiement-🚀 承認してください 🙏 Zoë ok ✓ שלום C:\\path [bold]"
    assert render.safe(text) == text and first_unsafe(text) is None
    assert render.safe(render.safe(HOSTILE)) == render.safe(HOSTILE)
    assert render.safe(None) == "None" and render.safe(3) == "3"
    assert_clean(render.safe(HOSTILE))


def test_a_comment_may_have_lines_but_nothing_else() -> None:
    assert first_unsafe("one\ntwo\tthree", lines=True) is None
    assert first_unsafe("one\ntwo\x1b", lines=True) == "\x1b"
    _text("--comment", "one\ntwo", lines=True)
    with pytest.raises(ConfigError, match=r"--title contains a control character \(0xa\)"):
        _text("--title", "one\ntwo")


# ---------------------------------------------------------------- every render path


def test_status_shows_hostile_text_escaped(terminal: bool, capsys: pytest.CaptureFixture) -> None:
    render.show_status(hostile_status(), price=0.00003025)
    out = capsys.readouterr().out
    assert_clean(out, terminal=terminal)
    assert_visible(out)
    assert "[link=http://evil.example]markup[/link]" in out  # never read as Rich markup


@pytest.mark.parametrize("answered", [True, False], ids=["status", "no-worker"])
def test_list_shows_hostile_text_escaped(
    terminal: bool, answered: bool, capsys: pytest.CaptureFixture
) -> None:
    status = hostile_status("paused") if answered else None
    if status is not None:
        status.gates[0].state = "waiting"  # the list names the waiting gate
    render.show_list([hostile_listing(status)])
    out = capsys.readouterr().out
    assert_clean(out, terminal=terminal)
    assert "\\x1b[2J" in out and "\\u202e" in out


@pytest.mark.parametrize("by", [None, "org"])
def test_costs_show_hostile_text_escaped(
    terminal: bool, by: str | None, capsys: pytest.CaptureFixture
) -> None:
    rows: list[Any] = [hostile_event()]
    if by is not None:
        rows = [
            CostSummary.model_construct(
                key=HOSTILE,
                by=by,
                sessions=1,
                running_seconds=6.5,
                paused_seconds=4.6,
                wall_seconds=11.2,
            )
        ]
    render.show_costs(rows, by=by, price=0.00003025)
    out = capsys.readouterr().out
    assert_clean(out, terminal=terminal)
    assert_visible(out)


def test_progress_lines_show_hostile_text_escaped() -> None:
    status = hostile_status("running")
    console = Console(file=io.StringIO(), force_terminal=True, width=4000)
    for state in ("provisioning", "running", "paused", "failed"):
        status.state = state  # type: ignore[assignment]
        status.gates[0].state = "waiting" if state == "paused" else "approved"
        line = render.progress_line(status, price=0.00003025)
        assert_clean(line.plain)
        console.print(line)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert_clean(out, terminal=True)
    assert_visible(out)


def test_json_escapes_everything_and_rounds_seconds(capsys: pytest.CaptureFixture) -> None:
    status = hostile_status()
    render.print_json(render.status_json(status))
    out = capsys.readouterr().out
    assert out.isascii(), "--json writes every non-ASCII character as \\uXXXX"
    data = json.loads(out)
    assert (data["org_id"], data["gates"][0]["comment"], data["error"]) == (HOSTILE,) * 3
    assert (data["running_seconds"], data["paused_seconds"]) == (25.921, 4.668)

    render.print_json([render.listing_json(hostile_listing(status))])
    [row] = json.loads(capsys.readouterr().out)
    assert (row["session_id"], row["running_seconds"]) == (HOSTILE, 25.921)

    render.print_json([hostile_event().model_dump(mode="json")])
    out = capsys.readouterr().out
    assert out.isascii()
    [event] = json.loads(out)
    assert event["session_id"] == HOSTILE
    assert (event["running_seconds"], event["wall_seconds"]) == (6.576, 11.244)


# ---------------------------------------------------------------- through the CLI


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI in this process: no dev stack, no telemetry, nothing pointing elsewhere."""
    for name in list(os.environ):
        if name.startswith(("TEMPORAL_", "SESSIONS_", "LEDGER_", "OTEL_", "E2B_")) or name in (
            "FORCE_COLOR",
            "TTY_COMPATIBLE",
            "TTY_INTERACTIVE",
            "NO_COLOR",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SESSIONS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.chdir(tmp_path)
    # `telemetry.setup` installs process-wide providers once: not from a test of the CLI.
    monkeypatch.setattr("telemetry.setup", lambda: types.SimpleNamespace(shutdown=lambda: None))
    yield tmp_path


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


class FakeClient:
    """What `SessionClient.connect` gives in these tests: answers made of hostile text."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail

    async def status(self, session_id: str) -> SessionStatus:
        if self.fail is not None:
            raise self.fail
        return hostile_status()

    async def list(self, *, limit: int = 50, **filters: Any) -> list[SessionListing]:
        return [hostile_listing(hostile_status()), hostile_listing(None)]


def fake_connect(monkeypatch: pytest.MonkeyPatch, client: FakeClient) -> None:
    async def connect(**_: Any) -> FakeClient:
        return client

    monkeypatch.setattr(SessionClient, "connect", staticmethod(connect))


@pytest.mark.parametrize(
    "argv",
    [("status", "s-1"), ("list",), ("status", "s-1", "--json"), ("list", "--json")],
    ids=["status", "list", "status-json", "list-json"],
)
def test_status_and_list_through_the_cli(
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    terminal: bool,
    argv: tuple[str, ...],
) -> None:
    fake_connect(monkeypatch, FakeClient())
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, ""), err
    assert_clean(out, terminal=terminal)
    if "--json" in argv:
        data = json.loads(out)
        rows = data if isinstance(data, list) else [data]
        assert out.isascii() and [r["org_id"] for r in rows][0] == HOSTILE
    else:
        assert "\\x1b[2J" in out and "\\u202e" in out


@pytest.mark.parametrize(
    "error",
    [SessionFailed(f"session s-1 failed: {HOSTILE}"), RuntimeError(HOSTILE)],
    ids=["sessions-error", "any-error"],
)
def test_an_error_carrying_data_is_one_escaped_line(
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    error: BaseException,
) -> None:
    fake_connect(monkeypatch, FakeClient(fail=error))
    code, out, err = run(capsys, "status", "s-1")
    line = one_error_line(err)
    assert code == 1 and out == ""
    assert_clean(err)
    assert "\\x1b[2J" in line and "\\u202e" in line


def test_old_ledger_rows_are_shown_escaped(
    offline: Path, capsys: pytest.CaptureFixture, terminal: bool
) -> None:
    """Rows written before validation tightened: `sessions costs` shows them, escaped."""
    url = f"sqlite:///{offline / 'ledger.db'}"

    async def write() -> None:
        ledger = await open_ledger(url)
        try:
            await ledger.record(hostile_event())
        finally:
            await ledger.close()

    asyncio.run(write())
    for argv in (("costs",), ("costs", "--by", "org"), ("costs", "--by", "issue")):
        code, out, err = run(capsys, *argv, "--ledger-url", url)
        assert (code, err) == (0, ""), err
        assert_clean(out, terminal=terminal)
        assert "\\x1b[2J" in out and "\\u202e" in out
    code, out, _ = run(capsys, "costs", "--json", "--ledger-url", url)
    assert code == 0 and out.isascii()
    [event] = json.loads(out)
    assert (event["org_id"], event["wall_seconds"]) == (HOSTILE, 11.244)


# ---------------------------------------------------------------- bad arguments


CONTROL = r"contains (a )?control characters? "
"""The CLI's words, or the workflow model's (checked first, before connecting), whichever
refuses first."""

BAD_ARGUMENTS: list[tuple[tuple[str, ...], str]] = [
    # (argv, a regular expression the one error line matches)
    (("gate", "s", "g", "--timeout", ""), r"invalid duration '': it is empty"),
    (("gate", "s", "g", "--timeout", "   "), r"invalid duration ' +': it is empty"),
    (("gate", "s", "g", "--timeout", "nan"), r"invalid duration 'nan': use a number"),
    (("gate", "s", "g", "--timeout", "inf"), r"invalid duration 'inf': it must be at most 365d"),
    (("gate", "s", "g", "--timeout", "1e300"), r"'1e300': it must be at most 365d"),
    (("gate", "s", "g", "--timeout", "366d"), r"'366d': it must be at most 365d"),
    (("gate", "s", "g", "--timeout", "9" * 400), r"it must be at most 365d"),
    (("gate", "s", "g", "--timeout", "-inf"), r"'-inf': it must be more than zero"),
    (("exec", "s", "--timeout", "", "--", "true"), r"invalid duration '': it is empty"),
    (("exec", "s", "--timeout", "nan", "--", "true"), r"invalid duration 'nan'"),
    (("exec", "s", "--timeout", "inf", "--", "true"), r"'inf': it must be at most 1d"),
    (("exec", "s", "--timeout", "25h", "--", "true"), r"'25h': it must be at most 1d"),
    (("start", "--org", "a", "--session-id", ""), r"--session-id must not be empty"),
    (("start", "--org", "a", "--session-id", " "), r"--session-id must not be empty"),
    (("status", "s", "--price-per-second", "nan"), r"'--price-per-second': it must be a finite"),
    (("status", "s", "--price-per-second", "inf"), r"finite number of dollars, at least 0"),
    (("costs", "--price-per-second", "-inf"), r"finite number of dollars, at least 0"),
    (("costs", "--price-per-second", "-0.01"), r"at least 0, not '-0\.01'"),
    (("costs", "--price-per-second", "cheap"), r"'cheap' is not a number of dollars"),
    (("start", "--org", "a\x1b[2Jb"), CONTROL + r"\(0x1b\)"),
    (("start", "--org", "a", "--issue", "i\u202eb"), CONTROL + r"\(0x202e\)"),
    (("start", "--org", "a", "--template", "t\x9b"), r"--template " + CONTROL + r"\(0x9b\)"),
    (("start", "--org", "a\udcff"), r"not valid UTF-8|unable to parse raw data as a unicode"),
    (("gate", "s", "g\x1b]8;;"), r"gate: gate " + CONTROL),
    (("gate", "s", "g", "--title", "t\r"), r"title " + CONTROL),
    (("gate", "s", "g", "--title", "t\u2028"), r"title " + CONTROL + r"\(0x2028\)"),
    (("approve", "s", "g", "--by", "a\u2066"), CONTROL + r"\(0x2066\)"),
    (("reject", "s", "g", "--by", "a", "--comment", "c\x1b[2J"), CONTROL + r"\(0x1b\)"),
    (("status", "s\x1b"), r"SESSION contains a control character \(0x1b\)"),
    (("exec", "s\x07", "--", "true"), r"SESSION contains a control character \(0x7\)"),
    (("finish", "s\r"), r"SESSION contains a control character \(0xd\)"),
    (("cancel", "s\u202e"), r"SESSION contains a control character \(0x202e\)"),
    (("start", "--org", "a", "extra\x1b[2J"), r"unexpected extra argument \(extra\\x1b\[2J\)"),
    (("frob\x1b[2J",), r"No such command 'frob\\x1b\[2J'"),
]


@pytest.mark.parametrize(
    ("argv", "expected"), BAD_ARGUMENTS, ids=[f"{i}-{a[0][0]}" for i, a in enumerate(BAD_ARGUMENTS)]
)
def test_a_bad_argument_is_one_line_and_exit_2(
    offline: Path, capsys: pytest.CaptureFixture, argv: tuple[str, ...], expected: str
) -> None:
    """Said before connecting (the address here answers nothing): one line, exit 2."""
    code, out, err = run(capsys, *argv)
    line = one_error_line(err)
    assert re.search(expected, line), line
    assert (code, out) == (2, "")
    assert_clean(err)


def test_the_cli_bounds_are_the_workflows() -> None:
    def le(model: Any) -> float:
        metadata = model.model_fields["timeout_seconds"].metadata
        return next(m.le for m in metadata if hasattr(m, "le"))

    assert GATE_TIMEOUT_MAX_SECONDS == le(GateRequest)
    assert EXEC_TIMEOUT_MAX_SECONDS == le(ExecRequest)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty"),
        ("nan", "use a number"),
        ("NaN", "use a number"),
        ("inf", "at most 365d"),
        ("infinity", "at most 365d"),
        ("1e300", "at most 365d"),
        ("-1e300", "more than zero"),
        ("-5", "more than zero"),
        ("400d", "at most 365d"),
    ],
)
def test_parse_duration_refuses_what_is_no_duration(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid duration {re.escape(repr(text))}: .*{problem}"):
        parse_duration(text)
    assert parse_duration("365d") == 365 * 86400
    assert parse_duration("24h", maximum=86400) == 86400
    with pytest.raises(ConfigError, match="it must be at most 1d"):
        parse_duration("24h1s", maximum=86400)
