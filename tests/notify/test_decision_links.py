"""One-click decision links in gate notices: with `SESSIONS_WEB_URL` and `SESSIONS_WEB_SECRET`, a
notice of a waiting gate carries an approve and a reject link to the inbox, signed tokens the
inbox (`common.signing.read_decision_link`) accepts for that gate and decision only, expiring
after `SESSIONS_WEB_LINK_TTL` or at the gate's deadline; the same bytes on every delivery, and
the secret nowhere but inside the tokens.

Delivered by the real notifier to real local receivers (tests/fixtures/receiver.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.notify import SIGNATURE_HEADER, GateNotifier
from activities.notify import _slack_message as slack_message
from common.settings import NotifySettings
from common.signing import LinkExpired, TokenInvalid, read_decision_link, requested_ms
from ledger import NoticeAbout, SqlLedger
from tests.fixtures.receiver import RECEIVER_SECRET, Receiver
from tests.fixtures.receiver import notify_settings as settings
from tests.notify.test_notify_activity import (
    HOOK_PATH,
    NOW,
    SLACK_PATH,
    TIMEOUT,
    WEB_URL,
    fails,
    ledger,
    notice,
    run,
)

__all__ = ["ledger"]  # the fixture, imported for these tests

WEB_SECRET = "inbox-S3cret-" + "0123456789abcdef" * 3
KEY = WEB_SECRET.encode()
LINKS = "https://inbox.example.com/approvals/links/"
"""`WEB_URL` (it ends with a slash) with `/links/`."""
REQUESTED_AT = NOW - timedelta(seconds=61)
WAITING_SINCE = NOW - timedelta(seconds=60)
DEADLINE = WAITING_SINCE + timedelta(hours=1)
"""`notice()`'s gate: waiting since a minute ago, with a 1 h timeout."""


def web(
    monkeypatch: pytest.MonkeyPatch, hook: Receiver, slack: Receiver, **env: str
) -> NotifySettings:
    """Both sinks, the inbox's URL and its key."""
    values = {
        "SESSIONS_NOTIFY_URL": hook.url(HOOK_PATH),
        "SESSIONS_NOTIFY_SECRET": RECEIVER_SECRET,
        "SESSIONS_NOTIFY_SLACK_URL": slack.url(SLACK_PATH),
        "SESSIONS_WEB_URL": WEB_URL,
        "SESSIONS_WEB_SECRET": WEB_SECRET,
    }
    return settings(monkeypatch, **(values | env))


def links_of(hook: Receiver, n: int = -1) -> dict[str, str]:
    links: dict[str, str] = hook.received[n].json()["decide"]["links"]
    return links


def token(url: str) -> str:
    assert url.startswith(LINKS)
    return url.removeprefix(LINKS)


def buttons(slack: Receiver, n: int = -1) -> list[dict[str, Any]]:
    blocks = slack.received[n].json()["blocks"]
    return [e for block in blocks if block["type"] == "actions" for e in block["elements"]]


def at(expiry: datetime) -> datetime:
    """An expiry as the token holds it: whole seconds."""
    return datetime.fromtimestamp(int(expiry.timestamp()), UTC)


# ---------------------------------------------------------------- the links


