"""`python -m bench.lost`: how soon a sandbox killed behind its session is noticed, and how far
its bill is from what the sandbox really ran.

Each session runs (half of them pause at a gate first), then its sandbox is killed in the
emulator at a random moment, as E2B kills one at its lifetime limit. The worker's sandbox watch
runs at the default interval unless `--interval` says otherwise. Prints the detection window
(kill to the session's end `lost`) and the billing error (ledger minus the emulator's record).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from activities.watch import SandboxWatch
from bench.stack import Stack, running_stack
from bench.stats import summary_ms
from common.settings import WorkerSettings
from provider.models import PoolConfig
from worker import build_worker
from workflows import SandboxSession, SessionInput, workflow_id_for


async def _one(stack: Stack, rng: random.Random, gate: bool) -> dict[str, float]:
    session_id = f"lost-{uuid.uuid4().hex[:10]}"
    handle = await stack.client.start_workflow(
        SandboxSession.run,
        SessionInput(
            session_id=session_id,
            org_id="bench",
            pool=PoolConfig(),
            keep_alive_interval_seconds=3600,  # only the watch may notice
        ),
        id=workflow_id_for(session_id),
        task_queue=stack.task_queue,
    )
    loop = asyncio.get_running_loop()
    while (status := await handle.query(SandboxSession.status)).state != "running":
        await asyncio.sleep(0.05)
    if gate:
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        await handle.signal("request_approval", {"gate": "g", "timeout_seconds": 3600})
        while (await handle.query(SandboxSession.status)).state != "paused":
            await asyncio.sleep(0.05)
    await asyncio.sleep(rng.uniform(0.5, 3.0))
    await stack.emulator.core.manager.kill(status.sandbox_id or "", reason="timeout")
    killed = loop.time()
    try:
        await handle.result()
    except Exception:  # noqa: BLE001 - the session fails `SandboxLost`, as it should
        pass
    noticed = loop.time() - killed
    final = await handle.query(SandboxSession.status)
    (row,) = await stack.ledger.events(session_id=session_id)
    record = stack.emulator.record(row.sandbox_id).computed()
    return {
        "noticed_s": noticed,
        "lost": float(final.state == "lost"),
        "error_s": row.running_seconds - record.running_seconds,
        "confirmed": float(row.end_confirmed),
    }


async def run(sessions: int, interval: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        async with running_stack(Path(tmp)) as stack:
            provider = stack.new_provider()
            watch = SandboxWatch(provider, stack.client, org_ids=["*"], interval=interval)
            worker = build_worker(
                stack.client,
                task_queue=stack.task_queue,
                provider=provider,
                ledger=stack.ledger,
                watch=watch,
            )
            async with worker:
                stop = asyncio.Event()
                task = asyncio.create_task(watch.run(stop))
                try:
                    rows = await asyncio.gather(
                        *(_one(stack, rng, gate=i % 2 == 1) for i in range(sessions))
                    )
                finally:
                    stop.set()
                    await task
    return {
        "sessions": sessions,
        "watch_interval_s": interval,
        "ended_lost": int(sum(r["lost"] for r in rows)),
        "end_confirmed": int(sum(r["confirmed"] for r in rows)),
        "detection_ms": summary_ms(r["noticed_s"] for r in rows),
        "max_detection_s": round(max(r["noticed_s"] for r in rows), 3),
        "billing_error_ms": summary_ms(r["error_s"] for r in rows),
        "max_abs_billing_error_s": round(max(abs(r["error_s"]) for r in rows), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lost", description=__doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument(
        "--interval",
        type=float,
        default=WorkerSettings.model_fields["watch_interval"].default,
        help="the watch's interval in seconds (default: SESSIONS_WATCH_INTERVAL's default)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.getLogger("temporalio").setLevel(logging.CRITICAL)  # each lost session logs an error
    if args.sessions < 1 or args.interval <= 0:
        parser.error("--sessions must be at least 1 and --interval above 0")
    result = asyncio.run(run(args.sessions, args.interval, args.seed))
    print(
        f"lost sandboxes: {result['ended_lost']}/{result['sessions']} sessions ended lost "
        f"({result['end_confirmed']} ends confirmed by the provider); watch every "
        f"{result['watch_interval_s']:g}s: detection p50 {result['detection_ms']['p50']:.0f} ms, "
        f"max {result['max_detection_s']:.2f} s; billing error max "
        f"{result['max_abs_billing_error_s'] * 1000:.1f} ms"
    )
    return 0 if result["ended_lost"] == result["sessions"] else 1


if __name__ == "__main__":
    sys.exit(main())
