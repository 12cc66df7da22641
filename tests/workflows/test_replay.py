"""Every stored history must replay against today's workflow code.

A change that breaks one is a non-determinism bug for sessions already running: guard it with
`workflow.patched` (README, "Changing the workflow"). Record the histories again with
`scripts/record-histories`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.worker import Replayer

from bench.replay import load_history
from common.codec import data_converter
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
        "continue_as_new_at_gate",
        "cancel_during_finish",
        "reconciler_pass",
        # Recorded before the session ended `lost` (they fail `SessionFailed`): kept, as
        # sessions of that time may still be running.
        # After: a lost sandbox found by an activity, or by the watch's hint, running or paused.
        "lost_at_resume",
        "lost_at_keep_alive",
        "lost_while_running",
        "lost_while_paused",
        # After the session published its gates, announced and audited them.
        "gate_authorised",
        "gate_context_rejected",
        "gate_reminder_timeout",
        "gate_notify_failed",
        "gate_continued_while_waiting",
        "gate_notify_rounds",
        # After the session handled E2B's lifetime cap and a sandbox E2B paused on its own.
        "lifetime_rollover",
        "found_paused_by_e2b",
    }
    assert expected <= names, f"missing histories: {sorted(expected - names)}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = load_history(path)
    replayer = Replayer(
        workflows=[SandboxSession, StraySandboxReconciler],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(history)
