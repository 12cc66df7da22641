"""`E2BSandboxProvider`: the `SandboxProvider` on E2B, through the official `e2b` SDK.

The only module that imports `e2b` (with its error mapping in `_e2b_errors`). Every call
resolves the org's key here, inside the activity, and hands it to the SDK per call; the key
never leaves this module except in the SDK's request headers.

Retries belong to Temporal: the SDK's own retries of 429/5xx answers are turned off
(`retries=0`) so every attempt is visible in the workflow history and governed by one policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from e2b import AsyncSandbox, SandboxQuery, SandboxState
from e2b.api import handle_api_exception
from e2b.api.client_async import get_api_client
from e2b.connection_config import ConnectionConfig
from e2b.exceptions import SandboxNotRunningException
from e2b.sandbox.commands.command_handle import CommandExitException

from common.ids import MANAGED_BY, MANAGED_BY_KEY, OWNER_KEY
from common.settings import ProviderSettings
from provider import _runner, events
from provider._e2b_errors import mapped
from provider.base import ListedSandbox
from provider.capabilities import e2b_capabilities
from provider.credentials import CredentialSource, default_credentials, describe_source
from provider.errors import (
    ExecTimeout,
    InvalidRequest,
    ProviderError,
    SandboxBusy,
    SandboxGone,
    SandboxNotOwned,
    SandboxPaused,
)
from provider.limits import CreateLimiter, TierLimits
from provider.models import (
    CapabilityProfile,
    CheckInput,
    CheckResult,
    ExecInput,
    ExecResult,
    KeepAliveInput,
    KeepAliveResult,
    PauseInput,
    PauseResult,
    PoolConfig,
    ProvisionInput,
    ProvisionResult,
    ResumeInput,
    ResumeResult,
    RunnerLaunch,
    SandboxHandle,
    SandboxRef,
    TerminateInput,
    TerminateResult,
)

log = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT_SECONDS = 120.0
"""One control-plane call (create, pause, connect...): a pause snapshots memory, ~4 s per GiB."""
_STREAM_GRACE_SECONDS = 30.0
"""The command stream outlives our own timer by this much, so our timeout fires first and we
know it was the command's (envd's deadline would kill the process just the same)."""
_KILL_TIMEOUT_SECONDS = 10.0
_MAX_LENGTH = "max instance length exceeded"
"""E2B's 400 to an extension of a run already at its maximum lifetime."""
_CAP_TOLERANCE = timedelta(seconds=5)
"""An extension E2B cut shorter than this was cut at the sandbox's maximum lifetime (clocks and
the call's own latency account for less)."""

__all__ = ["E2BSandboxProvider", "E2BSettings", "session_idempotency_key"]


_HandleKey = tuple[str, str, str | None, str | None]
"""(org, sandbox, session, owner): a handle or a check counts only for the very same ref."""
_KEPT_HANDLES = 1000
"""Running sandboxes' handles kept per worker (each holds the SDK's envd client)."""
_KEPT_CHECKED = 20000
"""Sandboxes known to be their session's, per worker (a few hundred bytes each)."""


def _handle_key(ref: SandboxRef) -> _HandleKey:
    return (ref.org_id, ref.sandbox_id, ref.session_id, ref.owner)


