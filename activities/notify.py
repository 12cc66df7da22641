"""Gate notifications: `notify_gate` writes a gate's audit row and announces it to the org's
sinks (a signed webhook, a Slack incoming webhook).

The workflow runs it in the background, never on the session's path: a sink that is slow, down
or answering 500 is retried for a bounded time (`NOTIFY_GATE`) and then reported (the gate's
`notify_error` in `sessions status`, the `session.notify.failures` metric, a warning per
attempt) while the gate waits on regardless. Delivery is at least once per (gate, announcement,
sink): a sink the ledger already has a `notified` row for is never posted to again, and a
redelivery after a crash carries the same `Sessions-Event-Id`.

URLs and secrets are resolved here from the worker's settings: they never enter the notice, the
result, an error message or a log line (those name the sink's kind and host only), so never the
workflow's history. With `SESSIONS_WEB_URL` and `SESSIONS_WEB_SECRET`, a notice of a waiting gate
also carries one-click approve and reject links to the inbox (`common.signing.decision_link`):
signed tokens bound to the gate and the decision, expiring; they open a confirm page and never
decide by themselves.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import json
import shlex
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, Field, SecretStr
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ActivityConfig

from activities._heartbeat import heartbeating
from activities._retry import backoff
from common.ids import workflow_id_for
from common.settings import NotifySettings, NotifySinks, WebLinkSettings
from common.signing import decision_link
from common.units import format_span
from ledger import GateEvent, Ledger, NoticeAbout, gate_digest
from telemetry.instruments import count_notice

if TYPE_CHECKING:  # httpx loads in the activity only: workflows import this module's models
    import httpx

__all__ = [
    "EVENT_ID_HEADER",
    "INVALID_NOTICE",
    "NOTIFY_FAILED",
    "NOTIFY_GATE",
    "SIGNATURE_HEADER",
    "GateNotice",
    "GateNotifier",
    "NoticeResult",
    "describe_sinks",
    "event_id",
    "sign",
    "verify_signature",
]

NOTIFY_FAILED = "NotifyFailed"
"""A sink did not take the notice on this attempt: retried until `NOTIFY_GATE`'s bound."""
INVALID_NOTICE = "InvalidNotice"
"""A notice whose audit row is for another gate or event: no retry can fix it."""

SIGNATURE_HEADER = "Sessions-Signature"
EVENT_ID_HEADER = "Sessions-Event-Id"
DEFAULT_TIMEOUT = 10.0
"""Seconds per POST: two sinks tried side by side fit well within an attempt's 30 s."""
SIGNATURE_TOLERANCE = 300
"""Seconds a receiver accepts a signature's `t` away from its own clock (Stripe's default)."""

NOTIFY_GATE = ActivityConfig(
    # A few HTTP POSTs and ledger writes per attempt.
    start_to_close_timeout=timedelta(seconds=30),
    # It heartbeats while it posts: a notice on a worker that died is retried in seconds.
    heartbeat_timeout=timedelta(seconds=5),
    # One round of retries: a sink that keeps failing shows on the gate's status after it; the
    # workflow runs rounds for ten minutes in all (`workflows.session._NOTIFY_BOUND`).
    schedule_to_close_timeout=timedelta(minutes=2),
    retry_policy=backoff(maximum=60, non_retryable=[INVALID_NOTICE]),
)


class GateNotice(BaseModel):
    """One gate event to audit and announce. Never holds a sink's URL or secret: those are
    resolved inside the activity (they must not reach workflow history)."""

    about: NoticeAbout
    event: GateEvent | None = None
    """The audit row to write first (requested, approved, rejected, timed out); None for a
    reminder, which is only a notification."""
    session_id: str
    org_id: str
    issue_id: str | None = None
    sandbox_id: str | None = None
    gate: str
    title: str | None = None
    summary: str | None = None
    details: str | None = None
    requested_by: str | None = None
    approvers: list[str] = Field(default_factory=list)
    timeout_seconds: float | None = None
    """The gate's effective limit (its timeout, or the session's gate ceiling)."""
    on_timeout: str = "reject"
    requested_at: datetime
    waiting_since: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    comment: str | None = None
    running_seconds: float = 0.0
    """The sandbox's running (billed) seconds so far; paused seconds cost nothing."""
    paused_seconds: float = 0.0


