"""The control plane's routes, and honest answers for the rest of E2B's API.

A route of E2B's spec the emulator does not implement (templates, metrics, logs, snapshots,
volumes, fork, network, metadata, secrets, ...) and any unknown path answers 501
`the emulator does not implement GET /sandboxes/{sandboxID}/metrics` — never a 404 the SDK
would read as "sandbox not found". A known path with the wrong method answers 405 (`Allow`).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from .admin import Admin
from .control import ControlPlane
from .errors import EmulatorError, error_response

if TYPE_CHECKING:
    from .server import EmulatorCore

log = logging.getLogger("emulator")

SID = "/sandboxes/{sandbox_id}"

#: E2B's API beyond what the emulator implements (spec/openapi.yml, the SDK's client), named
#: with the spec's parameter names so a 501 says which operation is missing.
UNIMPLEMENTED = """
GET /health
GET /teams
GET /teams/{teamID}/metrics
GET /teams/{teamID}/metrics/max
GET /sandboxes/metrics
GET /sandboxes/{sandboxID}/metrics
GET /sandboxes/{sandboxID}/logs
GET /v2/sandboxes/{sandboxID}/logs
POST /sandboxes/{sandboxID}/fork
POST /sandboxes/{sandboxID}/snapshots
GET /snapshots
PUT /sandboxes/{sandboxID}/network
PUT /sandboxes/{sandboxID}/metadata
PATCH /sandboxes/{sandboxID}/metadata
GET /templates
POST /templates
GET /v2/templates
POST /v2/templates
POST /v3/templates
GET /default-templates
GET /templates/aliases/{alias}
POST /templates/tags
DELETE /templates/tags
GET /templates/{templateID}
POST /templates/{templateID}
PATCH /templates/{templateID}
DELETE /templates/{templateID}
PATCH /v2/templates/{templateID}
GET /templates/{templateID}/tags
GET /templates/{templateID}/tags/count
GET /templates/{templateID}/tags/exists
GET /templates/{templateID}/tags/groups
GET /templates/{templateID}/tags/{tag}/assignments
GET /templates/{templateID}/files/{hash}
POST /templates/{templateID}/builds/{buildID}
POST /v2/templates/{templateID}/builds/{buildID}
GET /templates/{templateID}/builds/{buildID}/status
GET /templates/{templateID}/builds/{buildID}/logs
GET /volumes
POST /volumes
GET /volumes/{volumeID}
DELETE /volumes/{volumeID}
GET /secrets
POST /secrets
GET /secrets/{secretID}
POST /secrets/{secretID}
DELETE /secrets/{secretID}
GET /api-keys
POST /api-keys
PATCH /api-keys/{apiKeyID}
DELETE /api-keys/{apiKeyID}
GET /access-tokens
POST /access-tokens
DELETE /access-tokens/{accessTokenID}
"""


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "/?$")


_SPEC = [
    (method, template, _pattern(template))
    for method, template in (line.split(" ", 1) for line in UNIMPLEMENTED.split("\n") if line)
]


def _spec_route(method: str, path: str) -> str | None:
    """`GET /sandboxes/{sandboxID}/metrics` for a spec route the emulator lacks, else None."""
    specific = [(m, t) for m, t, rx in _SPEC if rx.match(path)]
    # The most specific template wins (`/templates/tags` over `/templates/{templateID}`).
    specific.sort(key=lambda mt: mt[1].count("{"))
    for m, template in specific:
        if m == method:
            return f"{m} {template}"
    return None


def control_app(core: EmulatorCore) -> Starlette:
    cp = ControlPlane(core)
    admin = Admin(core)

    def sdk(method: str, path: str, operation: str, handler) -> Route:  # type: ignore[no-untyped-def]
        route = f"{method} {path.replace('{sandbox_id}', '{sandboxID}')}"
        return Route(path, cp.endpoint(operation, route, handler), methods=[method])

    def own(method: str, path: str, handler) -> Route:  # type: ignore[no-untyped-def]
        return Route("/_emulator" + path, cp.endpoint(None, None, handler), methods=[method])

    routes = [
        sdk("POST", "/v2/sandboxes", "create", cp.create),
        sdk("POST", "/sandboxes", "create", cp.create),
        sdk("GET", "/v2/sandboxes", "list", cp.list),
        sdk("GET", "/sandboxes", "list", cp.list_v1),
        sdk("GET", SID, "get", cp.get),
        sdk("DELETE", SID, "kill", cp.kill),
        sdk("POST", SID + "/pause", "pause", cp.pause),
        sdk("POST", SID + "/connect", "connect", cp.connect),
        sdk("POST", "/v2" + SID + "/connect", "connect", cp.connect),
        sdk("POST", SID + "/resume", "resume", cp.resume),
        sdk("POST", SID + "/timeout", "timeout", cp.set_timeout),
        sdk("POST", SID + "/refreshes", "refresh", cp.refresh),
        sdk("GET", "/events/sandboxes", "events", cp.team_events),
        sdk("GET", "/events" + SID, "events", cp.sandbox_events),
        own("GET", "/sandboxes", admin.records),
        own("GET", SID, admin.record),
        own("POST", SID + "/kill", admin.kill),
        own("GET", "/faults", admin.get_faults),
        own("PUT", "/faults", admin.put_faults),
        own("POST", "/faults/scripted", admin.add_scripted),
        own("GET", "/latency", admin.get_latency),
        own("PUT", "/latency", admin.put_latency),
        own("GET", "/limits", admin.get_limits),
        own("PUT", "/limits", admin.put_limits),
        own("POST", "/reset", admin.reset),
        own("GET", "/info", admin.info),
    ]

    async def elsewhere(request: Request) -> Response:
        """405 for a known path with the wrong method, 501 for anything else."""
        method, path = request.method, request.url.path
        matching = [r for r in routes if r.matches(request.scope)[0] != Match.NONE]
        allowed = sorted({m for r in matching for m in r.methods or ()})
        spec = _spec_route(method, path)
        if allowed and spec is None:
            raise EmulatorError(
                405,
                f"method {method} is not allowed on {path}; allowed: {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        raise EmulatorError(501, f"the emulator does not implement {spec or f'{method} {path}'}")

    everything = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    catch_all = Route("/{path:path}", cp.endpoint(None, None, elsewhere), methods=everything)
    return Starlette(
        routes=[*routes, catch_all],
        exception_handlers={HTTPException: _http_error, Exception: _internal},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_response(status, f"{request.method} {request.url.path}: {exc}")


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("control plane error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal emulator error: {type(exc).__name__}")
