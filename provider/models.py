"""The provider's data: pool configuration, capability profile, and one input/result per call.

Every model here crosses Temporal's event history, so none may hold a credential. Inputs name the
org; the provider resolves the org's key inside the activity.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_TEMPLATE_ID = "base"
DEFAULT_RUNNER_COMMAND = "donmai agent run"
DEFAULT_SANDBOX_TIMEOUT_SECONDS = 900
EXEC_DEFAULT_TIMEOUT_SECONDS = 600.0
"""The seed's execCommand timeout: 10 minutes covers toolchain installs such as `npm ci`."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_ENV_VARS = 256
_MAX_ENV_VALUE = 32 * 1024


def validate_env(env: dict[str, str]) -> dict[str, str]:
    """Environment names must be valid shell identifiers; values bounded."""
    if len(env) > _MAX_ENV_VARS:
        raise ValueError(f"at most {_MAX_ENV_VARS} environment variables")
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        if len(value) > _MAX_ENV_VALUE:
            raise ValueError(f"environment variable {name} is longer than {_MAX_ENV_VALUE} bytes")
        if "\x00" in value:
            raise ValueError(f"environment variable {name} contains a NUL byte")
    return env


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class PoolConfig(_Model):
    """An E2B capacity pool's configuration, in the platform's JSON form (camelCase keys)."""

    template_id: str = Field(DEFAULT_TEMPLATE_ID, alias="templateId", min_length=1, max_length=128)
    launch_runner_inline: bool = Field(False, alias="launchRunnerInline")
    snapshot_id: str | None = Field(None, alias="snapshotId", min_length=1, max_length=128)
    timeout_seconds: int = Field(
        DEFAULT_SANDBOX_TIMEOUT_SECONDS, alias="timeoutSeconds", ge=30, le=86_400
    )
    runner_command: str = Field(
        DEFAULT_RUNNER_COMMAND, alias="runnerCommand", min_length=1, max_length=4096
    )
    runtime_provides: list[str] = Field(default_factory=list, alias="runtimeProvides")

    @field_validator("runtime_provides")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        for kind in value:
            if not kind or len(kind) > 128 or any(c.isspace() for c in kind):
                raise ValueError(f"invalid runtime kind {kind!r}")
        return value


class CapabilityProfile(_Model):
    """What a provider can do, as the platform's capacity planner reads it."""

    transport_model: Literal["dial-in", "dial-out"] = Field(alias="transportModel")
    supports_fs_snapshot: bool = Field(alias="supportsFsSnapshot")
    supports_pause_resume: bool = Field(alias="supportsPauseResume")
    supports_capacity_query: bool = Field(alias="supportsCapacityQuery")
    max_concurrent: int | None = Field(alias="maxConcurrent")
    max_session_duration_seconds: int | None = Field(alias="maxSessionDurationSeconds")
    os: str
    arch: str
    idle_cost_model: Literal["zero", "full", "reduced"] = Field(alias="idleCostModel")
    billing_model: str = Field(alias="billingModel")
    supports_gpu: bool = Field(alias="supportsGpu")
    supports_custom_network_policy: bool = Field(alias="supportsCustomNetworkPolicy")
    egress_default: str = Field(alias="egressDefault")
    runtime_kinds: list[str] = Field(alias="runtimeKinds")
    requirement_kinds: list[str] = Field(alias="requirementKinds")


class SandboxHandle(_Model):
    """Enough to reach a sandbox again; no secret."""

    sandbox_id: str
    template_id: str
    provider: str = "e2b"
    started_at: datetime
    """When the provider confirmed the sandbox running: billing starts here."""
    owner: str | None = None
    """The session run that created the sandbox (its metadata `session_run`); None for a
    snapshot pool's sandbox, or one created before sandboxes were bound to their session."""


class SandboxRef(_Model):
    """Which sandbox, whose credential reaches it, and (when bound) which session owns it."""

    org_id: str
    sandbox_id: str
    session_id: str | None = None
    owner: str | None = None
    """When set, every reconnect checks the sandbox's metadata names this session and run."""


