"""Lifecycle: N sessions through provision → exec → gate → approve → finish → cost, both ways.

The workflow path drives real `SandboxSession` workflows; the baseline makes the same sandbox
calls with the e2b SDK in plain asyncio. Both run in one process against one emulator, one
after the other, so machine noise hits them alike.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from e2b import AsyncSandbox
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

from bench.billing import billing_errors
from bench.history import HistoryWatcher, SessionTimeline, timeline
from bench.stack import E2B_LIKE_LATENCY, CpuMeter, Stack, gather_limited, inprocess_worker
from bench.stats import ratio, summary_ms
from provider.models import ExecResult, PoolConfig
from workflows import ExecRequest, SandboxSession, SessionInput, workflow_id_for

PHASES = ("provision", "exec", "pause", "resume", "finish")
BASELINE_CALLS = {
    "provision": "create",
    "exec": "commands.run",
    "pause": "pause",
    "resume": "connect",
    "finish": "kill",
}
COMMAND = "echo ok"
SANDBOX_TIMEOUT = 900


@dataclass
class WorkflowRun:
    session_id: str
    client_seconds: float
    sandbox_id: str
    timeline: SessionTimeline


@dataclass
class BaselineRun:
    client_seconds: float
    phases: dict[str, float] = field(default_factory=dict)


async def workflow_session(stack: Stack, session_id: str) -> WorkflowRun:
    """One session driven the way a client would: react to the history, never poll status."""
    t0 = time.perf_counter()
    handle = await stack.client.start_workflow(
        SandboxSession.run,
        SessionInput(session_id=session_id, org_id="bench", pool=PoolConfig(template_id="base")),
        id=workflow_id_for(session_id),
        task_queue=stack.task_queue,
    )
    elapsed, outcome, events = await drive(
        handle, t0, exec_arg=ExecRequest(command=COMMAND), result_type=ExecResult
    )
    return WorkflowRun(
        session_id=session_id,
        client_seconds=elapsed,
        sandbox_id=outcome.status.sandbox_id or "",
        timeline=timeline(events),
    )


async def drive(
    handle: WorkflowHandle[Any, Any], t0: float, *, exec_arg: Any, result_type: type
) -> tuple[float, Any, list[HistoryEvent]]:
    """Take a started session through exec → gate → approve → finish, reacting to its history
    (the same client for the project's session and the hand-written floor): the client's
    seconds since `t0`, the workflow's result and its history."""
    watch = HistoryWatcher(handle)
    await watch.absorbed("provision_sandbox")
    result = await handle.execute_update("exec", exec_arg, result_type=result_type)
    code = result.exit_code if isinstance(result, ExecResult) else result["exit_code"]
    if code != 0:
        raise RuntimeError(f"exec failed in workflow {handle.id}: exit code {code}")
    await handle.signal("request_approval", {"gate": "deploy"})
    await watch.absorbed("pause_sandbox")
    await handle.signal("approve", {"gate": "deploy", "by": "bench"})
    await watch.absorbed("resume_sandbox")
    await handle.signal("finish", {})
    outcome = await handle.result()
    elapsed = time.perf_counter() - t0
    await watch.until_closed()
    return elapsed, outcome, watch.events


async def baseline_session(options: dict[str, Any]) -> BaselineRun:
    """The same sandbox operations straight through the e2b SDK: no durability, no ledger."""
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    mark = t0

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name], mark = now - mark, now

    sbx = await AsyncSandbox.create(template="base", timeout=SANDBOX_TIMEOUT, **options)
    lap("provision")
    result = await sbx.commands.run(COMMAND)
    if result.exit_code != 0:
        raise RuntimeError(f"baseline exec failed: {result.stderr}")
    lap("exec")
    await sbx.pause()
    lap("pause")
    sbx = await AsyncSandbox.connect(sbx.sandbox_id, timeout=SANDBOX_TIMEOUT, **options)
    lap("resume")
    await sbx.kill()
    lap("finish")
    return BaselineRun(client_seconds=time.perf_counter() - t0, phases=phases)


async def _batch(
    n: int, concurrency: int, one: Callable[[int], Awaitable[Any]]
) -> tuple[list, float]:
    t0 = time.perf_counter()
    results = await gather_limited(concurrency, [partial(one, i) for i in range(n)])
    return results, time.perf_counter() - t0


