"""A remote codec server, so people who hold the payload keys can read encrypted histories.

    SESSIONS_CODEC_AUTH="Bearer $(openssl rand -hex 16)" \\
      python -m sessions.codec_server [--host 127.0.0.1] [--port 8081] [--ui-origin URL]...
    temporal workflow show -w session-S --codec-endpoint http://127.0.0.1:8081 \\
      --codec-auth "$SESSIONS_CODEC_AUTH"

It answers Temporal's codec protocol (`POST /encode`, `POST /decode`, a JSON `{"payloads": [...]}`)
with the keys of `SESSIONS_PAYLOAD_KEYS`. Whoever can reach it can decrypt, so:

- it will not start without `SESSIONS_CODEC_AUTH`, the exact `Authorization` header it demands
  (the CLI's `--codec-auth`), unless told `SESSIONS_CODEC_AUTH=off`;
- it listens on 127.0.0.1 by default and answers only requests whose `Host` is `localhost`,
  `127.0.0.1` or `[::1]` at its port, or one of `SESSIONS_CODEC_ALLOWED_HOSTS` (421 otherwise: a
  DNS-rebinding page gets nothing);
- a request carrying an `Origin` must come from an allowed Web UI (`--ui-origin`; 403 otherwise),
  which alone gets CORS headers;
- a body over `SESSIONS_CODEC_MAX_BODY_BYTES` is answered 413 as soon as it is known to be (its
  Content-Length, or the bytes read so far);
- a body that is no codec request is answered 400 with one JSON `{"message": ...}` that never
  quotes it. Nothing of a payload is ever logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import click
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from common.codec import KEYS_ENV, EncryptionCodec, PayloadKeyError, codec_for
from common.errors import ConfigError
from common.settings import CodecServerSettings, host_allowed, parse_host

log = logging.getLogger("sessions.codec_server")

DEFAULT_UI_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
"""`temporal server start-dev`'s Web UI; add yours with --ui-origin."""

_SETTINGS = CodecServerSettings.model_fields
DEFAULT_MAX_BODY_BYTES: int = _SETTINGS["codec_max_body_bytes"].default

AUTH_ENV = str(_SETTINGS["codec_auth"].validation_alias)
HOSTS_ENV = str(_SETTINGS["codec_allowed_hosts"].validation_alias)
MAX_BODY_ENV = str(_SETTINGS["codec_max_body_bytes"].validation_alias)
"""The settings' names, as `common.settings` declares them, for the messages that name them."""
_LINGER = 4
"""How much of a body left unread (refused, or over the limit) is read and dropped, in limits,
so that a client writing its whole body before reading sees the answer; beyond, or after
`_LINGER_SECONDS`, the connection is closed instead."""
_LINGER_SECONDS = 5.0
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_PAYLOAD_SHAPE = '{"metadata": {NAME: BASE64, ...}, "data": BASE64}'
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
"""Protobuf's JSON bytes: standard or URL-safe base64, padded or not (protobuf itself would
skip any other character)."""

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


class _Refused(Exception):
    """A request answered with `status` and one JSON message, never quoting what was sent."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def build_app(
    codec: EncryptionCodec,
    *,
    auth: str | None = None,
    origins: Sequence[str] = DEFAULT_UI_ORIGINS,
    hosts: Iterable[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """The codec endpoints over `codec`.

    `auth`: the Authorization header required, if any; `origins`: the Web UIs allowed to call it;
    `hosts`: `Host` values answered besides the loopback names at the server's port (`name`:
    any port, `name:port`: that one); `max_body_bytes`: the largest body read.
    """

    def endpoint(transform: Transform) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if request.method == "OPTIONS":  # a CORS preflight: the guard adds the headers
                return Response(status_code=200)
            given = request.headers.get("authorization", "")
            if auth is not None and not hmac.compare_digest(given.encode(), auth.encode()):
                return _error(
                    401, f"unauthorized: send the Authorization header configured in {AUTH_ENV}"
                )
            try:
                payloads = _parse(await _read_body(request, max_body_bytes))
                out = Payloads(payloads=await transform(payloads))
            except _Refused as err:
                return _error(err.status, err.message)
            except PayloadKeyError as err:  # its message names key ids, never a payload
                return _error(400, str(err))
            except ClientDisconnect:
                return _error(400, "the request body ended early")
            except Exception as err:  # a bug of ours: its message may quote a payload, so not it
                log.error("%s %s failed: %s", request.method, request.url.path, type(err).__name__)
                return _error(500, "the codec server failed; see its log")
            return Response(json_format.MessageToJson(out), media_type="application/json")

        return handle

    return Starlette(
        routes=[
            Route("/encode", endpoint(codec.encode), methods=["POST", "OPTIONS"]),
            Route("/decode", endpoint(codec.decode), methods=["POST", "OPTIONS"]),
        ],
        middleware=[
            Middleware(_Guard, hosts=hosts, origins=origins, drop_bytes=_LINGER * max_body_bytes)
        ],
    )


class _Guard:
    """Host and Origin checks before anything else; CORS headers for allowed origins; and the
    rest of a body nobody read dropped (up to `drop_bytes`) before the answer, else the
    connection closed after it."""

    def __init__(
        self, app: ASGIApp, *, hosts: Iterable[str], origins: Iterable[str], drop_bytes: int
    ) -> None:
        self.app = app
        self.hosts = {parsed for entry in hosts if (parsed := parse_host(entry)) is not None}
        self.origins = {_normal_origin(origin) for origin in origins}
        self.drop_bytes = drop_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        server = scope.get("server")
        body = _Body(receive, headers.get("content-length", ""))
        app, allowed_origin = self.app, None
        origins = headers.getlist("origin")
        if not host_allowed(headers.getlist("host"), server[1] if server else None, self.hosts):
            app = _error(
                421,
                "this codec server does not answer for that Host: call it at localhost, "
                f"127.0.0.1 or [::1] with its port, or add the name to {HOSTS_ENV}",
            )
        elif origins and (len(origins) > 1 or _normal_origin(origins[0]) not in self.origins):
            app = _error(
                403, "this origin may not call the codec server: allow it with --ui-origin"
            )
        elif origins:
            allowed_origin = origins[0]

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                if not await body.drop_rest(self.drop_bytes):
                    out["Connection"] = "close"
                if allowed_origin is not None:
                    out["Access-Control-Allow-Origin"] = allowed_origin
                    out["Access-Control-Allow-Methods"] = "POST, OPTIONS"
                    out["Access-Control-Allow-Headers"] = "content-type, x-namespace, authorization"
                    out["Access-Control-Allow-Credentials"] = "true"
                    out["Access-Control-Max-Age"] = "600"
                    out.add_vary_header("Origin")
            await send(message)

        await app(scope, body.receive, answer)


class _Body:
    """The request's body as the app reads it, and what is left of it once the app answers."""

    def __init__(self, receive: Receive, declared: str) -> None:
        self._receive = receive
        self.declared = int(declared) if declared.isdigit() else None
        self.read = 0
        self.done = False

    async def receive(self) -> Message:
        message = await self._receive()
        self.read += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

    async def drop_rest(self, most: int) -> bool:
        """Read and drop what is left, up to `most` bytes in `_LINGER_SECONDS`: all of it?"""
        if self.done:
            return True
        if self.declared is not None and self.declared - self.read > most:
            return False
        start = self.read
        try:
            async with asyncio.timeout(_LINGER_SECONDS):
                while not self.done:
                    await self.receive()
                    if self.read - start > most:
                        return False
        except TimeoutError:
            return False
        return True


