"""The activities' options (`workflow.ActivityConfig`s): every one bounded and retried, and the
exec options stretched for a long command without touching the shared default.

Why in the fast tier: a missing timeout or retry policy only shows when a worker dies or E2B
stalls, which no quick end-to-end run provokes; here it is a dictionary lookup.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from datetime import timedelta
from typing import Any

import pytest
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

import activities
from activities.sandbox import EXEC, NON_RETRYABLE_ERROR_TYPES, exec_config
from provider.models import EXEC_DEFAULT_TIMEOUT_SECONDS

pytestmark = pytest.mark.fast

_CONFIG_KEYS = set(typing.get_type_hints(ActivityConfig))


def activity_configs() -> dict[str, dict[str, Any]]:
    """Every module-level ActivityConfig in the activities package, by module and name."""
    found: dict[str, dict[str, Any]] = {}
    for info in pkgutil.iter_modules(activities.__path__, "activities."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, dict) and value and set(value) <= _CONFIG_KEYS:
                found[f"{info.name}.{name}"] = value
    return found


def test_the_scan_finds_every_config() -> None:
    names = {name.rsplit(".", 1)[1] for name in activity_configs()}
    expected = {"PROVISION", "EXEC", "PAUSE", "RESUME", "KEEP_ALIVE", "TERMINATE", "RECORD_COST"}
    assert expected <= names, names
    assert {"FIND_STRAYS", "REAP_STRAY"} <= names, names


@pytest.mark.parametrize("name", sorted(activity_configs()))
def test_every_config_is_bounded_and_retried(name: str) -> None:
    config = activity_configs()[name]
    start_to_close = config.get("start_to_close_timeout")
    assert isinstance(start_to_close, timedelta) and start_to_close > timedelta(0), name
    policy = config.get("retry_policy")
    assert isinstance(policy, RetryPolicy), name
    assert policy.maximum_interval is None or policy.maximum_interval >= policy.initial_interval
    heartbeat = config.get("heartbeat_timeout")
    if heartbeat is not None:  # a heartbeat timeout longer than the attempt would never fire
        assert timedelta(0) < heartbeat < start_to_close, name
    overall = config.get("schedule_to_close_timeout")
    if overall is not None:
        assert overall >= start_to_close, name
    if name.startswith("activities.sandbox."):  # no retry can bring back a lost sandbox
        assert set(NON_RETRYABLE_ERROR_TYPES) <= set(policy.non_retryable_error_types or [])


def test_exec_allows_the_default_command_timeout() -> None:
    assert EXEC["start_to_close_timeout"] == timedelta(seconds=EXEC_DEFAULT_TIMEOUT_SECONDS + 60)
    assert exec_config(EXEC_DEFAULT_TIMEOUT_SECONDS) is EXEC
    assert exec_config(5) is EXEC


def test_a_long_command_raises_the_floor_and_leaves_exec_untouched() -> None:
    before = dict(EXEC)
    config = exec_config(3 * 3600)
    assert config["start_to_close_timeout"] == timedelta(seconds=3 * 3600 + 60)
    assert config is not EXEC and dict(EXEC) == before
    assert {k: v for k, v in config.items() if k != "start_to_close_timeout"} == {
        k: v for k, v in EXEC.items() if k != "start_to_close_timeout"
    }
    # Still at most three attempts, and never a command interrupted mid-run.
    policy = config["retry_policy"]
    assert policy.maximum_attempts == 3
    assert "ExecInterrupted" in (policy.non_retryable_error_types or [])
