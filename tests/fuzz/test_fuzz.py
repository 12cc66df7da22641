"""A small fuzz campaign in the suite: random and targeted hostile traffic with a worker
SIGKILL, then every invariant of tests/fuzz/invariants.py (no wedged workflow, no stray, lost,
doubled, phantom or overbilled sandbox, no session reaching another's sandbox, no leaked
secret, every invalid start refused as `InvalidInput`).

`python -m tests.fuzz --sessions N --seed S --kills K` runs a longer campaign on its own stack.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.fuzz.engine import CampaignConfig, run_campaign

SMALL = CampaignConfig(sessions=30, seed=7, kills=1, concurrency=6, messages=(15, 35))
"""20-60 s on two cores (longer while sessions wedge): about ten running sessions with their
gates, execs and racing endings, a dozen invalid starts, forged and borderline starts, one
worker SIGKILLed mid-run."""


async def test_small_campaign_breaks_no_invariant(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = temporal_env.client.service_client.config.target_host
    report = await run_campaign(SMALL, tmp_path, address=address)
    lines = [report.summary(), *(v.line() for v in report.violations)]
    notes = [f"note: {note}" for note in report.notes]
    print("\n" + "\n".join([*lines, report.figures_line(), *notes]))
    assert report.kills == SMALL.kills
    assert not report.violations, "\n".join([*lines, f"sessions' messages: {tmp_path}"])
