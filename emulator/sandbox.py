"""One live sandbox: its runtime, its processes, its lifecycle phase and its clock."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from typing import Literal

from .errors import EmulatorError
from .processes import ManagedProcess, ProcessConfig
from .records import SandboxRecord, now
from .runtime import SANDBOX_HOME, Credentials, Runtime
from .templates import Template

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Phase = Literal["running", "pausing", "paused", "resuming", "killed"]
"""Where a sandbox is in its lifecycle; `pausing` and `resuming` take the tier's time."""


class Sandbox:
    """A sandbox the emulator runs. `phase` is the exact lifecycle step; `state` is what the
    outside sees, as on E2B: a pausing or resuming sandbox is `paused` (envd answers 502 for it,
    get/list report it paused), only a `running` one serves envd calls."""

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
        max_lifetime: int,
    ):
        self.sandbox_id = sandbox_id
        self.template = template
        self.runtime = runtime
        self.envs = envs
        self.metadata = metadata
        self.auto_pause = auto_pause
        self.access_token = secrets.token_urlsafe(24)
        self.phase: Phase = "running"
        self.started_at = now()
        """When the current run began (the create, or the latest resume)."""
        self.max_lifetime = max_lifetime
        """The run's maximum length, fixed when the run starts (E2B's MaxInstanceLength)."""
        self.end_at = self.started_at + timedelta(seconds=timeout)
        self.paused_at: datetime | None = None
        self.settled = asyncio.Event()
        """Set while no pause or resume is under way; transitional callers wait on it."""
        self.settled.set()
        self.processes: dict[int, ManagedProcess] = {}
        self.lock = asyncio.Lock()
        self.record = SandboxRecord(
            sandbox_id=sandbox_id,
            template_id=template.template_id,
            metadata=metadata,
            auto_pause=auto_pause,
            created_at=self.started_at,
            run_started_at=self.started_at,
            end_at=self.end_at,
        )
        self.record.add("created")

    @property
    def state(self) -> str:
        """`running`, `paused` (also while pausing or resuming) or `killed`."""
        if self.phase in ("running", "killed"):
            return self.phase
        return "paused"

    @property
    def run_end(self) -> datetime:
        """The latest this run may last: its start plus the maximum lifetime."""
        return self.started_at + timedelta(seconds=self.max_lifetime)

    def start_run(self, timeout: int, max_lifetime: int) -> None:
        """A resume: a new run, with a new start time and its own lifetime cap."""
        self.started_at = now()
        self.max_lifetime = max_lifetime
        self.paused_at = None
        self._set_end(self.started_at + timedelta(seconds=min(timeout, max_lifetime)))
        self.record.run_started_at = self.started_at

    def keep_alive(self, seconds: int, *, allow_shorter: bool) -> bool:
        """E2B's KeepAliveFor: end = now + seconds, never past the run's cap; 400 once the run
        is over its maximum lifetime. Without `allow_shorter` only extends. True: changed."""
        current = now()
        elapsed = (current - self.started_at).total_seconds()
        if elapsed > self.max_lifetime:
            raise EmulatorError(400, "Max instance length exceeded")
        end = current + timedelta(seconds=max(0.0, min(seconds, self.max_lifetime - elapsed)))
        if not allow_shorter and end <= self.end_at:
            return False
        self._set_end(end)
        return True

    def _set_end(self, end: datetime) -> None:
        self.end_at = end
        self.record.end_at = end

    def command_env(
        self, extra: dict[str, str] | None, *, create_envs: bool = True
    ) -> dict[str, str]:
        """A command's environment, as envd builds it: the basics, the template's envs, the
        envs given at create (`create_envs=False`: not for the template's start command, which
        on E2B ran when the template was built and was snapshotted running), then its own."""
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
        if create_envs:
            env.update(self.envs)
        env.update(extra or {})
        return env

    async def start_process(
        self,
        config: ProcessConfig,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        user: Credentials | None = None,
    ) -> ManagedProcess:
        """Start a process; `env`, `cwd` and `user` as envd resolved them for its caller
        (default: the sandbox's environment plus the command's, in `config.cwd` or the home,
        as E2B's `user`)."""
        if config.tag is not None and self.find_process(tag=config.tag) is not None:
            raise EmulatorError(409, f"a process with tag {config.tag!r} is already running")
        spawned = await self.runtime.spawn(
            [config.cmd, *config.args],
            env if env is not None else self.command_env(config.envs),
            cwd or config.cwd or SANDBOX_HOME,
            config.stdin,
            user,
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
