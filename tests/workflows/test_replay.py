"""Every stored history must replay against today's workflow code.

A change that breaks one is a non-determinism bug for sessions already running: guard it with
`workflow.patched` (README, "Changing the workflow"). Record the histories again with
`scripts/record-histories`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import workflow_runner
from workflows import SandboxSession, StraySandboxReconciler

pytestmark = pytest.mark.fast  # replays stored histories, no server

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_histories_cover_every_path() -> None:
    names = {p.stem for p in HISTORIES}
    expected = {
        "happy_path",
        "two_gates",
        "reject",
        "exec_refused_while_paused",
        "gate_timeout_reject",
        "gate_timeout_terminate",
        "three_day_gate",
        "cancel_running",
        "cancel_paused",
        "sandbox_lost_while_paused",
        "failure_after_provision",
        "continue_as_new",
        "reconciler_pass",
    }
    assert expected <= names, f"missing histories: {sorted(expected - names)}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[SandboxSession, StraySandboxReconciler],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(history)
