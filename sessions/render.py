"""How the CLI shows things: Rich tables on a terminal, plain aligned text otherwise, or JSON.

Text is data: ids, gate names, titles, comments, who decided, error messages and old ledger rows
may hold anything, so every human-readable line goes through `safe()` (control and bidi
characters shown as escapes, never sent to the terminal), and table cells are Rich `Text`, never
markup. `--json` is `json.dumps` with `ensure_ascii`: every control and non-ASCII character is a
`\\uXXXX` escape.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from common.text import escape
from common.units import format_span

if TYPE_CHECKING:  # errors are escaped here too: loading this module must stay light
    from sessions.client import SessionListing, WaitingSession
    from workflows.models import Gate, SessionStatus

_STATE_STYLE = {
    "provisioning": "cyan",
    "running": "green",
    "paused": "yellow",
    "terminating": "magenta",
    "finished": "bold green",
    "failed": "bold red",
    "cancelled": "red",
    "lost": "bold red",
    "waiting": "yellow",
    "approved": "green",
    "rejected": "red",
    "timed_out": "red",
    "unknown": "dim",
}


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def is_terminal() -> bool:
    """Rich output only for a person: stdout is a terminal (Rich honours FORCE_COLOR/TTY_*)."""
    return stdout_console().is_terminal


# ---------------------------------------------------------------- text is data

safe = escape
"""`text` fit for a terminal (`common.text.escape`): what every human-readable line goes through."""


# ---------------------------------------------------------------- values


def duration(seconds: float | None) -> str:
    """`42s`, `4m 05s`, `1h 02m`, `3d 04h`; `-` for none."""
    return "-" if seconds is None else format_span(seconds)


def dollars(amount: float) -> str:
    if amount == 0:
        return "$0.00"
    if amount < 0.01:
        return f"${amount:.6f}"
    if amount < 1:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def rate(price: float) -> str:
    """A per-second price with all its digits: `$0.00003025`."""
    return "$" + (f"{price:.10f}".rstrip("0").rstrip(".") or "0")


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _dash(value: Any) -> str:
    return "-" if value is None or value == "" else safe(value)


def _styled(state: str) -> Text:
    return Text(safe(state.replace("_", " ")), style=_STATE_STYLE.get(state, ""))


SECONDS_DECIMALS = 3
"""`--json` shows seconds to the millisecond: `25.921`, not the float noise `25.921362000000002`.
The ledger keeps its own values; only what is printed is rounded."""


def _rounded(data: Any) -> Any:
    """`data` with every float under a `*_seconds` key rounded to `SECONDS_DECIMALS`."""
    if isinstance(data, dict):
        return {
            k: (
                round(v, SECONDS_DECIMALS)
                if isinstance(v, float) and str(k).endswith("_seconds")
                else _rounded(v)
            )
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [_rounded(v) for v in data]
    return data


def print_json(data: Any) -> None:
    """JSON on stdout. `ensure_ascii` stays on: control, bidi and every other non-ASCII character
    is written as a `\\uXXXX` escape, so no byte of the data reaches the terminal raw."""
    sys.stdout.write(json.dumps(_rounded(data), indent=2, default=str, ensure_ascii=True) + "\n")


Cell = str | Text
"""A table cell: plain text, or text styled for a terminal (a state in its colour)."""


def show_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    right: Sequence[str] = (),
    title: str | None = None,
    empty: str | None = None,
) -> None:
    """The one way the CLI prints a table: Rich on a terminal; otherwise plain aligned columns
    (upper-case headers, two spaces apart, no trailing blanks) that `awk`/`cut` can read.

    `right`: the headers of right-aligned columns (on a terminal); `empty`: what a terminal shows
    instead of a table without rows (plain output then prints nothing).
    """
    rows = [[_safe_cell(c) for c in row] for row in rows]
    if not is_terminal():
        if rows:
            sys.stdout.write(_plain_table(headers, rows) + "\n")
        return
    console = stdout_console()
    if not rows:
        if empty:
            console.print(Text(empty, style="dim"))
        return
    table = Table(show_edge=False, title=title, title_justify="left")
    for header in headers:
        table.add_column(header, justify="right" if header in right else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _safe_cell(cell: Cell) -> Text:
    """Every cell escaped, and `Text`: a str cell would be read as Rich markup (`[link=...]`)."""
    if isinstance(cell, Text):
        plain = safe(cell.plain)
        return cell if plain == cell.plain else Text(plain, style=cell.style)
    return Text(safe(cell))


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    cells = [[c.plain if isinstance(c, Text) else c for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------- status


def _gate_row(g: Gate) -> list[Cell]:
    return [
        safe(g.gate),
        _styled(g.state),
        _dash(g.title),
        when(g.requested_at),
        when(g.decided_at),
        _dash(g.decided_by),
        _dash(g.comment),
    ]


_GATE_HEADERS = ["gate", "state", "title", "requested", "decided", "by", "comment"]

DETAILS_LINES = 12
"""`status` shows this many lines of a gate's details; `--json` has them all."""
SUMMARY_WIDTH = 60
"""A summary in a table cell is trimmed to this many characters."""


