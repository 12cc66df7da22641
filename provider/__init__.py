"""Sandbox providers: the `SandboxProvider` protocol, its models and errors, and E2B's.

`provider.e2b` is the only module that imports the `e2b` SDK, and it is loaded on first use of
its names: workflows import `provider.models`, which must not drag the SDK (and its network
stack) into Temporal's workflow sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy_exports
from provider.base import SandboxProvider
from provider.capabilities import e2b_capabilities
from provider.credentials import (
    ChainCredentialSource,
    CredentialSource,
    EnvCredentialSource,
    FileCredentialSource,
    SharedEnvCredentialSource,
    StaticCredentialSource,
    default_credentials,
    org_key_var,
)
from provider.errors import (
    AtCapacity,
    CredentialsMissing,
    ExecTimeout,
    InvalidRequest,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SandboxBusy,
    SandboxGone,
    SandboxNotOwned,
    SandboxPaused,
)
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

if TYPE_CHECKING:
    from provider.e2b import E2BSandboxProvider, E2BSettings, session_idempotency_key

__getattr__ = lazy_exports(
    __name__,
    dict.fromkeys(("E2BSandboxProvider", "E2BSettings", "session_idempotency_key"), "provider.e2b"),
)


__all__ = [
    "CapabilityProfile",
    "ChainCredentialSource",
    "CheckInput",
    "CheckResult",
    "CredentialSource",
    "CredentialsMissing",
    "E2BSandboxProvider",
    "E2BSettings",
    "EnvCredentialSource",
    "ExecInput",
    "ExecResult",
    "ExecTimeout",
    "FileCredentialSource",
    "InvalidRequest",
    "KeepAliveInput",
    "KeepAliveResult",
    "PauseInput",
    "PauseResult",
    "PoolConfig",
    "ProviderAuthError",
    "ProviderError",
    "ProviderUnavailable",
    "ProvisionInput",
    "ProvisionResult",
    "AtCapacity",
    "RateLimited",
    "ResumeInput",
    "ResumeResult",
    "RunnerLaunch",
    "SandboxBusy",
    "SandboxGone",
    "SandboxNotOwned",
    "SandboxPaused",
    "SandboxHandle",
    "SandboxProvider",
    "SandboxRef",
    "SharedEnvCredentialSource",
    "StaticCredentialSource",
    "TerminateInput",
    "TerminateResult",
    "default_credentials",
    "e2b_capabilities",
    "org_key_var",
    "session_idempotency_key",
]
