"""`sessions audit` as a person runs it (`python -m sessions audit`) on a ledger on SQLite and on
real PostgreSQL: the table, `--json` and `--csv` (formulas neutralised), the filters, and bad
input as one line. It reads the ledger only: no Temporal server."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from common.errors import ConfigError
from ledger import GateEvent, open_ledger
from sessions.audit import csv_cell, parse_since
from tests.fixtures.cli import Cli, clean_env
from tests.fixtures.gate_events import gate_event, gate_life

NOW = datetime.now(UTC).replace(microsecond=0)
HOSTILE_COMMENT = "=1+1 \x1b[2J and a long tail of words that goes on and on"


def _recent() -> list[GateEvent]:
    """Session a-1's gate two hours ago, and a-2's decided ten minutes ago, in org acme."""
    old = [e.model_copy(update={"at": NOW - timedelta(hours=2)}) for e in gate_life()]
    [requested, notified, approved] = [
        e.model_copy(update={"at": NOW - timedelta(minutes=10)})
        for e in gate_life(session_id="a-2", gate="publish")
    ]
    decided = approved.model_copy(update={"comment": HOSTILE_COMMENT, "by": "ana"})
    globex = gate_event(session_id="g-1", org_id="globex", at=NOW - timedelta(minutes=5))
    return [*old, requested, notified, decided, globex]


def _cli(tmp_path: Path, ledger_url: str) -> Cli:
    return Cli(
        env=clean_env(LEDGER_URL=ledger_url, SESSIONS_DATA_DIR=str(tmp_path / "data")),
        cwd=tmp_path,
    )


@pytest_asyncio.fixture
async def audit_cli(ledger_url: str, tmp_path: Path) -> AsyncIterator[Cli]:
    """The CLI on a ledger (each backend in turn) holding `_recent()`."""
    ledger = await open_ledger(ledger_url)
    try:
        assert await ledger.record_gate_events(_recent()) == len(_recent())
    finally:
        await ledger.close()
    yield _cli(tmp_path, ledger_url)


async def test_the_table(audit_cli: Cli) -> None:
    out = (await audit_cli("audit")).ok().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "TIME",
        "SESSION",
        "GATE",
        "EVENT",
        "BY",
        "WAITED",
        "PAUSED",
        "COMMENT",
    ]
    rows = lines[1:]
    assert len(rows) == len(_recent())
    assert [row.split()[2] for row in rows[:3]] == ["s-1", "s-1", "s-1"]  # oldest first
    assert "notified (requested, slack)" in rows[1]
    approved = rows[2].split()
    assert approved[4:10] == ["approved", "ana", "1h", "00m", "1h", "00m"]
    assert approved[-2:] == ["looks", "good"]
    decided = next(row for row in rows if "a-2" in row and "approved" in row)
    assert "\x1b" not in out and "\\x1b[2J" in decided  # escaped, never sent raw
    assert decided.endswith("…") and "goes on" not in decided  # trimmed


async def test_json_parses_back_to_the_gate_events(audit_cli: Cli) -> None:
    printed = json.loads((await audit_cli("audit", "--json")).ok().out)
    assert [GateEvent.model_validate(e) for e in printed] == _recent()


async def test_csv_has_every_field_and_neutralises_formulas(audit_cli: Cli) -> None:
    out = (await audit_cli("audit", "--csv")).ok().out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(GateEvent.model_fields)
    assert len(rows) == len(_recent())
    [decided] = [r for r in rows if r["session_id"] == "a-2" and r["event"] == "approved"]
    assert decided["comment"].startswith("'=1+1 ")
    assert "\x1b" not in out and "\\x1b[2J" in decided["comment"]
    assert decided["paused_seconds"] == "3629.5" and decided["about"] == ""
    notified = rows[1]
    assert (notified["about"], notified["sink"], notified["attempts"]) == (
        "requested",
        "slack",
        "2",
    )
    assert GateEvent.model_validate({k: v or None for k, v in rows[0].items()}) == _recent()[
        0
    ].model_copy(update={"at": datetime.fromisoformat(rows[0]["at"])})


async def test_filters(audit_cli: Cli) -> None:
    recent = json.loads((await audit_cli("audit", "--since", "1h", "--json")).ok().out)
    assert {(e["session_id"], e["event"]) for e in recent} == {
        ("a-2", "requested"),
        ("a-2", "notified"),
        ("a-2", "approved"),
        ("g-1", "requested"),
    }
    since = (NOW - timedelta(minutes=7)).replace(tzinfo=None).isoformat()  # naive: UTC
    assert [
        e["session_id"]
        for e in json.loads((await audit_cli("audit", "--since", since, "--json")).ok().out)
    ] == ["g-1"]
    acme = json.loads(
        (await audit_cli("audit", "--org", "acme", "--since", "1h", "--json")).ok().out
    )
    assert {e["session_id"] for e in acme} == {"a-2"}
    one = json.loads((await audit_cli("audit", "--session", "s-1", "--json")).ok().out)
    assert [e["event"] for e in one] == ["requested", "notified", "approved"]


async def test_no_match_is_a_friendly_line(audit_cli: Cli) -> None:
    result = (await audit_cli("audit", "--session", "nobody")).ok()
    assert result.out.strip() == "no gate events" and result.err == ""
    assert (await audit_cli("audit", "--org", "nobody", "--json")).ok().out.strip() == "[]"
    csv_only_header = (await audit_cli("audit", "--org", "nobody", "--csv")).ok().out
    assert csv_only_header.strip() == ",".join(GateEvent.model_fields)


@pytest.mark.parametrize(
    ("since", "says"),
    [
        ("yesterday", "error: invalid --since 'yesterday': give an ISO-8601 time"),
        ("0m", "error: --since: invalid duration '0m': it must be more than zero"),
        ("2026-13-45", "error: invalid --since '2026-13-45'"),
    ],
)
async def test_a_bad_since_is_one_line_and_exit_2(audit_cli: Cli, since: str, says: str) -> None:
    result = await audit_cli("audit", "--since", since)
    assert result.one_error_line().startswith(says)
    assert result.code == 2 and result.out == ""


async def test_json_and_csv_together_is_a_usage_error(audit_cli: Cli) -> None:
    result = await audit_cli("audit", "--json", "--csv")
    assert "choose one of --json and --csv" in result.one_error_line() and result.code == 2


async def test_an_empty_ledger_and_a_bad_one(tmp_path: Path) -> None:
    """No ledger file yet: nothing recorded, and none created by reading. A URL that is no
    ledger, or a database that does not answer: one line, exit 1, password masked."""
    missing = tmp_path / "none" / "ledger.db"
    empty = _cli(tmp_path, f"sqlite:///{missing}")
    assert (await empty("audit")).ok().out.strip() == "no gate events"
    assert (await empty("audit", "--json")).ok().out.strip() == "[]"
    assert not missing.exists()

    bogus = await empty("audit", "--ledger-url", "bogus://x")
    assert "is not supported" in bogus.one_error_line() and bogus.code == 1
    down = await empty("audit", "--ledger-url", "postgresql://bob:hunter2@127.0.0.1:1/x")
    assert "ConnectionRefusedError" in down.one_error_line() and "hunter2" not in down.err


# ---------------------------------------------------------------- pure


@pytest.mark.fast
def test_parse_since() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert parse_since("90m", now=now) == now - timedelta(minutes=90)
    assert parse_since(" 7D ", now=now) == now - timedelta(days=7)
    assert parse_since("3600", now=now) == now - timedelta(hours=1)
    assert parse_since("2026-11-27T03:00:00Z") == datetime(2026, 11, 27, 3, tzinfo=UTC)
    assert parse_since("2026-11-27 03:00") == datetime(2026, 11, 27, 3, tzinfo=UTC)
    assert parse_since("2026-11-27T04:00:00+01:00") == datetime(2026, 11, 27, 3, tzinfo=UTC)
    assert parse_since("2026-11-27").tzinfo == UTC
    for bad in ("", "soon", "-5m", "1y", "400000d"):
        with pytest.raises(ConfigError):
            parse_since(bad, now=now)


@pytest.mark.fast
@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\\rx"),
        ("a\nb\tc", "a\nb\tc"),
        ("ok \x1b[2J", "ok \\x1b[2J"),
        (2, "2"),
        (3629.5, "3629.5"),
    ],
)
def test_csv_cell(value: object, cell: str) -> None:
    assert csv_cell(value) == cell
