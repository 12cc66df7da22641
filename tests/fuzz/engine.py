"""The fuzz engine's entry points, re-exported from the modules that hold them:

- `tests/fuzz/payloads.py`: the secret marker, raw payloads, hostile values, `Send`;
- `tests/fuzz/generator.py`: `Generator`, hostile messages and starts from one seed;
- `tests/fuzz/stack.py`: `FuzzStack` and `fuzz_stack` (dev server, emulator, ledger, workers);
- `tests/fuzz/drive.py`: `SessionDriver`, one session from its start to its ending;
- `tests/fuzz/invariants.py`: `INVARIANTS`, `Violation`, and the checks after a campaign;
- `tests/fuzz/campaign.py`: `CampaignConfig`, `Report`, `run_campaign`.
"""

from __future__ import annotations

from tests.fuzz.campaign import CampaignConfig, Report, run_campaign
from tests.fuzz.generator import Generator
from tests.fuzz.invariants import INVARIANTS, Violation
from tests.fuzz.stack import FuzzStack, fuzz_stack

__all__ = [
    "INVARIANTS",
    "CampaignConfig",
    "FuzzStack",
    "Generator",
    "Report",
    "Violation",
    "fuzz_stack",
    "run_campaign",
]
