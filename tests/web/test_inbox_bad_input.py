"""Every way a request to the inbox can be wrong, and its answer: one page with a status and a
reason, never a traceback, never a change to the session. docs/bad-input.md lists every row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.signing import requested_ms
from tests.fixtures.web import WebStack, csrf_of

DOC = Path(__file__).parents[2] / "docs" / "bad-input.md"
S = "{S}"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    says: str
    form: dict[str, str] | None = None
    """Fields besides csrf, requested (the gate's) and decision=approve, for a decide POST."""
    files: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None
    logged_in: bool = True
    chunked: int = 0
    """Send this many bytes of form as a chunked body (no Content-Length to refuse it by)."""


DECIDE = f"/sessions/{S}/gates/deploy/decide"
CASES = [
    Case("web-form-oversized", "POST", DECIDE, 413, "the form is larger than any the inbox sends",
         form={"comment": "x" * 70_000}),
    Case("web-form-file", "POST", DECIDE, 400, "not a form the inbox understands",
         files={"comment": ("a.txt", b"hello", "text/plain")}),
    Case("web-form-json", "POST", DECIDE, 403, "the form had no CSRF token",
         content=b'{"decision": "approve"}', headers={"content-type": "application/json"}),
    Case("web-form-garbage", "POST", DECIDE, 403, "the form had no CSRF token",
         content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}),
    Case("web-comment-too-long", "POST", DECIDE, 400, "comment: String should have at most 4000",
         form={"comment": "y" * 4001}),
    Case("web-comment-control", "POST", DECIDE, 400, "comment",
         form={"comment": "ok\x1b[31m red"}),
    Case("web-decision-unknown", "POST", DECIDE, 400, "choose approve or reject",
         form={"decision": "delete"}),
    Case("web-requested-stale", "POST", DECIDE, 409, "is not the one this form was for",
         form={"requested": "123"}),
    Case("web-requested-text", "POST", DECIDE, 409, "is not the one this form was for",
         form={"requested": "yesterday"}),
    Case("web-filter-quote", "GET", '/inbox?org=a"b', 400, "may not hold quotes"),
    Case("web-filter-long", "GET", "/inbox?issue=" + "z" * 300, 400,
         "may be at most 200 characters"),
    Case("web-days-zero", "GET", "/costs?days=0", 400, "days must be a whole number from 1"),
    Case("web-days-huge", "GET", "/costs.csv?days=99999999999999999999", 400, "days must be"),
    Case("web-costs-by", "GET", "/costs?by=template", 400, "costs are shown by org or by issue"),
    Case("web-link-garbage", "GET", "/links/garbage", 400, "This link is not valid"),
    Case("web-link-huge", "GET", "/links/" + "a" * 5000 + ".b", 400, "This link is not valid"),
    Case("web-session-unknown", "GET", "/sessions/nope-nope", 404, "no session nope-nope"),
    Case("web-session-unicode", "GET", "/sessions/%F0%9F%92%A5%E2%80%AE", 404, "no session"),
    Case("web-gate-unknown", "GET", f"/sessions/{S}/gates/nope", 404, "has no gate"),
    Case("web-host-foreign", "GET", "/inbox", 421, "does not answer for that host name",
         headers={"host": "evil.example"}),
    Case("web-host-two", "GET", "/inbox", 421, "does not answer for that host name",
         headers={"host": "127.0.0.1, evil.example"}),
    Case("web-login-huge-token", "POST", "/login", 401, "unknown user or wrong token",
         form={"name": "ana", "token": "t" * 5000}, logged_in=False),
    Case("web-login-control-name", "POST", "/login", 401, "unknown user or wrong token",
         form={"name": "ana\x1b[2J", "token": "ana-token-0123456789"}, logged_in=False),
    Case("web-method", "PUT", DECIDE, 405, ""),
    Case("web-form-chunked", "POST", DECIDE, 413, "the form is larger than any the inbox sends",
         chunked=1_000_000, headers={"content-type": "application/x-www-form-urlencoded"}),
]  # fmt: skip


@pytest.fixture(scope="module")
def parked() -> dict[str, str]:
    return {}


async def _session(web_stack: WebStack, parked: dict[str, str]) -> str:
    """One session paused at `deploy` for every row: none of them may decide it."""
    if "id" not in parked:
        parked["id"] = await web_stack.park("deploy")
    return parked["id"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_request(web_stack: WebStack, parked: dict[str, str], case: Case) -> None:
    session_id = await _session(web_stack, parked)
    path = case.path.replace(S, session_id)

    async def send(http: httpx.AsyncClient) -> httpx.Response:
        page = await http.get(
            f"/sessions/{session_id}/gates/deploy" if case.logged_in else "/login"
        )
        data = None
        if case.content is None and (case.form is not None or case.files is not None):
            data = {"csrf": csrf_of(page.text)}
            if path == DECIDE.replace(S, session_id):
                status = await web_stack.client.status(session_id)
                data |= {
                    "decision": "approve",
                    "requested": str(requested_ms(status.gates[0].requested_at)),
                }
            data |= case.form or {}
        content: Any = case.content
        if case.chunked:

            async def pieces() -> AsyncIterator[bytes]:
                yield b"comment="
                for _ in range(case.chunked // 10_000):
                    yield b"z" * 10_000

            content = pieces()
        return await http.request(
            case.method,
            path,
            data=data,
            files=case.files,
            content=content,
            headers=case.headers,
        )

    if case.logged_in:
        async with web_stack.logged_in("ana") as http:
            response = await send(http)
    else:
        async with web_stack.http() as http:
            response = await send(http)
    assert response.status_code == case.status, response.text[-600:]
    assert case.says in response.text.replace("&#39;", "'").replace("&quot;", '"')
    assert "Traceback" not in response.text
    status = await web_stack.client.status(session_id)
    assert status.state == "paused" and status.gates[0].state == "waiting"


def test_the_table_is_documented() -> None:
    text = DOC.read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in text]
    assert not missing, f"cases missing from {DOC.name}: {missing}"
