"""The control plane: the REST calls the e2b SDK makes, plus the emulator's admin API."""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import events
from .config import FaultSettings, ScriptedFault
from .errors import EmulatorError, error_response
from .records import SandboxRecord
from .sandboxes import Sandbox
from .versions import ENVD_VERSION

if TYPE_CHECKING:
    from .server import EmulatorCore

log = logging.getLogger("emulator")

CLIENT_ID = "emulator"
_IDEMPOTENCY_KEY = re.compile(r"^[a-z0-9-]{1,255}$")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class NewSandboxBody(_Body):
    template_id: str = Field(alias="templateID", min_length=1)
    timeout: int | None = Field(default=None, ge=0)
    auto_pause: bool | None = Field(default=None, alias="autoPause")
    metadata: dict[str, str] | None = None
    env_vars: dict[str, str] | None = Field(default=None, alias="envVars")


class TimeoutBody(_Body):
    timeout: int = Field(ge=0)


class ConnectBody(_Body):
    timeout: int | None = Field(default=None, ge=0)


class RefreshBody(_Body):
    duration: int | None = Field(default=None, ge=0)


class AdminKillBody(_Body):
    reason: str = Field(default="incident", min_length=1, max_length=64)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _created(sandbox: Sandbox | SandboxRecord) -> dict[str, Any]:
    token = sandbox.access_token if isinstance(sandbox, Sandbox) else None
    template_id = (
        sandbox.template.template_id if isinstance(sandbox, Sandbox) else sandbox.template_id
    )
    return {
        "templateID": template_id,
        "sandboxID": sandbox.sandbox_id,
        "alias": template_id,
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": token,
        "trafficAccessToken": None,
        "domain": None,
    }


