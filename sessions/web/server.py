"""Running the inbox: `sessions web` on its own, or inside `sessions dev`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from common.errors import ConfigError
from common.settings import WebSettings

__all__ = ["inbox_key", "run_inbox", "serve"]

log = logging.getLogger("sessions.web")


def inbox_key(settings: WebSettings) -> bytes:
    """`SESSIONS_WEB_SECRET`, which the inbox cannot run without: it signs the log-in cookies and
    checks the notices' links, so every replica and every worker must hold the same one."""
    key = settings.link_secret
    if key is None:
        raise ConfigError(
            "SESSIONS_WEB_SECRET is not set: the inbox signs its log-ins with it, and the "
            "workers sign the notices' one-click links with the same one; make one with "
            "`openssl rand -hex 32` and give it to both (`sessions dev` makes its own)"
        )
    return key


async def run_inbox(
    settings: WebSettings,
    *,
    client: Any,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set. `client`: a connected `temporalio.client.Client`."""
    import uvicorn

    from common.serving import QuietServer
    from sessions.client import SessionClient
    from sessions.web.app import build_app

    key = inbox_key(settings)
    app = build_app(
        settings,
        client=SessionClient(
            client, task_queue=settings.task_queue, worker_timeout=settings.worker_timeout
        ),
        key=key,
    )
    config = uvicorn.Config(
        app,
        host=settings.web_host,
        port=settings.web_port,
        log_level="warning",
        access_log=False,  # a link's token is in its path: keep paths out of logs
        lifespan="off",
        proxy_headers=False,  # the peer address decides proxy mode: never a header's say
        server_header=False,
    )
    server = QuietServer(config)
    where = f"{settings.web_host}:{settings.web_port}"

    async def serving() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn's word for "cannot listen": it must not end the process
            raise ConfigError(f"the inbox could not listen on {where}") from None

    task = asyncio.create_task(serving())
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if task.done():
            task.result()
            raise ConfigError(f"the inbox could not listen on {where}")
        if ready is not None:
            ready.set()
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def serve(*, host: str | None = None, port: int | None = None) -> int:
    """`sessions web`: blocking, until Ctrl-C or SIGTERM."""
    import signal

    from sessions.client import SessionClient
    from sessions.dev import check_ports

    settings = WebSettings.load(web_host=host, web_port=port)
    inbox_key(settings)  # before connecting: the first thing to fix is said first
    check_ports(settings.web_host, {"the approvals inbox, --port": settings.web_port})

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = (await SessionClient.connect(task_queue=settings.task_queue)).client
        ready = asyncio.Event()
        waiter = asyncio.create_task(ready.wait())
        runner = asyncio.create_task(run_inbox(settings, client=client, stop=stop, ready=ready))
        await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            where = f"http://{settings.web_host}:{settings.web_port}"
            mode = (
                f"users from {settings.users_file}"
                if settings.web_auth == "users"
                else f"proxy header {settings.web_proxy_header}"
            )
            print(f"sessions web: the approvals inbox at {where} (log-in: {mode})", flush=True)
        await runner
        return 0

    return asyncio.run(main())
