"""Signed, expiring tokens: the inbox's log-in cookies and CSRF tokens, and the one-click decision
links the workers put in gate notices (the workers sign, `sessions web` verifies: they share
`SESSIONS_WEB_SECRET`).

A token is `base64url(JSON payload) "." base64url(HMAC-SHA256(key, purpose "|" payload))`. The
purpose is part of what is signed, so a token made for one use (a cookie) is never accepted for
another (a link). Every payload carries its expiry (`e`, Unix seconds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from common.errors import SessionsError

__all__ = [
    "DecisionLink",
    "LinkExpired",
    "TokenInvalid",
    "decision_link",
    "digest",
    "read_decision_link",
    "sign",
    "unsign",
]

MAX_TOKEN = 4096
"""Characters of a token read at most: anything longer is refused unread."""


class TokenInvalid(SessionsError):
    """The token was not made with our key for this purpose (or is malformed)."""


class LinkExpired(SessionsError):
    """A genuine token past its expiry."""

    def __init__(self, message: str, *, expired_at: datetime, payload: dict[str, Any]) -> None:
        super().__init__(message)
        self.expired_at = expired_at
        self.payload = payload
        """What the token says: genuine, so a page may name what it was for."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def digest(key: bytes, purpose: str, message: str) -> str:
    """HMAC-SHA256 of `purpose|message` under `key`, base64url: a value only the key's holder
    can compute (the CSRF token of a log-in, the fingerprint of a user's hash)."""
    mac = hmac.new(key, f"{purpose}|{message}".encode(), hashlib.sha256).digest()
    return _b64(mac)


def sign(key: bytes, purpose: str, payload: dict[str, Any]) -> str:
    """`payload` (with its expiry `e`) as a token only `key` can have made, for `purpose`."""
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{digest(key, purpose, body)}"


def unsign(key: bytes, purpose: str, token: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The payload of a token made by `sign(key, purpose, ...)`; `TokenInvalid` for anything
    else, `LinkExpired` for a genuine one past its expiry."""
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise TokenInvalid("this link or cookie is not one of ours")
    body, mac = token.split(".")
    if not hmac.compare_digest(mac.encode(), digest(key, purpose, body).encode()):
        raise TokenInvalid("this link or cookie is not one of ours")
    try:
        payload = json.loads(_unb64(body))
    except (binascii.Error, ValueError):
        raise TokenInvalid("this link or cookie is malformed") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("e"), int | float):
        raise TokenInvalid("this link or cookie is malformed")
    expires = datetime.fromtimestamp(payload["e"], UTC)
    if (now or datetime.now(UTC)) >= expires:
        raise LinkExpired(
            f"it expired at {expires:%Y-%m-%d %H:%M:%SZ}", expired_at=expires, payload=payload
        )
    return payload


# ---------------------------------------------------------------- one-click decision links

LINK_PURPOSE = "decision-link"
Decision = Literal["approve", "reject"]


class DecisionLink(BaseModel):
    """What a one-click link in a notice is bound to: one gate of one session, as requested at
    one moment (a later gate of the same name is another gate), and one decision."""

    session_id: str = Field(min_length=1, max_length=256)
    gate: str = Field(min_length=1, max_length=128)
    decision: Decision
    requested_ms: int
    """The gate's `requested_at`, in Unix milliseconds (Temporal's workflow clock resolution)."""
    expires_at: datetime


def requested_ms(requested_at: datetime) -> int:
    """A gate's request time as the link binds it: Unix milliseconds."""
    return int(round(requested_at.timestamp() * 1000))


def decision_link(
    key: bytes,
    *,
    session_id: str,
    gate: str,
    decision: Decision,
    requested_at: datetime,
    expires_at: datetime,
) -> str:
    """The token of a one-click link (`<inbox>/links/<token>`); deterministic, so a notice
    delivered twice carries the same bytes."""
    payload = {
        "s": session_id,
        "g": gate,
        "d": decision,
        "r": requested_ms(requested_at),
        "e": int(expires_at.timestamp()),
    }
    return sign(key, LINK_PURPOSE, payload)


def read_decision_link(key: bytes, token: str, *, now: datetime | None = None) -> DecisionLink:
    """The link a token stands for; `TokenInvalid` or `LinkExpired` otherwise."""
    payload = unsign(key, LINK_PURPOSE, token, now=now)
    try:
        return DecisionLink.model_validate(
            {
                "session_id": payload.get("s"),
                "gate": payload.get("g"),
                "decision": payload.get("d"),
                "requested_ms": payload.get("r"),
                "expires_at": datetime.fromtimestamp(payload["e"], UTC),
            }
        )
    except ValidationError:
        raise TokenInvalid("this link is malformed") from None