def trimmed(text: str | None, width: int = SUMMARY_WIDTH) -> str:
    """`text` on one line of at most `width` characters (`…` where cut), or `-`."""
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _gate_context(g: Gate) -> list[str]:
    """What a person decides on, under the gate table: summary, who asked and who may decide,
    the details (indented, the first `DETAILS_LINES`), and whether they were told. Escaped."""
    fields = [
        ("summary", g.summary),
        ("requested by", g.requested_by),
        ("approvers", ", ".join(g.approvers) or None),
        ("self-approval", "allowed" if g.allow_self_approval else None),
        ("notified", when(g.notified_at) if g.notified_at else None),
        ("reminded", when(g.reminded_at) if g.reminded_at else None),
        ("notify error", g.notify_error),
    ]
    shown = [(k, v) for k, v in fields if v]
    if not shown and not g.details:
        return []
    out = [f"gate {safe(g.gate)}"] + [f"  {k:<13} {safe(v)}" for k, v in shown]
    if g.details:
        lines = g.details.splitlines() or [""]
        out.append("  details")
        out += [f"    {safe(line)}" for line in lines[:DETAILS_LINES]]
        if len(lines) > DETAILS_LINES:
            more = len(lines) - DETAILS_LINES
            out.append(f"    … {more} more lines (sessions status --json for all)")
    return out


def show_status(status: SessionStatus, *, price: float) -> None:
    cost = status.running_seconds * price
    fields = [
        ("session", status.session_id),
        ("org", status.org_id),
        ("issue", _dash(status.issue_id)),
        ("state", status.state),
        ("sandbox", _dash(status.sandbox_id)),
        ("template", status.template_id),
        ("running", duration(status.running_seconds)),
        ("paused", f"{duration(status.paused_seconds)} (billed $0)"),
        ("cost", f"~{dollars(cost)} at {rate(price)} per running second"),
    ]
    if status.rollovers or status.run_ends_at:
        fields.append(("lifetime", _lifetime(status)))
    if status.end_reason and status.end_reason != status.error:
        fields.append(("ended", status.end_reason))
    if status.error:
        fields.append(("error", status.error))
    fields = [(key, safe(value)) for key, value in fields]
    gates = [_gate_row(g) for g in status.gates]
    if not is_terminal():
        width = max(len(k) for k, _ in fields)
        out = [f"{k.ljust(width)}  {v}" for k, v in fields]
        out += [""] if gates else [f"{'gates'.ljust(width)}  none"]
        sys.stdout.write("\n".join(out) + "\n")
    else:
        console = stdout_console()
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for key, value in fields:
            table.add_row(key, _styled(value) if key == "state" else Text(value))
        console.print(table)
        console.print()
    show_table(_GATE_HEADERS, gates, title="gates", empty="no gates")
    context: list[str] = []
    for g in status.gates:
        block = _gate_context(g)
        context += ["", *block] if block else []
    if context:
        _lines(context)


def _lifetime(status: SessionStatus) -> str:
    """E2B's maximum lifetime, as the session works around it: rollovers so far, run's end."""
    done = f"rolled over {status.rollovers} time{'s' if status.rollovers != 1 else ''}"
    if status.run_ends_at is None:
        return done
    return f"{done}; this run ends {status.run_ends_at.isoformat(timespec='seconds')}"


def _lines(lines: Sequence[str]) -> None:
    """Lines already escaped: plain on a pipe, never Rich markup on a terminal."""
    if is_terminal():
        console = stdout_console()
        for line in lines:
            console.print(Text(line))
    else:
        sys.stdout.write("\n".join(lines) + "\n")


def status_json(status: SessionStatus) -> dict[str, Any]:
    return status.model_dump(mode="json")


# ---------------------------------------------------------------- list


_LIST_HEADERS = [
    "session",
    "state",
    "org",
    "issue",
    "sandbox",
    "running",
    "paused",
    "gates",
    "started",
]


