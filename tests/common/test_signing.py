"""Signed tokens: only our key makes them, only for their purpose, only until they expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.signing import (
    LinkExpired,
    TokenInvalid,
    decision_link,
    read_decision_link,
    requested_ms,
    sign,
    unsign,
)

pytestmark = pytest.mark.fast

KEY = b"k" * 40
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _link(**changes: object) -> str:
    fields: dict[str, object] = {
        "session_id": "s1",
        "gate": "deploy",
        "decision": "approve",
        "requested_at": NOW - timedelta(minutes=5),
        "expires_at": NOW + timedelta(hours=1),
    } | changes
    return decision_link(KEY, **fields)  # type: ignore[arg-type]


def test_a_link_says_what_it_was_made_for() -> None:
    link = read_decision_link(KEY, _link(), now=NOW)
    assert (link.session_id, link.gate, link.decision) == ("s1", "deploy", "approve")
    assert link.requested_ms == requested_ms(NOW - timedelta(minutes=5))
    assert link.expires_at == NOW + timedelta(hours=1)


def test_the_same_link_twice_is_the_same_bytes() -> None:
    assert _link() == _link()


def test_another_key_or_purpose_or_any_changed_character_is_refused() -> None:
    token = _link()
    with pytest.raises(TokenInvalid):
        read_decision_link(b"other" * 8, token, now=NOW)
    with pytest.raises(TokenInvalid):  # a log-in cookie is no link, though signed by us
        read_decision_link(KEY, sign(KEY, "login-cookie", {"e": 2_000_000_000}), now=NOW)
    for i in range(len(token)):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises((TokenInvalid, LinkExpired)):
            read_decision_link(KEY, changed, now=NOW)


def test_an_expired_link_says_when_and_what_it_was_for() -> None:
    token = _link(expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(LinkExpired) as caught:
        read_decision_link(KEY, token, now=NOW)
    assert caught.value.payload["g"] == "deploy"
    assert "expired at 2026-11-30 11:59:59Z" in str(caught.value)


@pytest.mark.parametrize(
    "token", ["", ".", "a.b.c", "x" * 5000, "e30.AAAA", "!!!!.????", "\u202e.\u202e"]
)
def test_garbage_is_refused_in_one_way(token: str) -> None:
    with pytest.raises(TokenInvalid):
        unsign(KEY, "decision-link", token, now=NOW)


def test_a_signed_payload_of_the_wrong_shape_is_refused() -> None:
    for payload in ({"e": "soon"}, {"s": "s1"}, {"e": 2_000_000_000, "d": "delete"}):
        with pytest.raises(TokenInvalid):
            read_decision_link(KEY, sign(KEY, "decision-link", payload), now=NOW)
