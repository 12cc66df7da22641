"""`python -m bench.floor_worker`: the hand-written session's worker, a plain `Worker` with
the SDK's defaults, configured by the environment the bench gives it (like `worker.py`)."""

from __future__ import annotations

import asyncio
import os
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from bench.floor_session import ACTIVITIES, FloorSession


async def main() -> None:
    client = await Client.connect(
        os.environ["TEMPORAL_ADDRESS"], namespace=os.environ.get("TEMPORAL_NAMESPACE", "default")
    )
    cached = os.environ.get("SESSIONS_MAX_CACHED_WORKFLOWS")
    worker = Worker(
        client,
        task_queue=os.environ["SESSIONS_TASK_QUEUE"],
        workflows=[FloorSession],
        activities=ACTIVITIES,
        max_cached_workflows=int(cached) if cached else 2000,  # the session worker's default
        max_concurrent_activities=200,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
