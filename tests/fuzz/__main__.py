"""`python -m tests.fuzz --sessions N --seed S [--kills K]`: a fuzz campaign on a stack of its own
(a dev server from the `temporal` binary, the emulator, a SQLite ledger, worker processes).

Prints one summary line of counts, then each violation on one line; exits 1 if there is any.
The workers' logs and every session's messages (`fuzz-sessions.json`) stay in the work
directory, printed last (on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.fuzz.engine import CampaignConfig, run_campaign


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--sessions", type=int, default=60, help="session ids to start")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kills", type=int, default=2, help="worker SIGKILLs during the run")
    parser.add_argument("--concurrency", type=int, default=8, help="sessions driven at once")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--workdir", type=Path, help="logs, ledger, dev server database")
    parser.add_argument(
        "--verbose", action="store_true", help="also print the figures and the notes"
    )
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.kills < 0 or args.concurrency < 1 or args.workers < 1:
        parser.error("--sessions, --concurrency and --workers must be at least 1, --kills >= 0")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fuzz-"))
    cfg = CampaignConfig(
        sessions=args.sessions,
        seed=args.seed,
        kills=args.kills,
        concurrency=args.concurrency,
        workers=args.workers,
    )
    report = asyncio.run(run_campaign(cfg, workdir))
    print(report.summary())
    for violation in report.violations:
        print(violation.line())
    if args.verbose:
        print(report.figures_line())
        for note in report.notes:
            print(f"note: {note}")
    print(f"fuzz: logs and every session's messages in {workdir}", file=sys.stderr)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
