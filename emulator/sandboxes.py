"""Every sandbox and its lifecycle: create, pause, resume, timeouts, kill — with E2B's rules.

What E2B does (e2b-dev/infra, packages/api/internal): a run lasts at most the team's maximum
lifetime from its start (create or latest resume; `getMaxAllowedTTL` in
orchestrator/keep_alive.go); a timeout can only be set or extended on a RUNNING sandbox (a
paused one is not in the running store: 404; one pausing: 409); a pause is a state of its own
while the snapshot is taken (409 for a second pause, 409 for a timeout, connect and resume wait
for it to end); a resume starts a new run and counts against the concurrency limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import string
from collections.abc import Awaitable
from pathlib import Path

from .errors import EmulatorError, SandboxConflict, SandboxNotFound
from .limits import Governor, hours_or_seconds
from .processes import ProcessConfig
from .records import SandboxRecord, now
from .runtime import SANDBOX_HOME, NamespaceRuntime, ProcessRuntime, Runtime, RuntimeError_
from .sandbox import BASE_PATH, Phase, Sandbox
from .templates import Template

__all__ = ["BASE_PATH", "Sandbox", "SandboxManager"]

log = logging.getLogger("emulator")

_ALPHABET = string.ascii_lowercase + string.digits
CREATE_TIMEOUT_DEFAULT = 300
"""A create or connect without `timeout` (E2B's v2 spec default)."""
RESUME_TIMEOUT_DEFAULT = 15
REFRESH_MINIMUM = 15
"""E2B's SandboxTimeoutDefault: `POST /resume` without a timeout, and the least a refresh gives."""
CONNECT_ATTEMPTS = 3


def _new_id() -> str:
    return "i" + "".join(secrets.choice(_ALPHABET) for _ in range(19))


def changing_state(sandbox_id: str, phase: Phase) -> str:
    """E2B's utils.SandboxChangingStateMsg."""
    if phase == "pausing":
        return f'Sandbox "{sandbox_id}" is being paused'
    return f'Sandbox "{sandbox_id}" is in {phase} state'


class SandboxManager:
    """Every sandbox of this emulator, alive or not, and the timer that ends them."""

    def __init__(
        self,
        *,
        templates: dict[str, Template],
        data_dir: Path,
        isolated: bool,
        governor: Governor,
    ):
        self.templates = templates
        self.data_dir = data_dir
        self.isolated = isolated
        self.governor = governor
        self.sandboxes: dict[str, Sandbox] = {}
        self.records: dict[str, SandboxRecord] = {}
        self._idempotency: dict[str, tuple[str, str]] = {}
        """Idempotency-Key -> (the request's fingerprint, the sandbox made for it)."""
        self._idempotency_locks: dict[str, asyncio.Lock] = {}
        self._starting = 0
        self._tasks: set[asyncio.Task[bool]] = set()
        self.version = 0
        """Counts changes to the records, so the state file is written when they change."""

    def restore(self, records: dict[str, SandboxRecord]) -> None:
        """Records of an earlier run (from the state file): known, never live again."""
        for sandbox_id, record in records.items():
            if sandbox_id not in self.sandboxes:
                self.records[sandbox_id] = record
        self.version += 1

    # -- lookups -------------------------------------------------------------------------
    def get(self, sandbox_id: str) -> Sandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.phase == "killed":
            raise SandboxNotFound(sandbox_id)
        return sandbox

    def record(self, sandbox_id: str) -> SandboxRecord:
        record = self.records.get(sandbox_id)
        if record is None:
            raise SandboxNotFound(sandbox_id)
        return record.computed()

    def count(self, *phases: Phase) -> int:
        return sum(1 for s in self.sandboxes.values() if s.phase in phases)

    def live(self) -> int:
        """What E2B's concurrency limit counts: every sandbox not paused, starting ones too."""
        return self.count("running", "pausing", "resuming") + self._starting

    def _running(self, sandbox_id: str) -> Sandbox:
        """A sandbox whose timeout may change: 404 unless it exists and is not paused, 409
        while it pauses or resumes (E2B's KeepAliveFor)."""
        sandbox = self.get(sandbox_id)
        if sandbox.phase == "paused":
            raise SandboxNotFound(sandbox_id)
        if sandbox.phase != "running":
            raise SandboxConflict(changing_state(sandbox_id, sandbox.phase))
        return sandbox

    def _timeout(self, timeout: int | None, default: int) -> int:
        """A create, connect or resume timeout: > 0 and at most the maximum lifetime."""
        if timeout is None:
            return default
        if timeout <= 0:
            raise EmulatorError(400, "Timeout must be greater than 0")
        cap = self.governor.current.max_lifetime
        if timeout > cap:
            raise EmulatorError(400, f"Timeout cannot be greater than {hours_or_seconds(cap)}")
        return timeout

    # -- create --------------------------------------------------------------------------
    async def create(
        self,
        *,
        template_id: str,
        timeout: int | None,
        envs: dict[str, str],
        metadata: dict[str, str],
        auto_pause: bool,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> Sandbox:
        """A new running sandbox, or for a known idempotency key the one made for it: 422 when
        the key came with another request, 409 when its sandbox is gone."""
        if idempotency_key is None:
            return await self._create(template_id, timeout, envs, metadata, auto_pause)
        lock = self._idempotency_locks.setdefault(idempotency_key, asyncio.Lock())
        async with lock:  # a concurrent replay waits for the first to finish
            known = self._idempotency.get(idempotency_key)
            if known is not None:
                return self._replay(idempotency_key, fingerprint, *known)
            sandbox = await self._create(template_id, timeout, envs, metadata, auto_pause)
            self._idempotency[idempotency_key] = (fingerprint, sandbox.sandbox_id)
            return sandbox

    def _replay(self, key: str, fingerprint: str, first: str, sandbox_id: str) -> Sandbox:
        if fingerprint != first:
            raise EmulatorError(
                422,
                f"Idempotency-Key '{key}' was already used with a different request",
                error_code="idempotency_request_mismatch",
            )
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.phase == "killed":
            raise SandboxConflict(
                f"Idempotency-Key '{key}' created sandbox '{sandbox_id}', which no longer "
                "exists; create with a new key"
            )
        return sandbox

    async def _create(
        self,
        template_id: str,
        timeout: int | None,
        envs: dict[str, str],
        metadata: dict[str, str],
        auto_pause: bool,
    ) -> Sandbox:
        template = self.templates.get(template_id)
        if template is None:
            raise EmulatorError(404, f"template '{template_id}' not found")
        seconds = self._timeout(timeout, CREATE_TIMEOUT_DEFAULT)
        self.governor.check_running(self.live())
        self._starting += 1  # counted until it runs: concurrent creates cannot overshoot
        try:
            sandbox = await self._start(template, seconds, envs, metadata, auto_pause)
        finally:
            self._starting -= 1
        self.sandboxes[sandbox.sandbox_id] = sandbox
        self.records[sandbox.sandbox_id] = sandbox.record
        self.version += 1
        log.info("sandbox %s created from template %s", sandbox.sandbox_id, template_id)
        return sandbox

    async def _start(
        self,
        template: Template,
        seconds: int,
        envs: dict[str, str],
        metadata: dict[str, str],
        auto_pause: bool,
    ) -> Sandbox:
        sandbox_id = _new_id()
        root = self.data_dir / sandbox_id
        runtime: Runtime = (NamespaceRuntime if self.isolated else ProcessRuntime)(root, sandbox_id)
        sandbox = Sandbox(
            sandbox_id, template, runtime, envs=envs, metadata=metadata, timeout=seconds,
            auto_pause=auto_pause, max_lifetime=self.governor.current.max_lifetime,
        )  # fmt: skip
        try:
            runtime.prepare()
            for dest, src in template.files.items():
                target = runtime.private_path(dest)
                assert target is not None
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
                target.chmod(0o755)
            await runtime.start()
            if template.start_cmd:
                # On E2B the start command ran at template build and the sandbox resumes from
                # that snapshot: it never sees the envs given at create (E2B's docs, "Start &
                # ready commands"); commands started after create do (envd's /init).
                await sandbox.start_process(
                    ProcessConfig(
                        cmd="/bin/bash", args=["-l", "-c", template.start_cmd], envs={},
                        cwd=SANDBOX_HOME, tag="start_cmd",
                    ),
                    env=sandbox.command_env({}, create_envs=False),
                )  # fmt: skip
        except (RuntimeError_, OSError) as e:
            await runtime.destroy()
            raise EmulatorError(500, f"sandbox could not be started: {e}") from e
        return sandbox

    # -- pause and resume ----------------------------------------------------------------
    async def _settle(self, work: Awaitable[bool]) -> bool:
        """Run a transition to its end even if the caller goes away (a cancelled request must
        not leave a sandbox half paused)."""
        task: asyncio.Task[bool] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def pause(self, sandbox_id: str, reason: str = "api") -> None:
        """Freeze at once (envd answers 502 from now), answer when the pause has completed."""
        sandbox = self.get(sandbox_id)
        async with sandbox.lock:
            if sandbox.phase == "paused":
                raise SandboxConflict(
                    f"Error pausing sandbox - sandbox '{sandbox_id}' is already paused"
                )
            if sandbox.phase != "running":
                raise SandboxConflict(
                    f"Sandbox '{sandbox_id}' cannot be paused while in '{sandbox.phase}' state"
                )
            sandbox.phase = "pausing"
            sandbox.settled.clear()
            sandbox.cut_streams(f"sandbox {sandbox_id} was paused while the stream was open")
            sandbox.runtime.freeze()
        if not await self._settle(self._finish_pause(sandbox, reason)):
            raise SandboxNotFound(sandbox_id)  # killed while pausing

    async def _finish_pause(self, sandbox: Sandbox, reason: str) -> bool:
        await asyncio.sleep(self.governor.current.pause_seconds)
        async with sandbox.lock:
            if sandbox.phase != "pausing":
                return False
            sandbox.phase = "paused"
            sandbox.paused_at = now()
            sandbox.record.state = "paused"
            sandbox.record.add("paused", reason)
            sandbox.settled.set()
            self.version += 1
        log.info("sandbox %s paused (%s)", sandbox.sandbox_id, reason)
        return True

    async def _resume(self, sandbox: Sandbox, seconds: int, auto_pause: bool | None) -> bool:
        """Resume a paused sandbox (False: it was not paused any more when asked)."""
        async with sandbox.lock:
            if sandbox.phase != "paused":
                return False
            self.governor.check_running(self.live())
            sandbox.phase = "resuming"
            sandbox.settled.clear()
        if not await self._settle(self._finish_resume(sandbox, seconds, auto_pause)):
            raise SandboxNotFound(sandbox.sandbox_id)  # killed while resuming
        return True

    async def _finish_resume(self, sandbox: Sandbox, seconds: int, auto_pause: bool | None) -> bool:
        await asyncio.sleep(self.governor.current.resume_seconds)
        async with sandbox.lock:
            if sandbox.phase != "resuming":
                return False
            sandbox.runtime.thaw()
            sandbox.phase = "running"
            sandbox.start_run(seconds, self.governor.current.max_lifetime)
            if auto_pause is not None:
                sandbox.auto_pause = sandbox.record.auto_pause = auto_pause
            sandbox.record.state = "running"
            sandbox.record.add("resumed")
            sandbox.settled.set()
            self.version += 1
        log.info("sandbox %s resumed", sandbox.sandbox_id)
        return True

    async def connect(self, sandbox_id: str, timeout: int | None) -> tuple[Sandbox, bool]:
        """E2B's connect: extend a running sandbox (only ever longer), wait out a pause or
        resume under way, resume a paused one. True: it was resumed."""
        seconds = self._timeout(timeout, CREATE_TIMEOUT_DEFAULT)
        for _ in range(CONNECT_ATTEMPTS):
            sandbox = self.get(sandbox_id)
            if sandbox.phase == "running":
                sandbox.keep_alive(seconds, allow_shorter=False)
                self.version += 1
                return sandbox, False
            if sandbox.phase == "paused":
                if await self._resume(sandbox, seconds, None):
                    return sandbox, True
                continue
            await sandbox.settled.wait()
        sandbox = self.get(sandbox_id)
        raise SandboxConflict(changing_state(sandbox_id, sandbox.phase))

    async def resume(self, sandbox_id: str, timeout: int | None, auto_pause: bool | None) -> None:
        """E2B's `POST /resume`: a paused sandbox only (409 when running); waits out a pause."""
        seconds = self._timeout(timeout, RESUME_TIMEOUT_DEFAULT)
        sandbox = self.get(sandbox_id)
        if sandbox.phase == "pausing":
            await sandbox.settled.wait()
            sandbox = self.get(sandbox_id)
        if sandbox.phase == "running":
            raise SandboxConflict(f"Sandbox {sandbox_id} is already running")
        if not await self._resume(sandbox, seconds, auto_pause):
            raise SandboxConflict(changing_state(sandbox_id, sandbox.phase))

    # -- timeouts ------------------------------------------------------------------------
    async def set_timeout(self, sandbox_id: str, timeout: int) -> None:
        """end = now + timeout (shorter allowed; 0 ends it at once), within the run's cap."""
        sandbox = self._running(sandbox_id)
        sandbox.keep_alive(timeout, allow_shorter=True)
        sandbox.record.note_timeout(sandbox.end_at)
        self.version += 1

    async def refresh(self, sandbox_id: str, duration: int | None) -> None:
        """Extend only, by at least E2B's 15 s, within the run's cap."""
        sandbox = self._running(sandbox_id)
        if sandbox.keep_alive(max(duration or 0, REFRESH_MINIMUM), allow_shorter=False):
            self.version += 1

    # -- kill ----------------------------------------------------------------------------
    async def kill(self, sandbox_id: str, reason: str = "api") -> None:
        sandbox = self.get(sandbox_id)
        async with sandbox.lock:
            if sandbox.phase == "killed":
                raise SandboxNotFound(sandbox_id)
            sandbox.phase = "killed"
            sandbox.record.state = "killed"
            sandbox.record.add("killed", reason)
            sandbox.settled.set()
            self.version += 1
            self.sandboxes.pop(sandbox_id, None)
            sandbox.cut_streams(f"The sandbox {sandbox_id} was not found: it was killed")
        await sandbox.runtime.destroy()
        log.info("sandbox %s killed (%s)", sandbox_id, reason)

    async def expire_due(self) -> None:
        """End every running sandbox past its end: pause it (autoPause, in the background, as
        a pause takes time) or kill it."""
        current = now()
        for sandbox in list(self.sandboxes.values()):
            if sandbox.phase != "running" or sandbox.end_at > current:
                continue
            if sandbox.auto_pause:
                task = asyncio.create_task(self._pause_quietly(sandbox.sandbox_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                with contextlib.suppress(EmulatorError):
                    await self.kill(sandbox.sandbox_id, reason="timeout")

    async def _pause_quietly(self, sandbox_id: str) -> bool:
        with contextlib.suppress(EmulatorError):
            await self.pause(sandbox_id, reason="timeout")
        return True

    async def run_timer(self, tick: float) -> None:
        while True:
            await asyncio.sleep(tick)
            try:
                await self.expire_due()
            except Exception:  # the timer must never die
                log.exception("sandbox timer failed")

    async def kill_all(self, reason: str) -> None:
        await asyncio.gather(
            *(self.kill(sid, reason) for sid in list(self.sandboxes)), return_exceptions=True
        )

    async def reset(self) -> None:
        await self.kill_all("reset")
        self.records.clear()
        self.version += 1
        self._idempotency.clear()
        self._idempotency_locks.clear()
