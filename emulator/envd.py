"""The envd listener: one port for every sandbox, routed by the `E2b-Sandbox-Id` header.

Like E2B's edge proxy, a request for a sandbox that is unknown, killed or paused is answered
502 "The sandbox ... was not found" before it reaches envd, which the SDK turns into
SandboxNotRunningException (and `is_running()` into False).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING

from e2b.envd.filesystem.filesystem_connect import FilesystemASGIApplication
from e2b.envd.process.process_connect import ProcessASGIApplication
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .envd_files import FilesystemService, check_file_signature, envs_response, files_endpoint
from .envd_process import ProcessService
from .errors import error_response

if TYPE_CHECKING:
    from .server import EmulatorCore

log = logging.getLogger("emulator")


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

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> Response | None:
        request = Request(scope, receive)
        path = scope["path"]
        sandbox_id = request.headers.get("e2b-sandbox-id")
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
        token = request.headers.get("x-access-token")
        authorized = token is not None and secrets.compare_digest(
            token.encode(), sandbox.access_token.encode()
        )
        if path == "/files" and not authorized:
            op = "read" if request.method == "GET" else "write"
            authorized = check_file_signature(request, sandbox, op)
        if not authorized:
            return error_response(401, "missing or invalid X-Access-Token for this sandbox")
        if path.startswith("/process.Process/"):
            await self.process(scope, receive, send)
            return None
        if path.startswith("/filesystem.Filesystem/"):
            await self.core.chaos.delay("files")
            await self.filesystem(scope, receive, send)
            return None
        if path == "/files":
            await self.core.chaos.delay("files")
            return await files_endpoint(request, sandbox)
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
        if path == "/metrics":
            return Response(
                json.dumps({"ts": 0, "cpu_count": 2, "cpu_used_pct": 0.0, "mem_total": 512 << 20,
                            "mem_used": 0, "disk_total": 1 << 30, "disk_used": 0}),
                media_type="application/json",
            )  # fmt: skip
        return error_response(404, f"{request.method} {path}: not found")
