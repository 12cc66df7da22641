"""The approvals inbox as a Starlette app: pages rendered on the server, one small script.

Reading never changes anything (every GET is safe to repeat or prefetch); a decision is a POST
with a CSRF token, made as the logged-in user through the session's `approve_gate` or
`reject_gate` update, so the workflow itself enforces the gate's approvers and records who.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from common.errors import ConfigError, SessionsError, validation_message
from common.settings import WebSettings
from common.signing import (
    DecisionLink,
    LinkExpired,
    TokenInvalid,
    read_decision_link,
    requested_ms,
)
from sessions import render
from sessions.client import SessionClient, WaitingSession, reading_ledger, usage_now
from sessions.errors import (
    RequestRejected,
    SessionEnded,
    SessionNotFound,
    WorkerUnavailable,
)
from sessions.web.auth import LOGIN_COOKIE, Auth, Refused, Viewer
from sessions.web.guard import Guard
from sessions.web.users import UsersFile
from workflows.models import ENDED_STATES, Gate, SessionStatus

__all__ = ["build_app"]

log = logging.getLogger("sessions.web")
HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024
"""A decision's form is a comment (4,000 characters) and two tokens: more is not ours."""
COST_DAYS = (7, 30, 90, 365)
CHANGING_STATES = {"provisioning", "terminating"}
"""A session on its way somewhere: its page follows it every 2 s."""

Clock = Callable[[], datetime]
Handler = Callable[[Request, Viewer], Awaitable[Response]]