def _listing_row(item: SessionListing) -> list[Cell]:
    s = item.status
    waiting = [g for g in s.gates if g.state == "waiting"] if s else []
    gates = "-"
    if s is not None:
        gates = f"{len(s.gates)}"
        if waiting:
            first = waiting[0]
            about = f": {trimmed(first.summary, 40)}" if first.summary else ""
            gates += f" ({first.gate} waiting{about})"
    return [
        item.session_id,
        _styled(item.state),
        _dash(s.org_id if s else None),
        _dash(s.issue_id if s else None),
        _dash(s.sandbox_id if s else None),
        duration(s.running_seconds) if s else "-",
        duration(s.paused_seconds) if s else "-",
        gates,
        when(item.started_at),
    ]


def show_list(items: Sequence[SessionListing]) -> None:
    show_table(
        _LIST_HEADERS,
        [_listing_row(i) for i in items],
        right=("running", "paused"),
        empty="no sessions yet: start one with `sessions start --org ORG`",
    )


def listing_json(item: SessionListing) -> dict[str, Any]:
    """The status fields (null where no worker answered) plus what visibility knows."""
    from workflows.models import SessionStatus

    base: dict[str, Any] = {name: None for name in SessionStatus.model_fields}
    base["gates"] = []
    if item.status is not None:
        base.update(item.status.model_dump(mode="json"))
    base["session_id"] = item.session_id
    base["state"] = item.state
    base["workflow_id"] = item.workflow_id
    base["workflow_status"] = item.workflow_status
    base["started_at"] = item.started_at.isoformat() if item.started_at else None
    base["closed_at"] = item.closed_at.isoformat() if item.closed_at else None
    return base


# ---------------------------------------------------------------- waiting


_WAITING_HEADERS = [
    "session",
    "org",
    "issue",
    "gate",
    "summary",
    "requested by",
    "approvers",
    "waiting",
    "time left",
    "running",
    "cost",
]
NOTHING_WAITING = "no gates waiting: every session is running or ended"


def _waiting_rows(item: WaitingSession, *, price: float, now: datetime) -> list[list[Cell]]:
    running = item.usage.running_seconds if item.usage else None
    rows: list[list[Cell]] = []
    for g in item.gates:
        since = g.waiting_since or g.requested_at
        left: str = "-"
        if g.timeout_seconds is not None:
            if g.waiting_since is None:  # queued behind another gate: its clock has not started
                left = f"{duration(g.timeout_seconds)} (queued)"
            else:
                elapsed = (now - g.waiting_since).total_seconds()
                left = duration(max(g.timeout_seconds - elapsed, 0.0))
        rows.append(
            [
                item.session_id,
                _dash(item.org_id),
                _dash(item.issue_id),
                g.gate,
                trimmed(g.title if g.summary is None else g.summary),
                _dash(g.requested_by),
                ", ".join(g.approvers) or "anyone",
                duration((now - since).total_seconds()) if since else "-",
                left,
                duration(running),
                "-" if running is None else dollars(running * price),
            ]
        )
    return rows


def show_waiting(items: Sequence[WaitingSession], *, price: float, now: datetime) -> None:
    """`list --waiting`: one row per waiting gate, newest waiting first."""
    if not items and not is_terminal():
        sys.stderr.write(NOTHING_WAITING + "\n")  # stdout stays a table's (empty) body
        return
    show_table(
        _WAITING_HEADERS,
        [row for item in items for row in _waiting_rows(item, price=price, now=now)],
        right=("waiting", "time left", "running", "cost"),
        empty=NOTHING_WAITING,
    )


def waiting_json(item: WaitingSession) -> dict[str, Any]:
    """`list --waiting --json`: one object per session (a `WaitingSession`)."""
    return item.model_dump(mode="json")


# ---------------------------------------------------------------- costs


def summary_json(summary: Any) -> dict[str, Any]:
    return {
        f"{summary.by}_id": summary.key,
        "sessions": summary.sessions,
        "running_seconds": summary.running_seconds,
        "paused_seconds": summary.paused_seconds,
        "wall_seconds": summary.wall_seconds,
    }


def show_costs(rows: Sequence[Any], *, by: str | None, price: float) -> None:
    if by is None:
        headers = ["session", "org", "issue", "sandbox", "template", "outcome", "ended"]
        body: list[list[Cell]] = [
            [
                e.session_id,
                e.org_id,
                _dash(e.issue_id),
                e.sandbox_id,
                e.template_id,
                e.outcome,
                # An end the provider never confirmed: billed to when it was last seen alive.
                when(e.ended_at) + ("" if getattr(e, "end_confirmed", True) else " (last seen)"),
            ]
            for e in rows
        ]
    else:
        headers = [by, "sessions"]
        body = [[_dash(s.key), str(s.sessions)] for s in rows]
    headers += ["running", "paused", "wall", "cost"]
    for cells, r in zip(body, rows, strict=True):
        cells += [
            duration(r.running_seconds),
            duration(r.paused_seconds),
            duration(r.wall_seconds),
            dollars(r.running_seconds * price),
        ]
    running = sum(r.running_seconds for r in rows)
    paused = sum(r.paused_seconds for r in rows)
    total = (
        f"total: {duration(running)} running, {duration(paused)} paused (billed $0), "
        f"~{dollars(running * price)} at {rate(price)} per running second"
    )
    show_table(
        headers,
        body,
        right=("running", "paused", "wall", "cost"),
        empty="no cost events yet: they are recorded when a session ends",
    )
    if is_terminal():
        stdout_console().print(Text(total, style="bold"))  # numbers only: nothing to escape
    else:
        sys.stdout.write(total + "\n")