class NoticeResult(BaseModel):
    delivered: list[str] = Field(default_factory=list)
    """The sinks that have this notification (now or on an earlier attempt): `webhook`, `slack`;
    empty when none is configured for the org."""
    at: datetime | None = None
    """When the last delivery happened; None when there was nothing to deliver."""


# ---------------------------------------------------------------- the signature


def sign(secret: str, body: bytes, t: int) -> str:
    """The `Sessions-Signature` value for `body` sent at unix time `t`: Stripe's and GitHub's
    scheme, `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. The time is signed too, so a captured
    request cannot be replayed later."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance: float = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the header is well formed, its `t` is within `tolerance` seconds
    of `now` (a stale or future one is a replay), and one of its `v1` matches the raw body
    (compared in constant time)."""
    fields: dict[str, list[str]] = {}
    for part in (header or "").split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        [stamp] = fields.get("t", [])
        t = int(stamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(secret, body, t).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


def event_id(session_id: str, gate: str, about: NoticeAbout) -> str:
    """The notice's stable id (`Sessions-Event-Id`, the body's `id`): the same on every
    redelivery of one announcement, so a receiver can drop a duplicate."""
    key = json.dumps([session_id, gate, about], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()


# ---------------------------------------------------------------- the activity


@dataclass(frozen=True)
class _Sink:
    kind: str
    """`webhook` or `slack`: the name in the audit trail, the result and the metric."""
    url: SecretStr
    secret: SecretStr | None = None

    @property
    def label(self) -> str:
        """How messages name the sink: its kind and host, never its path, token or secret."""
        parts = urlsplit(self.url.get_secret_value())
        host = parts.hostname or "?"
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
        return f"{'slack webhook' if self.kind == 'slack' else 'webhook'} to {host}{port}"


def _sinks_of(sinks: NotifySinks) -> list[_Sink]:
    found = []
    if sinks.webhook_url is not None:
        found.append(_Sink("webhook", sinks.webhook_url, sinks.webhook_secret))
    if sinks.slack_url is not None:
        found.append(_Sink("slack", sinks.slack_url))
    return found


def describe_sinks(settings: NotifySettings) -> str:
    """Where gate notices go, for the worker's start-up line: kinds and hosts, never a URL's
    path or token, never a secret."""
    shared = [sink.label for sink in _sinks_of(settings.sinks(""))]
    said = ", ".join(shared) if shared else "off (no SESSIONS_NOTIFY_URL or _SLACK_URL)"
    own = settings.orgs_with_own_sinks
    said += f"; orgs with their own: {', '.join(own)}" if own else ""
    if shared or own:
        links = settings.web_url and settings.link_secret
        said += "; one-click links: " + (
            "on" if links else "off (needs SESSIONS_WEB_URL and SESSIONS_WEB_SECRET)"
        )
    return said


class GateNotifier:
    """The `notify_gate` activity with the ledger and the notify settings injected (one per
    worker, shared by all tasks). `client`: an HTTP client to post with (its owner closes it);
    by default one per notice, never following redirects."""

    def __init__(
        self,
        ledger: Ledger,
        settings: NotifySettings,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._ledger = ledger
        self._settings = settings
        self._client = client
        self._timeout = timeout

    @activity.defn(name="notify_gate")
    async def notify_gate(self, notice: GateNotice) -> NoticeResult:
        """Write the audit row, then post to each sink that does not have the notice yet; raise
        `NotifyFailed` (retryable) naming every sink that failed, after trying them all."""
        _check(notice)
        if notice.event is not None:
            await self._ledger.record_gate_events([notice.event])
        sinks = _sinks_of(self._settings.sinks(notice.org_id))
        if not sinks:
            return NoticeResult()
        done = await self._delivered(notice)
        todo = [sink for sink in sinks if sink.kind not in done]
        attempt = activity.info().attempt
        outcomes = await heartbeating(
            asyncio.gather(*(self._deliver(sink, notice) for sink in todo))
        )
        rows = []
        for sink, outcome in zip(todo, outcomes, strict=True):
            delivered = isinstance(outcome, datetime)
            count_notice(notice.org_id, sink.kind, notice.about, delivered=delivered)
            if isinstance(outcome, datetime):
                rows.append(_notified(notice, sink.kind, at=outcome, attempt=attempt))
        if rows:  # a failure here retries: the sink gets it again, with the same event id
            await self._ledger.record_gate_events(rows)
        failures = [outcome for outcome in outcomes if isinstance(outcome, str)]
        if failures:
            message = "; ".join(failures)
            activity.logger.warning(
                "gate notice not delivered on attempt %d: session=%s gate=%s about=%s: %s",
                attempt,
                notice.session_id,
                notice.gate,
                notice.about,
                message,
            )
            raise ApplicationError(message, type=NOTIFY_FAILED)
        done.update((row.sink or "", row.at) for row in rows)
        return NoticeResult(delivered=[sink.kind for sink in sinks], at=max(done.values()))

    async def _delivered(self, notice: GateNotice) -> dict[str, datetime]:
        """The sinks that already have this announcement (an earlier attempt's), and when."""
        rows = await self._ledger.gate_events(session_id=notice.session_id, gate=notice.gate)
        return {
            row.sink: row.at
            for row in rows
            if row.event == "notified" and row.about == notice.about and row.sink
        }

    async def _deliver(self, sink: _Sink, notice: GateNotice) -> datetime | str:
        """When the sink took the notice (a 2xx), or why it did not (one safe phrase)."""
        web, now = self._settings, datetime.now(UTC)
        headers = {"Content-Type": "application/json", "User-Agent": "session-worker"}
        if sink.kind == "slack":
            body = _json(_slack_message(notice, web=web, now=now))
        else:
            body = _json(_webhook_body(notice, web=web, now=now))
            headers[EVENT_ID_HEADER] = event_id(notice.session_id, notice.gate, notice.about)
            if sink.secret is not None:
                secret = sink.secret.get_secret_value()
                headers[SIGNATURE_HEADER] = sign(secret, body, int(time.time()))
        if self._client is not None:
            failure = await _post(self._client, sink, body, headers, timeout=self._timeout)
        else:
            import httpx

            async with httpx.AsyncClient(follow_redirects=False) as client:
                failure = await _post(client, sink, body, headers, timeout=self._timeout)
        return datetime.now(UTC) if failure is None else failure


async def _post(
    client: httpx.AsyncClient,
    sink: _Sink,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
) -> str | None:
    """None when the sink answered 2xx; else the failure as `<sink> to <host> <cause>`. A
    redirect is a failure: following it would send the notice where nobody configured."""
    import httpx

    try:
        async with asyncio.timeout(2 * timeout):  # httpx's is per read: a trickle never ends
            response = await client.post(
                sink.url.get_secret_value(),
                content=body,
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
            )
    except httpx.ConnectTimeout:
        return f"{sink.label} did not accept a connection within {timeout:g}s"
    except (httpx.TimeoutException, TimeoutError):
        return f"{sink.label} timed out after {timeout:g}s"
    except httpx.ConnectError as err:
        return f"{sink.label} {_connect_cause(err)}"
    except httpx.RemoteProtocolError:
        return f"{sink.label} closed the connection without a valid answer"
    except Exception as err:  # one sink's surprise must not cost the other sink its notice;
        return f"{sink.label} failed ({type(err).__name__})"  # the class only: text has URLs
    status = response.status_code
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"{sink.label} answered {status}, a redirect (not followed)"
    reason = response.text.strip()
    if sink.kind == "slack" and reason.replace("_", "").isalpha() and len(reason) <= 40:
        return f"{sink.label} answered {status} ({reason})"  # Slack's own codes: no_service, ...
    return f"{sink.label} answered {status}"


def _connect_cause(err: BaseException) -> str:
    """The cause under httpx's `ConnectError`, in words (its text may carry the address)."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return "could not be resolved (DNS)"
        if isinstance(cause, ssl.SSLError):
            return "failed the TLS handshake"
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return "refused the connection"
        cause = cause.__cause__ or cause.__context__
    return "could not be connected to"


def _check(notice: GateNotice) -> None:
    """The audit row must be this notice's own: one for another gate would be written as if."""
    row = notice.event
    if row is not None and (
        row.session_id != notice.session_id or row.gate != notice.gate or row.event != notice.about
    ):
        raise ApplicationError(
            f"invalid notice: its event is a {row.event!r} row of gate {row.gate!r} on session "
            f"{row.session_id!r}, not the {notice.about!r} of gate {notice.gate!r} on "
            f"{notice.session_id!r}",
            type=INVALID_NOTICE,
            non_retryable=True,
        )


def _notified(notice: GateNotice, sink: str, *, at: datetime, attempt: int) -> GateEvent:
    """The audit row of one delivery (`sessions audit`)."""
    return GateEvent(
        session_id=notice.session_id,
        org_id=notice.org_id,
        issue_id=notice.issue_id,
        gate=notice.gate,
        event="notified",
        at=at,
        about=notice.about,
        sink=sink,
        attempts=attempt,
        waited_seconds=max((at - _utc(notice.requested_at)).total_seconds(), 0.0),
        digest=notice.event.digest if notice.event else gate_digest(notice.summary, notice.details),
    )


# ---------------------------------------------------------------- what is sent

_TYPES: dict[str, str] = {
    "requested": "gate.waiting",
    "reminder": "gate.reminder",
    "approved": "gate.approved",
    "rejected": "gate.rejected",
    "timed_out": "gate.timed_out",
}
_OPEN = ("requested", "reminder")
"""Announcements of a gate still waiting: they carry the commands to decide it."""
_ON_TIMEOUT = {"reject": "it counts as rejected", "terminate": "the session is terminated"}
_WHO = "WHO"
"""The decider's name in the commands, as `sessions gate` prints them."""


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _utc(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _utc(value).isoformat()


def _deadline(notice: GateNotice) -> datetime | None:
    if notice.waiting_since is None or notice.timeout_seconds is None:
        return None
    return _utc(notice.waiting_since) + timedelta(seconds=notice.timeout_seconds)


def _link_expiry(notice: GateNotice, ttl: float) -> datetime:
    """When a notice's one-click links expire, in whole seconds (as the token holds it): `ttl`
    after the gate started waiting, never past its deadline. It depends on the notice alone, so
    a redelivery and a reminder carry the same links."""
    base = _utc(notice.waiting_since or notice.requested_at)
    expires = base + timedelta(seconds=ttl)
    deadline = _deadline(notice)
    if deadline is not None:
        expires = min(expires, deadline)
    return datetime.fromtimestamp(int(expires.timestamp()), UTC)


def _links(notice: GateNotice, *, web: WebLinkSettings, now: datetime) -> dict[str, str]:
    """The one-click links (`approve`, `reject`) of a waiting gate: each opens a confirm page in
    the inbox, never decides by itself. Empty without the inbox's URL and key, once the gate is
    decided, or once they have expired (the inbox would refuse them)."""
    key = web.link_secret
    if notice.about not in _OPEN or not web.web_url or key is None:
        return {}
    expires = _link_expiry(notice, web.web_link_ttl)
    if expires <= now:
        return {}
    base = web.web_url.rstrip("/")
    return {
        decision: base
        + "/links/"
        + decision_link(
            key,
            session_id=notice.session_id,
            gate=notice.gate,
            decision=decision,
            requested_at=_utc(notice.requested_at),
            expires_at=expires,
        )
        for decision in ("approve", "reject")
    }


def _decide(notice: GateNotice, *, web: WebLinkSettings, now: datetime) -> dict[str, Any]:
    """How to decide the gate: the exact commands and the one-click links (while it waits), and
    the inbox link."""
    url = None
    web_url = web.web_url
    if web_url:
        session, gate = (quote(part, safe="") for part in (notice.session_id, notice.gate))
        url = f"{web_url.rstrip('/')}/sessions/{session}/gates/{gate}"
    commands = []
    if notice.about in _OPEN:
        session, gate = shlex.quote(notice.session_id), shlex.quote(notice.gate)
        workflow = shlex.quote(workflow_id_for(notice.session_id))
        signal = shlex.quote(json.dumps({"gate": notice.gate, "by": _WHO}, ensure_ascii=False))
        commands = [
            *(f"sessions {verb} {session} {gate} --by {_WHO}" for verb in ("approve", "reject")),
            *(
                f"temporal workflow signal --workflow-id {workflow} --name {verb} --input {signal}"
                for verb in ("approve", "reject")
            ),
        ]
    return {"commands": commands, "url": url, "links": _links(notice, web=web, now=now)}


def _webhook_body(notice: GateNotice, *, web: WebLinkSettings, now: datetime) -> dict[str, Any]:
    """The webhook's JSON: the same bytes on every redelivery of one announcement (`now` only
    drops one-click links that have expired)."""
    deadline = _deadline(notice)
    return {
        "type": _TYPES[notice.about],
        "id": event_id(notice.session_id, notice.gate, notice.about),
        "session_id": notice.session_id,
        "org_id": notice.org_id,
        "issue_id": notice.issue_id,
        "sandbox_id": notice.sandbox_id,
        "gate": notice.gate,
        "title": notice.title,
        "summary": notice.summary,
        "details": notice.details,
        "requested_by": notice.requested_by,
        "approvers": notice.approvers,
        "timeout_seconds": notice.timeout_seconds,
        "on_timeout": notice.on_timeout,
        "requested_at": _iso(notice.requested_at),
        "waiting_since": _iso(notice.waiting_since),
        "deadline": _iso(deadline),
        "decided_at": _iso(notice.decided_at),
        "decided_by": notice.decided_by,
        "comment": notice.comment,
        "cost": {
            "running_seconds": notice.running_seconds,
            "paused_seconds": notice.paused_seconds,
        },
        "decide": _decide(notice, web=web, now=now),
    }


# ---------------------------------------------------------------- Slack

_SLACK_TEXT = 3000
"""Slack's limit on a section's or a context element's text."""
_SLACK_FIELD = 2000
_SLACK_HEADER = 150
_SLACK_URL = 3000
"""Slack's limit on a button's `url`: a longer one fails the whole message."""
_BUTTONS = {
    "approve": ("Approve… (confirm in inbox)", "primary"),
    "reject": ("Reject… (confirm in inbox)", "danger"),
}
"""A one-click link's button: its text (at most 75 characters) says it opens a confirm page."""
_HEADINGS = {
    "requested": "Waiting for approval",
    "reminder": "Still waiting for approval",
    "approved": "Approved",
    "rejected": "Rejected",
    "timed_out": "Timed out",
}


def _mrkdwn(text: object, *, limit: int = _SLACK_TEXT) -> str:
    """User text fit for Slack's mrkdwn: `&`, `<`, `>` escaped (else `<!channel>` would ping
    everyone), cut to `limit` without breaking an escape."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _slack_message(notice: GateNotice, *, web: WebLinkSettings, now: datetime) -> dict[str, Any]:
    """A Block Kit message: what waits (or how it ended), the facts, the details, how to decide."""
    name = notice.title or notice.gate
    heading = f"{_HEADINGS[notice.about]}: {name}"
    if len(heading) > _SLACK_HEADER:
        heading = heading[: _SLACK_HEADER - 1] + "…"
    facts = {
        "Org": notice.org_id,
        "Issue": notice.issue_id or "-",
        "Session": notice.session_id,
        "Gate": notice.gate,
        "Requested by": notice.requested_by or "-",
        "Approvers": ", ".join(notice.approvers) or "anyone",
        **_timing(notice, now=now),
        "Cost so far": f"{format_span(notice.running_seconds)} running, "
        f"{format_span(notice.paused_seconds)} paused (not billed)",
    }
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": heading}},
        _section(_outcome(notice)),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{key}*\n{_mrkdwn(value, limit=_SLACK_FIELD - 40)}"}
                for key, value in facts.items()
            ],
        },
    ]
    if notice.details:
        blocks.append(_section(f"```{_mrkdwn(notice.details, limit=_SLACK_TEXT - 6)}```"))
    decide = _decide(notice, web=web, now=now)
    links: dict[str, str] = decide["links"]
    if links and all(len(url) <= _SLACK_URL for url in links.values()):
        blocks.append({"type": "actions", "elements": [_button(d, u) for d, u in links.items()]})
    how = [f"`{_mrkdwn(command)}`" for command in decide["commands"]]
    if decide["url"]:
        how.append(f"<{decide['url']}|Open in the approvals inbox>")
    if how:
        blocks.append({"type": "context", "elements": [_text("\n".join(how)[:_SLACK_TEXT])]})
    fallback = f"{heading} (gate {notice.gate} on session {notice.session_id})"
    return {"text": _mrkdwn(fallback), "blocks": blocks}


def _timing(notice: GateNotice, *, now: datetime) -> dict[str, str]:
    """Time left while the gate waits; how long it waited once it ended."""
    if notice.about in _OPEN:
        deadline = _deadline(notice)
        if deadline is not None and notice.timeout_seconds is not None:
            left = format_span((deadline - now).total_seconds())
            return {"Time left": f"{left} of {format_span(notice.timeout_seconds)}"}
        if notice.timeout_seconds is not None:
            return {"Timeout": format_span(notice.timeout_seconds)}
        return {}
    since = notice.waiting_since or notice.requested_at
    end = notice.decided_at or now
    return {"Waited": format_span((_utc(end) - _utc(since)).total_seconds())}


def _outcome(notice: GateNotice) -> str:
    """The message's first line: the summary, and who decided or what the timeout does."""
    summary = _mrkdwn(notice.summary or notice.title or f"Gate {notice.gate}", limit=2000)
    consequence = _mrkdwn(_ON_TIMEOUT.get(notice.on_timeout, notice.on_timeout), limit=100)
    if notice.about in ("approved", "rejected"):
        said = f": {_mrkdwn(notice.comment, limit=700)}" if notice.comment else ""
        by = _mrkdwn(notice.decided_by or "someone", limit=100)
        return f"*{_HEADINGS[notice.about]}* by *{by}*{said}\n{summary}"
    if notice.about == "timed_out":
        return f"*Timed out* undecided: {consequence}.\n{summary}"
    if notice.timeout_seconds is not None:
        return f"{summary}\nUndecided after {format_span(notice.timeout_seconds)}: {consequence}."
    return summary


def _button(decision: str, url: str) -> dict[str, Any]:
    """A URL button: Slack opens the link in the browser (the inbox's confirm page)."""
    text, style = _BUTTONS[decision]
    return {
        "type": "button",
        "action_id": f"gate-{decision}-link",
        "text": {"type": "plain_text", "text": text},
        "url": url,
        "style": style,
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _text(text)}


def _text(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}
