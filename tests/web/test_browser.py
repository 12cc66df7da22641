"""The inbox in a real browser (Debian's headless Chromium), used as a person uses it: log in
through the form, watch a gate arrive without reloading, decide with a comment, be refused, follow
a one-click link, and do it all with the keyboard alone. Every page must load under the
Content-Security-Policy without a console error."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from common.signing import decision_link
from ledger.models import GateEvent
from tests.fixtures.web import WebStack

WAIT = 30_000
"""Milliseconds any one thing may take to show (a workflow and a visibility query are behind
most of them); `expect` retries until then, so no test sleeps."""


@pytest.fixture(autouse=True)
def _patient_expect() -> Iterator[None]:
    """`expect` waits up to WAIT here (Playwright's own default is 5 s), then its default again."""
    expect.set_options(timeout=WAIT)
    yield
    expect.set_options(timeout=5_000)


DIFF = """\
--- a/deploy/staging.yaml
+++ b/deploy/staging.yaml
@@ -3,3 +3,3 @@
 service: api
-image: registry.example/api:v2.2.4
+image: registry.example/api:v2.3.0
 replicas: 2
"""


class Console:
    """Every console error and uncaught exception of a page, with the URL it came from.

    A page answered with an error status (a 403 or 410 the test asks for) makes Chromium log
    "Failed to load resource: ... status of 403": `allow(403)` expects exactly that line."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.allowed: set[int] = set()
        page.on("console", self._message)
        page.on("pageerror", lambda err: self.errors.append(f"uncaught {err} on {page.url}"))

    def _message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} on {self.page.url}")

    def allow(self, status: int) -> None:
        self.allowed.add(status)

    def unexpected(self) -> list[str]:
        return [
            error
            for error in self.errors
            if not any(
                error.startswith(
                    f"Failed to load resource: the server responded with a status of {s} "
                )
                for s in self.allowed
            )
        ]


@contextlib.asynccontextmanager
async def browsing(browser: Browser, web_stack: WebStack) -> AsyncIterator[tuple[Page, Console]]:
    """A fresh browser context (no cookies) on the inbox, and its console; at the end, no error
    may have reached the console (a CSP violation is one)."""
    context = await browser.new_context(
        base_url=web_stack.url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(WAIT)
    try:
        page = await context.new_page()
        console = Console(page)
        yield page, console
        assert console.unexpected() == [], "console errors:\n" + "\n".join(console.unexpected())
    finally:
        await context.close()


async def log_in(page: Page, web_stack: WebStack, name: str) -> None:
    """Through the log-in form, as a person does."""
    await page.goto("/login")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Token or password").fill(web_stack.tokens[name])
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#whoami")).to_have_text(name)


def gate_path(session_id: str, gate: str = "deploy") -> str:
    return f"/sessions/{session_id}/gates/{gate}"


async def park(web_stack: WebStack, **fields: Any) -> str:
    fields.setdefault("summary", "Deploy api v2.3 to staging")
    fields.setdefault("details", DIFF)
    fields.setdefault("requested_by", "agent-7")
    return await web_stack.park("deploy", org=f"acme-{uuid.uuid4().hex[:6]}", **fields)


async def audit_row(
    web_stack: WebStack, session_id: str, event: str, by: str, timeout: float = 30.0
) -> GateEvent:
    """The ledger's audit row for `event` by `by` (the notify activity writes it just after)."""
    deadline = asyncio.get_running_loop().time() + timeout
    rows: list[GateEvent] = []
    while asyncio.get_running_loop().time() < deadline:
        rows = await web_stack.stack.ledger.gate_events(session_id=session_id)
        for row in rows:
            if row.event == event and row.by == by:
                return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {event} row by {by} in the audit of {session_id}: {rows}")


async def gate_state(web_stack: WebStack, session_id: str) -> str:
    return (await web_stack.client.status(session_id)).gates[0].state


def link(web_stack: WebStack, session_id: str, requested_at: datetime, *, expires_in: float) -> str:
    token = decision_link(
        web_stack.key,
        session_id=session_id,
        gate="deploy",
        decision="approve",
        requested_at=requested_at,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )
    return f"/links/{token}"


async def focused_is(page: Page, selector: str) -> bool:
    return bool(
        await page.evaluate("s => document.activeElement === document.querySelector(s)", selector)
    )


async def tab_to(page: Page, selector: str, *, limit: int = 40) -> None:
    """Press Tab until `selector` has the focus (as a keyboard user does)."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await focused_is(page, selector):
            return
    raise AssertionError(f"{limit} presses of Tab never reached {selector}")


async def focus_ring(page: Page) -> str:
    """The focused element's outline, which must be visible (not `none`, not 0 wide)."""
    style = await page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.outlineColor]; }"
    )
    assert style[0] != "none" and style[1] not in ("0px", ""), f"no visible focus: {style}"
    return " ".join(style)


