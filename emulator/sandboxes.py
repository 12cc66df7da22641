"""Live sandboxes and their lifecycle: create, pause, resume, timeouts, kill."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import string
from datetime import timedelta
from pathlib import Path

from .errors import EmulatorError, SandboxConflict, SandboxNotFound
from .processes import ManagedProcess, ProcessConfig
from .records import SandboxRecord, now
from .runtime import SANDBOX_HOME, NamespaceRuntime, ProcessRuntime, Runtime, RuntimeError_
from .templates import Template

log = logging.getLogger("emulator")

_ALPHABET = string.ascii_lowercase + string.digits
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _new_id() -> str:
    return "i" + "".join(secrets.choice(_ALPHABET) for _ in range(19))


class Sandbox:
    """One live sandbox: its runtime (namespaces or processes), its processes and its clock."""

    def __init__(
        self,
        sandbox_id: str,
        template: Template,
        runtime: Runtime,
        *,
        envs: dict[str, str],
        metadata: dict[str, str],
        timeout: int,
        auto_pause: bool,
    ):
        self.sandbox_id = sandbox_id
        self.template = template
        self.runtime = runtime
        self.envs = envs
        self.metadata = metadata
        self.auto_pause = auto_pause
        self.access_token = secrets.token_urlsafe(24)
        self.started_at = now()
        self.end_at = self.started_at + timedelta(seconds=timeout)
        self.state: str = "running"
        self.processes: dict[int, ManagedProcess] = {}
        self.lock = asyncio.Lock()
        self.record = SandboxRecord(
            sandbox_id=sandbox_id,
            template_id=template.template_id,
            metadata=metadata,
            auto_pause=auto_pause,
            created_at=self.started_at,
            end_at=self.end_at,
        )
        self.record.add("created")

    def set_end(self, seconds: int) -> None:
        self.end_at = now() + timedelta(seconds=seconds)
        self.record.end_at = self.end_at

    def command_env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": BASE_PATH,
            "HOME": SANDBOX_HOME,
            "USER": "user",
            "LOGNAME": "user",
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "E2B_SANDBOX": "true",
            "E2B_SANDBOX_ID": self.sandbox_id,
            "E2B_TEMPLATE_ID": self.template.template_id,
        }
        env.update(self.template.envs)
        env.update(self.envs)
        env.update(extra or {})
        return env

    async def start_process(self, config: ProcessConfig) -> ManagedProcess:
        if config.tag is not None and any(
            p.config.tag == config.tag for p in self.processes.values() if p.running
        ):
            raise EmulatorError(409, f"a process with tag {config.tag!r} is already running")
        spawned = await self.runtime.spawn(
            [config.cmd, *config.args],
            self.command_env(config.envs),
            config.cwd or SANDBOX_HOME,
            config.stdin,
        )
        process = ManagedProcess(spawned=spawned, config=config)
        process.start()
        self.processes[process.pid] = process
        # Forget finished processes now and then so a long sandbox doesn't grow without bound.
        if len(self.processes) > 256:
            self.processes = {k: p for k, p in self.processes.items() if p.running}
        return process

    def find_process(self, pid: int | None = None, tag: str | None = None) -> ManagedProcess | None:
        for p in self.processes.values():
            if p.running and ((pid is not None and p.pid == pid) or (tag and p.config.tag == tag)):
                return p
        return None

    def running_processes(self) -> list[ManagedProcess]:
        return [p for p in self.processes.values() if p.running]

    def cut_streams(self, message: str) -> None:
        for p in self.processes.values():
            p.cut_streams(message)


class SandboxManager:
    """Every sandbox of this emulator, alive or not, and the timer that ends them."""

    def __init__(
        self,
        *,
        templates: dict[str, Template],
        data_dir: Path,
        isolated: bool,
        max_lifetime: int,
    ):
        self.templates = templates
        self.data_dir = data_dir
        self.isolated = isolated
        self.max_lifetime = max_lifetime
        self.sandboxes: dict[str, Sandbox] = {}
        self.records: dict[str, SandboxRecord] = {}
        self._idempotency: dict[str, str] = {}
        self._idempotency_locks: dict[str, asyncio.Lock] = {}
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
        if sandbox is None:
            raise SandboxNotFound(sandbox_id)
        return sandbox

    def knows_idempotency_key(self, key: str) -> bool:
        return key in self._idempotency

    def record(self, sandbox_id: str) -> SandboxRecord:
        record = self.records.get(sandbox_id)
        if record is None:
            raise SandboxNotFound(sandbox_id)
        return record.computed()

    def _check_timeout(self, timeout: int | None, default: int = 300) -> int:
        if timeout is None:
            return default
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise EmulatorError(400, "timeout must be a non-negative integer number of seconds")
        if timeout > self.max_lifetime:
            raise EmulatorError(
                400, f"timeout {timeout}s exceeds the maximum sandbox lifetime {self.max_lifetime}s"
            )
        return timeout

    # -- lifecycle -----------------------------------------------------------------------
    async def create(
        self,
        *,
        template_id: str,
        timeout: int | None,
        envs: dict[str, str],
        metadata: dict[str, str],
        auto_pause: bool,
        idempotency_key: str | None = None,
    ) -> Sandbox | SandboxRecord:
        """A new running sandbox, or for a known idempotency key the one made for it."""
        if idempotency_key is not None:
            lock = self._idempotency_locks.setdefault(idempotency_key, asyncio.Lock())
            async with lock:
                existing = self._idempotency.get(idempotency_key)
                if existing is not None:
                    return self.sandboxes.get(existing) or self.records[existing]
                sandbox = await self._create(template_id, timeout, envs, metadata, auto_pause)
                self._idempotency[idempotency_key] = sandbox.sandbox_id
                return sandbox
        return await self._create(template_id, timeout, envs, metadata, auto_pause)

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
        seconds = self._check_timeout(timeout)
        sandbox_id = _new_id()
        root = self.data_dir / sandbox_id
        runtime: Runtime = (NamespaceRuntime if self.isolated else ProcessRuntime)(root, sandbox_id)
        sandbox = Sandbox(
            sandbox_id,
            template,
            runtime,
            envs=envs,
            metadata=metadata,
            timeout=seconds,
            auto_pause=auto_pause,
        )
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
                await sandbox.start_process(
                    ProcessConfig(
                        cmd="/bin/bash", args=["-l", "-c", template.start_cmd], envs={},
                        cwd=SANDBOX_HOME, tag="start_cmd",
                    )
                )  # fmt: skip
        except (RuntimeError_, OSError) as e:
            await runtime.destroy()
            raise EmulatorError(500, f"sandbox could not be started: {e}") from e
        self.sandboxes[sandbox_id] = sandbox
        self.records[sandbox_id] = sandbox.record
        self.version += 1
        log.info("sandbox %s created from template %s", sandbox_id, template_id)
        return sandbox

    async def pause(self, sandbox_id: str, reason: str = "api") -> None:
        sandbox = self.get(sandbox_id)
        async with sandbox.lock:
            if sandbox.state == "paused":
                raise SandboxConflict(f"sandbox {sandbox_id} is already paused")
            self._require_alive(sandbox)
            sandbox.state = "paused"
            sandbox.record.state = "paused"
            sandbox.cut_streams(f"sandbox {sandbox_id} was paused while the stream was open")
            sandbox.runtime.freeze()
            sandbox.record.add("paused", reason)
            self.version += 1
        log.info("sandbox %s paused (%s)", sandbox_id, reason)

    async def resume(self, sandbox_id: str, timeout: int | None, *, only_paused: bool) -> bool:
        """Resume a paused sandbox (True) or, unless `only_paused`, extend a running one (False)."""
        sandbox = self.get(sandbox_id)
        seconds = self._check_timeout(timeout)
        async with sandbox.lock:
            self._require_alive(sandbox)
            if sandbox.state == "running":
                if only_paused:
                    raise SandboxConflict(f"sandbox {sandbox_id} is already running")
                if now() + timedelta(seconds=seconds) > sandbox.end_at:
                    sandbox.set_end(seconds)
                return False
            sandbox.runtime.thaw()
            sandbox.state = "running"
            sandbox.record.state = "running"
            sandbox.set_end(seconds)
            sandbox.record.add("resumed")
            self.version += 1
        log.info("sandbox %s resumed", sandbox_id)
        return True

    async def set_timeout(self, sandbox_id: str, timeout: int) -> None:
        sandbox = self.get(sandbox_id)
        seconds = self._check_timeout(timeout)
        sandbox.set_end(seconds)
        sandbox.record.note_timeout(sandbox.end_at)
        self.version += 1

    async def refresh(self, sandbox_id: str, duration: int | None) -> None:
        sandbox = self.get(sandbox_id)
        seconds = self._check_timeout(duration, default=60)
        if now() + timedelta(seconds=seconds) > sandbox.end_at:
            sandbox.set_end(seconds)

    def _require_alive(self, sandbox: Sandbox) -> None:
        if sandbox.state == "killed":
            raise SandboxNotFound(sandbox.sandbox_id)

    async def kill(self, sandbox_id: str, reason: str = "api") -> None:
        sandbox = self.get(sandbox_id)
        async with sandbox.lock:
            if sandbox.state == "killed":
                raise SandboxNotFound(sandbox_id)
            sandbox.state = "killed"
            sandbox.record.state = "killed"
            sandbox.record.add("killed", reason)
            self.version += 1
            self.sandboxes.pop(sandbox_id, None)
            sandbox.cut_streams(f"The sandbox {sandbox_id} was not found: it was killed")
        await sandbox.runtime.destroy()
        log.info("sandbox %s killed (%s)", sandbox_id, reason)

    async def expire_due(self) -> None:
        """End every running sandbox past its timeout: pause it (autoPause) or kill it."""
        current = now()
        for sandbox in list(self.sandboxes.values()):
            if sandbox.state != "running" or sandbox.end_at > current:
                continue
            with contextlib.suppress(EmulatorError):
                if sandbox.auto_pause:
                    await self.pause(sandbox.sandbox_id, reason="timeout")
                else:
                    await self.kill(sandbox.sandbox_id, reason="timeout")

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