class RunnerLaunch(_Model):
    command: str
    pid: int | None
    log_path: str


class ProvisionInput(_Model):
    session_id: str = Field(min_length=1, max_length=200)
    owner: str | None = Field(None, min_length=1, max_length=64)
    """The session's first run id: part of the create's idempotency key and the sandbox's
    metadata, so a session id started again (a new run chain) never reaches the old sandbox."""
    org_id: str = Field(min_length=1, max_length=200)
    issue_id: str | None = None
    pool: PoolConfig = Field(default_factory=PoolConfig)
    env_vars: dict[str, str] = Field(default_factory=dict)

    @field_validator("env_vars")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_env(value)


class ProvisionResult(_Model):
    handle: SandboxHandle
    runner: RunnerLaunch | None = None
    from_snapshot: bool = False


class ExecInput(_Model):
    # An attempt scheduled by an older worker may carry fields since dropped (`background`).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    ref: SandboxRef
    command: str = Field(min_length=1, max_length=128 * 1024)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    timeout_seconds: float = Field(EXEC_DEFAULT_TIMEOUT_SECONDS, gt=0, le=24 * 3600)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_env(value)


class ExecResult(_Model):
    """The seed's `{exitCode, stdout, stderr}`: a non-zero exit is a result, not an error."""

    exit_code: int
    stdout: str
    stderr: str
    pid: int | None = None


class PauseInput(_Model):
    ref: SandboxRef


class PauseResult(_Model):
    paused_at: datetime
    already_paused: bool = False


class ResumeInput(_Model):
    ref: SandboxRef
    timeout_seconds: int = Field(DEFAULT_SANDBOX_TIMEOUT_SECONDS, ge=30, le=86_400)


class ResumeResult(_Model):
    resumed_at: datetime
    run_ends_at: datetime | None = None
    """When E2B's maximum lifetime ends the run this resume began, when the maximum is known
    (a resume starts a new run); counted from before the call, so never late."""


class KeepAliveInput(_Model):
    ref: SandboxRef
    timeout_seconds: int = Field(DEFAULT_SANDBOX_TIMEOUT_SECONDS, ge=30, le=86_400)


class KeepAliveResult(_Model):
    expires_at: datetime
    state: Literal["running", "paused"] = "running"
    """`paused`: E2B had paused the sandbox (its timeout ran out with nobody extending it, and
    it was created `on_timeout: pause`); nothing was extended."""
    paused_at: datetime | None = None
    """For a sandbox found paused: when E2B paused it (its lifecycle record, else the end of
    the timeout it ran out of): billing stopped then."""
    run_ends_at: datetime | None = None
    """When E2B's maximum lifetime ends this run of the sandbox (a resume starts a new run):
    from the configured tier, or learned when E2B cut the extension short; None: not known."""


class TerminateInput(_Model):
    ref: SandboxRef


class TerminateResult(_Model):
    terminated_at: datetime
    """When the sandbox ended: now for a kill that went through; for one found already gone,
    the provider's record of its end (`end_confirmed`), else now (`end_confirmed` False)."""
    already_gone: bool = False
    end_confirmed: bool = True


class CheckInput(_Model):
    ref: SandboxRef


class CheckResult(_Model):
    """Whether the sandbox still lives, and, when it is gone, when the provider says it ended:
    a sandbox lost behind the workflow's back is billed to its real end, not to its discovery."""

    alive: bool
    state: Literal["running", "paused", "gone"]
    checked_at: datetime
    paused_at: datetime | None = None
    """For a paused sandbox: when it was last paused, by E2B's lifecycle record (None when
    unknown). A session that believed it running bills it paused from then."""
    """When the provider answered (a live sandbox was alive then)."""
    ended_at: datetime | None = None
    """A gone sandbox's end by the provider's record (its `killed` event); None when the
    provider has none (never had one, retention passed, or it could not be read)."""
    end_confirmed: bool = False