def build_app(
    settings: WebSettings,
    *,
    client: SessionClient,
    key: bytes,
    users: UsersFile | None = None,
    ledger_url: str | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The inbox over `client` (its task queue is the sessions'), reading costs and the audit
    from `ledger_url`, with `key` (`SESSIONS_WEB_SECRET`) signing cookies and verifying links."""
    if settings.web_auth == "users" and users is None:
        users = UsersFile(settings.users_file)
    inbox = _Inbox(
        settings,
        client=client,
        auth=Auth(settings, key=key, users=users),
        ledger_url=ledger_url if ledger_url is not None else settings.ledger_location,
        clock=clock or (lambda: datetime.now(UTC)),
    )
    routes = [
        Route("/", inbox.home),
        Route("/healthz", inbox.healthz),
        Route("/login", inbox.login, methods=["GET", "POST"]),
        Route("/logout", inbox.logout, methods=["POST"]),
        Route("/inbox", inbox.page(inbox.inbox)),
        Route("/sessions/{session_id}", inbox.page(inbox.session)),
        # A gate's name may hold a `/` (sent as %2F, decoded before routing): `path` takes it.
        Route(
            "/sessions/{session_id}/gates/{gate:path}/decide",
            inbox.page(inbox.decide),
            methods=["POST"],
        ),
        Route("/sessions/{session_id}/gates/{gate:path}", inbox.page(inbox.gate)),
        Route("/links/{token}", inbox.page(inbox.link), methods=["GET", "POST"]),
        Route("/costs", inbox.page(inbox.costs)),
        Route("/costs.csv", inbox.page(inbox.costs_csv)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={Exception: inbox.failed})
    return Guard(app, settings=settings, auth=inbox.auth, error_page=inbox.error_bytes)  # type: ignore[return-value]


class _Inbox:
    def __init__(
        self,
        settings: WebSettings,
        *,
        client: SessionClient,
        auth: Auth,
        ledger_url: str,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.client = client
        self.auth = auth
        self.ledger_url = ledger_url
        self.clock = clock
        self.price = settings.price_per_second
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            span=render.duration,
            dollars=render.dollars,
            when=render.when,
            ms=requested_ms,
            url=lambda part: quote(str(part), safe=""),
        )

    # ---------------------------------------------------------------- plumbing

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A page for logged-in people: who they are, and every failure as a page that says why."""

        async def endpoint(request: Request) -> Response:
            try:
                viewer = self.auth.viewer(request)
                if viewer.name is None:
                    target = request.url.path
                    if request.method == "GET" and request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse(
                        "/login?" + urlencode({"next": target}), status_code=303
                    )
                return await handler(request, viewer)
            except Refused as err:
                return self.error(request, err.status, str(err))
            except SessionNotFound as err:
                return self.error(request, 404, str(err))
            except WorkerUnavailable as err:
                return self.error(request, 503, str(err))
            except (RequestRejected, SessionEnded) as err:
                return self.error(request, 409, str(err))
            except ConfigError as err:
                return self.error(request, 400, str(err))
            except SessionsError as err:
                return self.error(request, 502, str(err))

        return endpoint

    def render(
        self, request: Request, template: str, code: int = 200, **context: Any
    ) -> HTMLResponse:
        viewer = context.pop("viewer", None)
        if viewer is None:
            with contextlib.suppress(Refused):
                viewer = self.auth.viewer(request)
        html = self._html(template, viewer=viewer, path=request.url.path, code=code, **context)
        return HTMLResponse(html, status_code=code)

    def _html(
        self, template: str, *, viewer: Viewer | None, path: str, code: int, **context: Any
    ) -> str:
        """A page: `template` with what every page is given (who, their CSRF token, the mode)."""
        return self.templates.get_template(template).render(
            viewer=viewer,
            csrf=self.auth.csrf_token(viewer) if viewer is not None else "",
            auth_mode=self.auth.mode,
            refresh=self.settings.web_refresh,
            now=self.clock(),
            price=self.price,
            path=path,
            http_status=code,
            **context,
        )

    async def failed(self, request: Request, err: Exception) -> Response:
        """A bug or an outage we did not foresee: logged with its traceback, shown as one line."""
        log.exception("the inbox failed answering %s %s", request.method, request.url.path)
        return self.error(request, 500, f"the inbox failed: {type(err).__name__}; see its log")

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status, message=message)

    def error_bytes(self, status: int, message: str) -> bytes:
        """An error page for the guard, which answers before any route (no viewer, no form)."""
        return self._html("error.html", viewer=None, path="", code=status, message=message).encode()

    async def form(self, request: Request) -> dict[str, str]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise Refused(413, "the form is larger than any the inbox sends")
        body = bytearray()  # read it ourselves: a chunked body has no length to refuse early
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refused(413, "the form is larger than any the inbox sends")
        request._body = bytes(body)  # what `form()` parses (Starlette reads `_body` first)
        try:
            form = await request.form(max_files=0, max_fields=20)
        except Exception:  # not a form of ours (or broken): say so, never a traceback
            raise Refused(400, "the request is not a form the inbox understands") from None
        values: dict[str, str] = {}
        for name, value in form.multi_items():
            if not isinstance(value, str):
                raise Refused(400, "the inbox takes no files")
            values.setdefault(name, value)
        return values

    # ---------------------------------------------------------------- public

    async def healthz(self, request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/inbox", status_code=303)

    async def login(self, request: Request) -> Response:
        if self.auth.mode == "proxy":
            return RedirectResponse("/inbox", status_code=303)
        target = _local_path(request.query_params.get("next"))
        viewer = self.auth.viewer(request)
        if request.method == "GET":
            if viewer.name is not None:
                return RedirectResponse(target, status_code=303)
            return self.render(request, "login.html", viewer=viewer, next=target, name="")
        form: dict[str, str] = {}
        try:
            form = await self.form(request)
            self.auth.check_post(request, viewer, form.get("csrf"))
            target = _local_path(form.get("next"))
            address = request.client.host if request.client else "?"
            user = await self.auth.log_in(
                form.get("name", ""), form.get("token", ""), address=address
            )
        except Refused as err:
            return self.render(
                request,
                "login.html",
                err.status,
                viewer=viewer,
                next=target,
                name=form.get("name", "")[:200],
                problem=str(err),
            )
        value = self.auth.login_cookie(user)
        response = RedirectResponse(target, status_code=303)
        max_age = int(self.settings.web_session_ttl)
        response.headers.append(
            "set-cookie", self.auth.cookie_header(LOGIN_COOKIE, value, max_age=max_age)
        )
        return response

    async def logout(self, request: Request) -> Response:
        viewer = self.auth.viewer(request)
        try:
            form = await self.form(request)
            self.auth.check_post(request, viewer, form.get("csrf"))
        except Refused as err:
            return self.error(request, err.status, str(err))
        response = RedirectResponse("/login", status_code=303)
        response.headers.append("set-cookie", self.auth.cookie_header(LOGIN_COOKIE, "", max_age=0))
        return response

    # ---------------------------------------------------------------- the inbox

    async def inbox(self, request: Request, viewer: Viewer) -> Response:
        org = _filter(request, "org")
        issue = _filter(request, "issue")
        mine = request.query_params.get("mine") == "1"
        now = self.clock()
        sessions = await self.client.waiting(org_id=org, issue_id=issue, now=now)
        rows = [
            row
            for session in sessions
            for row in _inbox_rows(session, viewer=viewer, now=now, price=self.price)
            if not mine or row["yours"]
        ]
        rows.sort(key=lambda r: r["since"] or datetime.min.replace(tzinfo=UTC), reverse=True)
        return self.render(
            request,
            "inbox.html",
            viewer=viewer,
            rows=rows,
            org=org or "",
            issue=issue or "",
            mine=mine,
            total=len(rows),
        )

    # ---------------------------------------------------------------- a session

    async def session(self, request: Request, viewer: Viewer) -> Response:
        session_id = request.path_params["session_id"]
        status = await self.client.status(session_id)
        events = await self._audit(session_id)
        decided = request.query_params.get("decided")
        flash = _gate(status, decided) if decided else None
        if flash is not None and flash.state not in ("approved", "rejected"):
            flash = None  # the page says what happened, never what a URL claims
        flash_text, settling = _after_decision(status)
        from sessions.web.charts import timeline_svg

        now = self.clock()
        return self.render(
            request,
            "session.html",
            viewer=viewer,
            status=status,
            events=events,
            flash=flash,
            flash_text=flash_text,
            timeline=timeline_svg(status.segments, now=now, gates=status.gates),
            cost=status.running_seconds * self.price,
            live=status.state not in ENDED_STATES,
            moving=status.state in CHANGING_STATES or (flash is not None and settling),
        )

    async def _audit(self, session_id: str) -> list[Any]:
        """The session's audit rows; none when the ledger cannot say (the page shows the rest)."""
        try:
            return await self._read(lambda ledger: ledger.gate_events(session_id=session_id))
        except SessionsError:
            return []

    async def _read(self, query: Callable[[Any], Awaitable[list[Any]]]) -> list[Any]:
        """`query(ledger)`, or nothing when no ledger exists yet; its failures as one line."""
        from ledger import LedgerError

        async with reading_ledger(self.ledger_url) as ledger:
            if ledger is None:
                return []
            try:
                return list(await query(ledger))
            except LedgerError as err:
                raise SessionsError(f"ledger: {err}") from None

    async def gate(self, request: Request, viewer: Viewer) -> Response:
        session_id = request.path_params["session_id"]
        name = request.path_params["gate"]
        status = await self.client.status(session_id)
        gate = _gate(status, name)
        if gate is None:
            raise Refused(404, f"session {session_id} has no gate {name!r}")
        return self._gate_page(request, viewer, status, gate)

    def _gate_page(
        self,
        request: Request,
        viewer: Viewer,
        status: SessionStatus,
        gate: Gate,
        *,
        link: DecisionLink | None = None,
        token: str | None = None,
    ) -> Response:
        """A gate and how to decide it: both decisions, or the one a link was made for."""
        decision = link.decision if link is not None else None
        return self.render(
            request,
            "gate.html",
            viewer=viewer,
            status=status,
            gate=gate,
            decision=decision,
            link=link,
            token=token,
            **_choices(gate, viewer, decision),
        )

    async def decide(self, request: Request, viewer: Viewer) -> Response:
        form = await self.form(request)
        self.auth.check_post(request, viewer, form.get("csrf"))
        verb = form.get("decision")
        if verb not in ("approve", "reject"):
            raise Refused(400, "choose approve or reject")
        return await self._decide(
            request,
            viewer,
            session_id=request.path_params["session_id"],
            gate_name=request.path_params["gate"],
            verb=verb,
            requested=form.get("requested", ""),
            comment=form.get("comment", ""),
        )

    async def _decide(
        self,
        request: Request,
        viewer: Viewer,
        *,
        session_id: str,
        gate_name: str,
        verb: str,
        requested: str,
        comment: str,
    ) -> Response:
        assert viewer.name is not None
        status = await self.client.status(session_id)
        gate = _gate(status, gate_name)
        if gate is None:
            raise Refused(404, f"session {session_id} has no gate {gate_name!r}")
        if not requested.isdigit() or int(requested) != requested_ms(gate.requested_at):
            raise Refused(
                409,
                f"gate {gate_name!r} on session {session_id} is not the one this form was for "
                "(it was requested again since): open it again to decide",
            )
        if gate.state != "waiting":
            by = f" by {gate.decided_by}" if gate.decided_by else ""
            raise Refused(409, f"gate {gate_name!r} was already {gate.state}{by}")
        refusal = gate.may_decide(viewer.name, verb)
        if refusal is not None:
            raise Refused(403, refusal)
        text = comment.replace("\r\n", "\n").strip() or None
        try:
            if verb == "approve":
                await self.client.approve(session_id, gate_name, by=viewer.name, comment=text)
            else:
                await self.client.reject(session_id, gate_name, by=viewer.name, comment=text)
        except ValidationError as err:
            raise Refused(400, validation_message(err, whole="decision")) from None
        target = f"/sessions/{quote(session_id, safe='')}?" + urlencode({"decided": gate_name})
        return RedirectResponse(target + f"#gate-{quote(gate_name, safe='')}", status_code=303)

    # ---------------------------------------------------------------- one-click links

    async def link(self, request: Request, viewer: Viewer) -> Response:
        token = request.path_params["token"]
        try:
            link = read_decision_link(self.auth.key, token, now=self.clock())
        except LinkExpired as err:
            gate_url = _gate_url(err.payload)
            return self.render(
                request,
                "link_refused.html",
                410,
                viewer=viewer,
                message=f"This link can no longer decide: {err}.",
                gate_url=gate_url,
            )
        except TokenInvalid:
            return self.render(
                request,
                "link_refused.html",
                400,
                viewer=viewer,
                message="This link is not valid: it was not made by this inbox's workers, "
                "or it was changed.",
                gate_url=None,
            )
        if request.method == "POST":
            form = await self.form(request)
            self.auth.check_post(request, viewer, form.get("csrf"))
            return await self._decide(
                request,
                viewer,
                session_id=link.session_id,
                gate_name=link.gate,
                verb=link.decision,
                requested=str(link.requested_ms),
                comment=form.get("comment", ""),
            )
        status = await self.client.status(link.session_id)
        gate = _gate(status, link.gate)
        if gate is None or requested_ms(gate.requested_at) != link.requested_ms:
            raise Refused(
                409,
                f"this link was for an earlier gate {link.gate!r} on session "
                f"{link.session_id}: open the session to see the one waiting now",
            )
        return self._gate_page(request, viewer, status, gate, link=link, token=token)

    # ---------------------------------------------------------------- costs

    async def costs(self, request: Request, viewer: Viewer) -> Response:
        from sessions.web.charts import costs_svg, key_totals

        by, span = _cost_params(request, today=self.clock().date())
        days = len(span)
        charts = []
        totals: dict[str, list[dict[str, Any]]] = {}
        for key in (by,) if by else ("org", "issue"):
            rows = await self._daily(key, since=span[0])
            charts.append(
                {
                    "by": key,
                    "svg": costs_svg(
                        rows,
                        price_per_second=self.price,
                        days=span,
                        title=f"Cost per {key} per day, last {days} days",
                    ),
                }
            )
            totals[key] = [
                {"key": k, "running_seconds": seconds, "cost": seconds * self.price}
                for k, seconds in key_totals(rows)
            ]
        return self.render(
            request,
            "costs.html",
            viewer=viewer,
            charts=charts,
            totals=totals,
            days=days,
            by=by or "",
            choices=COST_DAYS,
        )

    async def costs_csv(self, request: Request, viewer: Viewer) -> Response:
        from sessions.web.charts import costs_csv

        by, span = _cost_params(request, today=self.clock().date())
        key, since = by or "org", span[0]
        rows = await self._daily(key, since=since)
        name = f"costs-by-{key}-{since.isoformat()}.csv"
        return Response(
            costs_csv(rows, price_per_second=self.price, by=key),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    async def _daily(self, by: str, *, since: date) -> list[Any]:
        return await self._read(lambda ledger: ledger.daily(by=by, since=since))


# ---------------------------------------------------------------- helpers


def _filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    if len(value) > 200:  # as long as an org or issue id may be
        raise Refused(400, f"the {name} filter may be at most 200 characters")
    if '"' in value or "\\" in value:
        raise Refused(400, f"the {name} filter may not hold quotes or backslashes")
    return value


def _local_path(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/inbox"
    if any(ch in target for ch in "\r\n\t") or len(target) > 2000:
        return "/inbox"
    return target


def _gate(status: SessionStatus, name: str) -> Gate | None:
    return next((g for g in status.gates if g.gate == name), None)


def _after_decision(status: SessionStatus) -> tuple[str, bool]:
    """What a decision just made means for the sandbox, and whether it is about to change: a
    decided gate leaves the session paused for a moment before it resumes (a rejection too,
    so the agent hears of it), unless another gate still waits."""
    waiting = any(g.state == "waiting" for g in status.gates)
    settling = status.state == "paused" and not waiting
    if status.state == "running":
        return "the sandbox is running again", False
    if settling:
        return "the sandbox is resuming…", True
    if status.state == "paused":
        return "the session stays paused while another gate waits", False
    return f"the session is {status.state.replace('_', ' ')}", False


def _gate_url(payload: dict[str, Any]) -> str | None:
    session, gate = payload.get("s"), payload.get("g")
    if not isinstance(session, str) or not isinstance(gate, str):
        return None
    return f"/sessions/{quote(session, safe='')}/gates/{quote(gate, safe='')}"


def _choices(gate: Gate, viewer: Viewer, decision: str | None) -> dict[str, Any]:
    """The decisions offered (one, from a link, or both), why any is refused, which remain."""
    assert viewer.name is not None
    verbs = [decision] if decision else ["approve", "reject"]
    refusals = {verb: gate.may_decide(viewer.name, verb) for verb in verbs}
    return {
        "verbs": verbs,
        "refusals": refusals,
        "allowed": [verb for verb in verbs if refusals[verb] is None],
    }


def _inbox_rows(
    session: WaitingSession, *, viewer: Viewer, now: datetime, price: float
) -> list[dict[str, Any]]:
    usage = usage_now(session.usage, now)
    cost = usage.running_seconds * price if usage is not None else None
    rows = []
    for gate in session.gates:
        since = gate.waiting_since or gate.requested_at
        left = None
        if since is not None and gate.timeout_seconds is not None:
            left = max(0.0, (since + timedelta(seconds=gate.timeout_seconds) - now).total_seconds())
        folded = (viewer.name or "").casefold()
        yours = not gate.approvers or folded in {a.casefold() for a in gate.approvers}
        rows.append(
            {
                "session": session,
                "gate": gate,
                "since": since,
                "waiting": (now - since).total_seconds() if since is not None else None,
                "left": left,
                "cost": cost,
                "yours": yours,
            }
        )
    return rows


def _cost_params(request: Request, *, today: date) -> tuple[str | None, list[date]]:
    """`by` (None: both) and the days asked for, oldest first, ending `today`."""
    by = request.query_params.get("by") or None
    if by not in (None, "org", "issue"):
        raise Refused(400, "costs are shown by org or by issue")
    raw = request.query_params.get("days", "30")
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise Refused(400, "days must be a whole number from 1 to 366")
    return by, [today - timedelta(days=n) for n in range(int(raw) - 1, -1, -1)]