# ---------------------------------------------------------------- the tests


async def test_log_in_through_the_form(browser: Browser, web_stack: WebStack) -> None:
    async with browsing(browser, web_stack) as (page, console):
        await page.goto("/inbox")
        await expect(page).to_have_url(re.compile(r"/login\?next=%2Finbox$"))
        await expect(page.get_by_label("User name")).to_be_focused()
        await page.get_by_label("User name").fill("ana")
        await page.get_by_label("Token or password").fill("not-her-token-123")
        console.allow(401)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#problem")).to_have_text("unknown user or wrong token")
        await expect(page.get_by_label("User name")).to_have_value("ana")
        await page.get_by_label("Token or password").fill(web_stack.tokens["ana"])
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(re.compile(r"/inbox$"))
        await expect(page.locator("#whoami")).to_have_text("ana")
        # log out: the log-in is gone, the inbox asks again
        await page.get_by_role("button", name="Log out").click()
        await expect(page).to_have_url(re.compile(r"/login$"))
        await page.goto("/inbox")
        await expect(page).to_have_url(re.compile(r"/login\?next="))


async def test_a_requested_gate_appears_in_the_open_inbox_then_is_approved(
    browser: Browser, web_stack: WebStack
) -> None:
    async with browsing(browser, web_stack) as (page, _):
        await log_in(page, web_stack, "ana")
        await expect(page).to_have_url(re.compile(r"/inbox$"))
        await page.evaluate("() => { window.openedOnce = true; }")  # gone if the page reloads
        # the pointer rests on the list, as a person's does while they wait
        box = await page.locator("#inbox").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + 300, box["y"] + 20)
        session_id = await park(web_stack, approvers=["ana", "bob"])
        row = page.locator(f'#gates tr[data-session="{session_id}"][data-gate="deploy"]')
        await expect(row).to_be_visible()
        assert await page.evaluate("() => window.openedOnce === true"), "the inbox reloaded"
        await expect(row).to_contain_text("Deploy api v2.3 to staging")
        await expect(row).to_contain_text("asked by agent-7")
        await expect(row).to_contain_text("you may decide")

        await row.get_by_role("link", name="deploy").click()
        await expect(page).to_have_url(re.compile(re.escape(gate_path(session_id)) + "$"))
        await expect(page.locator("#summary")).to_have_text("Deploy api v2.3 to staging")
        await expect(page.locator("#details")).to_contain_text(
            "+image: registry.example/api:v2.3.0"
        )
        await expect(page.locator("#gate-state")).to_have_text("waiting")
        await page.get_by_label(re.compile("^Comment")).fill("staging only; watch the error rate")
        await page.locator("#approve-button").click()

        await expect(page).to_have_url(re.compile(rf"/sessions/{session_id}\?decided=deploy"))
        flash = page.locator("#flash")
        await expect(flash).to_contain_text("Gate deploy approved by ana")
        await expect(flash).to_contain_text(re.compile(r"the sandbox is (resuming…|running again)"))
        # the page follows the sandbox until it runs again, by itself
        await expect(page.locator("#state")).to_have_text("running")
        history = page.locator("#gate-history tr#gate-deploy")
        await expect(history).to_contain_text("approved")
        await expect(history).to_contain_text("ana")
        await expect(history).to_contain_text("staging only; watch the error rate")

    row_ = await audit_row(web_stack, session_id, "approved", "ana")
    assert row_.comment == "staging only; watch the error rate"
    status = await web_stack.client.status(session_id)
    assert (status.gates[0].decided_by, status.state) == ("ana", "running")


async def test_reject_with_a_comment(browser: Browser, web_stack: WebStack) -> None:
    session_id = await park(web_stack, approvers=["bob"])
    async with browsing(browser, web_stack) as (page, _):
        await page.goto(gate_path(session_id))  # straight from a notice: log in, come back
        await expect(page).to_have_url(re.compile(r"/login\?next="))
        await page.get_by_label("User name").fill("bob")
        await page.get_by_label("Token or password").fill(web_stack.tokens["bob"])
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(re.compile(re.escape(gate_path(session_id)) + "$"))
        await page.get_by_label(re.compile("^Comment")).fill("not on a Friday")
        await page.locator("#reject-button").click()
        flash = page.locator("#flash")
        await expect(flash).to_contain_text("Gate deploy rejected by bob")
        # a rejection resumes the sandbox too: the agent is told, and decides what next
        await expect(page.locator("#state")).to_have_text("running")
        await expect(flash).to_contain_text("rejected by bob: the sandbox is running again")
        history = page.locator("#gate-history tr#gate-deploy")
        await expect(history).to_contain_text("rejected")
        await expect(history).to_contain_text("not on a Friday")
    row = await audit_row(web_stack, session_id, "rejected", "bob")
    assert row.comment == "not on a Friday"
    assert await gate_state(web_stack, session_id) == "rejected"