def _keep(kept: OrderedDict[_HandleKey, Any], key: _HandleKey, value: Any, most: int) -> None:
    """Least recently used first out, at most `most` kept."""
    kept[key] = value
    kept.move_to_end(key)
    while len(kept) > most:
        kept.popitem(last=False)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    """E2B's times are UTC; the SDK may hand them over without a zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class E2BSettings:
    """Where E2B is: resolved once, argument > `E2B_*` variable (`ProviderSettings`) > the
    SDK's default."""

    api_url: str | None = None
    sandbox_url: str | None = None
    domain: str | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS

    @classmethod
    def resolve(
        cls,
        *,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        domain: str | None = None,
        request_timeout: float | None = None,
        settings: ProviderSettings | None = None,
    ) -> E2BSettings:
        if request_timeout is not None and request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        env = settings if settings is not None else ProviderSettings.load()
        return cls(
            api_url=api_url or env.e2b_api_url,
            sandbox_url=sandbox_url or env.e2b_sandbox_url,
            domain=domain or env.e2b_domain,
            request_timeout=request_timeout or DEFAULT_REQUEST_TIMEOUT_SECONDS,
        )

    def api_params(self, api_key: str) -> dict[str, Any]:
        """The SDK's per-call options (`ApiParams`); None values fall to the SDK's defaults."""
        params: dict[str, Any] = {
            "api_key": api_key,
            "request_timeout": self.request_timeout,
            "retries": 0,
        }
        for name in ("api_url", "sandbox_url", "domain"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params


def session_idempotency_key(session_id: str, owner: str | None = None) -> str:
    """E2B's `Idempotency-Key` for a session's create: 1-255 chars of `[a-z0-9-]`.

    With an `owner` (the session's first run id) the key is a readable slug plus a hash of the
    id and the run: a session id started again later is a new chain of runs and gets a new
    sandbox, never the old one. Without it (an attempt scheduled before sandboxes were bound),
    a session id already in that alphabet is used as is; any other gets a slug plus a hash of
    the exact id, so two distinct sessions never share a key.
    """
    key = f"session-{session_id}"
    if owner is None and len(key) <= 255 and re.fullmatch(r"[a-z0-9-]+", key):
        return key
    slug = re.sub(r"[^a-z0-9-]+", "-", session_id.lower()).strip("-")[:160]
    exact = session_id if owner is None else f"{session_id}\n{owner}"
    digest = hashlib.sha256(exact.encode("utf-8")).hexdigest()[:40]
    return f"session-{slug}-{digest}" if slug else f"session-{digest}"


def _check_owner(ref: SandboxRef, info: Any) -> None:
    """Refuse a sandbox whose metadata names another session or run than the ref expects."""
    if ref.owner is None:
        return
    metadata = dict(getattr(info, "metadata", None) or {})
    if metadata.get("session_id") != ref.session_id or metadata.get(OWNER_KEY) != ref.owner:
        raise SandboxNotOwned(
            f"sandbox {ref.sandbox_id} belongs to another session, not to {ref.session_id}"
        )


class E2BSandboxProvider:
    """E2B sandboxes through the official SDK. Safe to share between concurrent activities."""

    name = "e2b"

    def __init__(
        self,
        *,
        credentials: CredentialSource | None = None,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        domain: str | None = None,
        request_timeout: float | None = None,
        limits: TierLimits | None = None,
        settings: ProviderSettings | None = None,
    ) -> None:
        """Each option: the argument, else `settings` (default: `ProviderSettings.load()`, the
        `E2B_*` variables), else the SDK's default; `limits` likewise from `E2B_TIER` & co."""
        env = settings if settings is not None else ProviderSettings.load()
        self._credentials = credentials if credentials is not None else default_credentials()
        self.limits = limits if limits is not None else TierLimits.from_settings(env)
        self._limiter = CreateLimiter(self.limits)
        self.on_timeout = env.e2b_on_timeout
        """What E2B does with a sandbox whose timeout runs out (`E2B_ON_TIMEOUT`)."""
        self.settings = E2BSettings.resolve(
            api_url=api_url,
            sandbox_url=sandbox_url,
            domain=domain,
            request_timeout=request_timeout,
            settings=env,
        )
        self._handles: OrderedDict[_HandleKey, AsyncSandbox] = OrderedDict()
        """Running sandboxes this process created or resumed for a session (owner checked):
        a command goes straight to envd instead of asking E2B first (`exec_command`)."""
        self._checked: OrderedDict[_HandleKey, None] = OrderedDict()
        """Sandboxes known to be the session's (created for it here, or owner checked): their
        resume skips the owner check. Kept while they are paused, unlike the handles."""

    def __repr__(self) -> str:
        return f"E2BSandboxProvider(api_url={self.settings.api_url!r})"

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _api(self, org_id: str, action: str, *, creating: bool = False) -> Iterator[dict]:
        """The SDK options for one call with the org's key; SDK failures mapped on the way out."""
        key = self._credentials.api_key(org_id)
        hint = describe_source(self._credentials, org_id)
        with mapped(action, secrets=(key,), auth_hint=hint, creating=creating):
            yield self.settings.api_params(key)

    async def _started_at(self, org_id: str, sandbox_id: str, fallback: datetime) -> datetime:
        """The provider's own start time; the create call's return when it cannot be read."""
        try:
            with self._api(org_id, f"get sandbox {sandbox_id}") as opts:
                info = await AsyncSandbox.get_info(sandbox_id, **opts)
        except ProviderError as err:
            log.warning("start time of sandbox %s unavailable (%s)", sandbox_id, err.type)
            return fallback
        return _utc(info.started_at)

    async def _connect_running(self, ref: SandboxRef, opts: dict) -> AsyncSandbox:
        """A handle on a running sandbox, never resuming a paused one behind the workflow's back
        (E2B's connect would resume it, and bill it, for 5 minutes), nor another session's."""
        info = await AsyncSandbox.get_info(ref.sandbox_id, **opts)
        _check_owner(ref, info)
        if str(info.state) == "paused":
            raise SandboxPaused(
                f"sandbox {ref.sandbox_id} is paused (E2B paused it when its timeout ran out): "
                "the session resumes it; run the command again then"
            )
        return self._remember(ref, await AsyncSandbox.connect(ref.sandbox_id, **opts))

    # A handle is kept only from a create or resume made for this very session and run (or
    # an owner check): a ref naming another session's sandbox never finds one. Envd refuses
    # a paused or killed sandbox (SandboxNotRunning) and never resumes it, so a stale handle
    # costs one refused call, after which the checked path below answers.

    def _remember(self, ref: SandboxRef, sandbox: AsyncSandbox) -> AsyncSandbox:
        key = _handle_key(ref)
        _keep(self._handles, key, sandbox, _KEPT_HANDLES)
        _keep(self._checked, key, None, _KEPT_CHECKED)
        return sandbox

    def _owner_checked(self, ref: SandboxRef) -> bool:
        return _handle_key(ref) in self._checked

    def _known(self, ref: SandboxRef) -> AsyncSandbox | None:
        return self._handles.get(_handle_key(ref))

    def _forget(self, ref: SandboxRef, *, ended: bool = False) -> None:
        """Drop the handle (a pause); `ended`, also what was known of its owner (a terminate)."""
        self._handles.pop(_handle_key(ref), None)
        if ended:
            self._checked.pop(_handle_key(ref), None)

    # ------------------------------------------------------------------ provision

    async def provision(self, input: ProvisionInput) -> ProvisionResult:
        pool = input.pool
        if pool.snapshot_id:
            handle, sandbox = await self._resume_snapshot(input)
        else:
            handle, sandbox = await self._create(input)
        runner = None
        if pool.launch_runner_inline:
            runner = await self._launch_runner(
                input.org_id, sandbox, pool.runner_command, env=input.env_vars
            )
        return ProvisionResult(handle=handle, runner=runner, from_snapshot=bool(pool.snapshot_id))

    async def _create(self, input: ProvisionInput) -> tuple[SandboxHandle, AsyncSandbox]:
        pool = input.pool
        metadata = {
            "session_id": input.session_id,
            "org_id": input.org_id,
            MANAGED_BY_KEY: MANAGED_BY,
        }
        if input.owner:
            metadata[OWNER_KEY] = input.owner
        if input.issue_id:
            metadata["issue_id"] = input.issue_id
        action = f"create sandbox from template {pool.template_id!r}"
        with self._api(input.org_id, action, creating=True) as opts:
            running = functools.partial(self._count_running, opts)
            async with self._limiter.create_slot(opts["api_key"], running):
                sandbox = await AsyncSandbox.create(
                    template=pool.template_id,
                    timeout=self._within_lifetime(pool.timeout_seconds),
                    envs=dict(input.env_vars) or None,
                    metadata=metadata,
                    idempotency_key=session_idempotency_key(input.session_id, input.owner),
                    lifecycle=self._lifecycle(),
                    **opts,
                )
        returned = _now()
        own = SandboxRef(
            org_id=input.org_id,
            sandbox_id=sandbox.sandbox_id,
            session_id=input.session_id,
            owner=input.owner,
        )
        self._remember(own, sandbox)
        started_at = await self._started_at(input.org_id, sandbox.sandbox_id, returned)
        log.info("sandbox %s created for session %s", sandbox.sandbox_id, input.session_id)
        handle = SandboxHandle(
            sandbox_id=sandbox.sandbox_id,
            template_id=pool.template_id,
            started_at=started_at,
            owner=input.owner,
        )
        return handle, sandbox

    def _within_lifetime(self, seconds: int) -> int:
        """The pool's timeout, shortened to the maximum lifetime when that is known: E2B refuses
        a longer one at create and resume, and the keep-alives extend the sandbox anyway."""
        cap = self.limits.max_lifetime_seconds
        if cap is not None and seconds > cap:
            log.info("sandbox timeout %ss shortened to E2B's maximum lifetime %ss", seconds, cap)
            return cap
        return seconds

    def _lifecycle(self) -> Any:
        """E2B's on-timeout action: `pause` (the default) keeps a sandbox whose keep-alives
        stopped (every worker down longer than its timeout) for the session to bill and resume;
        never auto-resumed by traffic, which would bill it behind the session's back."""
        if self.on_timeout == "pause":
            return {"on_timeout": "pause", "auto_resume": False}
        return None

    async def _resume_snapshot(self, input: ProvisionInput) -> tuple[SandboxHandle, AsyncSandbox]:
        """A pool with `snapshotId` starts each session by resuming that paused sandbox; billing
        starts when the resume returns (its original start was another session's)."""
        pool = input.pool
        snapshot_id = pool.snapshot_id or ""
        with self._api(input.org_id, f"resume snapshot sandbox {snapshot_id}") as opts:
            sandbox = await AsyncSandbox.connect(snapshot_id, timeout=pool.timeout_seconds, **opts)
        started_at = _now()
        log.info("sandbox %s resumed from snapshot for session %s", snapshot_id, input.session_id)
        handle = SandboxHandle(
            sandbox_id=sandbox.sandbox_id, template_id=pool.template_id, started_at=started_at
        )
        return handle, sandbox

    async def _launch_runner(
        self,
        org_id: str,
        sandbox: AsyncSandbox,
        command: str,
        *,
        env: dict[str, str] | None = None,
    ) -> RunnerLaunch:
        """Start the runner detached, unless the pid file names a live one (a retry).

        The session's env is given to the launch itself (`_runner.launch_env`): E2B applies
        create-time envs to later commands, but a snapshot pool's sandbox was created for
        another session, and a template's start command never sees them at all."""
        # The key is resolved again only for the mapping's scrubbing and hint.
        with self._api(org_id, f"launch runner in sandbox {sandbox.sandbox_id}"):
            try:
                result = await sandbox.commands.run(
                    _runner.launch_script(command),
                    envs=_runner.launch_env(env),
                    timeout=_runner.LAUNCH_TIMEOUT_SECONDS,
                    request_timeout=self.settings.request_timeout,
                )
            except CommandExitException as err:
                # The session fails here and would never terminate this sandbox: do it now.
                with contextlib.suppress(Exception):
                    await sandbox.kill()
                raise InvalidRequest(
                    f"runner launch in sandbox {sandbox.sandbox_id} exited {err.exit_code}: "
                    f"{(err.stderr or '').strip()[:300]}"
                ) from None
        started, pid = _runner.parse_launch(result.stdout)
        log.info(
            "runner in sandbox %s %s (pid %s)",
            sandbox.sandbox_id,
            "started" if started else "already running",
            pid,
        )
        return RunnerLaunch(command=command, pid=pid, log_path=_runner.RUNNER_LOG)

    # ------------------------------------------------------------------ exec

    async def exec_command(self, input: ExecInput) -> ExecResult:
        """`/bin/bash -l -c <command>` (envd's way): a non-zero exit is a result, a timeout
        an `ExecTimeout` after the command is killed."""
        ref = input.ref
        action = f"exec in sandbox {ref.sandbox_id}"
        with self._api(ref.org_id, action) as opts:
            known = self._known(ref)
            if known is not None:
                try:
                    handle = await self._start(known, input)
                except SandboxNotRunningException:
                    known = None  # paused or gone since: the checked path says which
                    self._forget(ref)
            if known is None:
                handle = await self._start(await self._connect_running(ref, opts), input)
            return await self._wait(handle, input, opts["api_key"])

    async def _start(self, sandbox: AsyncSandbox, input: ExecInput) -> Any:
        return await sandbox.commands.run(
            input.command,
            background=True,  # started, then awaited below under our own timer
            envs=dict(input.env) or None,
            cwd=input.cwd,
            # envd's deadline stands behind our own timer.
            timeout=input.timeout_seconds + _STREAM_GRACE_SECONDS,
            request_timeout=self.settings.request_timeout,
        )

    async def _wait(self, handle: Any, input: ExecInput, key: str) -> ExecResult:
        """The command's result; any failure from here on is not retryable: it may have run."""
        sandbox_id = input.ref.sandbox_id
        try:
            with mapped(f"exec in sandbox {sandbox_id} (the command had started)", secrets=(key,)):
                try:
                    result = await asyncio.wait_for(handle.wait(), input.timeout_seconds)
                except CommandExitException as err:
                    result = err  # a non-zero exit is a result
                except TimeoutError:
                    await _kill_quietly(handle)
                    raise ExecTimeout(
                        f"command in sandbox {sandbox_id} ran past {input.timeout_seconds:g}s "
                        f"and was killed (pid {handle.pid})"
                    ) from None
                except asyncio.CancelledError:
                    await _kill_quietly(handle)  # the activity was cancelled: stop the command
                    raise
        except ProviderError as err:
            err.retryable = False
            raise
        return ExecResult(
            exit_code=result.exit_code,
            stdout=result.stdout or "",
            stderr=result.stderr or "",
            pid=handle.pid,
        )

    # ------------------------------------------------------------------ lifecycle

    async def pause(self, input: PauseInput) -> PauseResult:
        ref = input.ref
        self._forget(ref)  # a parked session holds no handle (memory); its resume takes one
        with self._api(ref.org_id, f"pause sandbox {ref.sandbox_id}") as opts:
            paused_now = await AsyncSandbox.pause(ref.sandbox_id, **opts)
        asked = _now()
        if paused_now:
            return PauseResult(paused_at=asked)
        # E2B answers 409 for a sandbox already paused (the SDK returns False): paused by E2B
        # when its timeout ran out, or by an earlier attempt. Billing stopped at that pause.
        since = await self._event_time(ref.org_id, ref.sandbox_id, events.PAUSED)
        return PauseResult(paused_at=min(since, asked) if since else asked, already_paused=True)

    async def resume(self, input: ResumeInput) -> ResumeResult:
        ref = input.ref
        with self._api(ref.org_id, f"resume sandbox {ref.sandbox_id}") as opts:
            if ref.owner is not None and not self._owner_checked(ref):
                _check_owner(ref, await AsyncSandbox.get_info(ref.sandbox_id, **opts))
            # Always with a timeout: without one E2B gives a resumed sandbox 5 minutes. Never
            # longer than a run may last: E2B refuses that (400).
            timeout = self._within_lifetime(input.timeout_seconds)
            asked = _now()
            self._remember(ref, await AsyncSandbox.connect(ref.sandbox_id, timeout=timeout, **opts))
        cap = self.limits.max_lifetime_seconds
        run_ends_at = asked + timedelta(seconds=cap) if cap is not None else None
        return ResumeResult(resumed_at=_now(), run_ends_at=run_ends_at)

    async def keep_alive(self, input: KeepAliveInput) -> KeepAliveResult:
        """Extend the sandbox's timeout. E2B answers 404 for a PAUSED sandbox's timeout too:
        that is told apart from a gone one by asking, and a sandbox E2B paused on its own is
        reported (`state="paused"`, since when), not misread as lost."""
        ref = input.ref
        asked = _now()
        try:
            with self._api(ref.org_id, f"extend sandbox {ref.sandbox_id}") as opts:
                await AsyncSandbox.set_timeout(ref.sandbox_id, input.timeout_seconds, **opts)
        except InvalidRequest as err:
            if _MAX_LENGTH not in err.message.lower():
                raise
            # The run reached E2B's maximum lifetime this instant: E2B pauses or kills it now.
            # Not a refusal of ours: the session rolls it over (or finds it gone) at once.
            log.warning("sandbox %s is at E2B's maximum lifetime", ref.sandbox_id)
            return KeepAliveResult(expires_at=asked, run_ends_at=asked)
        except SandboxGone:
            with self._api(ref.org_id, f"get sandbox {ref.sandbox_id}") as opts:
                info = await AsyncSandbox.get_info(ref.sandbox_id, **opts)  # gone: raises
            _check_owner(ref, info)
            if str(info.state) != "paused":
                raise SandboxBusy(  # resumed meanwhile: the next attempt extends it
                    f"extend sandbox {ref.sandbox_id}: not found, yet it is {info.state}",
                    retry_after=1.0,
                ) from None
            paused_at = await self._paused_since(ref, info, asked)
            log.warning("sandbox %s found paused by E2B since %s", ref.sandbox_id, paused_at)
            return KeepAliveResult(expires_at=paused_at, state="paused", paused_at=paused_at)
        wanted = asked + timedelta(seconds=input.timeout_seconds)
        expires_at, run_ends_at = wanted, None
        try:
            with self._api(ref.org_id, f"get sandbox {ref.sandbox_id}") as opts:
                info = await AsyncSandbox.get_info(ref.sandbox_id, **opts)
            expires_at = _utc(info.end_at)
            run_ends_at = self._run_end(_utc(info.started_at), expires_at, wanted)
        except ProviderError as err:
            log.warning("expiry of sandbox %s unavailable (%s)", ref.sandbox_id, err.type)
        return KeepAliveResult(expires_at=expires_at, run_ends_at=run_ends_at)

    def _run_end(
        self, started_at: datetime, expires_at: datetime, wanted: datetime
    ) -> datetime | None:
        """When E2B's maximum lifetime ends this run: its start (E2B restarts it on each resume)
        plus the configured maximum, else the end E2B gave when it cut the extension short."""
        cap = self.limits.max_lifetime_seconds
        if cap is not None:
            return started_at + timedelta(seconds=cap)
        if expires_at < wanted - _CAP_TOLERANCE:
            return expires_at
        return None

    async def terminate(self, input: TerminateInput) -> TerminateResult:
        """Kill the sandbox; one already gone ended when the provider's record says (when it
        has one), not now: a retried terminate, or a sandbox lost unnoticed, bills to its end."""
        ref = input.ref
        self._forget(ref, ended=True)
        with self._api(ref.org_id, f"kill sandbox {ref.sandbox_id}") as opts:
            killed = await AsyncSandbox.kill(ref.sandbox_id, **opts)
        if killed:
            log.info("sandbox %s killed", ref.sandbox_id)
            return TerminateResult(terminated_at=_now())
        asked = _now()
        ended = await self._recorded_end(ref.org_id, ref.sandbox_id)
        return TerminateResult(
            terminated_at=ended or asked, already_gone=True, end_confirmed=ended is not None
        )

    async def check(self, input: CheckInput) -> CheckResult:
        """Alive (running or paused) by the provider's get-info, or gone (404) with its end from
        the lifecycle events; gone is an answer, not an error."""
        ref = input.ref
        try:
            with self._api(ref.org_id, f"check sandbox {ref.sandbox_id}") as opts:
                info = await AsyncSandbox.get_info(ref.sandbox_id, **opts)
        except SandboxGone:
            checked = _now()
            ended = await self._recorded_end(ref.org_id, ref.sandbox_id)
            return CheckResult(
                alive=False,
                state="gone",
                checked_at=checked,
                ended_at=ended,
                end_confirmed=ended is not None,
            )
        _check_owner(ref, info)
        checked = _now()
        if str(info.state) != "paused":
            return CheckResult(alive=True, state="running", checked_at=checked)
        since = await self._paused_since(ref, info, checked)
        return CheckResult(alive=True, state="paused", checked_at=checked, paused_at=since)

    async def _paused_since(self, ref: SandboxRef, info: Any, now: datetime) -> datetime:
        """When E2B paused this (paused) sandbox: its latest `paused` lifecycle event, else the
        end of the timeout it ran out of (E2B pauses at it), and never later than `now`."""
        since = await self._event_time(ref.org_id, ref.sandbox_id, events.PAUSED)
        return min(since or _utc(info.end_at), now)

    async def sandbox_end(self, org_id: str, sandbox_id: str) -> datetime | None:
        """When the sandbox ended by E2B's lifecycle events (its `killed` event), or None when
        E2B has no such record (alive, unknown, past the 7-day retention, or no events API).

        A failure to read them is raised as a `ProviderError`."""
        return await self._latest_event(org_id, sandbox_id, events.KILLED)

    async def _latest_event(self, org_id: str, sandbox_id: str, kind: str) -> datetime | None:
        with self._api(org_id, f"read lifecycle events of sandbox {sandbox_id}") as opts:
            client = get_api_client(ConnectionConfig(**opts)).get_async_httpx_client()
            res = await client.get(events.events_path(sandbox_id), params=events.event_query(kind))
            if res.status_code == 404:
                return None
            if res.status_code >= 300:
                raise handle_api_exception(res)
            return events.latest(res.json(), sandbox_id, kind)

    async def _recorded_end(self, org_id: str, sandbox_id: str) -> datetime | None:
        """`sandbox_end`, with a failed read logged as one line and taken as no record."""
        return await self._event_time(org_id, sandbox_id, events.KILLED)

    async def _event_time(self, org_id: str, sandbox_id: str, kind: str) -> datetime | None:
        """The latest lifecycle event of `kind`; a failed read is one log line and no record."""
        try:
            return await self._latest_event(org_id, sandbox_id, kind)
        except (ProviderError, ValueError) as err:
            what = "end" if kind == events.KILLED else "pause time"
            log.warning(
                "%s of sandbox %s unconfirmed: its lifecycle events could not be read (%s)",
                what,
                sandbox_id,
                type(err).__name__,
            )
            return None

    def capabilities(self, pool: PoolConfig | None = None) -> CapabilityProfile:
        return e2b_capabilities(pool)

    # ------------------------------------------------------------------ listing

    async def list_sandboxes(
        self, org_id: str, *, metadata: dict[str, str] | None = None
    ) -> list[ListedSandbox]:
        with self._api(org_id, "list sandboxes") as opts:
            infos = await _list_all(SandboxQuery(metadata=metadata or None), opts)
        return [
            ListedSandbox(
                sandbox_id=info.sandbox_id,
                template_id=info.template_id,
                state="paused" if str(info.state) == "paused" else "running",
                started_at=_utc(info.started_at),
                metadata=dict(info.metadata or {}),
            )
            for info in infos
        ]

    async def _count_running(self, opts: dict) -> int:
        """The team's running sandboxes (all of them: E2B's limit is per team, not ours)."""
        return len(await _list_all(SandboxQuery(state=[SandboxState.RUNNING]), opts))


async def _list_all(query: SandboxQuery, opts: dict) -> list[Any]:
    paginator = AsyncSandbox.list(query=query, limit=100, **opts)
    infos: list[Any] = []
    while paginator.has_next:
        infos.extend(await paginator.next_items())
    return infos


async def _kill_quietly(handle: Any) -> None:
    """Best effort: the sandbox may be gone already, and the caller is raising anyway."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(handle.kill(), _KILL_TIMEOUT_SECONDS)