@pytest.mark.parametrize(
    ("env", "overrides", "expires"),
    [
        # The default 24 h outlives the gate's 1 h: the deadline ends the links.
        ({}, {}, DEADLINE),
        # A short TTL ends them before the deadline, counted from when the gate started waiting.
        ({"SESSIONS_WEB_LINK_TTL": "10m"}, {}, WAITING_SINCE + timedelta(minutes=10)),
        # No timeout, so no deadline: the TTL alone.
        ({}, {"timeout_seconds": None}, WAITING_SINCE + timedelta(hours=24)),
        # Not waiting yet (no `waiting_since`): counted from the request.
        ({}, {"timeout_seconds": None, "waiting_since": None}, REQUESTED_AT + timedelta(hours=24)),
        # A deadline within a second: the expiry is cut to whole seconds, never later than it.
        ({}, {"timeout_seconds": 3600.75}, DEADLINE + timedelta(seconds=0.75)),
    ],
    ids=["deadline", "ttl", "no-deadline", "not-waiting-yet", "whole-seconds"],
)
async def test_a_waiting_notice_carries_signed_links_the_inbox_accepts(
    monkeypatch: pytest.MonkeyPatch,
    ledger: SqlLedger,
    receiver: Receiver,
    slack_receiver: Receiver,
    env: dict[str, str],
    overrides: dict[str, Any],
    expires: datetime,
) -> None:
    notifier = GateNotifier(
        ledger, web(monkeypatch, receiver, slack_receiver, **env), timeout=TIMEOUT
    )
    await run(notifier, notice(**overrides))

    links = links_of(receiver)
    assert sorted(links) == ["approve", "reject"]
    assert at(expires) <= expires
    for decision, url in links.items():
        link = read_decision_link(KEY, token(url), now=NOW)
        assert (link.session_id, link.gate, link.decision) == ("s-1", "deploy prod", decision)
        assert link.requested_ms == requested_ms(REQUESTED_AT)
        assert link.expires_at == at(expires)
        with pytest.raises(LinkExpired):
            read_decision_link(KEY, token(url), now=at(expires))
    assert links["approve"] != links["reject"]


