"""The session worker: `python worker.py` or `sessions worker`.

Connects with `temporalio.envconfig` (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
TEMPORAL_TLS_*, profiles), registers `SandboxSession` and the stray reconciler with their
activities (the E2B provider and the billing ledger injected), keeps the reconciler's Schedule,
and drains gracefully on SIGTERM / SIGINT. Every other setting is `common.settings.WorkerSettings`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import click
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import LedgerActivities, ReconcileActivities, ReconcileInput, SandboxActivities
from activities.notify import GateNotifier, describe_sinks
from activities.watch import SandboxWatch
from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from common.errors import ConfigError, SessionsError
from common.ids import creates_task_queue
from common.search import SEARCH_ATTRIBUTES
from common.settings import (
    DEFAULT_DRAIN_SECONDS,
    NotifySettings,
    ReconcilerSettings,
    WorkerSettings,
)
from common.temporal import connect_temporal
from ledger import Ledger, LedgerError, open_ledger
from provider import E2BSandboxProvider, ProviderError, SandboxProvider
from provider.limits import TierLimits
from telemetry import TracedProvider, temporal_runtime, with_tracing, worker_interceptors
from telemetry import setup as setup_telemetry
from telemetry.health import health_server
from telemetry.logging import configure_logging
from workflows import (
    RECONCILER_SCHEDULE_ID,
    RECONCILER_WORKFLOW_ID,
    SandboxSession,
    StraySandboxReconciler,
)

__all__ = [
    "GRACEFUL_SHUTDOWN",
    "PASSTHROUGH_MODULES",
    "SessionWorker",
    "build_worker",
    "check_search_attributes",
    "ensure_reconciler_schedule",
    "missing_search_attributes",
    "main",
    "run_worker",
    "search_attribute_type",
    "serve",
    "workflow_runner",
]

log = logging.getLogger("session_worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=DEFAULT_DRAIN_SECONDS)
"""How long in-flight activities may run on after SIGTERM before they are cancelled, unless
`SESSIONS_DRAIN_TIMEOUT` says otherwise: a command with the default timeout finishes."""

PASSTHROUGH_MODULES = (
    "activities",
    "common",
    "ledger",
    "provider",
    "telemetry",
    "workflows",
)
"""Every module of ours the workflow code imports, the workflow modules themselves included:
deterministic at import and holding no state between runs, so every run shares the worker's
copy instead of compiling and importing its own in the sandbox (sdk-python, "Passthrough
Modules"). The sandbox still refuses non-deterministic calls at run time; what passing the
workflow modules through gives up is a fresh copy of their globals per run, which they do not
use (tests/workflows/test_passthrough.py). Measured: 8 % of worker CPU went to recompiling
workflows/session.py for every run (bench/floor.py, docs/performance.md)."""


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every worker (and every replayer) runs the workflows in."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


class SessionWorker:
    """The worker on the sessions queue and its companion on the creates queue, run as one.

    The companion runs only `provision_sandbox`, on `creates_task_queue(task_queue)`. With a
    create rate it asks the server to hand out that queue's tasks no faster, for every worker
    polling it (Temporal's `max_task_queue_activities_per_second`): E2B's per-team create limit
    then holds for the whole fleet, however many replicas run. The creates waiting there are
    not work more pods could do, so autoscaling looks at the sessions queue only.
    """

    def __init__(self, sessions: Worker, creates: Worker) -> None:
        self.sessions = sessions
        self.creates = creates
        self._entered: list[Worker] = []

    @property
    def is_running(self) -> bool:
        return self.sessions.is_running and self.creates.is_running

    async def __aenter__(self) -> SessionWorker:
        try:
            for worker in (self.creates, self.sessions):
                await worker.__aenter__()
                self._entered.append(worker)
        except BaseException:
            await self.__aexit__(None, None, None)  # the one started must not poll on alone
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        """Both drain at once (the same timeout), so a stop takes the longer of the two."""
        entered, self._entered = self._entered, []
        results = await asyncio.gather(
            *(w.__aexit__(*exc) for w in entered), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result


def build_worker(
    client: Client,
    *,
    task_queue: str,
    provider: SandboxProvider,
    ledger: Ledger,
    max_cached_workflows: int = 2000,
    max_concurrent_activities: int = 200,
    creates_per_second: float | None = None,
    drain_timeout: timedelta = GRACEFUL_SHUTDOWN,
    interceptors: Sequence[Any] = (),
    watch: SandboxWatch | None = None,
    notify: NotifySettings | None = None,
    **worker_options: Any,
) -> SessionWorker:
    """The workers for the session and reconciler workflows with their dependencies injected
    (and, with `watch`, the sandboxes it provisions or resumes watched from the next pass;
    gate notices go where `notify` says, by default the environment's SESSIONS_NOTIFY_*).

    `creates_per_second`: the fleet's create rate, set on the creates queue (None: unpaced).
    `drain_timeout`: how long running activities may finish after a stop before cancellation.
    `worker_options` go to the sessions worker only.
    """
    traced = TracedProvider.wrap(provider)  # spans, latency, gauges for every provider call
    sandbox = SandboxActivities(traced, on_live=watch.expect if watch else None)
    billing = LedgerActivities(ledger)
    reconcile = ReconcileActivities(traced, client, ledger)
    notifier = GateNotifier(ledger, notify or NotifySettings.load())
    interceptors = worker_interceptors(client, interceptors)
    sessions = Worker(
        client,
        task_queue=task_queue,
        workflows=[SandboxSession, StraySandboxReconciler],
        activities=[
            # Also here: sessions recorded before the creates queue create on their own queue.
            sandbox.provision_sandbox,
            sandbox.exec_command,
            sandbox.pause_sandbox,
            sandbox.resume_sandbox,
            sandbox.keep_alive_sandbox,
            sandbox.terminate_sandbox,
            sandbox.check_sandbox,
            billing.record_cost,
            billing.record_segment,
            notifier.notify_gate,
            reconcile.find_stray_sandboxes,
            reconcile.reap_stray_sandbox,
            reconcile.bill_terminated_sessions,
        ],
        workflow_runner=workflow_runner(),
        # Sessions mostly wait on humans: a parked workflow is cheap to cache, and the
        # activities are I/O-bound calls to E2B and the ledger.
        max_cached_workflows=max_cached_workflows,
        max_concurrent_activities=max_concurrent_activities,
        graceful_shutdown_timeout=drain_timeout,
        interceptors=interceptors,
        **worker_options,
    )
    creates = Worker(
        client,
        task_queue=creates_task_queue(task_queue),
        activities=[sandbox.provision_sandbox],
        max_concurrent_activities=max_concurrent_activities,
        max_task_queue_activities_per_second=creates_per_second,
        graceful_shutdown_timeout=drain_timeout,
        interceptors=interceptors,
    )
    return SessionWorker(sessions, creates)


async def ensure_reconciler_schedule(
    client: Client, task_queue: str, settings: ReconcilerSettings
) -> None:
    """Create the stray reconciler's Schedule, or bring it to these settings (on every start)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            StraySandboxReconciler.run,
            ReconcileInput(
                org_ids=settings.reconciler_orgs, grace_seconds=settings.reconciler_grace
            ),
            id=RECONCILER_WORKFLOW_ID,
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.reconciler_interval))]
        ),
        # One pass at a time; a pass missed while the worker was down is not worth running late.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(RECONCILER_SCHEDULE_ID, schedule)
        log.info(
            "reconciler schedule %s created: every %ss",
            RECONCILER_SCHEDULE_ID,
            settings.reconciler_interval,
        )
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(RECONCILER_SCHEDULE_ID).update(update)


