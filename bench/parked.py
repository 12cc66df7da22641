"""Parked: K sessions waiting at gates at once in a separate worker process, then all approved.

The worker runs as `python worker.py` (configured by environment, like a deployment) so its
RSS is its own: the emulator, the client and the dev server live in other processes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bench.billing import billing_errors
from bench.stack import (
    BenchError,
    CpuMeter,
    Stack,
    WorkerProcess,
    dev_server_rss_kib,
    gather_limited,
)
from bench.stats import summary_ms
from provider.models import PoolConfig
from workflows import SandboxSession, SessionInput, workflow_id_for

DEFAULT_CACHE = 2000
"""`build_worker`'s default `max_cached_workflows` (SESSIONS_MAX_CACHED_WORKFLOWS unset)."""


def _resumed_at(record: Any) -> datetime | None:
    return next((t.at for t in record.transitions if t.event == "resumed"), None)


async def _finish_when_resumed(stack: Stack, wanted: set[str], concurrency: int) -> None:
    """Finish each session as soon as its sandbox runs again, as an agent would: the running
    tail after the gate stays short, so the idle-cost figures are about the parked time."""
    done: set[str] = set()
    pending: set[asyncio.Task[Any]] = set()
    gate = asyncio.Semaphore(concurrency)

    async def finish(sid: str) -> None:
        # Only the signal: thousands of `result()` long polls at once exceed the namespace's
        # concurrent poller limit. The end is awaited through the ledger (`_wait_recorded`).
        async with gate:
            await stack.client.get_workflow_handle(workflow_id_for(sid)).signal("finish", {})

    while len(done) < len(wanted):
        for sid, record in stack.sandboxes(wanted).items():
            if sid not in done and _resumed_at(record):
                done.add(sid)
                pending.add(asyncio.create_task(finish(sid)))
        await asyncio.sleep(0.05)
    await asyncio.gather(*pending)


async def _wait_recorded(
    stack: Stack, worker: WorkerProcess, wanted: set[str], timeout: float
) -> None:
    """Until every session's cost event is in the ledger (the workflow's last step)."""
    deadline = time.monotonic() + timeout
    while True:
        events = await stack.ledger.events(org_id="bench")
        if wanted <= {e.session_id for e in events}:
            return
        worker.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for the cost events")
        await asyncio.sleep(0.5)


async def _warm_up(stack: Stack, queue: str, worker: WorkerProcess) -> None:
    """One full session, so the worker is polling and has imported everything."""
    sid = f"warm-{uuid.uuid4().hex[:8]}"
    handle = await stack.client.start_workflow(
        SandboxSession.run,
        SessionInput(session_id=sid, org_id="bench-warm", pool=PoolConfig(template_id="base")),
        id=workflow_id_for(sid),
        task_queue=queue,
        start_signal="finish",
        start_signal_args=[{}],
    )
    result = asyncio.ensure_future(handle.result())
    await worker.wait_for("the worker to start", result.done, 60)
    result.result()


