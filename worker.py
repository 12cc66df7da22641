"""The session worker: `python worker.py` or `sessions worker`.

Connects with `temporalio.envconfig` (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
TEMPORAL_TLS_*, profiles), registers `SandboxSession` and its activities with the E2B provider and
the billing ledger injected, and drains gracefully on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import NoReturn

from temporalio.client import Client
from temporalio.worker import Worker

from activities import LedgerActivities, SandboxActivities
from activities.reconcile import (
    ReconcileActivities,
    ReconcilerSettings,
    ensure_reconciler_schedule,
)
from ledger import Ledger, LedgerError, open_ledger
from provider import E2BSandboxProvider, SandboxProvider
from provider.errors import ProviderError
from sessions.connect import connect_temporal
from sessions.connect import task_queue as resolve_task_queue
from sessions.errors import SessionsError
from telemetry import TracedProvider, temporal_runtime, worker_interceptors
from telemetry import setup as setup_telemetry
from telemetry.health import health_server
from telemetry.logging import configure_logging
from workflows import SandboxSession
from workflows.reconciler import StraySandboxReconciler

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
    traced = TracedProvider.wrap(provider)  # spans, latency, gauges for every provider call
    sandbox = SandboxActivities(traced)
    billing = LedgerActivities(ledger)
    reconcile = ReconcileActivities(traced, client, ledger)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SandboxSession, StraySandboxReconciler],
        activities=[
            sandbox.provision_sandbox,
            sandbox.exec_command,
            sandbox.pause_sandbox,
            sandbox.resume_sandbox,
            sandbox.keep_alive_sandbox,
            sandbox.terminate_sandbox,
            sandbox.sandbox_capabilities,
            billing.record_cost,
            reconcile.find_stray_sandboxes,
            reconcile.reap_stray_sandbox,
        ],
        # Sessions mostly wait on humans: a parked workflow is cheap to cache, and the
        # activities are I/O-bound calls to E2B and the ledger.
        max_cached_workflows=max_cached_workflows
        or _int_env("SESSIONS_MAX_CACHED_WORKFLOWS", 2000),
        max_concurrent_activities=max_concurrent_activities
        or _int_env("SESSIONS_MAX_CONCURRENT_ACTIVITIES", 200),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        interceptors=worker_interceptors(client, worker_options.pop("interceptors", ())),  # type: ignore[arg-type]
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
    client = client or await connect_temporal(runtime=temporal_runtime())
    queue = resolve_task_queue(task_queue)
    ledger = await open_ledger(ledger_url)
    stop = stop or asyncio.Event()
    installed = _install_signal_handlers(stop)
    try:
        worker = build_worker(
            client, task_queue=queue, provider=provider or E2BSandboxProvider(), ledger=ledger
        )
        await _ensure_reconciler(client, queue)
        log.info(
            "worker polling task queue %s on %s (namespace %s)",
            queue,
            client.service_client.config.target_host,
            client.namespace,
        )
        async with health_server(client, worker, stop), worker:
            await stop.wait()
            log.info("stopping: draining in-flight tasks (up to %s)", GRACEFUL_SHUTDOWN)
    finally:
        for sig in installed:
            asyncio.get_running_loop().remove_signal_handler(sig)
        await ledger.close()


async def _ensure_reconciler(client: Client, queue: str) -> None:
    """The stray-sandbox Schedule, unless SESSIONS_RECONCILER=off; a failure only warns."""
    settings = ReconcilerSettings.from_env()
    if not settings.enabled:
        return
    try:
        await ensure_reconciler_schedule(client, queue, settings)
    except Exception as err:  # noqa: BLE001 - sessions run without it; the next start retries
        log.warning("reconciler schedule not ensured: %s", err)


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
    """Run the worker, then end the process with `os._exit` (see `_exit`): never returns."""
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("--task-queue", help="default: SESSIONS_TASK_QUEUE or sandbox-sessions")
    parser.add_argument("--ledger-url", help="default: LEDGER_URL or a SQLite file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    _exit(_serve(args))


def _serve(args: argparse.Namespace) -> int:
    try:
        configure_logging()
        telemetry = setup_telemetry()
    except (SessionsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    try:
        asyncio.run(run_worker(task_queue=args.task_queue, ledger_url=args.ledger_url))
    except (SessionsError, LedgerError, ProviderError) as err:  # bad config: one line
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)
    except KeyboardInterrupt:
        pass
    finally:
        telemetry.shutdown()  # the last spans and metrics, before the process ends
    return 0


def _exit(code: int) -> NoReturn:
    """Flush, then leave without interpreter finalization: tearing down Temporal's Rust bridge
    there can crash with PyGILState_Release (temporalio/sdk-python#300) and lose the exit code."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
