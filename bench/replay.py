"""Replay: the stored histories (tests/histories) replayed against today's workflow code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from bench.stack import ROOT, BenchError
from worker import workflow_runner
from workflows import SandboxSession
from workflows.reconciler import StraySandboxReconciler

WORKFLOWS = [SandboxSession, StraySandboxReconciler]
"""Every workflow class the worker registers: stored histories may be of any of them."""

HISTORIES = ROOT / "tests" / "histories"


def load_histories(directory: Path = HISTORIES) -> list[WorkflowHistory]:
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise BenchError(f"no histories to replay in {directory}")
    return [WorkflowHistory.from_json(p.stem, p.read_text()) for p in paths]


async def run_replay(rounds: int) -> dict[str, Any]:
    """Every stored history `rounds` times through one Replayer; histories (and events) per s."""
    histories = load_histories()
    # A fixed build id: otherwise every replay call hashes the code of every loaded module.
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
        build_id="bench",
    )

    async def stream() -> AsyncIterator[WorkflowHistory]:
        for r in range(rounds):
            for h in histories:
                yield WorkflowHistory(workflow_id=f"{h.workflow_id}-{r}", events=h.events)

    await replayer.replay_workflow(histories[0])  # warm up: imports, sandbox
    t0 = time.perf_counter()
    results = await replayer.replay_workflows(stream())
    seconds = time.perf_counter() - t0
    count = rounds * len(histories)
    events = rounds * sum(len(h.events) for h in histories)
    failures = [k for k, v in results.replay_failures.items() if v is not None]
    return {
        "histories": len(histories),
        "rounds": rounds,
        "replayed": count,
        "failures": len(failures),
        "seconds": round(seconds, 3),
        "histories_per_second": round(count / seconds, 2),
        "events_per_second": round(events / seconds, 1),
        "mean_events_per_history": round(events / count, 1),
    }