async def run_parked(
    stack: Stack,
    *,
    k: int,
    concurrency: int,
    max_cached: int | None,
    hold: float = 2.0,
    approve_rate: float = 0.0,
    steady: int = 0,
) -> dict[str, Any]:
    """Park K sessions, then approve them: with `approve_rate`, the first `steady` at that
    rate (one signal every 1/rate s, as people decide), then the rest at once (the burst)."""
    queue = f"parked-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(stack, queue, max_cached)
    tag = uuid.uuid4().hex[:6]
    ids = [f"park-{tag}-{i}" for i in range(k)]
    wanted = set(ids)
    timeout = 120 + k * 0.5
    try:
        await _warm_up(stack, queue, worker)
        await asyncio.sleep(1)
        rss_idle = worker.rss_kib()
        server_rss_idle = dev_server_rss_kib()

        async def park(sid: str) -> None:
            await stack.client.start_workflow(
                SandboxSession.run,
                SessionInput(session_id=sid, org_id="bench", pool=PoolConfig(template_id="base")),
                id=workflow_id_for(sid),
                task_queue=queue,
                start_signal="request_approval",
                start_signal_args=[{"gate": "review", "title": "parked by the benchmark"}],
            )

        meter = CpuMeter({"worker_process": worker.proc.pid})
        meter.start()
        t0 = time.perf_counter()
        await gather_limited(concurrency, [partial(park, s) for s in ids])

        def all_paused() -> bool:
            boxes = stack.sandboxes(wanted)
            return len(boxes) == k and all(r.state == "paused" for r in boxes.values())

        await worker.wait_for(f"{k} sessions to park", all_paused, timeout)
        park_seconds = time.perf_counter() - t0
        park_cpu = meter.stop(k)
        await asyncio.sleep(hold)  # parked; also lets the workflow tasks after the pauses end
        rss_parked = worker.rss_kib()
        server_rss_parked = dev_server_rss_kib()

        sent: dict[str, datetime] = {}

        async def approve(sid: str) -> None:
            handle = stack.client.get_workflow_handle(workflow_id_for(sid))
            sent[sid] = datetime.now(UTC)
            await handle.signal("approve", {"gate": "review", "by": "bench"})

        meter.start()
        t1 = time.perf_counter()
        finisher = asyncio.create_task(_finish_when_resumed(stack, wanted, concurrency))
        paced = ids[: min(steady, k)] if approve_rate > 0 else []
        for sid in paced:  # one decision at a time, at the rate people make them
            asyncio.create_task(approve(sid))
            await asyncio.sleep(1 / approve_rate)
        await gather_limited(concurrency, [partial(approve, s) for s in ids[len(paced) :]])

        def all_resumed() -> bool:
            return all(_resumed_at(r) for r in stack.sandboxes(wanted).values())

        await worker.wait_for(f"{k} sessions to resume", all_resumed, timeout)
        batch_seconds = time.perf_counter() - t1
        approve_cpu = meter.stop(k)
        rss_after = worker.rss_kib()
        resumed = {
            sid: (_resumed_at(record) - sent[sid]).total_seconds()  # type: ignore[operator]
            for sid, record in stack.sandboxes(wanted).items()
        }
        latencies = list(resumed.values())
        steady_latencies = [resumed[sid] for sid in paced]
        burst_latencies = [resumed[sid] for sid in ids[len(paced) :]]
        await asyncio.wait_for(finisher, timeout)
        await _wait_recorded(stack, worker, wanted, timeout)
        billing = await billing_errors(stack, ids)
    finally:
        await worker.stop()
    cached = min(k, max_cached or DEFAULT_CACHE)
    growth = rss_parked - rss_idle
    return {
        "k": k,
        "max_cached_workflows": max_cached or DEFAULT_CACHE,
        "cached_parked_sessions": cached,
        "hold_seconds": hold,
        "park_seconds": round(park_seconds, 3),
        "parked_per_second": round(k / park_seconds, 3),
        "rss_kib": {"idle": rss_idle, "parked": rss_parked, "after_resume": rss_after},
        "dev_server_rss_kib": {"idle": server_rss_idle, "parked": server_rss_parked},
        "rss_growth_kib_per_parked_session": round(growth / k, 2),
        "rss_growth_kib_per_cached_session": round(growth / cached, 2),
        "resume_after_approval_ms": summary_ms(latencies),
        "steady_approvals": {
            "rate_per_second": approve_rate,
            "sessions": len(paced),
            "resume_after_approval_ms": summary_ms(steady_latencies),
        },
        "burst_resume_after_approval_ms": summary_ms(burst_latencies),
        "approve_batch_seconds": round(batch_seconds, 3),
        "cpu": {"park": park_cpu, "approve_until_all_resumed": approve_cpu},
        "billing": billing,
        "samples": {"resume_after_approval_ms": [round(x * 1000, 3) for x in latencies]},
    }


async def parked_both(
    stack: Stack, *, k: int, concurrency: int, small_cache: int, hold: float
) -> dict[str, Any]:
    """The same K parked twice: the worker cache at its default, then at `small_cache`."""
    return {
        cache: await run_parked(stack, k=k, concurrency=concurrency, hold=hold, max_cached=size)
        for cache, size in (("default_cache", None), ("small_cache", small_cache))
    }
