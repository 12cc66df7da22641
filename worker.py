"""The session worker: `python worker.py` or `sessions worker`.

Connects with `temporalio.envconfig` (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
TEMPORAL_TLS_*, profiles), registers `SandboxSession` and its activities with the E2B provider and
the billing ledger injected, and drains gracefully on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities import LedgerActivities, SandboxActivities
from ledger import Ledger, LedgerError, open_ledger
from provider import E2BSandboxProvider, SandboxProvider
from sessions.connect import connect_temporal
from sessions.connect import task_queue as resolve_task_queue
from sessions.errors import SessionsError
from workflows import SandboxSession

log = logging.getLogger("session_worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=30)
"""How long in-flight activities may run on after SIGTERM before they are cancelled."""


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SessionsError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise SessionsError(f"{name} must be at least 1")
    return value


def build_worker(
    client: Client,
    *,
    task_queue: str,
    provider: SandboxProvider,
    ledger: Ledger,
    max_cached_workflows: int | None = None,
    max_concurrent_activities: int | None = None,
    **worker_options: object,
) -> Worker:
    """A worker for the session workflow with its dependencies injected."""
    sandbox = SandboxActivities(provider)
    billing = LedgerActivities(ledger)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SandboxSession],
        activities=[
            sandbox.provision_sandbox,
            sandbox.exec_command,
            sandbox.pause_sandbox,
            sandbox.resume_sandbox,
            sandbox.keep_alive_sandbox,
            sandbox.terminate_sandbox,
            sandbox.sandbox_capabilities,
            billing.record_cost,
        ],
        # Sessions mostly wait on humans: a parked workflow is cheap to cache, and the
        # activities are I/O-bound calls to E2B and the ledger.
        max_cached_workflows=max_cached_workflows
        or _int_env("SESSIONS_MAX_CACHED_WORKFLOWS", 2000),
        max_concurrent_activities=max_concurrent_activities
        or _int_env("SESSIONS_MAX_CONCURRENT_ACTIVITIES", 200),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        **worker_options,  # type: ignore[arg-type]
    )


async def run_worker(
    *,
    client: Client | None = None,
    task_queue: str | None = None,
    ledger_url: str | None = None,
    provider: SandboxProvider | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until `stop` is set, or SIGINT / SIGTERM arrives; then drain and return."""
    client = client or await connect_temporal()
    queue = resolve_task_queue(task_queue)
    ledger = await open_ledger(ledger_url)
    stop = stop or asyncio.Event()
    installed = _install_signal_handlers(stop)
    try:
        worker = build_worker(
            client, task_queue=queue, provider=provider or E2BSandboxProvider(), ledger=ledger
        )
        log.info(
            "worker polling task queue %s on %s (namespace %s)",
            queue,
            client.service_client.config.target_host,
            client.namespace,
        )
        async with worker:
            await stop.wait()
            log.info("stopping: draining in-flight tasks (up to %s)", GRACEFUL_SHUTDOWN)
    finally:
        for sig in installed:
            asyncio.get_running_loop().remove_signal_handler(sig)
        await ledger.close()


def _install_signal_handlers(stop: asyncio.Event) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signals on this platform
    return installed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("--task-queue", help="default: SESSIONS_TASK_QUEUE or sandbox-sessions")
    parser.add_argument("--ledger-url", help="default: LEDGER_URL or a SQLite file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        asyncio.run(run_worker(task_queue=args.task_queue, ledger_url=args.ledger_url))
    except (SessionsError, LedgerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