async def test_the_secret_is_nowhere_but_inside_the_tokens(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    notifier = GateNotifier(ledger, web(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    await run(notifier, notice())
    for got in [*receiver.received, *slack_receiver.received]:
        sent = got.body + json.dumps(got.headers).encode()
        assert WEB_SECRET.encode() not in sent and b"0123456789abcdef" not in sent
    assert links_of(receiver)  # there are links, all the same


async def test_a_reminder_carries_the_same_links_as_the_request(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    notifier = GateNotifier(ledger, web(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    await run(notifier, notice("requested"))
    await run(notifier, notice("reminder"))
    [requested, reminder] = (r.json() for r in receiver.received)
    assert reminder["type"] == "gate.reminder" and requested["type"] == "gate.waiting"
    assert json.dumps(reminder["decide"]["links"]) == json.dumps(requested["decide"]["links"])
    assert requested["decide"]["links"]
    assert buttons(slack_receiver, 0) == buttons(slack_receiver, 1) != []


@pytest.mark.parametrize("about", ["approved", "rejected", "timed_out"])
async def test_a_decided_gate_has_no_links(
    monkeypatch: pytest.MonkeyPatch,
    ledger: SqlLedger,
    receiver: Receiver,
    slack_receiver: Receiver,
    about: NoticeAbout,
) -> None:
    notifier = GateNotifier(ledger, web(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    await run(notifier, notice(about))
    assert links_of(receiver) == {}
    assert buttons(slack_receiver) == []
    assert "/links/" not in slack_receiver.received[0].body.decode()


@pytest.mark.parametrize(
    "missing", ["SESSIONS_WEB_SECRET", "SESSIONS_WEB_URL"], ids=["no-secret", "no-url"]
)
async def test_no_links_without_the_inbox_url_and_its_key(
    monkeypatch: pytest.MonkeyPatch,
    ledger: SqlLedger,
    receiver: Receiver,
    slack_receiver: Receiver,
    missing: str,
) -> None:
    web(monkeypatch, receiver, slack_receiver)
    monkeypatch.delenv(missing)
    config = NotifySettings.load()
    await run(GateNotifier(ledger, config, timeout=TIMEOUT), notice())
    decide = receiver.received[0].json()["decide"]
    assert decide["links"] == {} and decide["commands"]  # the commands still say how
    assert buttons(slack_receiver) == []


async def test_links_that_have_already_expired_are_left_out(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    """A reminder of a gate waiting longer than the TTL: its links would only be refused."""
    notifier = GateNotifier(ledger, web(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    waiting = NOW - timedelta(hours=25)
    await run(notifier, notice("reminder", waiting_since=waiting, timeout_seconds=None))
    assert links_of(receiver) == {}
    assert buttons(slack_receiver) == []


async def test_a_redelivery_carries_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    notifier = GateNotifier(ledger, web(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    receiver.fail_first = 1
    await fails(notifier, notice(), n=1)
    # Another worker (another notifier, a moment later) delivers it on the next attempt.
    again = GateNotifier(ledger, web(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    await run(again, notice(), n=2)
    first, second = receiver.received
    assert (first.status, second.status) == (500, 200)
    assert first.body == second.body and b"/links/" in first.body
    assert first.headers[SIGNATURE_HEADER.lower()] and second.signed


async def test_a_token_is_bound_to_its_key_its_gate_and_its_decision(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    notifier = GateNotifier(ledger, web(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    await run(notifier, notice())
    await run(notifier, notice(session_id="s-2"))
    first, other = links_of(receiver, 0), links_of(receiver, 1)
    approve = token(first["approve"])
    with pytest.raises(TokenInvalid):  # another inbox's key
        read_decision_link(b"another-inbox-" + b"k" * 32, approve, now=NOW)
    assert read_decision_link(KEY, token(other["approve"]), now=NOW).session_id == "s-2"
    assert token(other["approve"]) != approve
    # The payload of one link with the signature of another is no link at all.
    payload, _, mac = approve.partition(".")
    for forged in (
        f"{payload}.{token(first['reject']).partition('.')[2]}",
        f"{token(other['approve']).partition('.')[0]}.{mac}",
    ):
        with pytest.raises(TokenInvalid):
            read_decision_link(KEY, forged, now=NOW)


# ---------------------------------------------------------------- Slack


async def test_slack_gets_two_buttons_that_open_the_confirm_page(
    monkeypatch: pytest.MonkeyPatch, ledger: SqlLedger, receiver: Receiver, slack_receiver: Receiver
) -> None:
    notifier = GateNotifier(ledger, web(monkeypatch, receiver, slack_receiver), timeout=TIMEOUT)
    await run(notifier, notice())
    links = links_of(receiver)
    approve, reject = buttons(slack_receiver)
    assert (approve["url"], reject["url"]) == (links["approve"], links["reject"])
    assert (approve["style"], reject["style"]) == ("primary", "danger")
    assert approve["action_id"] != reject["action_id"]
    for button in (approve, reject):
        assert button["type"] == "button" and button["text"]["type"] == "plain_text"
        assert "confirm" in button["text"]["text"] and len(button["text"]["text"]) <= 75
    assert approve["text"]["text"].startswith("Approve")
    assert reject["text"]["text"].startswith("Reject")
    blocks = slack_receiver.received[0].json()["blocks"]
    assert [b["type"] for b in blocks][-2:] == ["actions", "context"]
    how = blocks[-1]["elements"][0]["text"]  # the commands and the inbox link, as before
    assert "`sessions approve s-1 'deploy prod' --by WHO`" in how
    assert "<https://inbox.example.com/approvals/sessions/s-1/gates/deploy%20prod|" in how


def test_slack_gets_no_buttons_for_a_link_longer_than_slack_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slack refuses a whole message with a button `url` over 3000 characters: the buttons go,
    the message (and its inbox link) stays."""
    config = settings(monkeypatch, SESSIONS_WEB_URL=WEB_URL, SESSIONS_WEB_SECRET=WEB_SECRET)
    message = slack_message(notice(session_id="s" * 2500), web=config, now=NOW)
    assert [b["type"] for b in message["blocks"]][-1] == "context"
    assert not any(b["type"] == "actions" for b in message["blocks"])
    short = slack_message(notice(), web=config, now=NOW)
    assert any(b["type"] == "actions" for b in short["blocks"])
