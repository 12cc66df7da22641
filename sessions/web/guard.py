"""What every answer of the inbox goes through, before any page: the `Host` it answers for, the
proxy's address in proxy mode, the browser's nonce cookie (what its CSRF tokens are made from),
and the security headers."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.settings import WebSettings, host_allowed, parse_host
from sessions.web.auth import NONCE_COOKIE, Auth, _good_nonce, new_nonce

__all__ = ["Guard", "SECURITY_HEADERS"]

OPEN_PATHS = ("/healthz",)
"""Answered for any Host and peer: a load balancer's or Kubernetes' probe."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # A one-click link's token is in its URL: never send it on to another site. (Not
    # `no-referrer`: with it, Chromium sends `Origin: null` on the inbox's own form POSTs.)
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class Guard:
    """Wraps the app: refuses a foreign `Host` (421: a DNS-rebinding page gets nothing) and, in
    proxy mode, any peer outside `SESSIONS_WEB_PROXY_FROM` (403); gives a browser without one a
    nonce cookie; adds the security headers (and `Cache-Control: no-store` to pages)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: WebSettings,
        auth: Auth,
        error_page: Callable[[int, str], bytes],
    ) -> None:
        self.app = app
        self.auth = auth
        self.error_page = error_page
        self.hosts: set[tuple[str, int | None]] = set()
        if settings.web_url:
            parts = urlsplit(settings.web_url)
            parsed = parse_host(parts.netloc.rpartition("@")[2])
            if parsed is not None:
                default = 443 if parts.scheme == "https" else 80
                self.hosts.add((parsed[0], parsed[1] or default))
        bind = parse_host(settings.web_host)
        if bind is not None and bind[0] not in ("0.0.0.0", "[::]", "::"):
            self.hosts.add((bind[0], None))
        self.strict_transport = (settings.web_url or "").startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope.get("path", "")
        problem = None
        if path not in OPEN_PATHS:
            server = scope.get("server")
            port = server[1] if server else None
            if not host_allowed(headers.getlist("host"), port, self.hosts):
                problem = (
                    421,
                    "this inbox does not answer for that host name: open it at the address "
                    "in SESSIONS_WEB_URL (or localhost)",
                )
            elif not self.auth.peer_allowed(Request(scope)):
                problem = (
                    403,
                    "this inbox takes requests only through its authenticating proxy "
                    "(SESSIONS_WEB_PROXY_FROM)",
                )
        new_cookie = None
        cookie_nonce = Request(scope).cookies.get(NONCE_COOKIE)
        if not _good_nonce(cookie_nonce):
            new_cookie = new_nonce()
            scope.setdefault("state", {})["nonce"] = new_cookie
        page = not path.startswith("/static/")

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    out.setdefault(name, value)
                if self.strict_transport:
                    out.setdefault("strict-transport-security", "max-age=31536000")
                if page:
                    out["cache-control"] = "no-store"
                if new_cookie is not None:
                    out.append(
                        "set-cookie",
                        self.auth.cookie_header(NONCE_COOKIE, new_cookie, max_age=None),
                    )
            await send(message)

        if problem is not None:
            status, message = problem
            body = self.error_page(status, message)
            await answer(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, answer)
