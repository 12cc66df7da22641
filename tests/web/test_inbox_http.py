"""The inbox over HTTP on a real stack: who may see and decide what, and what a forged request
gets. (The browser tests drive the same pages in Chromium.)"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from common.signing import decision_link, requested_ms
from sessions.web.guard import SECURITY_HEADERS
from tests.fixtures.web import WebStack, csrf_of


def _unescaped(text: str) -> str:
    return html.unescape(text)


async def test_a_person_must_log_in_and_a_wrong_token_is_refused(web_stack: WebStack) -> None:
    async with web_stack.http() as http:
        response = await http.get("/inbox?org=acme")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Finbox%3Forg%3Dacme"
        page = await http.get("/login")
        response = await http.post(
            "/login", data={"csrf": csrf_of(page.text), "name": "ana", "token": "wrong-token-123"}
        )
        assert response.status_code == 401
        assert "unknown user or wrong token" in response.text
        assert "sessions_login" not in response.headers.get("set-cookie", "")
        # the same message for a name nobody has: it tells nothing about who exists
        response = await http.post(
            "/login", data={"csrf": csrf_of(page.text), "name": "zed", "token": "whatever-12345"}
        )
        assert response.status_code == 401 and "unknown user or wrong token" in response.text


async def test_the_log_in_cookie_is_httponly_samesite_and_signed(web_stack: WebStack) -> None:
    async with web_stack.logged_in("ana") as http:
        cookie = http.cookies.jar
        login = next(c for c in cookie if c.name == "sessions_login")
        assert login.has_nonstandard_attr("HttpOnly")
        assert login.get_nonstandard_attr("SameSite") == "Lax"
        page = await http.get("/inbox")
        assert page.status_code == 200 and 'id="whoami">ana<' in page.text
        # a cookie changed by one character is nobody's
        forged = login.value[:-2] + ("A" if login.value[-2] != "A" else "B") + login.value[-1]
        async with web_stack.http(cookies={"sessions_login": forged}) as other:
            assert (await other.get("/inbox")).status_code == 303


async def test_every_answer_carries_the_security_headers(web_stack: WebStack) -> None:
    async with web_stack.http() as http:
        for path in ("/login", "/inbox", "/static/style.css", "/nope"):
            response = await http.get(path)
            for name, value in SECURITY_HEADERS.items():
                assert response.headers.get(name) == value, (path, name)
        assert (await http.get("/login")).headers["cache-control"] == "no-store"


async def test_a_foreign_host_name_gets_nothing(web_stack: WebStack) -> None:
    async with web_stack.http() as http:
        response = await http.get("/login", headers={"host": "evil.example:80"})
        assert response.status_code == 421
        assert "does not answer for that host name" in _unescaped(response.text)
        assert (await http.get("/healthz", headers={"host": "10.1.2.3"})).status_code == 200


async def test_the_waiting_gate_is_decided_as_the_logged_in_user(web_stack: WebStack) -> None:
    session_id = await web_stack.park(
        "deploy", summary="Deploy v2 to staging", approvers=["ana", "bob"], requested_by="agent-7"
    )
    await web_stack.visible(session_id)
    async with web_stack.logged_in("ana") as http:
        inbox = await http.get("/inbox")
        assert session_id in inbox.text and "Deploy v2 to staging" in inbox.text
        page = await http.get(f"/sessions/{session_id}/gates/deploy")
        assert page.status_code == 200 and 'id="approve-button"' in page.text
        requested = re.search(r'name="requested" value="(\d+)"', page.text)
        assert requested
        response = await http.post(
            f"/sessions/{session_id}/gates/deploy/decide",
            data={
                "csrf": csrf_of(page.text),
                "decision": "approve",
                "requested": requested.group(1),
                "comment": "ship it",
                "by": "mallory",  # a field anyone can type means nothing
            },
        )
        assert response.status_code == 303, response.text
        status = await web_stack.wait_for(
            session_id, lambda s: s.state == "running", what="running again"
        )
        gate = status.gates[0]
        assert (gate.state, gate.decided_by, gate.comment) == ("approved", "ana", "ship it")
        shown = await http.get(response.headers["location"])
        assert "approved by ana" in _unescaped(shown.text)


async def test_a_post_without_the_csrf_token_changes_nothing(web_stack: WebStack) -> None:
    session_id = await web_stack.park("deploy")
    async with web_stack.logged_in("ana") as http:
        page = await http.get(f"/sessions/{session_id}/gates/deploy")
        requested = re.search(r'name="requested" value="(\d+)"', page.text)
        assert requested
        form = {"decision": "approve", "requested": requested.group(1)}
        missing = await http.post(f"/sessions/{session_id}/gates/deploy/decide", data=form)
        assert missing.status_code == 403 and "no CSRF token" in _unescaped(missing.text)
        wrong = await http.post(
            f"/sessions/{session_id}/gates/deploy/decide", data={**form, "csrf": "x" * 43}
        )
        assert wrong.status_code == 403
        # bob's token is no good in ana's browser
        async with web_stack.logged_in("bob") as bob:
            bobs = csrf_of((await bob.get("/inbox")).text)
        crossed = await http.post(
            f"/sessions/{session_id}/gates/deploy/decide", data={**form, "csrf": bobs}
        )
        assert crossed.status_code == 403
        # a right token from another site's page is refused too
        cross_site = await http.post(
            f"/sessions/{session_id}/gates/deploy/decide",
            data={**form, "csrf": csrf_of(page.text)},
            headers={"origin": "https://evil.example"},
        )
        assert cross_site.status_code == 403
    status = await web_stack.client.status(session_id)
    assert status.state == "paused" and status.gates[0].state == "waiting"


async def test_a_user_not_among_the_approvers_is_refused(web_stack: WebStack) -> None:
    session_id = await web_stack.park("deploy", approvers=["ana"], requested_by="bob")
    async with web_stack.logged_in("eve") as eve:
        page = await eve.get(f"/sessions/{session_id}/gates/deploy")
        assert "eve may not approve gate &#39;deploy&#39;: its approvers are ana" in page.text
        assert 'id="approve-button"' not in page.text
        # the form is not offered; eve forges it
        requested = requested_ms(await _requested(web_stack, session_id))
        response = await eve.post(
            f"/sessions/{session_id}/gates/deploy/decide",
            data={"csrf": csrf_of(page.text), "decision": "approve", "requested": requested},
        )
        assert response.status_code == 403
        assert "its approvers are ana" in _unescaped(response.text)
    # the requester may reject but not approve
    async with web_stack.logged_in("bob") as bob:
        page = await bob.get(f"/sessions/{session_id}/gates/deploy")
        assert "bob may not approve" in _unescaped(page.text) or "its approvers" in page.text
    status = await web_stack.client.status(session_id)
    assert status.gates[0].state == "waiting"


async def test_get_never_decides(web_stack: WebStack) -> None:
    session_id = await web_stack.park("deploy")
    async with web_stack.logged_in("ana") as http:
        response = await http.get(
            f"/sessions/{session_id}/gates/deploy/decide?decision=approve&csrf=x"
        )
        # the decide URL takes POST only; a GET of it is read as a gate named "deploy/decide"
        assert response.status_code == 404 and "has no gate" in _unescaped(response.text)
        link = _link(
            web_stack, session_id, "deploy", "approve", await _requested(web_stack, session_id)
        )
        confirm = await http.get(f"/links/{link}")
        assert confirm.status_code == 200 and "nothing is decided until you press" in confirm.text
    status = await web_stack.client.status(session_id)
    assert status.gates[0].state == "waiting"


async def _requested(web_stack: WebStack, session_id: str) -> datetime:
    return (await web_stack.client.status(session_id)).gates[0].requested_at


def _link(
    web_stack: WebStack,
    session_id: str,
    gate: str,
    decision: str,
    requested_at: datetime,
    *,
    expires_in: float = 3600,
) -> str:
    return decision_link(
        web_stack.key,
        session_id=session_id,
        gate=gate,
        decision=decision,  # type: ignore[arg-type]
        requested_at=requested_at,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )


async def test_a_one_click_link_confirms_then_decides_as_the_logged_in_user(
    web_stack: WebStack,
) -> None:
    session_id = await web_stack.park("deploy", approvers=["bob"])
    token = _link(
        web_stack, session_id, "deploy", "reject", await _requested(web_stack, session_id)
    )
    async with web_stack.http() as anonymous:
        response = await anonymous.get(f"/links/{token}")
        assert response.status_code == 303 and response.headers["location"].startswith("/login?")
    async with web_stack.logged_in("bob") as bob:
        page = await bob.get(f"/links/{token}")
        assert 'id="reject-button"' in page.text and 'id="approve-button"' not in page.text
        response = await bob.post(
            f"/links/{token}", data={"csrf": csrf_of(page.text), "comment": "not today"}
        )
        assert response.status_code == 303, response.text
    status = await web_stack.wait_for(
        session_id, lambda s: s.gates[0].state == "rejected", what="rejected"
    )
    assert (status.gates[0].decided_by, status.gates[0].comment) == ("bob", "not today")


async def test_an_expired_or_forged_link_is_refused(web_stack: WebStack) -> None:
    session_id = await web_stack.park("deploy")
    requested = await _requested(web_stack, session_id)
    expired = _link(web_stack, session_id, "deploy", "approve", requested, expires_in=-5)
    async with web_stack.logged_in("ana") as http:
        page = await http.get(f"/links/{expired}")
        assert page.status_code == 410 and "expired at" in page.text
        assert f"/sessions/{session_id}/gates/deploy" in page.text
        posted = await http.post(f"/links/{expired}", data={"csrf": csrf_of(page.text)})
        assert posted.status_code == 410
        good = _link(web_stack, session_id, "deploy", "approve", requested)
        body, mac = good.split(".")
        other = _link(web_stack, session_id, "deploy", "reject", requested).split(".")[0]
        for forged in (f"{other}.{mac}", f"{body}.{mac[:-1]}", "garbage", "a.b"):
            answer = await http.get(f"/links/{forged}")
            assert answer.status_code == 400 and "not valid" in answer.text
        # an earlier gate of the same name: the link is not for the one waiting now
        stale = _link(web_stack, session_id, "deploy", "approve", requested - timedelta(hours=1))
        assert (await http.get(f"/links/{stale}")).status_code == 409
    assert (await web_stack.client.status(session_id)).gates[0].state == "waiting"


async def test_no_open_redirect_after_log_in(web_stack: WebStack) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        async with web_stack.http() as http:
            page = await http.get("/login")
            response = await http.post(
                "/login",
                data={
                    "csrf": csrf_of(page.text),
                    "name": "ana",
                    "token": web_stack.tokens["ana"],
                    "next": target,
                },
            )
            assert response.status_code == 303 and response.headers["location"] == "/inbox"


async def test_filters_and_bad_filters(web_stack: WebStack) -> None:
    org = f"filter-{uuid.uuid4().hex[:6]}"
    session_id = await web_stack.park("deploy", org=org, issue="ISS-77")
    await web_stack.visible(session_id)
    async with web_stack.logged_in("ana") as http:
        assert session_id in (await http.get(f"/inbox?org={org}")).text
        assert session_id not in (await http.get(f"/inbox?org={org}&issue=ISS-1")).text
        bad = await http.get('/inbox?org=a"b')
        assert bad.status_code == 400 and "quotes" in bad.text


async def test_a_gate_whose_name_holds_a_slash_and_unicode_is_reachable(
    web_stack: WebStack,
) -> None:
    name = "deploy/prod — über"
    session_id = await web_stack.park(name)
    quoted = quote(name, safe="")
    async with web_stack.logged_in("ana") as http:
        page = await http.get(f"/sessions/{session_id}/gates/{quoted}")
        assert page.status_code == 200 and name in _unescaped(page.text)
        assert f'action="/sessions/{session_id}/gates/{quoted}/decide"' in page.text
        requested = re.search(r'name="requested" value="(\d+)"', page.text)
        assert requested
        done = await http.post(
            f"/sessions/{session_id}/gates/{quoted}/decide",
            data={"csrf": csrf_of(page.text), "decision": "approve", "requested": requested[1]},
        )
        assert done.status_code == 303, done.text
    status = await web_stack.wait_for(session_id, lambda s: s.state == "running", what="running")
    assert (status.gates[0].gate, status.gates[0].decided_by) == (name, "ana")


async def test_two_people_deciding_at_once_one_decides_the_other_is_told(
    web_stack: WebStack,
) -> None:
    session_id = await web_stack.park("deploy")
    path = f"/sessions/{session_id}/gates/deploy"
    async with web_stack.logged_in("ana") as ana, web_stack.logged_in("bob") as bob:
        pages = [await ana.get(path), await bob.get(path)]
        requested = str(requested_ms(await _requested(web_stack, session_id)))
        answers = await asyncio.gather(
            *(
                http.post(
                    f"{path}/decide",
                    data={"csrf": csrf_of(page.text), "decision": verb, "requested": requested},
                )
                for http, page, verb in ((ana, pages[0], "approve"), (bob, pages[1], "reject"))
            )
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [303, 409], [a.text[-400:] for a in answers]
    loser = next(a for a in answers if a.status_code == 409)
    status = await web_stack.client.status(session_id)
    gate = status.gates[0]
    assert gate.state in ("approved", "rejected") and gate.decided_by in ("ana", "bob")
    assert f"already {gate.state}" in _unescaped(loser.text), loser.text[-400:]
