"""The provider layer's exceptions: one root, each subclass says whether a retry can help."""

from __future__ import annotations


class ProviderError(Exception):
    """Root of every failure the provider reports. `retryable` tells Temporal what to do."""

    retryable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        return type(self).__name__


class CredentialsMissing(ProviderError):
    """No E2B key for the org nor in the environment."""


class ProviderAuthError(ProviderError):
    """The key was refused."""


class InvalidRequest(ProviderError):
    """The provider refused the request's content (unknown template, bad value)."""


class SandboxGone(ProviderError):
    """The sandbox no longer exists (killed, expired, or past the provider's retention)."""


class SandboxPaused(ProviderError):
    """The sandbox is paused (E2B paused it when its timeout ran out): a command cannot run
    until the session resumes it."""


class SandboxNotOwned(ProviderError):
    """The sandbox was created for another session (its metadata says so): no call reaches it."""


class ExecTimeout(ProviderError):
    """A command ran past its timeout; it was stopped, and repeating it would not help."""


class RateLimited(ProviderError):
    """The provider asked us to slow down (HTTP 429)."""

    retryable = True


class AtCapacity(ProviderError):
    """The team already runs as many sandboxes as its plan allows: the create is asked again
    after `retry_after`, its activity slot free meanwhile."""

    retryable = True


class SandboxBusy(ProviderError):
    """E2B answered 409: the sandbox is changing state (pausing, resuming); retry shortly."""

    retryable = True


class ProviderUnavailable(ProviderError):
    """A transient fault: 5xx, a dropped connection, a timeout talking to the provider."""

    retryable = True
