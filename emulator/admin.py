"""The emulator's own admin API (`/_emulator/...`): records, incidents, chaos and limits."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .config import FaultSettings, ScriptedFault
from .errors import EmulatorError
from .limits import LimitsUpdate

if TYPE_CHECKING:
    from .server import EmulatorCore

M = TypeVar("M", bound=BaseModel)


class AdminKillBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reason: str = Field(default="incident", min_length=1, max_length=64)


async def _model(request: Request, model: type[M], *, optional: bool = False) -> M:
    raw = await request.body()
    if not raw.strip() and optional:
        return model()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise EmulatorError(400, f"invalid request body: {where}: {first['msg']}") from e


class Admin:
    """Handlers of `/_emulator/...` (authenticated like the API, never rate limited)."""

    def __init__(self, core: EmulatorCore):
        self.core = core

    async def records(self, request: Request) -> Response:
        records = [r.computed() for r in self.core.manager.records.values()]
        return JSONResponse([r.model_dump(mode="json") for r in records])

    async def record(self, request: Request) -> Response:
        record = self.core.manager.record(request.path_params["sandbox_id"])
        return JSONResponse(record.model_dump(mode="json"))

    async def kill(self, request: Request) -> Response:
        """Kill a sandbox behind its owner's back (an incident, E2B's lifetime limit)."""
        body = await _model(request, AdminKillBody, optional=True)
        await self.core.manager.kill(request.path_params["sandbox_id"], reason=body.reason)
        return Response(status_code=204)

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(self.core.chaos.faults.model_dump(mode="json"))

    async def put_faults(self, request: Request) -> Response:
        faults = await _model(request, FaultSettings)
        self.core.chaos.set_faults(faults)
        return JSONResponse(faults.model_dump(mode="json"))

    async def add_scripted(self, request: Request) -> Response:
        fault = await _model(request, ScriptedFault)
        self.core.chaos.add_scripted(fault)
        return JSONResponse(self.core.chaos.faults.model_dump(mode="json"))

    async def get_latency(self, request: Request) -> Response:
        return JSONResponse(self.core.chaos.latency)

    async def put_latency(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            latency = {str(k): float(v) for k, v in data.items()}
        except (ValueError, AttributeError, TypeError) as e:
            raise EmulatorError(400, "latency must be a JSON object of operation -> seconds") from e
        self.core.chaos.set_latency(latency)
        return JSONResponse(latency)

    async def get_limits(self, request: Request) -> Response:
        return JSONResponse(self.core.governor.current.shown())

    async def put_limits(self, request: Request) -> Response:
        """Change the limits: the fields given replace the current ones (see LimitsUpdate)."""
        change = await _model(request, LimitsUpdate)
        return JSONResponse(self.core.governor.update(change).shown())

    async def reset(self, request: Request) -> Response:
        await self.core.reset()
        return Response(status_code=204)

    async def info(self, request: Request) -> Response:
        manager = self.core.manager
        limits = self.core.governor.current
        return JSONResponse(
            {
                "api_url": self.core.api_url,
                "sandbox_url": self.core.sandbox_url,
                "isolated": manager.isolated,
                "templates": sorted(manager.templates),
                "tier": limits.tier,
                "limits": limits.shown(),
                "running": manager.count("running"),
                "paused": manager.count("paused"),
                "pausing": manager.count("pausing"),
                "resuming": manager.count("resuming"),
            }
        )