def search_attribute_type(key: SearchAttributeKey[Any]) -> str:
    """The type as Temporal's CLI, `tcld` and `start-dev --search-attribute` spell it."""
    name = IndexedValueType.Name(IndexedValueType.ValueType(key.indexed_value_type))
    return "".join(w.capitalize() for w in name.removeprefix("INDEXED_VALUE_TYPE_").split("_"))


async def missing_search_attributes(
    client: Client,
) -> tuple[list[SearchAttributeKey[Any]], list[str]]:
    """The session's search attributes the namespace lacks, and those it has with another type
    (each said in words). Raises the server's `RPCError` if it refuses the listing."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    known = {**response.system_attributes, **response.custom_attributes}
    missing, mistyped = [], []
    for key in SEARCH_ATTRIBUTES:
        found = known.get(key.name)
        if found is None:
            missing.append(key)
        elif found != int(key.indexed_value_type):
            have = IndexedValueType.Name(found).removeprefix("INDEXED_VALUE_TYPE_").lower()
            mistyped.append(f"{key.name} is {have}, not {search_attribute_type(key)}")
    return missing, mistyped


async def check_search_attributes(client: Client) -> None:
    """Stop before polling when the namespace lacks the search attributes the workflow upserts:
    every session would otherwise fail its first workflow task, over and over. A server that
    will not list them (a Cloud API key without the permission) only gets a warning."""
    namespace = client.namespace
    try:
        missing, mistyped = await missing_search_attributes(client)
    except RPCError as err:
        if err.status not in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            raise
        log.warning(
            "cannot list namespace %s's search attributes (%s): make sure it has %s, "
            "or every session fails at its first transition (README: Search attributes)",
            namespace,
            err.message,
            ", ".join(f"{k.name} ({search_attribute_type(k)})" for k in SEARCH_ATTRIBUTES),
        )
        return
    if mistyped:
        raise ConfigError(
            f"namespace {namespace} has search attributes of the wrong type: "
            + "; ".join(mistyped)
            + " (remove them with `temporal operator search-attribute remove`, then start the"
            " worker again for the command that creates them)"
        )
    if missing:
        flags = " ".join(f"--name {k.name} --type {search_attribute_type(k)}" for k in missing)
        raise ConfigError(
            f"namespace {namespace} lacks the search attributes "
            + ", ".join(k.name for k in missing)
            + f": create them with `temporal operator search-attribute create --namespace "
            f"{namespace} {flags}` (Temporal Cloud: see README, Search attributes)"
        )


async def run_worker(
    settings: WorkerSettings | None = None,
    *,
    client: Client | None = None,
    provider: SandboxProvider | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until `stop` is set, or SIGINT / SIGTERM arrives; then drain and return."""
    settings = settings or WorkerSettings.load()
    client = client or await connect_temporal(
        payload_keys=settings.payload_keys,
        interceptors=with_tracing(()),
        runtime=temporal_runtime(settings.metrics_port),
    )
    await check_search_attributes(client)
    ledger = await open_ledger(settings.ledger_location)
    stop = stop or asyncio.Event()
    installed = _install_signal_handlers(stop)
    try:
        provider_used = provider or E2BSandboxProvider(settings=settings)
        watch = _watch(client, provider_used, settings)
        rate = TierLimits.from_settings(settings).fleet_create_rate
        worker = build_worker(
            client,
            task_queue=settings.task_queue,
            provider=provider_used,
            watch=watch,
            notify=settings,
            ledger=ledger,
            max_cached_workflows=settings.max_cached_workflows,
            max_concurrent_activities=settings.max_concurrent_activities,
            creates_per_second=rate,
            drain_timeout=timedelta(seconds=settings.drain_timeout),
        )
        log.info("gate notices: %s", describe_sinks(settings))
        if settings.reconciler:
            await _ensure_reconciler(client, settings)
        log.info(
            "worker polling task queue %s on %s (namespace %s)",
            settings.task_queue,
            client.service_client.config.target_host,
            client.namespace,
        )
        log.info(
            "sandbox creates on task queue %s: %s",
            creates_task_queue(settings.task_queue),
            f"at most {rate:g}/s for the whole fleet (set on the server)"
            if rate
            else "not paced (E2B_TIER / E2B_CREATE_RATE unset); E2B's 429s are retried",
        )
        async with health_server(client, worker, stop, settings.health_port), worker:
            watching = asyncio.create_task(watch.run(stop)) if watch else None
            await stop.wait()
            log.info(
                "stopping: draining in-flight tasks (up to %s, SESSIONS_DRAIN_TIMEOUT)",
                timedelta(seconds=settings.drain_timeout),
            )
            if watching is not None:
                await watching
    finally:
        for sig in installed:
            asyncio.get_running_loop().remove_signal_handler(sig)
        await ledger.close()


