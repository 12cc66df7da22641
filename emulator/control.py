"""The control plane: the REST calls the e2b SDK makes, answered as E2B answers them."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from . import events
from .bodies import (
    ConnectBody,
    NewSandbox,
    NewSandboxV2,
    PauseBody,
    RefreshBody,
    ResumeBody,
    TimeoutBody,
    bad,
    fingerprint,
    parse_body,
    refuse_filesystem_only,
)
from .errors import EmulatorError
from .limits import MEMORY_MB
from .sandbox import Sandbox
from .versions import ENVD_VERSION

if TYPE_CHECKING:
    from .server import EmulatorCore

CLIENT_ID = "emulator"
_IDEMPOTENCY_KEY = re.compile(r"^[a-z0-9-]{1,255}$")
LIST_LIMIT = 100
LIST_PARAMS = {"metadata", "state", "order", "startedAfter", "template", "nextToken", "limit"}

Handler = Callable[[Request], Awaitable[Response]]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _created(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "templateID": sandbox.template.template_id,
        "sandboxID": sandbox.sandbox_id,
        "alias": sandbox.template.template_id,
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": sandbox.access_token,
        "trafficAccessToken": None,
        "domain": None,
    }


def _listed(sandbox: Sandbox) -> dict[str, Any]:
    """As E2B lists it: `startedAt` is the current (or last) run's start; a paused sandbox's
    `endAt` is when it was paused (E2B: the snapshot's time), a pausing one still shows its end."""
    end = sandbox.paused_at if sandbox.state == "paused" and sandbox.paused_at else sandbox.end_at
    return {
        "templateID": sandbox.template.template_id,
        "alias": sandbox.template.template_id,
        "sandboxID": sandbox.sandbox_id,
        "clientID": CLIENT_ID,
        "startedAt": _iso(sandbox.started_at),
        "endAt": _iso(end),
        "cpuCount": 2,
        "memoryMB": MEMORY_MB,
        "diskSizeMB": 1024,
        "state": sandbox.state,
        "envdVersion": ENVD_VERSION,
        "metadata": sandbox.metadata,
    }


def _detail(sandbox: Sandbox) -> dict[str, Any]:
    return {
        **_listed(sandbox),
        "envdAccessToken": sandbox.access_token,
        "domain": None,
        "lifecycle": {
            "autoResume": False,
            "onTimeout": "pause" if sandbox.auto_pause else "kill",
        },
    }


def _cursor(sandbox: Sandbox) -> str:
    """E2B's page token: base64url of `{startedAt RFC3339Nano}__{sandboxID}`."""
    raw = f"{_iso(sandbox.started_at)}__{sandbox.sandbox_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _parse_cursor(token: str) -> tuple[datetime, str]:
    try:
        stamp, _, sandbox_id = base64.urlsafe_b64decode(token).decode().partition("__")
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")), sandbox_id
    except (ValueError, UnicodeDecodeError, binascii.Error) as e:
        raise EmulatorError(400, "Invalid next token") from e


class ControlPlane:
    """Handlers for the REST API; every call is authenticated, rate limited, then
    delayed/failed on demand (injected chaos)."""

    def __init__(self, core: EmulatorCore):
        self.core = core

    def _auth(self, request: Request) -> None:
        key = request.headers.get("x-api-key")
        if not key:
            raise EmulatorError(401, "missing API key: send it in the X-API-Key header")
        if not secrets.compare_digest(key.encode(), (self.core.config.api_key or "").encode()):
            raise EmulatorError(401, "Invalid API key")

    def endpoint(self, operation: str | None, route: str | None, handler: Handler) -> Handler:
        """`operation` names the call for latency and faults; `route` (e.g.
        `POST /sandboxes/{sandboxID}/pause`) is its rate-limit bucket, None for admin calls."""
        creates = operation == "create"

        async def run(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                self._auth(request)
                if route is not None:
                    headers = self.core.governor.check_route(route)
                if creates:
                    headers = self.core.governor.check_create_rate() or headers
                if operation is not None:
                    await self.core.chaos.delay(operation)
                    self.core.chaos.check(operation)
                response = await handler(request)
            except EmulatorError as e:
                response = e.response()
            except ClientDisconnect:  # the caller gave up (or was killed) during the delay
                return Response(status_code=499)
            for name, value in headers.items():
                response.headers.setdefault(name, value)
            return response

        return run

    # -- sandboxes -----------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        model = NewSandboxV2 if request.url.path.startswith("/v2/") else NewSandbox
        body = await parse_body(request, model)
        body.check_supported()
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise EmulatorError(400, "Idempotency-Key must be 1-255 characters of [a-z0-9-]")
        sandbox = await self.core.manager.create(
            template_id=body.template_id,
            timeout=body.timeout,
            envs=body.env_vars or {},
            metadata=body.metadata or {},
            auto_pause=bool(body.auto_pause),
            idempotency_key=key,
            fingerprint=fingerprint(body),
        )
        return JSONResponse(_created(sandbox), status_code=201)

    async def get(self, request: Request) -> Response:
        sandbox = self.core.manager.get(request.path_params["sandbox_id"])
        return JSONResponse(_detail(sandbox))

    async def list_v1(self, request: Request) -> Response:
        """`GET /sandboxes` (v1): the running sandboxes, newest first, no pages."""
        wanted = self._metadata(request.query_params.get("metadata"))
        found = [
            s
            for s in self.core.manager.sandboxes.values()
            if s.state == "running" and all(s.metadata.get(k) == v for k, v in wanted.items())
        ]
        found.sort(key=lambda s: (s.started_at, s.sandbox_id), reverse=True)
        return JSONResponse([_listed(s) for s in found])

    @staticmethod
    def _metadata(raw: str | None) -> dict[str, str]:
        wanted: dict[str, str] = {}
        for k, v in urllib.parse.parse_qsl(raw or "", keep_blank_values=True):
            wanted[urllib.parse.unquote(k)] = urllib.parse.unquote(v)
        return wanted

    async def list(self, request: Request) -> Response:
        """`GET /v2/sandboxes`: newest first unless `order=asc`; `limit` 1..100 (more is
        clamped to 100, as E2B does); keyset pages through `nextToken` / `x-next-token`."""
        q = request.query_params
        unknown = sorted(set(q) - LIST_PARAMS)
        if unknown:
            raise EmulatorError(400, f"unknown query parameter {unknown[0]!r}")
        states = {"running", "paused"}
        if q.get("state"):
            states = {s.strip() for s in q["state"].split(",") if s.strip()}
            if not states <= {"running", "paused"}:
                raise EmulatorError(400, f"invalid state filter {q['state']!r}")
        order = q.get("order", "desc")
        if order not in ("asc", "desc"):
            raise EmulatorError(400, f'Invalid order parameter: unknown order "{order}"')
        started_after = None
        if q.get("startedAfter"):
            try:
                started_after = datetime.fromisoformat(q["startedAfter"].replace("Z", "+00:00"))
            except ValueError as e:
                raise EmulatorError(400, f"invalid startedAfter: {e}") from e
        limit = self._limit(q.get("limit"))
        wanted = self._metadata(q.get("metadata"))
        found = [
            s
            for s in self.core.manager.sandboxes.values()
            if s.state in states
            and all(s.metadata.get(k) == v for k, v in wanted.items())
            and (not q.get("template") or s.template.template_id == q["template"])
            and (started_after is None or s.started_at >= started_after)
        ]
        descending = order == "desc"
        found.sort(key=lambda s: (s.started_at, s.sandbox_id), reverse=descending)
        headers = {}
        if "running" in states:  # E2B: the filtered total, sent only when running is asked
            headers["X-Total-Running"] = str(sum(1 for s in found if s.state == "running"))
        if q.get("nextToken"):
            mark = _parse_cursor(q["nextToken"])
            after = (lambda k: k < mark) if descending else (lambda k: k > mark)
            found = [s for s in found if after((s.started_at, s.sandbox_id))]
        if len(found) > limit:
            headers["x-next-token"] = _cursor(found[limit - 1])
        return JSONResponse([_listed(s) for s in found[:limit]], headers=headers)

    @staticmethod
    def _limit(raw: str | None) -> int:
        if raw is None:
            return LIST_LIMIT
        try:
            limit = int(raw)
        except ValueError as e:
            raise EmulatorError(400, f"invalid limit {raw!r}: not an integer") from e
        if limit < 1:
            raise EmulatorError(400, f"invalid limit {limit}: must be at least 1")
        return min(limit, LIST_LIMIT)

    async def kill(self, request: Request) -> Response:
        await self.core.manager.kill(request.path_params["sandbox_id"])
        return Response(status_code=204)

    async def pause(self, request: Request) -> Response:
        body = await parse_body(request, PauseBody, optional=True)
        refuse_filesystem_only(body.memory)
        await self.core.manager.pause(request.path_params["sandbox_id"])
        return Response(status_code=204)

    async def connect(self, request: Request) -> Response:
        body = await parse_body(request, ConnectBody, optional=True)
        refuse_filesystem_only(body.memory)
        sandbox, resumed = await self.core.manager.connect(
            request.path_params["sandbox_id"], body.timeout
        )
        if resumed:
            await self.core.chaos.delay("resume")
        return JSONResponse(_created(sandbox), status_code=201 if resumed else 200)

    async def resume(self, request: Request) -> Response:
        body = await parse_body(request, ResumeBody, optional=True)
        refuse_filesystem_only(body.memory)
        sandbox_id = request.path_params["sandbox_id"]
        await self.core.manager.resume(sandbox_id, body.timeout, body.auto_pause)
        return JSONResponse(_created(self.core.manager.get(sandbox_id)), status_code=201)

    async def set_timeout(self, request: Request) -> Response:
        body = await parse_body(request, TimeoutBody)
        if body.timeout < 0:
            raise bad('field "timeout": must be at least 0')
        await self.core.manager.set_timeout(request.path_params["sandbox_id"], body.timeout)
        return Response(status_code=204)

    async def refresh(self, request: Request) -> Response:
        body = await parse_body(request, RefreshBody, optional=True)
        if body.duration is not None and body.duration < 0:
            raise bad('field "duration": must be at least 0')
        await self.core.manager.refresh(request.path_params["sandbox_id"], body.duration)
        return Response(status_code=204)

    # -- lifecycle events ----------------------------------------------------------------
    async def sandbox_events(self, request: Request) -> Response:
        query = events.parse_query(request.query_params)
        found = events.sandbox_events(
            self.core.manager.records, request.path_params["sandbox_id"], query
        )
        return JSONResponse(found)

    async def team_events(self, request: Request) -> Response:
        query = events.parse_query(request.query_params)
        return JSONResponse(events.team_events(self.core.manager.records, query))
