"""Who is looking at the inbox, and whether their POST is theirs.

- **users** mode: a log-in (a name and its token or password, checked against the users file's
  salted scrypt hashes) sets one cookie, signed with `SESSIONS_WEB_SECRET`, HttpOnly,
  SameSite=Lax, `Secure` behind https, expiring after `SESSIONS_WEB_SESSION_TTL`. It carries a
  fingerprint of the user's hash, so replacing or removing the user ends every log-in of theirs.
- **proxy** mode: the user is what `SESSIONS_WEB_PROXY_HEADER` says, honoured only on a
  connection from `SESSIONS_WEB_PROXY_FROM` (any other peer is refused outright), and only when
  configured: in users mode the header means nothing.

Every POST carries a CSRF token, an HMAC of a nonce the browser holds in a cookie (the log-in's own
nonce once logged in, so a log-in rotates it); a cross-site `Origin` or `Sec-Fetch-Site` is
refused too. Failed log-ins are limited per name and per address.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

from starlette.requests import Request

from common.errors import SessionsError
from common.settings import WebSettings, parse_host
from common.signing import LinkExpired, TokenInvalid, digest, sign, unsign
from sessions.web.users import User, UsersError, UsersFile, check_name

__all__ = ["Auth", "Refused", "Viewer"]

LOGIN_COOKIE = "sessions_login"
NONCE_COOKIE = "sessions_nonce"
_LOGIN_PURPOSE = "login-cookie"
FAILURES = 10
"""Failed log-ins allowed per name within `FAILURE_WINDOW` seconds (then that name waits)."""
ADDRESS_FAILURES = 100
"""... and per peer address: higher, since many people may come through one proxy."""
FAILURE_WINDOW = 600.0
MAX_TRACKED = 10_000
"""Names and addresses with recent failures kept at most."""


class Refused(SessionsError):
    """A request the inbox will not serve: its HTTP status and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Viewer:
    """The person behind a request. `name` None: nobody is logged in."""

    name: str | None
    nonce: str
    """What this browser's CSRF token is made from."""


