"""The inbox's other ways in: a trusted proxy's header (only when configured, only from the
proxy), the `sessions web` command itself, and the costs page with its CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from sessions import SessionClient
from sessions.web.app import build_app
from sessions.web.users import UsersFile
from tests.fixtures.cli import clean_env
from tests.fixtures.http import serving_http
from tests.fixtures.web import SECRET, WebStack, csrf_of, free_port, web_settings


def _proxy_app(web_stack: WebStack, *, proxy_from: str = "127.0.0.1/32") -> object:
    settings = web_settings(
        task_queue=web_stack.stack.task_queue,
        web_auth="proxy",
        web_proxy_header="X-Forwarded-Email",
        web_proxy_from=proxy_from,
    )
    return build_app(
        settings, client=web_stack.client, key=web_stack.key, ledger_url=web_stack.ledger_url
    )


async def test_behind_a_proxy_the_header_names_the_decider(web_stack: WebStack) -> None:
    session_id = await web_stack.park("deploy", approvers=["ana@example.com"])
    async with (
        serving_http(_proxy_app(web_stack)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        as_ana = {"x-forwarded-email": "ana@example.com"}
        nobody = await http.get("/inbox")
        assert nobody.status_code == 401 and "X-Forwarded-Email" in nobody.text
        page = await http.get(f"/sessions/{session_id}/gates/deploy", headers=as_ana)
        assert page.status_code == 200 and 'id="whoami">ana@example.com<' in page.text
        # no log-in form and no log-out in this mode
        assert (await http.get("/login", headers=as_ana)).headers["location"] == "/inbox"
        requested = page.text.split('name="requested" value="')[1].split('"')[0]
        # a forged form without the token is refused here too
        refused = await http.post(
            f"/sessions/{session_id}/gates/deploy/decide",
            data={"decision": "approve", "requested": requested},
            headers=as_ana,
        )
        assert refused.status_code == 403
        done = await http.post(
            f"/sessions/{session_id}/gates/deploy/decide",
            data={"csrf": csrf_of(page.text), "decision": "approve", "requested": requested},
            headers=as_ana,
        )
        assert done.status_code == 303, done.text
    status = await web_stack.wait_for(
        session_id, lambda s: s.gates[0].state == "approved", what="approved"
    )
    assert status.gates[0].decided_by == "ana@example.com"


async def test_the_header_from_anyone_but_the_proxy_is_refused(web_stack: WebStack) -> None:
    async with (
        serving_http(_proxy_app(web_stack, proxy_from="10.0.0.0/8")) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        response = await http.get("/inbox", headers={"x-forwarded-email": "ana@example.com"})
        assert response.status_code == 403 and "authenticating proxy" in response.text
        assert (await http.get("/healthz")).status_code == 200


async def test_without_proxy_mode_the_header_means_nothing(web_stack: WebStack) -> None:
    async with web_stack.http() as http:
        response = await http.get("/inbox", headers={"x-forwarded-email": "ana", "x-user": "ana"})
        assert response.status_code == 303 and response.headers["location"].startswith("/login")


async def test_replacing_a_users_token_ends_their_log_ins(web_stack: WebStack) -> None:
    users = UsersFile(web_stack.users_file)
    users.add("carol", "carol-token-0123456789")
    web_stack.tokens["carol"] = "carol-token-0123456789"
    async with web_stack.logged_in("carol") as http:
        assert (await http.get("/inbox")).status_code == 200
        users.add("carol", "carol-token-9876543210", replace=True)
        assert (await http.get("/inbox")).status_code == 303
        users.remove("carol")


async def test_failed_log_ins_are_limited(web_stack: WebStack) -> None:
    users = UsersFile(web_stack.users_file)
    users.add("dora", "dora-token-0123456789")
    try:
        async with web_stack.http() as http:
            page = await http.get("/login")
            form = {"csrf": csrf_of(page.text), "name": "dora", "token": "guess-000000"}
            codes = [(await http.post("/login", data=form)).status_code for _ in range(11)]
            assert codes[:10] == [401] * 10 and codes[10] == 429
            # even the right token waits now: a guesser learns nothing from the answer
            right = {**form, "token": "dora-token-0123456789"}
            assert (await http.post("/login", data=right)).status_code == 429
    finally:
        users.remove("dora")


async def test_the_costs_page_and_its_csv(web_stack: WebStack) -> None:
    session_id = await web_stack.start(org="costly", issue="ISS-9")
    await asyncio.sleep(1.0)
    await web_stack.client.finish(session_id)
    await web_stack.wait_for(session_id, lambda s: s.state == "finished", what="finished")
    async with web_stack.logged_in("ana") as http:
        page = await http.get("/costs?days=7")
        assert page.status_code == 200
        assert 'id="chart-org"' in page.text and 'id="chart-issue"' in page.text
        assert "<svg" in page.text and "costly" in page.text
        download = await http.get("/costs.csv?by=issue&days=7")
        assert download.status_code == 200
        assert download.headers["content-type"].startswith("text/csv")
        assert "attachment" in download.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(download.text)))
        today = datetime.now(UTC).date().isoformat()
        mine = [r for r in rows if r["issue"] == "ISS-9" and r["day"] == today]
        assert mine and float(mine[0]["running_seconds"]) >= 1.0
        assert float(mine[0]["cost_usd"]) > 0
        for bad in ("/costs?days=0", "/costs?days=9999", "/costs?by=template", "/costs.csv?days=x"):
            answer = await http.get(bad)
            assert answer.status_code == 400, bad


async def test_the_session_page_shows_history_timeline_and_audit(web_stack: WebStack) -> None:
    session_id = await web_stack.park(
        "deploy", summary="Deploy <b>v2</b>", details="rm -rf /tmp/x\n<script>alert(1)</script>"
    )
    await web_stack.client.approve(session_id, "deploy", by="ana", comment="fine & dandy")
    await web_stack.wait_for(session_id, lambda s: s.state == "running", what="running")
    async with web_stack.logged_in("bob") as http:
        page = await http.get(f"/sessions/{session_id}")
        assert page.status_code == 200
        assert 'id="state">running<' in page.text
        assert "fine &amp; dandy" in page.text and "<svg" in page.text
        gate = await http.get(f"/sessions/{session_id}/gates/deploy")
        # what the agent wrote is shown, never run
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in gate.text
        assert "<script>alert" not in gate.text and "Deploy &lt;b&gt;v2&lt;/b&gt;" in gate.text
        missing = await http.get("/sessions/no-such-session")
        assert missing.status_code == 404 and "no session no-such-session" in missing.text


async def test_sessions_web_needs_its_secret_and_serves_until_sigterm(
    web_stack: WebStack, tmp_path: Path
) -> None:
    env = clean_env(
        TEMPORAL_ADDRESS=web_stack.client.client.service_client.config.target_host,
        SESSIONS_TASK_QUEUE=web_stack.stack.task_queue,
        SESSIONS_DATA_DIR=str(tmp_path),
    )
    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessions", "web", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(refused.communicate(), 30)
    assert refused.returncode == 2, (out, err)
    [line] = err.decode().splitlines()
    assert line.startswith("error: SESSIONS_WEB_SECRET is not set") and "openssl rand" in line

    taken = int(web_stack.url.rsplit(":", 1)[1])  # the test inbox listens there
    busy = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessions", "web", "--port", str(taken),
        env={**env, "SESSIONS_WEB_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(busy.communicate(), 30)
    assert busy.returncode != 0
    [line] = err.decode().splitlines()
    assert line == (
        f"error: port {taken} (the approvals inbox, --port) is already in use on 127.0.0.1: "
        "stop whatever uses it (another `sessions dev`?) or choose another port"
    )

    port = free_port()
    served = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessions", "web", "--port", str(port),
        env={**env, "SESSIONS_WEB_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert served.stdout is not None
        banner = (await asyncio.wait_for(served.stdout.readline(), 30)).decode()
        assert f"the approvals inbox at http://127.0.0.1:{port}" in banner, banner
        assert SECRET not in banner
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).text == "ok\n"
            login = await http.get("/login")
            assert login.status_code == 200 and "Log in" in login.text
        served.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(served.communicate(), 30)
        assert served.returncode == 0 and b"Traceback" not in err, err
    finally:
        if served.returncode is None:
            served.kill()


async def test_behind_https_the_cookies_are_secure_and_hsts_is_sent(web_stack: WebStack) -> None:
    settings = web_settings(
        task_queue=web_stack.stack.task_queue,
        web_users=str(web_stack.users_file),
        web_url="https://inbox.example.com",
    )
    app = build_app(
        settings, client=web_stack.client, key=web_stack.key, ledger_url=web_stack.ledger_url
    )
    async with serving_http(app) as url, httpx.AsyncClient(base_url=url) as http:
        # Behind a TLS-terminating ingress the browser's `Host` carries no port.
        assert (await http.get("/login", headers={"host": "inbox.example.com"})).status_code == 200
        assert (
            await http.get("/login", headers={"host": "inbox.example.com:8443"})
        ).status_code == 421
        assert (await http.get("/login", headers={"host": "evil.example.com"})).status_code == 421
        host = {"host": "inbox.example.com:443"}
        page = await http.get("/login", headers=host)
        assert page.status_code == 200
        assert page.headers["strict-transport-security"] == "max-age=31536000"
        assert "Secure" in page.headers["set-cookie"]
        # a browser sends a Secure cookie back over https only: as one would, by hand
        nonce = page.headers["set-cookie"].split(";")[0]
        done = await http.post(
            "/login",
            headers={**host, "origin": "https://inbox.example.com", "cookie": nonce},
            data={"csrf": csrf_of(page.text), "name": "ana", "token": web_stack.tokens["ana"]},
        )
        assert done.status_code == 303
        cookie = done.headers["set-cookie"]
        assert cookie.startswith("sessions_login=") and "Secure" in cookie
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


async def test_a_session_no_worker_answers_for_says_so(web_stack: WebStack) -> None:
    """A session whose task queue has no worker: the page says which queue, in one line."""
    orphan = await web_stack.client.client.start_workflow(
        "SandboxSession",
        {"session_id": "orphan-1", "org_id": "acme"},
        id="session-orphan-web-1",
        task_queue="no-worker-here",
    )
    slow = SessionClient(
        web_stack.client.client, task_queue=web_stack.stack.task_queue, worker_timeout=1
    )
    app = build_app(
        web_settings(task_queue=web_stack.stack.task_queue, web_users=str(web_stack.users_file)),
        client=slow,
        key=web_stack.key,
        ledger_url=web_stack.ledger_url,
    )
    try:
        async with serving_http(app) as url, httpx.AsyncClient(base_url=url) as http:
            page = await http.get("/login")
            await http.post(
                "/login",
                data={"csrf": csrf_of(page.text), "name": "ana", "token": web_stack.tokens["ana"]},
            )
            answer = await http.get("/sessions/orphan-web-1")
            assert answer.status_code == 503
            assert "no worker answered for session orphan-web-1" in answer.text
            assert "task queue no-worker-here" in answer.text
    finally:
        await orphan.terminate("test over")
