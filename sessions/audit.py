"""`sessions audit`: the gate audit trail the ledger keeps, so who decided what, when and after
how long outlives the workflow history's retention.

A table for a person, `--json` (the `GateEvent` shapes) or `--csv` for a spreadsheet; every cell
of the CSV that a spreadsheet would run as a formula is neutralised, and text from users is
escaped for the terminal as everywhere else (`sessions.render`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from common.errors import ConfigError, SessionsError
from common.text import UNSAFE, escape
from common.units import parse_duration
from ledger.models import GateEvent
from sessions import render

__all__ = [
    "AuditFormat",
    "audit",
    "csv_cell",
    "parse_since",
    "read_gate_events",
    "show_audit",
    "write_csv",
]

AuditFormat = Literal["table", "json", "csv"]

SINCE_MAX_SECONDS = 100 * 365 * 86400.0
"""`--since 36500d` at most: far enough back for any audit."""
COMMENT_WIDTH = 40
"""The table shows a comment's first characters; `--json` and `--csv` show all of it."""

_SINCE_USE = (
    "give an ISO-8601 time (2026-11-27T03:00:00Z; UTC unless it says) "
    "or a duration back from now (90m, 24h, 7d)"
)
_DURATION_CHARS = frozenset("0123456789.smhd")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HEADERS = ["time", "session", "gate", "event", "by", "waited", "paused", "comment"]


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """`--since`: an ISO-8601 time (naive: UTC), or a duration back from `now` (`90m`, `24h`,
    `7d`, plain seconds). Anything else is one clear `ConfigError` (exit 2)."""
    raw = text.strip().lower()
    if raw and raw[0].isdigit() and set(raw) <= _DURATION_CHARS:
        try:
            seconds = parse_duration(raw, maximum=SINCE_MAX_SECONDS)
        except ConfigError as err:  # its own words say why: which flag they are about
            raise ConfigError(f"--since: {err}") from None
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"invalid --since {text!r}: {_SINCE_USE}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def read_gate_events(
    *,
    session_id: str | None = None,
    org_id: str | None = None,
    since: datetime | None = None,
    ledger_url: str | None = None,
) -> list[GateEvent]:
    """The ledger's gate audit rows, oldest first, as `LedgerError`-free as `read_costs`."""
    from ledger import LedgerError
    from sessions.client import reading_ledger

    async with reading_ledger(ledger_url) as ledger:
        if ledger is None:
            return []
        try:
            return list(await ledger.gate_events(session_id=session_id, org_id=org_id, since=since))
        except LedgerError as err:
            raise SessionsError(f"ledger: {err}") from None


def audit(events: Sequence[GateEvent], *, output: AuditFormat = "table") -> int:
    """Print `events` in the chosen form; none is a friendly line (exit 0), `--json` `[]`."""
    if output == "json":
        render.print_json([e.model_dump(mode="json") for e in events])
    elif output == "csv":
        write_csv(events)
    elif events:
        show_audit(events)
    else:
        sys.stdout.write("no gate events\n")
    return 0


# ---------------------------------------------------------------- the table


def _event_cell(event: GateEvent) -> str:
    """`notified (reminder, slack)`: a notification says what it announced and where."""
    if event.event != "notified":
        return event.event
    return f"notified ({event.about or '-'}, {event.sink or '-'})"


def show_audit(events: Sequence[GateEvent]) -> None:
    """One row per event, oldest first; `show_table` escapes every cell for the terminal."""
    rows: list[list[render.Cell]] = [
        [
            render.when(e.at),
            e.session_id,
            e.gate,
            _event_cell(e),
            e.by or "-",
            render.duration(e.waited_seconds),
            render.duration(e.paused_seconds),
            render.trimmed(e.comment, COMMENT_WIDTH),
        ]
        for e in events
    ]
    render.show_table(_HEADERS, rows, right=("waited", "paused"), empty="no gate events")


# ---------------------------------------------------------------- CSV


def csv_cell(value: object) -> str:
    """One CSV cell: None empty; text a spreadsheet would run as a formula (starting with `=`,
    `+`, `-`, `@`, a tab or a CR) gets a leading `'`; control characters other than a newline or
    a tab (which CSV quotes) are escaped, so the output drives no terminal either."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return UNSAFE.sub(lambda m: m.group() if m.group() in "\n\t" else escape(m.group()), text)


def write_csv(events: Sequence[GateEvent]) -> None:
    """A header row of every `GateEvent` field, then one row per event (times in ISO-8601)."""
    fields = list(GateEvent.model_fields)
    writer = csv.writer(sys.stdout)
    writer.writerow(fields)
    for event in events:
        values = event.model_dump(mode="json")
        writer.writerow([csv_cell(values[name]) for name in fields])