async def test_a_user_not_among_the_approvers_is_refused(
    browser: Browser, web_stack: WebStack
) -> None:
    session_id = await park(web_stack, approvers=["ana"])
    await web_stack.visible(session_id)
    async with browsing(browser, web_stack) as (page, _):
        await log_in(page, web_stack, "eve")
        row = page.locator(f'#gates tr[data-session="{session_id}"]')
        await expect(row).to_contain_text("deploy for ana")
        await expect(row.locator(".badge")).to_have_count(0)
        await page.goto(gate_path(session_id))
        await expect(page.locator("#refusal-approve")).to_have_text(
            "eve may not approve gate 'deploy': its approvers are ana"
        )
        await expect(page.locator("#refusal-reject")).to_contain_text("eve may not reject")
        await expect(page.locator("#approve-button")).to_have_count(0)
        await expect(page.locator("#reject-button")).to_have_count(0)
        await expect(page.locator("#decide")).to_have_count(0)
    assert await gate_state(web_stack, session_id) == "waiting"


async def test_a_post_without_the_csrf_token_is_refused(
    browser: Browser, web_stack: WebStack
) -> None:
    session_id = await park(web_stack)
    async with browsing(browser, web_stack) as (page, console):
        await log_in(page, web_stack, "ana")
        await page.goto(gate_path(session_id))
        removed = await page.evaluate(
            "() => { const f = document.querySelector('#decide input[name=csrf]');"
            " f.remove(); return !document.querySelector('#decide input[name=csrf]'); }"
        )
        assert removed
        console.allow(403)
        async with page.expect_response(lambda r: r.url.endswith("/decide")) as answer:
            await page.locator("#approve-button").click()
        assert (await answer.value).status == 403
        await expect(page.locator("#problem")).to_have_text(
            "refused: the form had no CSRF token; reload the page and retry"
        )
        await page.goto(gate_path(session_id))
        await expect(page.locator("#gate-state")).to_have_text("waiting")
    assert await gate_state(web_stack, session_id) == "waiting"


async def test_an_expired_one_click_link_is_refused(browser: Browser, web_stack: WebStack) -> None:
    session_id = await park(web_stack)
    requested = (await web_stack.client.status(session_id)).gates[0].requested_at
    async with browsing(browser, web_stack) as (page, console):
        await log_in(page, web_stack, "ana")
        console.allow(410)
        response = await page.goto(link(web_stack, session_id, requested, expires_in=-60))
        assert response is not None and response.status == 410
        await expect(page.locator("h1")).to_have_text("This link cannot decide")
        await expect(page.locator("#problem")).to_contain_text("expired at")
        await expect(page.locator("#approve-button")).to_have_count(0)
        await page.get_by_role("link", name="Open the gate").click()
        await expect(page).to_have_url(re.compile(re.escape(gate_path(session_id)) + "$"))
        await expect(page.locator("#gate-state")).to_have_text("waiting")
    assert await gate_state(web_stack, session_id) == "waiting"


async def test_a_one_click_link_decides_only_when_the_button_is_pressed(
    browser: Browser, web_stack: WebStack
) -> None:
    session_id = await park(web_stack, approvers=["ana"])
    requested = (await web_stack.client.status(session_id)).gates[0].requested_at
    target = link(web_stack, session_id, requested, expires_in=3600)
    async with browsing(browser, web_stack) as (page, _):
        await page.goto(target)  # a link from a notice, not logged in yet
        await expect(page).to_have_url(re.compile(r"/login\?next=%2Flinks%2F"))
        await page.get_by_label("User name").fill("ana")
        await page.get_by_label("Token or password").fill(web_stack.tokens["ana"])
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(re.compile(re.escape(target) + "$"))
        await expect(page.locator("h2", has_text="Confirm")).to_have_text(
            "Confirm: approve this gate"
        )
        await expect(page.locator(".hint")).to_contain_text("nothing is decided until you press")
        await expect(page.locator("#reject-button")).to_have_count(0)
        # opening (and reloading) the link decided nothing
        await page.reload()
        assert await gate_state(web_stack, session_id) == "waiting"
        await page.get_by_label(re.compile("^Comment")).fill("from the link")
        await page.locator("#approve-button").click()
        await expect(page.locator("#flash")).to_contain_text("Gate deploy approved by ana")
    row = await audit_row(web_stack, session_id, "approved", "ana")
    assert row.comment == "from the link"


