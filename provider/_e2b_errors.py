"""The one place the e2b SDK's exceptions (and HTTP statuses) become `provider.errors`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
from e2b.exceptions import (
    AuthenticationException,
    GuestUnresponsiveException,
    InvalidArgumentException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    ServiceBusyException,
    TemplateException,
    TimeoutException,
)

from provider.errors import (
    InvalidRequest,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SandboxBusy,
    SandboxGone,
)

DEFAULT_RETRY_AFTER_SECONDS = 1.0
"""The e2b SDK raises `RateLimitException` without the response's `Retry-After` header, so a
429 asks Temporal to wait this long: E2B's create limits are per second (1/s Hobby, 5/s Pro)."""

BUSY_RETRY_SECONDS = 2.0
"""A sandbox changing state (E2B's 409) is asked again after this long: a pause takes about
4 s per GiB of memory, a resume about 1 s."""

_MAX_MESSAGE = 500


def map_error(
    err: BaseException,
    *,
    action: str,
    secrets: tuple[str, ...] = (),
    auth_hint: str = "",
    creating: bool = False,
) -> ProviderError:
    """The provider error for an SDK failure of `action` (an unknown one is retryable).

    `creating`: a 404 from create means the template does not exist, not the sandbox; a 409 or
    422 an idempotency key used with another request (elsewhere a 409 is a sandbox changing
    state, retried).
    `auth_hint` names where the refused key came from. `secrets` are scrubbed from messages.
    """
    if isinstance(err, ProviderError):
        return err
    text = _clean(str(err), secrets)
    status = getattr(err, "status_code", None)
    if isinstance(err, AuthenticationException) or status in (401, 403):
        where = f" (from {auth_hint})" if auth_hint else ""
        return ProviderAuthError(f"E2B refused the API key{where}: {action}: {text}")
    if isinstance(err, RateLimitException) or status == 429:
        return RateLimited(
            f"E2B rate limit: {action}: {text}", retry_after=DEFAULT_RETRY_AFTER_SECONDS
        )
    if isinstance(err, ServiceBusyException):
        return ProviderUnavailable(f"E2B is busy: {action}: {text}")
    if isinstance(err, SandboxNotRunningException | SandboxNotFoundException) or status == 410:
        return SandboxGone(f"{action}: {text}")
    if status == 409 and not creating:
        # E2B: "changing state" (pausing, resuming). Not a refusal: it passes in seconds.
        return SandboxBusy(
            f"sandbox is changing state: {action}: {text}", retry_after=BUSY_RETRY_SECONDS
        )
    if status == 501:  # not implemented (the emulator): no retry will implement it
        return InvalidRequest(f"{action}: {text}")
    if isinstance(err, SandboxUnreachableException | TimeoutException):
        return ProviderUnavailable(f"{action}: {text}")
    if isinstance(err, GuestUnresponsiveException):
        return InvalidRequest(f"{action}: {text}")
    if isinstance(err, InvalidArgumentException | TemplateException):
        return InvalidRequest(f"{action}: {text}")
    if isinstance(err, NotFoundException) or status == 404:
        if creating:
            return InvalidRequest(f"{action}: {text}")
        return SandboxGone(f"{action}: {text}")
    if isinstance(err, SandboxException):
        if status is None or status >= 500 or status == 408:
            return ProviderUnavailable(f"{action}: {text}")
        return InvalidRequest(f"{action}: {text}")
    if isinstance(err, httpx.HTTPError | ConnectionError | OSError | asyncio.TimeoutError):
        return ProviderUnavailable(f"{action}: cannot reach E2B: {text or type(err).__name__}")
    # Unknown: retryable (bounded by the retry policy), and still scrubbed.
    return ProviderUnavailable(f"{action}: {type(err).__name__}: {text}")


@contextlib.contextmanager
def mapped(
    action: str,
    *,
    secrets: tuple[str, ...] = (),
    auth_hint: str = "",
    creating: bool = False,
) -> Iterator[None]:
    """Raise SDK failures inside the block as `ProviderError`s; the SDK's own trace is dropped
    (`from None`): it may carry request headers."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as err:  # noqa: BLE001 - the mapping decides
        raise map_error(
            err, action=action, secrets=secrets, auth_hint=auth_hint, creating=creating
        ) from None


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    # The SDK appends paragraphs of advice; the first line says what happened.
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:_MAX_MESSAGE]