def _workflow_figures(runs: list[WorkflowRun], stack: Stack) -> dict[str, Any]:
    """Per-phase latencies and the per-step overhead: step time minus the provider's own."""
    provider = stack.provider
    assert provider is not None
    phases: dict[str, list[float]] = defaultdict(list)
    overhead: dict[str, list[float]] = defaultdict(list)
    server_share: dict[str, list[float]] = defaultdict(list)
    dispatch_share: dict[str, list[float]] = defaultdict(list)
    without_dispatch: list[float] = []
    activity_share: dict[str, list[float]] = defaultdict(list)
    schedule_to_start: list[float] = []
    wft_wait: list[float] = []
    wft_work: list[float] = []
    for run in runs:
        tl = run.timeline
        wft_wait += tl.wft_schedule_to_start
        wft_work += tl.wft_start_to_complete
        for step in tl.steps:
            key = run.session_id if step.step == "provision" else run.sandbox_id
            own = provider.seconds.get((key, step.step))
            own_seconds = own[-1] if own else step.activity_seconds
            if step.step in PHASES:
                phases[step.step].append(step.step_seconds)
            overhead[step.step].append(step.step_seconds - own_seconds)
            dispatch_share[step.step].append(step.wft_wait_seconds)
            without_dispatch.append(step.step_seconds - own_seconds - step.wft_wait_seconds)
            server_share[step.step].append(
                step.step_seconds - step.activity_seconds - step.wft_wait_seconds
            )
            activity_share[step.step].append(step.activity_seconds - own_seconds)
            schedule_to_start.append(step.schedule_to_start_seconds)
        phases["finish"].append(tl.finish_seconds)
        phases["history_wall"].append(tl.wall_seconds)
        # What the session took on the client beyond its steps: the client noticing each step
        # end (history long poll) and sending the next request. A harness cost, not the design's.
        in_steps = tl.finish_seconds + sum(
            s.step_seconds
            for s in tl.steps
            if s.step not in ("terminate", "record_cost", "record_segment", "notify_gate")
        )
        phases["client_reaction"].append(run.client_seconds - in_steps)
    all_overhead = [x for values in overhead.values() for x in values]
    return {
        "phases_ms": {k: summary_ms(v) for k, v in phases.items() if k != "terminate"},
        "overhead_per_step_ms": {
            "all": summary_ms(all_overhead),
            **{k: summary_ms(v) for k, v in overhead.items()},
        },
        "overhead_per_step_without_dispatch_ms": summary_ms(without_dispatch),
        "overhead_split_ms": {
            "workflow_task_dispatch": summary_ms([x for v in dispatch_share.values() for x in v]),
            "workflow_task_processing": summary_ms([x for v in server_share.values() for x in v]),
            "activity_worker": summary_ms([x for v in activity_share.values() for x in v]),
        },
        "activity_schedule_to_start_ms": summary_ms(schedule_to_start),
        "workflow_task_ms": {
            "per_session": round(len(wft_work) / max(len(runs), 1), 1),
            "schedule_to_start": summary_ms(wft_wait),
            "start_to_complete": summary_ms(wft_work),
        },
        "samples": {
            "overhead_ms": [round(x * 1000, 3) for x in all_overhead],
            "phase_ms": {k: [round(x * 1000, 3) for x in v] for k, v in phases.items()},
        },
    }


async def run_lifecycle(
    stack: Stack, *, n: int, concurrency: int, latency: dict[str, float] | None
) -> dict[str, Any]:
    """One lifecycle run (workflow path, then baseline) with the emulator's latency set;
    the stack's in-process worker must be running."""
    stack.emulator.set_latency(**(latency or {}))
    tag = uuid.uuid4().hex[:6]
    options = stack.sdk_options()
    try:
        meter = CpuMeter()
        meter.start()
        runs, wf_wall = await _batch(
            n, concurrency, lambda i: workflow_session(stack, f"life-{tag}-{i}")
        )
        wf_cpu = meter.stop(n)
        meter.start()
        base, base_wall = await _batch(n, concurrency, lambda i: baseline_session(options))
        base_cpu = meter.stop(n)
        figures = _workflow_figures(runs, stack)
    finally:
        stack.emulator.reset_chaos()
    base_phases = {p: summary_ms(b.phases[p] for b in base) for p in PHASES}
    wf_session = summary_ms(r.client_seconds for r in runs)
    base_session = summary_ms(b.client_seconds for b in base)
    billing = await billing_errors(stack, [r.session_id for r in runs])
    return {
        "n": n,
        "concurrency": concurrency,
        "latency_injected": latency or {},
        "workflow": {
            "sessions_per_second": round(n / wf_wall, 3),
            "batch_seconds": round(wf_wall, 3),
            "session_ms": wf_session,
            "cpu": wf_cpu,
            **{k: v for k, v in figures.items() if k != "samples"},
        },
        "baseline": {
            "sessions_per_second": round(n / base_wall, 3),
            "batch_seconds": round(base_wall, 3),
            "session_ms": base_session,
            "cpu": base_cpu,
            "phases_ms": base_phases,
            "calls": BASELINE_CALLS,
        },
        "ratio_workflow_to_baseline": {
            "session_p50": ratio(wf_session["p50"], base_session["p50"]),
            "session_mean": ratio(wf_session["mean"], base_session["mean"]),
            "batch_seconds": ratio(wf_wall, base_wall),
        },
        "billing": billing,
        "samples": {
            **figures["samples"],
            "baseline_phase_ms": {p: [round(b.phases[p] * 1000, 3) for b in base] for p in PHASES},
        },
    }


async def lifecycle_both(
    stack: Stack, *, n: int, concurrency: int, sequential: int
) -> dict[str, Any]:
    """The two runs the issue asks for (no injected latency, then E2B-like latency), and a
    short one-at-a-time run: the overhead of a step with no queueing behind other sessions."""
    runs = {}
    async with inprocess_worker(stack):
        for i in range(2):  # imports, connection pools, the workflow sandbox's first load
            await workflow_session(stack, f"warm-{uuid.uuid4().hex[:6]}-{i}")
            await baseline_session(stack.sdk_options())
        if sequential:
            runs["sequential"] = await run_lifecycle(
                stack, n=sequential, concurrency=1, latency=None
            )
        runs["no_latency"] = await run_lifecycle(stack, n=n, concurrency=concurrency, latency=None)
        runs["e2b_latency"] = await run_lifecycle(
            stack, n=n, concurrency=concurrency, latency=E2B_LIKE_LATENCY
        )
    return runs