async def test_the_keyboard_alone_reaches_and_approves_a_gate(
    browser: Browser, web_stack: WebStack
) -> None:
    org = f"keys-{uuid.uuid4().hex[:6]}"
    session_id = await web_stack.park(
        "deploy", org=org, summary="Deploy api v2.3 to staging", approvers=["ana"]
    )
    await web_stack.visible(session_id)
    keyboard_outlines = []
    async with browsing(browser, web_stack) as (page, _):
        keys = page.keyboard
        await page.goto("/login")
        await expect(page.locator("#name")).to_be_focused()  # autofocus
        await keys.type("ana")
        await keys.press("Tab")
        await expect(page.locator("#token")).to_be_focused()
        keyboard_outlines.append(await focus_ring(page))
        await keys.type(web_stack.tokens["ana"])
        await keys.press("Enter")
        await expect(page.locator("#whoami")).to_have_text("ana")

        # the skip link comes first, shows itself, and lands in the content
        await keys.press("Tab")
        skip = page.get_by_role("link", name="Skip to content")
        await expect(skip).to_be_focused()
        await expect(skip).to_be_in_viewport()
        keyboard_outlines.append(await focus_ring(page))
        await keys.press("Enter")
        await expect(page.locator("#main")).to_be_focused()

        # filter the inbox by the org, then open the gate from its row
        await tab_to(page, "#org")
        await keys.type(org)
        await keys.press("Enter")
        await expect(page).to_have_url(re.compile(rf"/inbox\?org={org}"))
        gate_link = f'#gates tr[data-session="{session_id}"] a[href$="/gates/deploy"]'
        await tab_to(page, gate_link)
        keyboard_outlines.append(await focus_ring(page))
        await keys.press("Enter")
        await expect(page).to_have_url(re.compile(re.escape(gate_path(session_id)) + "$"))

        await tab_to(page, "#comment")
        keyboard_outlines.append(await focus_ring(page))
        await keys.type("approved from the keyboard")
        await tab_to(page, "#approve-button", limit=2)  # right after the comment
        keyboard_outlines.append(await focus_ring(page))
        await keys.press("Enter")
        await expect(page.locator("#flash")).to_contain_text("Gate deploy approved by ana")
        await expect(page.locator("#state")).to_have_text("running")
    row = await audit_row(web_stack, session_id, "approved", "ana")
    assert row.comment == "approved from the keyboard"
    assert len(keyboard_outlines) == 5


async def test_every_page_keeps_to_the_content_security_policy(
    browser: Browser, web_stack: WebStack
) -> None:
    """The pages' own script and styles load under the policy without one console error, and a
    script or style injected into a page is refused (the policy is enforced, not just sent)."""
    session_id = await park(web_stack, approvers=["ana", "bob"])
    await web_stack.visible(session_id)
    requested = (await web_stack.client.status(session_id)).gates[0].requested_at
    async with browsing(browser, web_stack) as (page, console):
        response = await page.goto("/login")
        assert response is not None
        assert "script-src 'self'" in (await response.all_headers())["content-security-policy"]
        await log_in(page, web_stack, "ana")
        pages = [
            "/inbox",
            "/inbox?org=acme&mine=1",
            gate_path(session_id),
            f"/sessions/{session_id}",
            "/costs",
            "/costs?by=issue&days=7",
            link(web_stack, session_id, requested, expires_in=600),
        ]
        for path in pages:
            response = await page.goto(path)
            assert response is not None and response.status == 200, path
            # the stylesheet applied (a blocked one would leave the header white)
            await expect(page.locator("header.top")).to_have_css(
                "background-color", "rgb(246, 248, 250)"
            )
            assert console.unexpected() == [], (path, console.unexpected())
        console.allow(404)
        await page.goto("/sessions/no-such-session")
        await expect(page.locator("#problem")).to_be_visible()
        assert console.unexpected() == []

        # injected inline script and style are refused, and the refusal is reported
        await page.goto("/inbox")
        violations = await page.evaluate(
            """() => new Promise(done => {
                const seen = [];
                document.addEventListener('securitypolicyviolation',
                    e => seen.push(e.violatedDirective));
                const s = document.createElement('script');
                s.textContent = 'window.injected = true';
                document.body.appendChild(s);
                const st = document.createElement('style');
                st.textContent = 'body { display: none }';
                document.head.appendChild(st);
                setTimeout(() => done(seen), 200);
            })"""
        )
        assert await page.evaluate("() => window.injected === undefined")
        await expect(page.locator("body")).to_be_visible()
        assert any(v.startswith("script-src") for v in violations), violations
        assert any(v.startswith("style-src") for v in violations), violations
        refused = [e for e in console.errors if "Content Security Policy" in e]
        assert len(refused) >= 2, console.errors
        console.errors.clear()  # those two were ours; nothing else may be there