def daily_json(day: Any) -> dict[str, Any]:
    """`costs --by day --json`: one object per UTC day (a `DailyCost`)."""
    return {
        "day": day.day.isoformat(),
        "sandboxes": day.sandboxes,
        "running_seconds": day.running_seconds,
    }


def show_daily(rows: Sequence[Any], *, price: float) -> None:
    """`costs --by day`: running seconds per UTC day, from the recorded running segments."""
    body: list[list[Cell]] = [
        [
            d.day.isoformat(),
            str(d.sandboxes),
            duration(d.running_seconds),
            dollars(d.running_seconds * price),
        ]
        for d in rows
    ]
    show_table(
        ["day", "sandboxes", "running", "cost"],
        body,
        right=("sandboxes", "running", "cost"),
        empty="no running segments yet: they are recorded as each running stretch closes",
    )
    running = sum(d.running_seconds for d in rows)
    _total(
        f"total: {duration(running)} running, "
        f"~{dollars(running * price)} at {rate(price)} per running second (days in UTC)"
    )


def live_json(row: Any) -> dict[str, Any]:
    """`costs --live --json`: one object per open session (a `LiveCost`)."""
    return row.model_dump(mode="json")


def show_live(rows: Sequence[Any], *, price: float, as_of: datetime) -> None:
    """`costs --live`: the open sessions' cost so far, the open stretch counted up to `as_of`."""
    body: list[list[Cell]] = [
        [
            r.session_id,
            _styled(r.state),
            _dash(r.org_id),
            _dash(r.issue_id),
            _dash(r.sandbox_id),
            duration(r.running_seconds),
            duration(r.paused_seconds),
            dollars(r.running_seconds * price),
        ]
        for r in rows
    ]
    show_table(
        ["session", "state", "org", "issue", "sandbox", "running", "paused", "cost"],
        body,
        right=("running", "paused", "cost"),
        empty="no running sessions",
    )
    running = sum(r.running_seconds for r in rows)
    _total(
        f"total so far: {duration(running)} running in {len(rows)} open "
        f"session{'' if len(rows) == 1 else 's'}, ~{dollars(running * price)} at {rate(price)} "
        f"per running second, as of {when(as_of)}"
    )


def _total(line: str) -> None:
    """A table's closing line of figures (numbers only: nothing to escape)."""
    if is_terminal():
        stdout_console().print(Text(line, style="bold"))
    else:
        sys.stdout.write(line + "\n")


# ---------------------------------------------------------------- progress


def progress_line(status: SessionStatus, *, price: float) -> Text:
    """One line per state change of `start --wait` / `finish --wait` (on stderr)."""
    from workflows.models import ENDED_STATES

    state = status.state
    detail = ""
    if state == "provisioning":
        detail = f"creating a sandbox from template {status.template_id}"
    elif state == "running":
        detail = f"sandbox {status.sandbox_id}"
        decided = [g for g in status.gates if g.state != "waiting"]
        if decided:
            g = decided[-1]
            detail += f" (gate {g.gate} {g.state.replace('_', ' ')}"
            detail += f" by {g.decided_by})" if g.decided_by else ")"
    elif state == "paused":
        waiting = [g for g in status.gates if g.state == "waiting"]
        detail = (
            f"sandbox paused: gate {waiting[0].gate} waits for approve/reject"
            if waiting
            else "sandbox paused"
        )
    elif state == "terminating":
        detail = "terminating the sandbox and recording its cost"
    elif state in ENDED_STATES:
        detail = (
            f"{duration(status.running_seconds)} running, {duration(status.paused_seconds)} "
            f"paused, ~{dollars(status.running_seconds * price)}"
        )
        if status.end_reason and status.end_reason != status.error:
            detail += f"; {status.end_reason}"
        if status.error:
            detail += f"; {status.error}"
    line = Text(safe(f"{state:<13}"), style=_STATE_STYLE.get(state, ""))
    line.append(safe(detail))
    return line