class Auth:
    """Reads and makes log-ins; `key` is `SESSIONS_WEB_SECRET`."""

    def __init__(self, settings: WebSettings, *, key: bytes, users: UsersFile | None) -> None:
        self.settings = settings
        self.key = key
        self.users = users
        self.secure = (settings.web_url or "").startswith("https://")
        self._failures: dict[str, deque[float]] = {}

    @property
    def mode(self) -> str:
        return self.settings.web_auth

    # ---------------------------------------------------------------- who

    def viewer(self, request: Request) -> Viewer:
        """Who sent `request` (`Refused` for a proxy-mode request from outside the proxy)."""
        given = request.scope.get("state", {}).get("nonce") or request.cookies.get(NONCE_COOKIE)
        nonce = given if isinstance(given, str) and _good_nonce(given) else ""
        if self.mode == "proxy":
            return Viewer(name=self._proxy_user(request), nonce=nonce)
        token = request.cookies.get(LOGIN_COOKIE)
        if token:
            viewer = self._from_cookie(token)
            if viewer is not None:
                return viewer
        return Viewer(name=None, nonce=nonce)

    def peer_allowed(self, request: Request) -> bool:
        """In proxy mode, only the proxy's addresses may talk to us at all."""
        if self.mode != "proxy":
            return True
        client = request.client
        if client is None:
            return False
        try:
            address = ipaddress.ip_address(client.host)
        except ValueError:
            return False
        return any(address in network for network in self.settings.proxy_networks)

    def _proxy_user(self, request: Request) -> str:
        header = self.settings.web_proxy_header
        assert header is not None  # the settings refuse proxy mode without one
        values = request.headers.getlist(header)
        if len(values) != 1 or not values[0].strip():
            raise Refused(
                401,
                f"the proxy sent no user: the inbox expects exactly one {header} header "
                "(SESSIONS_WEB_PROXY_HEADER)",
            )
        return check_user_name(values[0].strip())

    def _from_cookie(self, token: str) -> Viewer | None:
        try:
            payload = unsign(self.key, _LOGIN_PURPOSE, token)
        except (TokenInvalid, LinkExpired):
            return None
        name, nonce, fingerprint = payload.get("u"), payload.get("n"), payload.get("f")
        if not isinstance(name, str) or not _good_nonce(nonce) or not isinstance(fingerprint, str):
            return None
        user = self.users.get(name) if self.users is not None else None
        if user is None or not hmac.compare_digest(fingerprint, self._fingerprint(user)):
            return None  # removed, or their token was replaced: that log-in is over
        assert isinstance(nonce, str)
        return Viewer(name=user.name, nonce=nonce)

    def _fingerprint(self, user: User) -> str:
        return digest(self.key, "user", f"{user.name}\n{user.fingerprint_source}")[:22]

    # ---------------------------------------------------------------- log in

    async def log_in(self, name: str, secret: str, *, address: str) -> User:
        """The user whose `secret` this is (`Refused` otherwise, one message for every cause)."""
        folded = name.strip().casefold()
        limits = {f"name:{folded}": FAILURES, f"addr:{address}": ADDRESS_FAILURES}
        for key, most in limits.items():
            if self._blocked(key, most):
                raise Refused(
                    429,
                    "too many failed log-ins: wait a few minutes and try again",
                )
        user = None
        if self.users is not None:
            user = await self.users.authenticate(name.strip(), secret)
        if user is None:
            if len(self._failures) >= MAX_TRACKED:  # a spray of names must not grow it forever
                self._forget_old()
            for key in limits:
                self._failures.setdefault(key, deque()).append(time.monotonic())
            raise Refused(401, "unknown user or wrong token")
        return user

    def _forget_old(self) -> None:
        """Drop what has aged out; if that is not enough, the half seen longest ago."""
        horizon = time.monotonic() - FAILURE_WINDOW
        for key in [k for k, seen in self._failures.items() if not seen or seen[-1] < horizon]:
            del self._failures[key]
        if len(self._failures) >= MAX_TRACKED:
            by_age = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in by_age[: len(by_age) // 2]:
                del self._failures[key]

    def _blocked(self, key: str, most: int) -> bool:
        seen = self._failures.get(key)
        if not seen:
            return False
        horizon = time.monotonic() - FAILURE_WINDOW
        while seen and seen[0] < horizon:
            seen.popleft()
        if not seen:
            del self._failures[key]
        return len(seen) >= most

    def login_cookie(self, user: User, *, now: datetime | None = None) -> str:
        """The cookie value that logs `user` in, with a new nonce (the CSRF token rotates)."""
        at = now or datetime.now(UTC)
        expires = at + timedelta(seconds=self.settings.web_session_ttl)
        nonce = new_nonce()
        payload = {
            "u": user.name,
            "n": nonce,
            "f": self._fingerprint(user),
            "e": int(expires.timestamp()),
        }
        return sign(self.key, _LOGIN_PURPOSE, payload)

    def cookie_header(self, name: str, value: str, *, max_age: int | None) -> str:
        """A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure behind https."""
        cookie: SimpleCookie = SimpleCookie()
        cookie[name] = value
        morsel = cookie[name]
        morsel["path"] = "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Lax"
        if self.secure:
            morsel["secure"] = True
        if max_age is not None:
            morsel["max-age"] = max_age
        return morsel.OutputString()

    # ---------------------------------------------------------------- CSRF

    def csrf_token(self, viewer: Viewer) -> str:
        return digest(self.key, "csrf", f"{viewer.name or ''}\n{viewer.nonce}")

    def check_post(self, request: Request, viewer: Viewer, token: object) -> None:
        """Refuse a POST that another site could have sent (`Refused(403)`)."""
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            raise Refused(403, "refused: this form was sent from another site")
        origin = request.headers.get("origin")
        if origin is not None and not _same_origin(origin, request):
            raise Refused(403, "refused: this form was sent from another site")
        if not viewer.nonce or not isinstance(token, str) or not token:
            raise Refused(403, "refused: the form had no CSRF token; reload the page and retry")
        if not hmac.compare_digest(token.encode(), self.csrf_token(viewer).encode()):
            raise Refused(
                403, "refused: the form's CSRF token is stale or not ours; reload and retry"
            )


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def _good_nonce(value: object) -> bool:
    return isinstance(value, str) and 16 <= len(value) <= 64 and value.isascii()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _same_origin(origin: str, request: Request) -> bool:
    """`Origin` names the host the request went to (an https origin may reach us as http,
    through a TLS-terminating proxy): same name, same port once default ports are filled in."""
    scheme, _, rest = origin.strip().lower().partition("://")
    if scheme not in _DEFAULT_PORTS:
        return False
    sent, here = parse_host(rest), parse_host(request.headers.get("host", ""))
    if sent is None or here is None:
        return False
    default = _DEFAULT_PORTS[scheme]
    return (sent[0], sent[1] or default) == (here[0], here[1] or default)


def check_user_name(name: str) -> str:
    """A name from a proxy header, fit to show and to record as the decider: the rule of the
    users file's names (`sessions.web.users.check_name`)."""
    try:
        return check_name(name)
    except UsersError:
        raise Refused(400, "the proxy's user header holds no usable user name") from None
