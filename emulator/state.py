"""The state file: the emulator's records outlive it, so a restart still knows when old
sandboxes died.

Written atomically (a temporary file, then a rename) whenever the records change, every
`HEARTBEAT_SECONDS` while any sandbox lives, and at shutdown. On start, every sandbox the file
shows running or paused died with the previous emulator: it is recorded killed (reason
`shutdown`) at the file's last write, the last moment the previous emulator was known to run.
Records killed more than 7 days ago (E2B's event retention) are dropped, so the file stays
bounded. Sandboxes themselves (processes, files) never survive a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from common.files import write_atomically

from .errors import EmulatorError
from .events import RETENTION
from .records import SandboxRecord, Transition, now
from .sandboxes import SandboxManager

log = logging.getLogger("emulator")

HEARTBEAT_SECONDS = 0.5
"""While sandboxes live, the file is rewritten at least this often: after a crash (SIGKILL,
power loss) their end is known to within this much."""

FORMAT_VERSION = 1


class StateFile(BaseModel):
    version: int = FORMAT_VERSION
    saved_at: datetime
    """When this was written: the last moment the emulator that wrote it was known to run."""
    records: list[SandboxRecord]


def _retained(record: SandboxRecord, at: datetime) -> bool:
    killed = record.killed_at
    return killed is None or killed >= at - RETENTION


def load(path: Path) -> dict[str, SandboxRecord]:
    """The records in `path` (none when it does not exist), every live one ended at the last
    write. An unreadable file stops the start: records silently lost would be bills lost."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise EmulatorError(500, f"cannot read the state file {path}: {e.strerror}") from e
    try:
        state = StateFile.model_validate_json(raw)
    except ValidationError as e:
        raise EmulatorError(
            500,
            f"the state file {path} is not the emulator's ({e.error_count()} problems); "
            "move it away to start without the old records",
        ) from e
    restored: dict[str, SandboxRecord] = {}
    for record in state.records:
        if record.state != "killed":
            record.transitions.append(
                Transition(event="killed", at=state.saved_at, reason="shutdown")
            )
            record.state = "killed"
        if _retained(record, now()):
            restored[record.sandbox_id] = record.computed()
    return restored


class StateKeeper:
    """Writes the manager's records to the state file as they change (one writer at a time)."""

    def __init__(self, path: Path, manager: SandboxManager) -> None:
        self.path = path
        self.manager = manager
        self._lock = asyncio.Lock()
        self._saved_version = -1
        self._saved_monotonic = 0.0
        self._failing = False

    def restore(self) -> int:
        """Load the previous run's records into the manager; returns how many."""
        records = load(self.path)
        self.manager.restore(records)
        return len(records)

    async def save(self) -> None:
        """Snapshot the records now and write them; a failure is logged, never raised."""
        async with self._lock:
            version = self.manager.version
            at = now()
            state = StateFile(
                saved_at=at,
                records=[r.computed() for r in self.manager.records.values() if _retained(r, at)],
            )
            data = state.model_dump_json().encode()
            try:
                await asyncio.to_thread(write_atomically, self.path, data)
            except OSError as e:
                if not self._failing:
                    log.error("cannot write the state file %s: %s", self.path, e.strerror or e)
                self._failing = True
                return
            if self._failing:
                log.warning("the state file %s is written again", self.path)
            self._failing = False
            self._saved_version = version
            self._saved_monotonic = time.monotonic()

    def due(self) -> bool:
        if self.manager.version != self._saved_version:
            return True
        return bool(self.manager.sandboxes) and (
            time.monotonic() - self._saved_monotonic >= HEARTBEAT_SECONDS
        )

    async def run(self, tick: float) -> None:
        """Write whenever due, checking every `tick` seconds, until cancelled."""
        while True:
            if self.due():
                await self.save()
            await asyncio.sleep(tick)
