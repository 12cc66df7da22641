"""SDK failures, caused for real on the emulator, arrive as the right `provider.errors`."""

from __future__ import annotations

import socket

import pytest

from emulator.testing import EmulatorHandle
from provider import (
    CredentialsMissing,
    E2BSandboxProvider,
    InvalidRequest,
    PauseInput,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
    default_credentials,
)
from provider._e2b_errors import DEFAULT_RETRY_AFTER_SECONDS
from tests.fixtures.provider import Sandboxes, make_provider, ref_of

BAD_KEY = "e2b_0123456789abcdef_not_the_emulators"


async def test_unknown_template_is_invalid_not_gone(sandboxes: Sandboxes) -> None:
    with pytest.raises(InvalidRequest, match="no-such-template") as info:
        await sandboxes.provision(templateId="no-such-template")
    assert not info.value.retryable


async def test_refused_key_names_its_variable_never_the_key(
    emulator_faults: EmulatorHandle,
) -> None:
    provider = make_provider(
        emulator_faults, credentials=default_credentials({"E2B_API_KEY__ACME": BAD_KEY})
    )
    sandboxes = Sandboxes(provider)
    with pytest.raises(ProviderAuthError) as info:
        await sandboxes.provision()
    message = str(info.value)
    assert "E2B_API_KEY__ACME" in message and BAD_KEY not in message
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        (429, RateLimited, DEFAULT_RETRY_AFTER_SECONDS),
        (500, ProviderUnavailable, None),
        (502, ProviderUnavailable, None),
        (503, ProviderUnavailable, None),
        (400, InvalidRequest, None),
        (422, InvalidRequest, None),
    ],
)
async def test_http_status_maps_to_error(
    sandboxes: Sandboxes,
    emulator_faults: EmulatorHandle,
    status: int,
    error: type,
    retry_after: float | None,
) -> None:
    emulator_faults.fail_next("create", 1, status)
    with pytest.raises(error) as info:
        await sandboxes.provision()
    assert type(info.value) is error
    assert info.value.retryable == (status in (429, 500, 502, 503))
    assert info.value.retry_after == retry_after
    # One answer only: the SDK's own retries are off, Temporal's policy decides.
    assert (await sandboxes.provision()).handle.sandbox_id


async def test_fault_on_a_sandbox_call_is_retryable(
    sandboxes: Sandboxes, provider: E2BSandboxProvider, emulator_faults: EmulatorHandle
) -> None:
    ref = ref_of(await sandboxes.provision())
    emulator_faults.fail_next("pause", 1, 500)
    with pytest.raises(ProviderUnavailable):
        await provider.pause(PauseInput(ref=ref))
    assert not (await provider.pause(PauseInput(ref=ref))).already_paused


async def test_unreachable_api_is_unavailable(emulator_faults: EmulatorHandle) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = E2BSandboxProvider(
        credentials=default_credentials({"E2B_API_KEY": BAD_KEY}),
        api_url=f"http://127.0.0.1:{port}",
        sandbox_url=emulator_faults.sandbox_url,
    )
    with pytest.raises(ProviderUnavailable) as info:
        await Sandboxes(provider).provision()
    assert info.value.retryable and "cannot reach E2B" in str(info.value)
    assert BAD_KEY not in str(info.value)


async def test_org_without_key_fails_before_any_call(emulator_faults: EmulatorHandle) -> None:
    provider = make_provider(emulator_faults, credentials=default_credentials({}))
    before = len(emulator_faults.records())
    with pytest.raises(CredentialsMissing) as info:
        await Sandboxes(provider).provision()
    assert str(info.value) == "no E2B API key for org 'acme': set E2B_API_KEY__ACME or E2B_API_KEY"
    assert not info.value.retryable
    assert len(emulator_faults.records()) == before
