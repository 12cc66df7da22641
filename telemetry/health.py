"""`GET /healthz` (the process answers) and `GET /readyz` (connected to Temporal and polling)
for probes, on `SESSIONS_HEALTH_PORT` (opt-in). A few lines of asyncio: no web framework."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from common.errors import ConfigError

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[str | None]]
"""Readiness: None when ready, else the reason why not."""


def health_server(client: Any, worker: Any, stop: asyncio.Event, port: int | None) -> Any:
    """An async context serving the probes on `port` (`SESSIONS_HEALTH_PORT`), or doing nothing."""
    if port is None:
        return contextlib.nullcontext()
    return HealthServer(port, worker_readiness(client, worker, stop))


class HealthServer:
    def __init__(self, port: int, ready: Check, *, host: str = "0.0.0.0") -> None:
        self._port, self._host, self._ready = port, host, ready
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HealthServer:
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
        except OSError as err:
            raise ConfigError(f"SESSIONS_HEALTH_PORT={self._port}: {err.strerror or err}") from None
        log.info("health checks on :%s (/healthz, /readyz)", self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass  # headers: none matter
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if parts[:1] not in (["GET"], ["HEAD"]):
                status, body = "405 Method Not Allowed", "GET only\n"
            elif path == "/healthz":
                status, body = "200 OK", "ok\n"
            elif path == "/readyz":
                problem = await self._ready()
                status, body = (
                    ("200 OK", "ready\n")
                    if problem is None
                    else (
                        "503 Service Unavailable",
                        f"not ready: {problem}\n",
                    )
                )
            else:
                status, body = "404 Not Found", "try /healthz or /readyz\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + (data if parts[:1] != ["HEAD"] else b"")
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def worker_readiness(client: Any, worker: Any, stop: asyncio.Event) -> Check:
    """Ready while the worker polls, is not draining, and Temporal answers within 2 s."""
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    async def check() -> str | None:
        if stop.is_set():
            return "draining"
        if not worker.is_running:
            return "worker is not polling"
        try:
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=2)
            )
        except Exception as err:  # RPCError, timeout: either way not ready
            return f"Temporal does not answer ({type(err).__name__})"
        return None

    return check