def _watch(
    client: Client, provider: SandboxProvider, settings: WorkerSettings
) -> SandboxWatch | None:
    """The sandbox watch (`activities.watch`), unless `SESSIONS_WATCH_INTERVAL` is 0."""
    if not settings.watch_interval:
        log.info("sandbox watch off: a lost sandbox is noticed at the next keep-alive")
        return None
    return SandboxWatch(
        TracedProvider.wrap(provider),
        client,
        org_ids=settings.reconciler_orgs,
        interval=settings.watch_interval,
    )


async def _ensure_reconciler(client: Client, settings: WorkerSettings) -> None:
    """A failure only warns: sessions run without the Schedule, and the next start retries."""
    try:
        await ensure_reconciler_schedule(client, settings.task_queue, settings)
    except Exception as err:  # noqa: BLE001
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


def serve(*, task_queue: str | None = None, ledger_url: str | None = None) -> int:
    """Configure logging and telemetry, run the worker until a signal, flush telemetry."""
    settings = WorkerSettings.load(task_queue=task_queue, ledger_url=ledger_url)
    configure_logging(settings.log_level, settings.log_format)
    telemetry = setup_telemetry()
    try:
        asyncio.run(run_worker(settings))
    except KeyboardInterrupt:
        pass
    except SessionsError:
        raise
    except (LedgerError, ProviderError) as err:  # the ledger or E2B refused to start: one line
        raise SessionsError(str(err)) from None
    finally:
        telemetry.shutdown()  # the last spans and metrics, before the process ends
    return 0


@click.command(context_settings=CONTEXT_SETTINGS, help=__doc__.splitlines()[0])
@click.option(
    "--task-queue", metavar="QUEUE", help="Default: SESSIONS_TASK_QUEUE or sandbox-sessions."
)
@click.option("--ledger-url", metavar="URL", help="Default: LEDGER_URL or a SQLite file.")
def command(task_queue: str | None, ledger_url: str | None) -> int:
    return serve(task_queue=task_queue, ledger_url=ledger_url)


def main(argv: Sequence[str] | None = None) -> int:
    """`python worker.py`; as the program it ends the process itself (`common.cli.main`)."""
    return run_command(command, argv, prog_name="worker.py")


if __name__ == "__main__":
    main()