def _normal_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _error(status: int, message: str) -> Response:
    return JSONResponse({"message": message}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 once it is known to be larger than `limit`: by its Content-Length, or
    by what a chunked sender has sent so far. Never more than `limit` bytes are kept."""
    too_large = _Refused(413, f"the body is larger than {limit} bytes ({MAX_BODY_ENV})")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _parse(body: bytes) -> list[Payload]:
    """Temporal's codec request, `{"payloads": [Payload as JSON, ...]}`, or a `_Refused` (400)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "the body is not UTF-8 text") from None
    try:
        doc: Any = json.loads(text)
    except (ValueError, RecursionError):
        raise _Refused(400, "the body is not JSON") from None
    # Protobuf's JSON leaves an empty list out (`{}`) and may write it as null.
    items = doc.get("payloads") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(items, list | None):
        raise _Refused(400, 'the body must be a JSON object {"payloads": [...]}')
    payloads = []
    for n, item in enumerate(items or [], start=1):
        payload = Payload()
        try:
            if not isinstance(item, dict) or not _base64_fields(item):
                raise ValueError("not a payload")
            json_format.ParseDict(item, payload)
        except Exception:  # whatever protobuf makes of it, its words may quote the payload
            raise _Refused(
                400, f"payload {n} is not a Temporal payload {_PAYLOAD_SHAPE} (base64 values)"
            ) from None
        payloads.append(payload)
    return payloads


def _base64_fields(item: dict[str, Any]) -> bool:
    """Its `data` and `metadata` values are base64 strings, if given."""
    metadata = item.get("metadata", {})
    values = [item.get("data", ""), *(metadata.values() if isinstance(metadata, dict) else [1])]
    return all(
        isinstance(v, str) and _BASE64.fullmatch(v) and len(v.rstrip("=")) % 4 != 1 for v in values
    )


def required_auth(settings: CodecServerSettings) -> str | None:
    """The Authorization header to demand; None only when `SESSIONS_CODEC_AUTH=off`."""
    if settings.codec_auth_off:
        return None
    auth = settings.codec_auth.get_secret_value().strip() if settings.codec_auth else ""
    if not auth:
        raise ConfigError(
            f"{AUTH_ENV} is not set: whoever reaches the codec server could decrypt every "
            f"payload; set {AUTH_ENV} to the Authorization header clients must send (e.g. "
            f'"Bearer $(openssl rand -hex 16)"), or {AUTH_ENV}=off to serve without one'
        )
    return auth


def bound_hosts(host: str, port: int) -> list[str]:
    """The `Host` a client calling the address it listens on sends (none for a wildcard)."""
    if host in _WILDCARDS:
        return []
    return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]


@click.command(context_settings=CONTEXT_SETTINGS, help=__doc__.splitlines()[0])
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8081, show_default=True)
@click.option(
    "--ui-origin",
    multiple=True,
    metavar="URL",
    help="A Web UI origin allowed to call it (repeatable) [default: the dev server's UI].",
)
def command(host: str, port: int, ui_origin: Sequence[str]) -> int:
    settings = CodecServerSettings.load()
    keys = settings.payload_keys
    codec = codec_for(keys.get_secret_value() if keys is not None else None)
    if codec is None:
        raise ConfigError(f"{KEYS_ENV} is not set: there is nothing to decrypt with")
    auth = required_auth(settings)
    import uvicorn

    app = build_app(
        codec,
        auth=auth,
        origins=tuple(ui_origin) or DEFAULT_UI_ORIGINS,
        hosts=[*settings.codec_allowed_hosts, *bound_hosts(host, port)],
        max_body_bytes=settings.codec_max_body_bytes,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(command, argv, prog_name="python -m sessions.codec_server")


if __name__ == "__main__":
    main()