def _listed(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "templateID": sandbox.template.template_id,
        "alias": sandbox.template.template_id,
        "sandboxID": sandbox.sandbox_id,
        "clientID": CLIENT_ID,
        "startedAt": _iso(sandbox.started_at),
        "endAt": _iso(sandbox.end_at),
        "cpuCount": 2,
        "memoryMB": 512,
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


async def _json(request: Request, model: type[BaseModel], *, optional: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return model()
        raise EmulatorError(400, "request body is required")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise EmulatorError(400, f"malformed JSON body: {e}") from e
    if not isinstance(data, dict):
        raise EmulatorError(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise EmulatorError(400, f"invalid request body: {where}: {first['msg']}") from e


class ControlPlane:
    """Handlers for the REST API; every call is authenticated, then delayed/failed on demand."""

    def __init__(self, core: EmulatorCore):
        self.core = core

    def _auth(self, request: Request) -> None:
        key = request.headers.get("x-api-key")
        if not key:
            raise EmulatorError(401, "missing API key: send it in the X-API-Key header")
        if not secrets.compare_digest(key.encode(), (self.core.config.api_key or "").encode()):
            raise EmulatorError(401, "Invalid API key")

    def endpoint(
        self, operation: str | None, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                self._auth(request)
                if operation is not None:
                    await self.core.chaos.delay(operation)
                    self.core.chaos.check(operation)
                return await handler(request)
            except EmulatorError as e:
                return e.response()
            except ClientDisconnect:  # the caller gave up (or was killed) during the delay
                return Response(status_code=499)

        return run

    # -- sandboxes -----------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        body: NewSandboxBody = await _json(request, NewSandboxBody)
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise EmulatorError(400, "Idempotency-Key must be 1-255 characters of [a-z0-9-]")
        manager = self.core.manager
        if key is None or not manager.knows_idempotency_key(key):  # a replay is no new sandbox
            running = sum(1 for s in manager.sandboxes.values() if s.state == "running")
            self.core.chaos.check_create_limits(running)
        sandbox = await self.core.manager.create(
            template_id=body.template_id,
            timeout=body.timeout,
            envs=body.env_vars or {},
            metadata=body.metadata or {},
            auto_pause=bool(body.auto_pause),
            idempotency_key=key,
        )
        return JSONResponse(_created(sandbox), status_code=201)

    async def get(self, request: Request) -> Response:
        sandbox = self.core.manager.get(request.path_params["sandbox_id"])
        return JSONResponse(_detail(sandbox))

    async def list(self, request: Request) -> Response:
        q = request.query_params
        states = {"running", "paused"}
        if q.get("state"):
            states = {s.strip() for s in q["state"].split(",") if s.strip()}
            if not states <= {"running", "paused"}:
                raise EmulatorError(400, f"invalid state filter {q['state']!r}")
        wanted: dict[str, str] = {}
        if q.get("metadata"):
            for k, v in urllib.parse.parse_qsl(q["metadata"], keep_blank_values=True):
                wanted[urllib.parse.unquote(k)] = urllib.parse.unquote(v)
        started_after = None
        if q.get("startedAfter"):
            try:
                started_after = datetime.fromisoformat(q["startedAfter"].replace("Z", "+00:00"))
            except ValueError as e:
                raise EmulatorError(400, f"invalid startedAfter: {e}") from e
        try:
            limit = int(q.get("limit", "100"))
            offset = (
                int(base64.urlsafe_b64decode(q["nextToken"]).decode()) if q.get("nextToken") else 0
            )
        except (ValueError, UnicodeDecodeError) as e:
            raise EmulatorError(400, "invalid limit or nextToken") from e
        if not 1 <= limit <= 100:
            raise EmulatorError(400, "limit must be between 1 and 100")
        found = [
            s
            for s in self.core.manager.sandboxes.values()
            if s.state in states
            and all(s.metadata.get(k) == v for k, v in wanted.items())
            and (not q.get("template") or s.template.template_id == q["template"])
            and (started_after is None or s.started_at >= started_after)
        ]
        found.sort(key=lambda s: (s.started_at, s.sandbox_id), reverse=q.get("order") == "desc")
        page = found[offset : offset + limit]
        headers = {}
        if offset + limit < len(found):
            headers["x-next-token"] = base64.urlsafe_b64encode(
                str(offset + limit).encode()
            ).decode()
        return JSONResponse([_listed(s) for s in page], headers=headers)

    async def kill(self, request: Request) -> Response:
        await self.core.manager.kill(request.path_params["sandbox_id"])
        return Response(status_code=204)

    async def pause(self, request: Request) -> Response:
        await self.core.manager.pause(request.path_params["sandbox_id"])
        return Response(status_code=204)

    async def connect(self, request: Request) -> Response:
        body: ConnectBody = await _json(request, ConnectBody, optional=True)
        sandbox_id = request.path_params["sandbox_id"]
        resumed = await self.core.manager.resume(sandbox_id, body.timeout, only_paused=False)
        if resumed:
            await self.core.chaos.delay("resume")
        sandbox = self.core.manager.get(sandbox_id)
        return JSONResponse(_created(sandbox), status_code=201 if resumed else 200)

    async def resume(self, request: Request) -> Response:
        body: ConnectBody = await _json(request, ConnectBody, optional=True)
        sandbox_id = request.path_params["sandbox_id"]
        await self.core.manager.resume(sandbox_id, body.timeout, only_paused=True)
        return JSONResponse(_created(self.core.manager.get(sandbox_id)), status_code=201)

    async def set_timeout(self, request: Request) -> Response:
        body: TimeoutBody = await _json(request, TimeoutBody)
        await self.core.manager.set_timeout(request.path_params["sandbox_id"], body.timeout)
        return Response(status_code=204)

    async def refresh(self, request: Request) -> Response:
        body: RefreshBody = await _json(request, RefreshBody, optional=True)
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

    # -- admin ---------------------------------------------------------------------------
    async def admin_records(self, request: Request) -> Response:
        records = [r.computed() for r in self.core.manager.records.values()]
        return JSONResponse([r.model_dump(mode="json") for r in records])

    async def admin_record(self, request: Request) -> Response:
        record = self.core.manager.record(request.path_params["sandbox_id"])
        return JSONResponse(record.model_dump(mode="json"))

    async def admin_kill(self, request: Request) -> Response:
        """Kill a sandbox behind its owner's back (an incident, E2B's lifetime limit)."""
        body: AdminKillBody = await _json(request, AdminKillBody, optional=True)
        await self.core.manager.kill(request.path_params["sandbox_id"], reason=body.reason)
        return Response(status_code=204)

    async def admin_get_faults(self, request: Request) -> Response:
        return JSONResponse(self.core.chaos.faults.model_dump(mode="json"))

    async def admin_put_faults(self, request: Request) -> Response:
        faults: FaultSettings = await _json(request, FaultSettings)
        self.core.chaos.set_faults(faults)
        return JSONResponse(faults.model_dump(mode="json"))

    async def admin_add_scripted(self, request: Request) -> Response:
        fault: ScriptedFault = await _json(request, ScriptedFault)
        self.core.chaos.add_scripted(fault)
        return JSONResponse(self.core.chaos.faults.model_dump(mode="json"))

    async def admin_get_latency(self, request: Request) -> Response:
        return JSONResponse(self.core.chaos.latency)

    async def admin_put_latency(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            latency = {str(k): float(v) for k, v in data.items()}
        except (ValueError, AttributeError, TypeError) as e:
            raise EmulatorError(400, "latency must be a JSON object of operation -> seconds") from e
        self.core.chaos.set_latency(latency)
        return JSONResponse(latency)

    async def admin_reset(self, request: Request) -> Response:
        await self.core.reset()
        return Response(status_code=204)

    async def admin_info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "api_url": self.core.api_url,
                "sandbox_url": self.core.sandbox_url,
                "isolated": self.core.manager.isolated,
                "templates": sorted(self.core.manager.templates),
                "running": sum(
                    1 for s in self.core.manager.sandboxes.values() if s.state == "running"
                ),
                "paused": sum(
                    1 for s in self.core.manager.sandboxes.values() if s.state == "paused"
                ),
            }
        )


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return error_response(status, f"{request.method} {request.url.path}: not found")


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("control plane error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal emulator error: {type(exc).__name__}")


def control_app(core: EmulatorCore) -> Starlette:
    cp = ControlPlane(core)
    e = cp.endpoint
    sid = "/sandboxes/{sandbox_id}"
    routes = [
        Route("/v2/sandboxes", e("create", cp.create), methods=["POST"]),
        Route("/sandboxes", e("create", cp.create), methods=["POST"]),
        Route("/v2/sandboxes", e("list", cp.list), methods=["GET"]),
        Route("/sandboxes", e("list", cp.list), methods=["GET"]),
        Route(sid, e("get", cp.get), methods=["GET"]),
        Route(sid, e("kill", cp.kill), methods=["DELETE"]),
        Route(sid + "/pause", e("pause", cp.pause), methods=["POST"]),
        Route(sid + "/connect", e("connect", cp.connect), methods=["POST"]),
        Route("/v2" + sid + "/connect", e("connect", cp.connect), methods=["POST"]),
        Route(sid + "/resume", e("resume", cp.resume), methods=["POST"]),
        Route(sid + "/timeout", e("timeout", cp.set_timeout), methods=["POST"]),
        Route(sid + "/refreshes", e("refresh", cp.refresh), methods=["POST"]),
        Route("/events/sandboxes", e("events", cp.team_events), methods=["GET"]),
        Route("/events" + sid, e("events", cp.sandbox_events), methods=["GET"]),
        Route("/_emulator/sandboxes", e(None, cp.admin_records), methods=["GET"]),
        Route("/_emulator" + sid, e(None, cp.admin_record), methods=["GET"]),
        Route("/_emulator" + sid + "/kill", e(None, cp.admin_kill), methods=["POST"]),
        Route("/_emulator/faults", e(None, cp.admin_get_faults), methods=["GET"]),
        Route("/_emulator/faults", e(None, cp.admin_put_faults), methods=["PUT"]),
        Route("/_emulator/faults/scripted", e(None, cp.admin_add_scripted), methods=["POST"]),
        Route("/_emulator/latency", e(None, cp.admin_get_latency), methods=["GET"]),
        Route("/_emulator/latency", e(None, cp.admin_put_latency), methods=["PUT"]),
        Route("/_emulator/reset", e(None, cp.admin_reset), methods=["POST"]),
        Route("/_emulator/info", e(None, cp.admin_info), methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _not_found, Exception: _internal},
    )
