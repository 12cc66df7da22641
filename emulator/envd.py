"""The envd listener: one port for every sandbox.

A request names its sandbox by the `E2b-Sandbox-Id` header (what the SDK sends), by a Host
`<port>-<sandbox id>.<domain>` as on E2B, or — a signed `/files` URL fetched by anyone, which
carries neither — by its signature, which only that sandbox's access token produces.

Like E2B's edge proxy, a request for a sandbox that is unknown, killed or paused is answered
502 "The sandbox ... was not found" before it reaches envd, which the SDK turns into
SandboxNotRunningException (and `is_running()` into False). Then, as envd: every call but
`/health` needs the sandbox's `X-Access-Token`; `GET|POST /files` take a valid signature
instead (and refuse a wrong token even with one). An envd route the emulator does not have
answers 501 naming it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING

from e2b.envd.filesystem.filesystem_connect import FilesystemASGIApplication
from e2b.envd.process.process_connect import ProcessASGIApplication
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .envd_files import FilesystemService, envs_response, files_endpoint
from .envd_process import ProcessService
from .errors import error_response

if TYPE_CHECKING:
    from .sandboxes import Sandbox
    from .server import EmulatorCore

log = logging.getLogger("emulator")

_HOST = re.compile(r"^\d+-([a-z0-9]{8,})\.")


def file_signature(
    path: str, operation: str, username: str, token: str, expiration: int | None
) -> str:
    """envd's v1 signature (the SDK's `get_signature`): sha256 of
    `path:operation:username:token[:expiration]`, base64 without padding."""
    raw = f"{path}:{operation}:{username}:{token}" + (
        f":{expiration}" if expiration is not None else ""
    )
    return "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()


class _Unsigned(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _signed_request(request: Request) -> tuple[str, str, str, int | None]:
    """(signature, operation, username, expiration) of a signed `/files` request."""
    q = request.query_params
    raw_exp = q.get("signature_expiration")
    try:
        expiration = int(raw_exp) if raw_exp is not None else None
    except ValueError:
        raise _Unsigned(400, "Invalid format for parameter signature_expiration") from None
    operation = "read" if request.method == "GET" else "write"
    return q.get("signature", ""), operation, q.get("username", ""), expiration


def _signature_matches(request: Request, sandbox: Sandbox) -> bool:
    signature, operation, username, expiration = _signed_request(request)
    expected = file_signature(
        request.query_params.get("path", ""), operation, username, sandbox.access_token,
        expiration,
    )  # fmt: skip
    return secrets.compare_digest(expected.encode(), signature.encode())


def check_file_access(request: Request, sandbox: Sandbox) -> None:
    """envd's validateSigning for `/files`: a token header must be right; without one a valid,
    unexpired signature is needed. _Unsigned (401) otherwise."""
    token = request.headers.get("x-access-token")
    if token is not None:
        if not secrets.compare_digest(token.encode(), sandbox.access_token.encode()):
            raise _Unsigned(401, "access token present in header but does not match")
        return
    if request.query_params.get("signature") is None:
        raise _Unsigned(401, "missing signature query parameter")
    if not _signature_matches(request, sandbox):
        raise _Unsigned(401, "invalid signature")
    expiration = _signed_request(request)[3]
    if expiration is not None and expiration < time.time():
        raise _Unsigned(401, "signature is already expired")


class EnvdApp:
    """ASGI app: checks the sandbox and its access token, then hands over to the service."""

    def __init__(self, core: EmulatorCore):
        self.core = core
        self.process = ProcessASGIApplication(ProcessService(core))
        self.filesystem = FilesystemASGIApplication(FilesystemService(core))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await self._route(scope, receive, tracking_send)
        except Exception:
            log.exception("envd error on %s", scope.get("path"))
            if started:  # the service already answered (with its own error): nothing to add
                return
            response = error_response(500, "internal emulator error")
        if response is not None:
            await response(scope, receive, tracking_send)

    def _sandbox_id(self, request: Request) -> str | None:
        """The sandbox a request is for: header, E2B-style Host, or a signed URL's signature."""
        sandbox_id = request.headers.get("e2b-sandbox-id")
        if sandbox_id:
            return sandbox_id
        match = _HOST.match(request.headers.get("host", ""))
        if match:
            return match.group(1)
        if request.url.path == "/files" and request.query_params.get("signature"):
            for sandbox in list(self.core.manager.sandboxes.values()):
                if _signature_matches(request, sandbox):
                    return sandbox.sandbox_id
            raise _Unsigned(401, "invalid signature")
        return None

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> Response | None:
        request = Request(scope, receive)
        path = scope["path"]
        try:
            sandbox_id = self._sandbox_id(request)
        except _Unsigned as e:
            return error_response(e.status, e.message)
        if not sandbox_id:
            return error_response(400, "missing E2b-Sandbox-Id header")
        sandbox = self.core.manager.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.state == "killed":
            return error_response(502, f"The sandbox {sandbox_id} was not found")
        if sandbox.state == "paused":
            return error_response(
                502, f"The sandbox {sandbox_id} was not found: it is paused (connect resumes it)"
            )
        if path == "/health":
            return Response(status_code=204)
        if path == "/files" and request.method in ("GET", "POST"):
            try:
                check_file_access(request, sandbox)
            except _Unsigned as e:
                return error_response(e.status, e.message)
            await self.core.chaos.delay("files")
            return await files_endpoint(request, sandbox)
        token = request.headers.get("x-access-token")
        if token is None or not secrets.compare_digest(
            token.encode(), sandbox.access_token.encode()
        ):
            return error_response(
                401,
                "unauthorized access, please provide a valid access token or method signing "
                "if supported",
            )
        if path.startswith("/process.Process/"):
            await self.process(scope, receive, send)
            return None
        if path.startswith("/filesystem.Filesystem/"):
            await self.core.chaos.delay("files")
            await self.filesystem(scope, receive, send)
            return None
        if path == "/files":
            return error_response(405, f"{request.method} /files: method not allowed")
        if path == "/envs" and request.method == "GET":
            return envs_response(sandbox)
        if path == "/init" and request.method == "POST":
            body = await request.body()
            try:
                data = json.loads(body) if body.strip() else {}
                sandbox.envs.update(
                    {str(k): str(v) for k, v in (data.get("envVars") or {}).items()}
                )
            except (ValueError, AttributeError):
                return error_response(400, "malformed JSON body")
            return Response(status_code=204)
        if path == "/metrics" and request.method == "GET":
            return Response(
                json.dumps({"ts": 0, "cpu_count": 2, "cpu_used_pct": 0.0, "mem_total": 512 << 20,
                            "mem_used": 0, "disk_total": 1 << 30, "disk_used": 0}),
                media_type="application/json",
            )  # fmt: skip
        return error_response(
            501, f"{request.method} {path} is not implemented by the emulator's envd"
        )
