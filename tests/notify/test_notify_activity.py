"""`notify_gate` as Temporal runs it, against real local HTTP receivers and a real SQLite ledger:
signed and complete notices, each sink given each announcement exactly once across retries, and
every failure named by sink, host and cause, never by URL or secret."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import (
    EVENT_ID_HEADER,
    NOTIFY_GATE,
    SIGNATURE_HEADER,
    GateNotice,
    GateNotifier,
    NoticeResult,
    event_id,
    sign,
    verify_signature,
)
from common.settings import NotifySettings
from ledger import GateEvent, GateEventKind, NoticeAbout, SqlLedger, gate_digest, open_ledger
from tests.fixtures.receiver import RECEIVER_SECRET, Receiver
from tests.fixtures.receiver import notify_settings as settings
from tests.fixtures.telemetry import MemoryTelemetry

SLACK_PATH = "/services/T0KEN/B0KEN/xoxSecretPath"
HOOK_PATH = "/hooks/with-T0KEN"
WEB_URL = "https://inbox.example.com/approvals/"
TIMEOUT = 0.5
"""Seconds per POST in these tests: a hanging receiver costs half a second."""

NOW = datetime.now(UTC).replace(microsecond=0)
SUMMARY = "Deploy <!channel> & friends to staging"
DETAILS = "commit abc123\n" + "x" * 5000


@pytest_asyncio.fixture
async def ledger(sqlite_ledger_url: str) -> AsyncIterator[SqlLedger]:
    opened = await open_ledger(sqlite_ledger_url)
    try:
        yield opened
    finally:
        await opened.close()


def both(monkeypatch: pytest.MonkeyPatch, hook: Receiver, slack: Receiver) -> NotifySettings:
    return settings(
        monkeypatch,
        SESSIONS_NOTIFY_URL=hook.url(HOOK_PATH),
        SESSIONS_NOTIFY_SECRET=RECEIVER_SECRET,
        SESSIONS_NOTIFY_SLACK_URL=slack.url(SLACK_PATH),
        SESSIONS_WEB_URL=WEB_URL,
    )


def notice(about: NoticeAbout = "requested", **overrides: Any) -> GateNotice:
    """Gate `deploy prod` of session s-1 (org acme), waiting since a minute ago, 1 h timeout."""
    values: dict[str, Any] = {
        "about": about,
        "session_id": "s-1",
        "org_id": "acme",
        "issue_id": "ISS-42",
        "sandbox_id": "sbx-1",
        "gate": "deploy prod",
        "title": "Deploy to staging",
        "summary": SUMMARY,
        "details": DETAILS,
        "requested_by": "agent-7",
        "approvers": ["ana", "bo"],
        "timeout_seconds": 3600.0,
        "requested_at": NOW - timedelta(seconds=61),
        "waiting_since": NOW - timedelta(seconds=60),
        "running_seconds": 12.5,
        "paused_seconds": 60.0,
    }
    if about in ("approved", "rejected"):
        values |= {"decided_at": NOW, "decided_by": "ana", "comment": "looks <good>"}
    values.update(overrides)
    if about != "reminder" and "event" not in overrides:
        values["event"] = GateEvent(
            session_id=values["session_id"],
            org_id=values["org_id"],
            issue_id=values["issue_id"],
            gate=values["gate"],
            event=cast(GateEventKind, about),
            at=NOW,
            by=values.get("decided_by") or values["requested_by"],
            digest=gate_digest(values["summary"], values["details"]),
        )
    return GateNotice(**values)


def attempt(n: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=n)
    return env


async def run(notifier: GateNotifier, gate_notice: GateNotice, *, n: int = 1) -> NoticeResult:
    return await attempt(n).run(notifier.notify_gate, gate_notice)


async def fails(notifier: GateNotifier, gate_notice: GateNotice, *, n: int = 1) -> str:
    """The `NotifyFailed` message; it is retryable and names no URL path, token or secret."""
    with pytest.raises(ApplicationError) as info:
        await run(notifier, gate_notice, n=n)
    assert info.value.type == "NotifyFailed" and not info.value.non_retryable
    message = info.value.message
    for secret in ("T0KEN", "xoxSecretPath", RECEIVER_SECRET, "http"):
        assert secret not in message
    return message


def notified(rows: list[GateEvent]) -> list[tuple[str | None, str | None, int | None]]:
    return [(r.about, r.sink, r.attempts) for r in rows if r.event == "notified"]


# ---------------------------------------------------------------- the signature


def test_a_signature_verifies_only_fresh_and_untouched() -> None:
    body = b'{"type":"gate.waiting"}'
    t = int(time.time())
    header = sign(RECEIVER_SECRET, body, t)
    assert header.startswith(f"t={t},v1=") and len(header.rpartition("v1=")[2]) == 64
    assert verify_signature(RECEIVER_SECRET, header, body)
    assert not verify_signature(RECEIVER_SECRET, header, body + b" ")  # tampered body
    assert not verify_signature("another-secret", header, body)
    assert not verify_signature(RECEIVER_SECRET, header, body, now=t + 301)  # stale
    assert verify_signature(RECEIVER_SECRET, header, body, now=t + 299)
    assert not verify_signature(RECEIVER_SECRET, header, body, now=t - 301)  # from the future
    forged = header.replace(f"t={t}", f"t={t + 60}")  # a replay with a fresh time
    assert not verify_signature(RECEIVER_SECRET, forged, body, now=t + 60)
    for broken in (None, "", "v1=abc", f"t=x,{header}", f"t={t}", f"{header},t={t}"):
        assert not verify_signature(RECEIVER_SECRET, broken, body, now=t)
    rotated = f"{header},v1={'0' * 64}"  # a second v1 (a key being rotated) does no harm
    assert verify_signature(RECEIVER_SECRET, rotated, body, now=t)


# ---------------------------------------------------------------- what the sinks get


async def test_the_webhook_gets_a_signed_notice_with_every_field(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver
) -> None:
    config = settings(
        monkeypatch,
        SESSIONS_NOTIFY_URL=receiver.url(HOOK_PATH),
        SESSIONS_NOTIFY_SECRET=RECEIVER_SECRET,
        SESSIONS_WEB_URL=WEB_URL,
    )
    sent = notice()
    result = await run(GateNotifier(ledger, config, timeout=TIMEOUT), sent)

    [got] = receiver.received
    assert got.signed is True and got.path == HOOK_PATH
    assert verify_signature(RECEIVER_SECRET, got.headers[SIGNATURE_HEADER.lower()], got.body)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "session-worker"
    stable_id = event_id("s-1", "deploy prod", "requested")
    assert got.headers[EVENT_ID_HEADER.lower()] == stable_id
    body = got.json()
    assert got.body == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert body == {
        "type": "gate.waiting",
        "id": stable_id,
        "session_id": "s-1",
        "org_id": "acme",
        "issue_id": "ISS-42",
        "sandbox_id": "sbx-1",
        "gate": "deploy prod",
        "title": "Deploy to staging",
        "summary": SUMMARY,
        "details": DETAILS,
        "requested_by": "agent-7",
        "approvers": ["ana", "bo"],
        "timeout_seconds": 3600.0,
        "on_timeout": "reject",
        "requested_at": (NOW - timedelta(seconds=61)).isoformat(),
        "waiting_since": (NOW - timedelta(seconds=60)).isoformat(),
        "deadline": (NOW + timedelta(seconds=3540)).isoformat(),
        "decided_at": None,
        "decided_by": None,
        "comment": None,
        "cost": {"running_seconds": 12.5, "paused_seconds": 60.0},
        "decide": {
            "commands": [
                "sessions approve s-1 'deploy prod' --by WHO",
                "sessions reject s-1 'deploy prod' --by WHO",
                "temporal workflow signal --workflow-id session-s-1 --name approve "
                """--input '{"gate": "deploy prod", "by": "WHO"}'""",
                "temporal workflow signal --workflow-id session-s-1 --name reject "
                """--input '{"gate": "deploy prod", "by": "WHO"}'""",
            ],
            "url": "https://inbox.example.com/approvals/sessions/s-1/gates/deploy%20prod",
            "links": {},  # no SESSIONS_WEB_SECRET: no one-click links
        },
    }

    assert result.delivered == ["webhook"] and result.at is not None
    rows = await ledger.gate_events(session_id="s-1")
    assert [r.event for r in rows] == ["requested", "notified"]
    assert rows[0] == sent.event
    assert rows[1].sink == "webhook" and rows[1].about == "requested" and rows[1].attempts == 1
    assert rows[1].digest == gate_digest(SUMMARY, DETAILS) and rows[1].at == result.at
    assert rows[1].waited_seconds is not None and rows[1].waited_seconds >= 61


async def test_slack_gets_a_block_kit_message_fit_for_slack(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    notifier = GateNotifier(ledger, both(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    result = await run(notifier, notice())
    assert result.delivered == ["webhook", "slack"]

    [got] = slack_receiver.received
    assert got.path == SLACK_PATH and SIGNATURE_HEADER.lower() not in got.headers
    message = got.json()
    assert "deploy prod" in message["text"] and "s-1" in message["text"]
    header, summary, facts, details, context = message["blocks"]
    assert header["text"] == {
        "type": "plain_text",
        "text": "Waiting for approval: Deploy to staging",
    }
    # Escaped: `<!channel>` must not ping a whole channel.
    assert "Deploy &lt;!channel&gt; &amp; friends" in summary["text"]["text"]
    assert "Undecided after 1h 00m: it counts as rejected." in summary["text"]["text"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in facts["fields"]}
    assert fields["*Org*"] == "acme" and fields["*Issue*"] == "ISS-42"
    assert fields["*Session*"] == "s-1" and fields["*Gate*"] == "deploy prod"
    assert fields["*Requested by*"] == "agent-7" and fields["*Approvers*"] == "ana, bo"
    assert fields["*Time left*"].endswith("of 1h 00m") and fields["*Time left*"].startswith("5")
    assert fields["*Cost so far*"] == "12s running, 1m 00s paused (not billed)"
    code = details["text"]["text"]
    assert code.startswith("```commit abc123") and code.endswith("…```") and len(code) <= 3000
    how = context["elements"][0]["text"]
    assert "`sessions approve s-1 'deploy prod' --by WHO`" in how
    assert "<https://inbox.example.com/approvals/sessions/s-1/gates/deploy%20prod|" in how


@pytest.mark.parametrize(
    ("about", "says"),
    [
        ("approved", "*Approved* by *ana*: looks &lt;good&gt;"),
        ("rejected", "*Rejected* by *ana*: looks &lt;good&gt;"),
        ("timed_out", "*Timed out* undecided: the session is terminated."),
    ],
)
async def test_a_follow_up_says_how_the_gate_ended(
    monkeypatch: pytest.MonkeyPatch,
    ledger: SqlLedger,
    receiver: Receiver,
    slack_receiver: Receiver,
    about: NoticeAbout,
    says: str,
) -> None:
    notifier = GateNotifier(ledger, both(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    ended = notice(about, on_timeout="terminate")
    await run(notifier, ended)

    body = receiver.received[0].json()
    assert body["type"] == f"gate.{about}" and body["decide"]["commands"] == []
    assert body["decided_by"] == ("ana" if about != "timed_out" else None)
    blocks = slack_receiver.received[0].json()["blocks"]
    assert blocks[1]["text"]["text"].startswith(says)
    assert "sessions approve" not in json.dumps(blocks)  # nothing left to decide
    rows = await ledger.gate_events(session_id="s-1")
    assert [r.event for r in rows] == [about, "notified", "notified"]


async def test_a_reminder_writes_no_audit_row_of_its_own(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    notifier = GateNotifier(ledger, both(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    await run(notifier, notice("reminder"))
    assert receiver.received[0].json()["type"] == "gate.reminder"
    assert "Still waiting" in slack_receiver.received[0].json()["blocks"][0]["text"]["text"]
    rows = await ledger.gate_events(session_id="s-1")
    assert sorted(notified(rows)) == [("reminder", "slack", 1), ("reminder", "webhook", 1)]
    assert len(rows) == 2


# ---------------------------------------------------------------- retries, exactly once


async def test_a_retry_after_a_partial_success_delivers_only_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
    ledger: SqlLedger,
    receiver: Receiver,
    slack_receiver: Receiver,
    memory_telemetry: MemoryTelemetry,
) -> None:
    notifier = GateNotifier(ledger, both(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    slack_receiver.fail_first = 1
    before = memory_telemetry.value("session.notify.failures", **{"notify.sink": "slack"})

    message = await fails(notifier, notice(), n=1)
    assert message == f"slack webhook to 127.0.0.1:{slack_receiver.port} answered 500"
    after = memory_telemetry.value("session.notify.failures", **{"notify.sink": "slack"})
    assert after == before + 1

    result = await run(notifier, notice(), n=2)
    assert result.delivered == ["webhook", "slack"]
    assert len(receiver.received) == 1  # the webhook had it: never posted again
    assert [r.status for r in slack_receiver.received] == [500, 200]
    rows = await ledger.gate_events(session_id="s-1")
    assert [r.event for r in rows].count("requested") == 1
    assert sorted(notified(rows)) == [("requested", "slack", 2), ("requested", "webhook", 1)]


async def test_one_delivery_per_event_across_retries_and_redeliveries(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver
) -> None:
    config = settings(
        monkeypatch,
        SESSIONS_NOTIFY_URL=receiver.url(HOOK_PATH),
        SESSIONS_NOTIFY_SECRET=RECEIVER_SECRET,
    )
    notifier = GateNotifier(ledger, config, timeout=TIMEOUT)
    receiver.fail_first = 2
    for n in (1, 2):
        assert "answered 500" in await fails(notifier, notice(), n=n)
    first = await run(notifier, notice(), n=3)
    again = await run(notifier, notice(), n=4)  # the activity run again after it succeeded
    assert again == first and first.delivered == ["webhook"]

    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert all(r.signed for r in receiver.received)  # every attempt signed afresh
    ids = {r.headers[EVENT_ID_HEADER.lower()] for r in receiver.received}
    assert ids == {event_id("s-1", "deploy prod", "requested")}
    assert len({r.body for r in receiver.received}) == 1  # the same bytes each time
    rows = await ledger.gate_events(session_id="s-1")
    assert [r.event for r in rows] == ["requested", "notified"]
    assert notified(rows) == [("requested", "webhook", 3)]

    # Each announcement is its own event: the approval goes out once more, with its own id.
    await run(notifier, notice("approved"))
    assert receiver.accepted[-1].headers[EVENT_ID_HEADER.lower()] == event_id(
        "s-1", "deploy prod", "approved"
    )
    assert len(receiver.accepted) == 2


@pytest.mark.parametrize("trouble", ["500", "hang", "down", "redirect"])
async def test_a_failing_sink_is_named_by_host_and_cause(
    monkeypatch: pytest.MonkeyPatch,
    ledger: SqlLedger,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    memory_telemetry: MemoryTelemetry,
    trouble: str,
) -> None:
    config = settings(
        monkeypatch,
        SESSIONS_NOTIFY_URL=receiver.url(HOOK_PATH),
        SESSIONS_NOTIFY_SECRET=RECEIVER_SECRET,
    )
    host = f"127.0.0.1:{receiver.port}"
    receiver.fail_first = 99
    if trouble == "hang":
        receiver.hang = True
    elif trouble == "down":
        receiver.close()
    elif trouble == "redirect":
        receiver.fail_status = 302
    expected = {
        "500": f"webhook to {host} answered 500",
        "hang": f"webhook to {host} timed out after {TIMEOUT:g}s",
        "down": f"webhook to {host} refused the connection",
        "redirect": f"webhook to {host} answered 302, a redirect (not followed)",
    }[trouble]
    attrs = {"notify.sink": "webhook", "notify.about": "requested"}
    before = memory_telemetry.value("session.notify.failures", **attrs)

    with caplog.at_level(logging.WARNING):
        assert await fails(GateNotifier(ledger, config, timeout=TIMEOUT), notice()) == expected
    [line] = [r.getMessage() for r in caplog.records if "gate notice" in r.getMessage()]
    assert "attempt 1" in line and "session=s-1" in line and f": {expected} (" in line
    assert "T0KEN" not in line and RECEIVER_SECRET not in line
    assert memory_telemetry.value("session.notify.failures", **attrs) == before + 1
    # The audit row is written all the same; no `notified` row.
    assert [r.event for r in await ledger.gate_events(session_id="s-1")] == ["requested"]


async def test_one_failing_sink_does_not_stop_the_other(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    notifier = GateNotifier(ledger, both(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    receiver.close()
    slack_receiver.fail_first, slack_receiver.fail_status = 1, 404
    slack_receiver.fail_body = b"no_service"  # Slack's word for a removed webhook
    message = await fails(notifier, notice())
    assert message == (
        f"webhook to 127.0.0.1:{receiver.port} refused the connection; "
        f"slack webhook to 127.0.0.1:{slack_receiver.port} answered 404 (no_service)"
    )
    assert await fails(notifier, notice(), n=2) == (
        f"webhook to 127.0.0.1:{receiver.port} refused the connection"
    )
    assert len(slack_receiver.accepted) == 1


# ---------------------------------------------------------------- configuration


async def test_no_sink_returns_at_once_after_the_audit_row(ledger: SqlLedger) -> None:
    result = await run(GateNotifier(ledger, NotifySettings.load()), notice())
    assert result == NoticeResult(delivered=[], at=None)
    assert [r.event for r in await ledger.gate_events(session_id="s-1")] == ["requested"]


async def test_an_org_of_its_own_gets_its_own_webhook(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver
) -> None:
    own = Receiver(secret="acme-own-secret")
    try:
        config = settings(
            monkeypatch,
            SESSIONS_NOTIFY_URL=receiver.url(HOOK_PATH),
            SESSIONS_NOTIFY_SECRET=RECEIVER_SECRET,
            SESSIONS_NOTIFY_URL__ACME_CORP=own.url("/acme"),
            SESSIONS_NOTIFY_SECRET__ACME_CORP="acme-own-secret",
        )
        notifier = GateNotifier(ledger, config, timeout=TIMEOUT)
        await run(notifier, notice(org_id="acme-corp"))
        await run(notifier, notice(org_id="beta", session_id="s-2"))
        assert [(r.path, r.signed, r.json()["org_id"]) for r in own.received] == [
            ("/acme", True, "acme-corp")
        ]
        assert [(r.signed, r.json()["org_id"]) for r in receiver.received] == [(True, "beta")]
    finally:
        own.close()


async def test_a_notice_for_another_gate_is_refused_for_good(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger
) -> None:
    wrong = notice(event=notice().event.model_copy(update={"gate": "other"}))  # type: ignore[union-attr]
    with pytest.raises(ApplicationError) as info:
        await run(GateNotifier(ledger, NotifySettings.load()), wrong)
    assert info.value.type == "InvalidNotice" and info.value.non_retryable
    assert "InvalidNotice" in (NOTIFY_GATE["retry_policy"].non_retryable_error_types or [])  # type: ignore[union-attr]
    assert await ledger.gate_events(session_id="s-1") == []
