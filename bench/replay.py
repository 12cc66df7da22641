"""Replay: the stored histories (tests/histories) replayed against today's workflow code."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from bench.stack import ROOT, BenchError
from common.codec import data_converter
from worker import workflow_runner
from workflows import SandboxSession, workflow_id_for
from workflows.reconciler import StraySandboxReconciler

WORKFLOWS = [SandboxSession, StraySandboxReconciler]
"""Every workflow class the worker registers: stored histories may be of any of them."""

HISTORIES = ROOT / "tests" / "histories"


def load_histories(directory: Path = HISTORIES) -> list[WorkflowHistory]:
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise BenchError(f"no histories to replay in {directory}")
    return [load_history(p) for p in paths]


def load_history(path: Path) -> WorkflowHistory:
    """A stored history under the workflow id it was recorded with (a session checks its id
    against its input's session id); the JSON keeps only the events, so a session's id comes
    from its start input, any other workflow's from the file name."""
    text = path.read_text()
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    payloads = started.get("input", {}).get("payloads", [])
    workflow_id = path.stem
    if started["workflowType"]["name"] == SandboxSession.__name__ and payloads:
        session = json.loads(base64.b64decode(payloads[0]["data"]))
        workflow_id = workflow_id_for(session["session_id"])
    return WorkflowHistory.from_json(workflow_id, text)


async def run_replay(rounds: int) -> dict[str, Any]:
    """Every stored history `rounds` times through one Replayer; histories (and events) per s."""
    histories = load_histories()
    # A fixed build id: otherwise every replay call hashes the code of every loaded module.
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
        build_id="bench",
    )

    async def stream() -> AsyncIterator[WorkflowHistory]:
        for _ in range(rounds):
            for h in histories:
                yield h

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
