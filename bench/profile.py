"""Where each worker's CPU goes: py-spy samples of both workers, split by what the code is for.

`python -m bench floor --profile` samples the two worker processes (ours and the floor's) with
py-spy while they run the highest load, only while they hold the GIL (so idle waits count for
nothing), and splits each worker's CPU per session into the parts below by the innermost frame
that names one. The gap between the two columns is then readable: the same Temporal SDK
machinery run for more tasks and events, or work only ours does (ledger, notices, telemetry).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.stack import BenchError

PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (part, path fragments of a frame's file); the innermost frame that matches decides.
    ("ledger (SQLAlchemy, SQLite)",
     ("/sqlalchemy/", "/aiosqlite/", "/ledger/", "floor_session.py:record_cost_row")),
    ("sandbox calls (e2b SDK, HTTP)",
     ("/e2b/", "/httpx/", "/httpcore/", "/pyqwest/", "/connectrpc/", "/provider/",
      *(f"floor_session.py:{name}" for name in ("create_sandbox", "run_command", "pause_sandbox",
                                                  "resume_sandbox", "kill_sandbox", "_sdk")))),
    ("gate notices", ("activities/notify.py",)),
    ("telemetry (OpenTelemetry, log context)", ("/opentelemetry/", "/telemetry/")),
    ("pydantic validation and JSON", ("/pydantic/", "/pydantic_core/", "common/payloads.py")),
    ("workflow code", ("/workflows/", "floor_session.py")),
    ("Temporal SDK: workflow tasks (sandbox, activations, payload visitors)",
     ("/temporalio/worker/workflow_sandbox/", "/temporalio/worker/_workflow",
      "/temporalio/bridge/", "/temporalio/worker/_command_aware")),
    ("Temporal SDK: activity tasks", ("/temporalio/worker/_activity",)),
    ("Temporal SDK: payload conversion", ("/temporalio/converter/",)),
)  # fmt: skip
OTHER = "other (event loop, threads, logging)"


def py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise BenchError("--profile needs py-spy: pip install py-spy (it is in the bench extra)")
    return found


class Sampler:
    """py-spy recording one process (GIL holders only) until `stop()`; folded stacks out."""

    def __init__(self, pid: int, out: Path, *, rate: int = 250) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [py_spy(), "record", "-p", str(pid), "-r", str(rate), "--gil", "--nonblocking",
             "-f", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    def stop(self) -> Counter[str]:
        """Stop recording (py-spy writes its file on SIGINT); samples per part."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(2)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise BenchError("py-spy did not stop within 30 s") from None
        if not self.out.exists():
            reason = (err or b"").decode(errors="replace").strip().splitlines()
            raise BenchError(f"py-spy recorded nothing: {reason[-1] if reason else 'no output'}")
        return split(self.out.read_text())


def part_of(stack: str) -> str:
    """The part a folded stack (`frame;frame;...`, innermost last) belongs to."""
    frames = stack.split(";")
    for frame in reversed(frames):
        where = "/" + frame.replace(" (", "|").rsplit("|", 1)[-1]  # of "func (path:line)"
        name = frame.split(" (", 1)[0]
        for part, fragments in PARTS:
            for fragment in fragments:
                file, _, function = fragment.partition(":")
                if file in where and (not function or function == name):
                    return part
    return OTHER


def split(folded: str) -> Counter[str]:
    parts: Counter[str] = Counter()
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            parts[part_of(stack)] += int(count)
    return parts


def per_session_ms(parts: Counter[str], cpu_ms_per_session: float) -> dict[str, float]:
    """Each part's share of the samples, as milliseconds of the worker's CPU per session."""
    total = sum(parts.values())
    if not total:
        return {}
    return {
        part: round(cpu_ms_per_session * parts[part] / total, 2)
        for part in [name for name, _ in PARTS] + [OTHER]
    }


def profile_table(profile: dict[str, Any]) -> list[list[str]]:
    """Rows: part, ours, floor, ours - floor (ms of worker CPU per session)."""
    ours, floor = profile["ours_ms_per_session"], profile["floor_ms_per_session"]
    rows = []
    for part in ours:
        a, b = ours[part], floor.get(part, 0.0)
        rows.append([part, f"{a:g}", f"{b:g}", f"{a - b:+.2f}"])
    rows.append(["total", f"{sum(ours.values()):.2f}", f"{sum(floor.values()):.2f}",
                 f"{sum(ours.values()) - sum(floor.values()):+.2f}"])  # fmt: skip
    return rows
