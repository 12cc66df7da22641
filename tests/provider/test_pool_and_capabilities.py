"""Pool configuration in the platform's JSON form, and E2B's capability profile."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from emulator.testing import EmulatorHandle
from provider import E2BSandboxProvider, E2BSettings, PoolConfig, SandboxProvider

SEED_PROFILE = {
    "transportModel": "dial-in",
    "supportsFsSnapshot": True,
    "supportsPauseResume": True,
    "supportsCapacityQuery": False,
    "maxConcurrent": None,
    "maxSessionDurationSeconds": None,
    "os": "linux",
    "arch": "x86_64",
    "idleCostModel": "zero",
    "billingModel": "wall-clock",
    "supportsGpu": False,
    "supportsCustomNetworkPolicy": False,
    "egressDefault": "allow-all",
    "runtimeKinds": ["npm", "python-pip", "http", "mcp-server", "a2a-protocol"],
    "requirementKinds": ["long-running", "network-egress", "git", "full-history-clone"],
}


@pytest.mark.fast
def test_seed_json_form() -> None:
    pool = PoolConfig.model_validate_json(
        '{"templateId": "donmai-worker", "launchRunnerInline": true, "timeoutSeconds": 1800,'
        ' "runnerCommand": "donmai agent run --fast", "snapshotId": "isnap",'
        ' "runtimeProvides": ["toolchain:go"]}'
    )
    assert pool.template_id == "donmai-worker" and pool.launch_runner_inline
    assert pool.timeout_seconds == 1800 and pool.runner_command == "donmai agent run --fast"
    assert pool.snapshot_id == "isnap" and pool.runtime_provides == ["toolchain:go"]
    assert PoolConfig.model_validate(pool.model_dump(by_alias=True)) == pool


@pytest.mark.fast
def test_defaults() -> None:
    pool = PoolConfig.model_validate({})
    assert pool.model_dump(by_alias=True) == {
        "templateId": "base",
        "launchRunnerInline": False,
        "snapshotId": None,
        "timeoutSeconds": 900,
        "runnerCommand": "donmai agent run",
        "runtimeProvides": [],
    }


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"templateID": "x"}, "templateID"),  # a misspelt key is not silently ignored
        ({"timeoutSeconds": "soon"}, "timeoutSeconds"),
        ({"timeoutSeconds": 5}, "timeoutSeconds"),
        ({"launchRunnerInline": "maybe"}, "launchRunnerInline"),
        ({"runtimeProvides": "toolchain:go"}, "runtimeProvides"),
        ({"runtimeProvides": ["tool chain"]}, "runtimeProvides"),
        ({"templateId": ""}, "templateId"),
    ],
)
@pytest.mark.fast
def test_bad_pool_is_one_clear_error(data: dict, where: str) -> None:
    with pytest.raises(ValidationError) as info:
        PoolConfig.model_validate(data)
    errors = info.value.errors()
    assert len(errors) == 1 and errors[0]["loc"][0] == where


def test_capability_profile_is_the_seed_table(emulator_faults: EmulatorHandle) -> None:
    provider = E2BSandboxProvider(api_url=emulator_faults.api_url)
    assert isinstance(provider, SandboxProvider)
    assert provider.capabilities().model_dump(by_alias=True) == SEED_PROFILE
    assert provider.capabilities(PoolConfig()).model_dump(by_alias=True) == SEED_PROFILE


@pytest.mark.fast
def test_runtime_provides_extends_kinds_once_in_order() -> None:
    pool = PoolConfig.model_validate({"runtimeProvides": ["toolchain:go", "npm", "toolchain:go"]})
    profile = E2BSandboxProvider().capabilities(pool).model_dump(by_alias=True, mode="json")
    assert profile["runtimeKinds"] == [*SEED_PROFILE["runtimeKinds"], "toolchain:go"]
    assert {k: v for k, v in profile.items() if k != "runtimeKinds"} == {
        k: v for k, v in SEED_PROFILE.items() if k != "runtimeKinds"
    }


@pytest.mark.fast
def test_connection_settings_argument_then_environment_then_sdk_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("E2B_API_URL", "http://env-api")
    monkeypatch.setenv("E2B_DOMAIN", "env.example")
    monkeypatch.delenv("E2B_SANDBOX_URL", raising=False)
    settings = E2BSettings.resolve(api_url="http://arg-api")
    assert (settings.api_url, settings.sandbox_url, settings.domain) == (
        "http://arg-api",
        None,  # unset everywhere: the SDK derives it from the domain
        "env.example",
    )
    assert settings.request_timeout == 120.0
    params = settings.api_params("k")
    assert params["retries"] == 0 and "sandbox_url" not in params
    assert E2BSettings.resolve(request_timeout=5).request_timeout == 5
    with pytest.raises(ValueError, match="request_timeout"):
        E2BSettings.resolve(request_timeout=-1)
