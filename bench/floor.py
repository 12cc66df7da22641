"""Ours against the floor: the session beside the same session written by hand, in one run.

Both run as worker child processes (`python worker.py`, `python -m bench.floor_worker`) on one
dev server and one emulator, driven by the same client (`bench.lifecycle.drive`) in
alternating batches, so machine noise hits both alike. Each figure is reported as ours / floor.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from temporalio.client import Client

from bench.history import SessionTimeline, timeline
from bench.lifecycle import COMMAND, drive
from bench.profile import Sampler, per_session_ms, py_spy
from bench.stack import CpuMeter, Stack, WorkerProcess, gather_limited
from bench.stats import ratio, summary_ms
from provider.models import ExecResult, PoolConfig
from workflows import WORKFLOW_TYPE, ExecRequest, SessionInput, workflow_id_for

LOADS = (1, 6, 12)
STEPS = ("provision", "exec", "pause", "resume", "finish")


@dataclass
class Side:
    """One implementation: its worker process, task queue and how to start a session."""

    name: str
    client: Client
    worker: WorkerProcess
    queue: str
    sessions: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    wall: float = 0.0
    count: int = 0
    worker_cpu: float = 0.0
    server_cpu: float = 0.0
    wft_per_session: list[int] = field(default_factory=list)

    @property
    def ours(self) -> bool:
        return self.name == "ours"

    def workflow_id(self, session_id: str) -> str:
        return workflow_id_for(session_id) if self.ours else f"floor-{session_id}"

    async def start(self, session_id: str, **options: Any) -> Any:
        if self.ours:
            arg: Any = SessionInput(
                session_id=session_id, org_id="bench", pool=PoolConfig(template_id="base")
            )
        else:
            arg = {"session_id": session_id}
        return await self.client.start_workflow(
            WORKFLOW_TYPE if self.ours else "FloorSession",
            arg,
            id=self.workflow_id(session_id),
            task_queue=self.queue,
            **options,
        )

    async def session(self, session_id: str) -> tuple[float, SessionTimeline]:
        t0 = time.perf_counter()
        handle = await self.start(session_id)
        exec_arg: Any = ExecRequest(command=COMMAND) if self.ours else {"command": COMMAND}
        result_type = ExecResult if self.ours else dict
        elapsed, _, events = await drive(handle, t0, exec_arg=exec_arg, result_type=result_type)
        return elapsed, timeline(events)

    async def batch(self, n: int, concurrency: int, tag: str) -> None:
        meter = CpuMeter()
        meter.start()
        cpu0 = self.worker.cpu_seconds()
        t0 = time.perf_counter()
        runs = await gather_limited(
            concurrency, [partial(self.session, f"{tag}-{self.name}-{i}") for i in range(n)]
        )
        self.wall += time.perf_counter() - t0
        self.worker_cpu += self.worker.cpu_seconds() - cpu0
        self.server_cpu += meter.stop(n).get("dev_server_cpu_seconds") or 0.0
        self.count += n
        for seconds, tl in runs:
            self.sessions.append(seconds)
            for step in tl.steps:
                if step.step in STEPS:
                    self.steps[step.step].append(step.step_seconds)
            self.steps["finish"].append(tl.finish_seconds)
            self.wft_per_session.append(len(tl.wft_start_to_complete))

    def figures(self) -> dict[str, Any]:
        return {
            "sessions": self.count,
            "sessions_per_second": round(self.count / self.wall, 3) if self.wall else None,
            "worker_cpu_ms_per_session": round(self.worker_cpu * 1000 / self.count, 2),
            "dev_server_cpu_ms_per_session": round(self.server_cpu * 1000 / self.count, 2),
            "workflow_tasks_per_session": statistics.mean(self.wft_per_session),
            "session_ms": summary_ms(self.sessions),
            "step_ms": {s: summary_ms(self.steps[s]) for s in STEPS},
        }


def _ratios(ours: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessions_per_second": ratio(ours["sessions_per_second"], floor["sessions_per_second"]),
        "worker_cpu_ms_per_session": ratio(
            ours["worker_cpu_ms_per_session"], floor["worker_cpu_ms_per_session"]
        ),
        "session_p50": ratio(ours["session_ms"]["p50"], floor["session_ms"]["p50"]),
        "step_p50": {
            s: ratio(ours["step_ms"][s]["p50"], floor["step_ms"][s]["p50"]) for s in STEPS
        },
    }


async def _warm(side: Side) -> None:
    """Two sessions: the worker polling, its imports and connections made."""
    for i in range(2):
        task = asyncio.ensure_future(side.session(f"warm-{uuid.uuid4().hex[:6]}-{i}"))
        try:
            await side.worker.wait_for(f"the {side.name} worker to run a session", task.done, 60)
        finally:
            task.cancel()  # a no-op once done
        task.result()


async def _load(sides: list[Side], concurrency: int, rounds: int, n: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    fresh = [Side(s.name, s.client, s.worker, s.queue) for s in sides]
    for r in range(rounds):  # alternate who goes first: a drift in the machine hits both
        for side in fresh if r % 2 == 0 else reversed(fresh):
            await side.batch(n, concurrency, f"{tag}-{r}")
    ours, floor = (s.figures() for s in fresh)
    return {
        "concurrency": concurrency,
        "ours": ours,
        "floor": floor,
        "ours_to_floor": _ratios(ours, floor),
    }


def _states(stack: Stack, ids: set[str]) -> list[str]:
    return [record.state for record in stack.sandboxes(ids).values()]


async def _parked(stack: Stack, side: Side, k: int, hold: float) -> dict[str, Any]:
    """RSS growth of the worker with K sessions parked at a gate (all in its cache)."""
    ids = {f"parked-{side.name}-{uuid.uuid4().hex[:8]}" for _ in range(k)}
    await asyncio.sleep(1)
    idle = side.worker.rss_kib()
    await gather_limited(
        50,
        [
            partial(
                side.start,
                sid,
                start_signal="request_approval",
                start_signal_args=[{"gate": "review"}],
            )
            for sid in ids
        ],
    )

    def parked() -> bool:
        states = _states(stack, ids)
        return len(states) == k and all(s == "paused" for s in states)

    await side.worker.wait_for(f"{k} sessions to park ({side.name})", parked, 60 + k * 0.5)
    await asyncio.sleep(hold)
    rss = side.worker.rss_kib()
    await gather_limited(
        50,
        [
            partial(side.client.get_workflow_handle(side.workflow_id(sid)).signal, "finish", {})
            for sid in ids
        ],
    )
    await side.worker.wait_for(
        f"{k} parked sessions to end ({side.name})",
        lambda: all(s == "killed" for s in _states(stack, ids)),
        60 + k * 0.5,
    )
    return {
        "k": k,
        "rss_kib": {"idle": idle, "parked": rss},
        "rss_kib_per_cached_parked_session": round((rss - idle) / k, 2),
    }


async def run_floor(
    stack: Stack,
    *,
    loads: tuple[int, ...] = LOADS,
    rounds: int = 3,
    per_batch: int = 4,
    parked: int = 200,
    hold: float = 2.0,
    profile: bool = False,
) -> dict[str, Any]:
    """The side-by-side run: each load (sessions at once) in `rounds` alternating batches of
    `per_batch * load` sessions, then `parked` sessions parked on each worker. With `profile`,
    both workers are sampled (py-spy) through the highest load (`bench.profile`)."""
    if profile:
        py_spy()  # missing: one clear error before anything runs
    floor_db = stack.workdir / f"floor-{uuid.uuid4().hex[:6]}.db"
    queues = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("ours", "floor")}
    workers = {
        "ours": WorkerProcess(stack, queues["ours"], None),
        "floor": WorkerProcess(
            stack,
            queues["floor"],
            None,
            module="bench.floor_worker",
            extra_env={"FLOOR_SQLITE": str(floor_db)},
        ),
    }
    plain = Client(stack.client.service_client, namespace=stack.client.namespace)
    clients = {"ours": stack.client, "floor": plain}
    sides = [Side(name, clients[name], workers[name], queues[name]) for name in workers]
    try:
        for side in sides:
            await _warm(side)
        runs: dict[str, Any] = {}
        split: dict[str, Any] | None = None
        for c in sorted(loads):
            samplers = {}
            if profile and c == max(loads):
                samplers = {
                    side.name: Sampler(side.worker.proc.pid, stack.workdir / f"{side.name}.spy")
                    for side in sides
                }
            runs[f"c{c}"] = await _load(sides, c, rounds, per_batch * c)
            if samplers:
                split = {"at_once": c}
                for name, sampler in samplers.items():
                    cpu = runs[f"c{c}"][name]["worker_cpu_ms_per_session"]
                    split[f"{name}_ms_per_session"] = per_session_ms(sampler.stop(), cpu)
        rss = {side.name: await _parked(stack, side, parked, hold) for side in sides}
    finally:
        for worker in workers.values():
            await worker.stop()
    per = {n: rss[n]["rss_kib_per_cached_parked_session"] for n in rss}
    doc = {
        "rounds": rounds,
        "per_batch": per_batch,
        "loads": runs,
        "parked": {**rss, "ours_to_floor": ratio(per["ours"], per["floor"])},
    }
    if split is not None:
        doc["profile"] = split
    return doc
