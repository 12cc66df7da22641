"""`common.settings`: every variable's default, precedence, rule and message; and the figures
and messages built on them (`provider.limits.TierLimits`, `common.errors.validation_message`).

Why in the fast tier: a wrong setting is the first thing an operator meets, and these are pure
functions of the environment, checked in milliseconds with `monkeypatch`.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr, ValidationError

from activities.sandbox import EXEC
from common.errors import ConfigError, validation_message
from common.ids import DEFAULT_TASK_QUEUE
from common.settings import (  # _Settings, _env: to declare a setting as the module does
    DEFAULT_PRICE_PER_SECOND,
    CliSettings,
    CodecServerSettings,
    LedgerSettings,
    ProviderSettings,
    ReconcilerSettings,
    WorkerSettings,
    _env,
    _Settings,
    parse_duration,
    parse_host,
    parse_keys,
    variable_names,
    variable_prefixes,
)
from provider.limits import TierLimits

pytestmark = pytest.mark.fast

SECRET = "Sup3rSecretValue-7f3a"
"""A recognisable secret: no message may ever contain it."""


def key(fill: int = 1, size: int = 32) -> str:
    return base64.b64encode(bytes([fill]) * size).decode()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of this product from the environment the tests happen to run in."""
    prefixes = variable_prefixes()
    for name in list(os.environ):
        if name in variable_names() or name.startswith(prefixes):
            monkeypatch.delenv(name)


def config_error(model: type, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        model.load(**overrides)  # type: ignore[attr-defined]
    return str(info.value)


# ---------------------------------------------------------------- defaults and precedence


def test_each_process_loads_its_defaults() -> None:
    worker = WorkerSettings.load()
    assert worker.task_queue == DEFAULT_TASK_QUEUE and worker.payload_keys is None
    assert (worker.max_cached_workflows, worker.max_concurrent_activities) == (2000, 200)
    assert (worker.log_level, worker.log_format) == ("INFO", "text")
    assert (worker.health_port, worker.metrics_port) == (None, None)
    assert (worker.e2b_tier, worker.e2b_create_rate, worker.e2b_max_concurrent) == (None,) * 3
    assert worker.reconciler and worker.reconciler_orgs == ["*"]
    assert (worker.reconciler_interval, worker.reconciler_grace) == (300.0, 600.0)
    assert worker.data_dir == Path(".sessions") and worker.ledger_url is None

    cli = CliSettings.load()
    assert (cli.worker_timeout, cli.price_per_second) == (10.0, DEFAULT_PRICE_PER_SECOND)
    assert cli.task_queue == DEFAULT_TASK_QUEUE
    assert DEFAULT_PRICE_PER_SECOND == pytest.approx(0.00003025)

    codec = CodecServerSettings.load()
    assert codec.codec_auth is None and codec.payload_keys is None and not codec.codec_auth_off
    assert (codec.codec_allowed_hosts, codec.codec_max_body_bytes) == ([], 4 * 1024 * 1024)


def test_an_argument_beats_the_variable_which_beats_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert WorkerSettings.load().max_cached_workflows == 2000
    monkeypatch.setenv("SESSIONS_MAX_CACHED_WORKFLOWS", "10")
    monkeypatch.setenv("SESSIONS_TASK_QUEUE", "from-env")
    assert WorkerSettings.load().max_cached_workflows == 10
    assert WorkerSettings.load(max_cached_workflows=5).max_cached_workflows == 5
    # A flag not given (None) leaves the variable in charge.
    settings = WorkerSettings.load(max_cached_workflows=None, task_queue="from-flag")
    assert (settings.max_cached_workflows, settings.task_queue) == (10, "from-flag")


def test_empty_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose and Kubernetes pass an unset value as an empty one."""
    for name in ("SESSIONS_MAX_CACHED_WORKFLOWS", "LOG_LEVEL", "E2B_TIER", "LEDGER_URL"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("SESSIONS_RECONCILER_ORGS", "")
    settings = WorkerSettings.load()
    assert (settings.max_cached_workflows, settings.log_level) == (2000, "INFO")
    assert (settings.e2b_tier, settings.ledger_url, settings.reconciler_orgs) == (None, None, ["*"])


# ---------------------------------------------------------------- messages


def test_an_invalid_value_names_the_variable_and_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_MAX_CACHED_WORKFLOWS", "abc")
    assert config_error(WorkerSettings) == (
        "SESSIONS_MAX_CACHED_WORKFLOWS must be a whole number, at least 1, not 'abc'"
    )
    monkeypatch.setenv("SESSIONS_MAX_CACHED_WORKFLOWS", "0")
    assert config_error(WorkerSettings) == (
        "SESSIONS_MAX_CACHED_WORKFLOWS must be a whole number, at least 1, not '0'"
    )


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("SESSIONS_MAX_CONCURRENT_ACTIVITIES", "-3", "a whole number, at least 1"),
        ("LOG_FORMAT", "xml", "text or json"),
        ("LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SESSIONS_HEALTH_PORT", "70000", "a port number (1-65535)"),
        ("SESSIONS_METRICS_PORT", "http", "a port number (1-65535)"),
        ("E2B_TIER", "enterprise", "one of hobby, pro"),
        ("E2B_CREATE_RATE", "nan", "a number of creates per second, at least 0"),
        ("E2B_MAX_CONCURRENT", "1.5", "a whole number, at least 0"),
        ("SESSIONS_RECONCILER", "maybe", "on or off"),
        ("SESSIONS_RECONCILER_INTERVAL", "0", "a number of seconds above 0"),
        ("SESSIONS_RECONCILER_GRACE", "inf", "a number of seconds, at least 0"),
    ],
)
def test_every_rule_is_said_in_words(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, rule: str
) -> None:
    monkeypatch.setenv(name, value)
    message = config_error(WorkerSettings)
    # Not a secret: shown, exactly as given, to help fix it.
    assert message == f"{name} must be {rule}, not {value!r}", message


def test_several_bad_variables_are_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_MAX_CACHED_WORKFLOWS", "abc")
    monkeypatch.setenv("LOG_FORMAT", "xml")
    monkeypatch.setenv("E2B_TIER", "gold")
    parts = config_error(WorkerSettings).split("; ")
    assert sorted(parts) == [
        "E2B_TIER must be one of hobby, pro, not 'gold'",
        "LOG_FORMAT must be text or json, not 'xml'",
        "SESSIONS_MAX_CACHED_WORKFLOWS must be a whole number, at least 1, not 'abc'",
    ]


@pytest.mark.parametrize(
    "keys",
    [
        SECRET,  # no key id
        f"k1:{SECRET}",  # not base64
        f"k1:{key()},k2:{base64.b64encode(SECRET.encode()).decode()}",  # not 32 bytes
        f"{SECRET} x:{key()}",  # a key id that is no key id
    ],
)
def test_a_secret_value_never_appears_in_a_message(
    monkeypatch: pytest.MonkeyPatch, keys: str
) -> None:
    monkeypatch.setenv("SESSIONS_PAYLOAD_KEYS", keys)
    monkeypatch.setenv("LEDGER_URL", f"postgresql://sessions:{SECRET}@db/ledger")
    monkeypatch.setenv("SESSIONS_CODEC_AUTH", f"Bearer {SECRET}")
    monkeypatch.setenv("SESSIONS_MAX_CACHED_WORKFLOWS", "abc")  # and another variable is bad
    for model in (WorkerSettings, CliSettings, CodecServerSettings):
        message = config_error(model)
        assert "SESSIONS_PAYLOAD_KEYS" in message
        assert SECRET not in message and key() not in message
    assert "SESSIONS_MAX_CACHED_WORKFLOWS must be" in config_error(WorkerSettings)


class _Secretive(_Settings):
    """A setting holding a secret that can break its rule, as a future one may."""

    token: SecretStr | None = _env(
        "SESSIONS_TEST_TOKEN",
        meaning="a test secret",
        expect="at least 30 characters",
        secret=True,
        min_length=30,
    )
    plain: str = _env(
        "SESSIONS_TEST_PLAIN",
        "x",
        meaning="a test value",
        expect="at most 3 characters",
        max_length=3,
    )


def test_a_secret_variable_breaking_its_rule_is_named_not_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SESSIONS_TEST_TOKEN", SECRET)
    monkeypatch.setenv("SESSIONS_TEST_PLAIN", "abcd")
    assert config_error(_Secretive) == (
        "SESSIONS_TEST_TOKEN must be at least 30 characters; "
        "SESSIONS_TEST_PLAIN must be at most 3 characters, not 'abcd'"
    )


def test_secrets_stay_hidden_in_loaded_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_URL", f"postgresql://sessions:{SECRET}@db/ledger")
    monkeypatch.setenv("SESSIONS_CODEC_AUTH", f"Bearer {SECRET}")
    monkeypatch.setenv("SESSIONS_PAYLOAD_KEYS", f"k1:{key()}")
    worker, codec = WorkerSettings.load(), CodecServerSettings.load()
    for shown in (repr(worker), str(worker), repr(codec), worker.model_dump_json()):
        assert SECRET not in shown and key() not in shown
    assert worker.ledger_location == f"postgresql://sessions:{SECRET}@db/ledger"
    assert codec.codec_auth is not None
    assert codec.codec_auth.get_secret_value() == f"Bearer {SECRET}"


# ---------------------------------------------------------------- particular variables


def test_tier_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2B_TIER", " Pro ")
    assert ProviderSettings.load().e2b_tier == "pro"
    assert WorkerSettings.load(e2b_tier="HOBBY").e2b_tier == "hobby"


@pytest.mark.parametrize(
    ("value", "on"), [("off", False), ("false", False), ("0", False), ("on", True), ("1", True)]
)
def test_the_reconciler_switch(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("SESSIONS_RECONCILER", value)
    assert ReconcilerSettings.load().reconciler is on


def test_the_codec_server_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_CODEC_ALLOWED_HOSTS", " Codec.Example , proxy:8443,[::1]:9,")
    monkeypatch.setenv("SESSIONS_CODEC_AUTH", " Off ")
    codec = CodecServerSettings.load()
    assert codec.codec_allowed_hosts == ["codec.example", "proxy:8443", "[::1]:9"]
    assert codec.codec_auth_off
    assert parse_host("Codec.Example:8081") == ("codec.example", 8081)
    assert parse_host("[::1]") == ("[::1]", None)
    for bad in ("::1", "a:0", "a:70000", "http://a", "a b", "a/b", "a:8081@b", ""):
        assert parse_host(bad) is None, bad
    monkeypatch.setenv("SESSIONS_CODEC_ALLOWED_HOSTS", "ok,https://x.example")
    assert config_error(CodecServerSettings) == (
        "SESSIONS_CODEC_ALLOWED_HOSTS entry 2 must be a host name or an IP address ([...] for "
        "IPv6), with or without :port, not 'https://x.example'"
    )
    monkeypatch.setenv("SESSIONS_CODEC_ALLOWED_HOSTS", "")
    monkeypatch.setenv("SESSIONS_CODEC_MAX_BODY_BYTES", "100")
    assert config_error(CodecServerSettings) == (
        "SESSIONS_CODEC_MAX_BODY_BYTES must be a whole number of bytes, at least 1024, not '100'"
    )


@pytest.mark.parametrize(
    ("value", "orgs"),
    [("a, b,", ["a", "b"]), ("acme", ["acme"]), (" , ", ["*"]), ("*,acme", ["*", "acme"])],
)
def test_reconciler_orgs_are_a_comma_list(
    monkeypatch: pytest.MonkeyPatch, value: str, orgs: list[str]
) -> None:
    monkeypatch.setenv("SESSIONS_RECONCILER_ORGS", value)
    assert ReconcilerSettings.load().reconciler_orgs == orgs


@pytest.mark.parametrize(("value", "seconds"), [("1m", 60.0), ("90s", 90.0), ("2.5", 2.5)])
def test_worker_timeout_is_a_duration(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: float
) -> None:
    monkeypatch.setenv("SESSIONS_WORKER_TIMEOUT", value)
    assert CliSettings.load().worker_timeout == seconds


@pytest.mark.parametrize("value", ["-1m", "0s", "soon", "inf"])
def test_worker_timeout_refuses_what_is_no_duration(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SESSIONS_WORKER_TIMEOUT", value)
    assert config_error(CliSettings) == (
        f"SESSIONS_WORKER_TIMEOUT must be a duration such as 10s, not {value!r}"
    )


def test_worker_timeout_as_an_argument_must_be_above_zero() -> None:
    assert CliSettings.load(worker_timeout=2).worker_timeout == 2
    message = config_error(CliSettings, worker_timeout=0)
    assert message.startswith("SESSIONS_WORKER_TIMEOUT") and "more than zero" in message


def test_price_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_PRICE_PER_SECOND", "0.0001")
    assert CliSettings.load().price_per_second == 0.0001
    monkeypatch.setenv("SESSIONS_PRICE_PER_SECOND", "-1")
    assert config_error(CliSettings) == (
        "SESSIONS_PRICE_PER_SECOND must be a number of dollars, at least 0, not '-1'"
    )


# ---------------------------------------------------------------- parse_duration, parse_keys


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("3d", 259200),
        ("1h30m", 5400),
        ("1.5h", 5400),
        (" 15M ", 900),
        ("2", 2),
        ("0.5", 0.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "0", "abc", "inf", "nan", "-1m", "", "1h 30m", "5w", "m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration(text)


def test_parse_keys_first_one_encrypts() -> None:
    parsed = parse_keys(f"k2:{key(2)}, k1.old:{key(1)}")
    assert parsed == [("k2", bytes([2]) * 32), ("k1.old", bytes([1]) * 32)]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (key(), "entry 1 must be KEY_ID:BASE64_KEY"),
        (f"bad id:{key()}", "entry 1 must be KEY_ID:BASE64_KEY"),
        (f"k1:{key()},k2:%%%", "entry 2 (key id 'k2'): the key is not valid base64"),
        (f"k1:{key(size=16)}", "entry 1 (key id 'k1'): the key must be 32 bytes (AES-256), not 16"),
        (f"k1:{key()},k1:{key(2)}", "entry 2: key id 'k1' is listed twice"),
        (f"k1:{key()},", "entry 2 must be KEY_ID:BASE64_KEY"),
    ],
)
def test_parse_keys_refuses_without_showing_a_key(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_keys(raw)
    assert f"SESSIONS_PAYLOAD_KEYS {problem}" in str(info.value)
    assert key() not in str(info.value) and key(2) not in str(info.value)


# ---------------------------------------------------------------- ledger location


def test_the_ledger_defaults_to_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert LedgerSettings.load().ledger_location == "sqlite:///.sessions/ledger.db"
    monkeypatch.setenv("SESSIONS_DATA_DIR", str(tmp_path))
    assert LedgerSettings.load().ledger_location == f"sqlite:///{tmp_path}/ledger.db"
    monkeypatch.setenv("LEDGER_URL", "   ")  # blank: as if unset
    assert WorkerSettings.load().ledger_location == f"sqlite:///{tmp_path}/ledger.db"
    monkeypatch.setenv("LEDGER_URL", " postgresql://sessions@db/ledger ")
    assert CliSettings.load().ledger_location == "postgresql://sessions@db/ledger"


# ---------------------------------------------------------------- E2B tier limits


@pytest.mark.parametrize(
    ("env", "rate", "concurrent"),
    [
        ({}, None, None),
        ({"E2B_TIER": "hobby"}, 1.0, 20),
        ({"E2B_TIER": "pro"}, 5.0, 100),
        ({"E2B_TIER": "pro", "E2B_CREATE_RATE": "2.5"}, 2.5, 100),
        ({"E2B_TIER": "hobby", "E2B_MAX_CONCURRENT": "50"}, 1.0, 50),
        ({"E2B_TIER": "pro", "E2B_CREATE_RATE": "0"}, None, 100),
        ({"E2B_TIER": "hobby", "E2B_MAX_CONCURRENT": "0"}, 1.0, None),
        ({"E2B_MAX_CONCURRENT": "7"}, None, 7),
    ],
)
def test_tier_limits_from_settings(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    rate: float | None,
    concurrent: int | None,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    limits = TierLimits.from_settings(ProviderSettings.load())
    assert (limits.create_rate, limits.max_concurrent) == (rate, concurrent)
    assert limits.enabled == (rate is not None or concurrent is not None)


# ---------------------------------------------------------------- validation_message


class _Payload(BaseModel):
    name: str = Field(max_length=5)
    count: int
    nested: dict[str, int] = Field(default_factory=dict)


def test_validation_message_never_echoes_the_input() -> None:
    with pytest.raises(ValidationError) as info:
        _Payload.model_validate({"name": SECRET, "count": SECRET, "nested": {"k": SECRET}})
    message = validation_message(info.value)
    assert SECRET not in message
    assert message.startswith("name: String should have at most 5 characters; count: ")
    assert "nested.k: " in message


def test_validation_message_names_the_whole_when_the_value_is_no_object() -> None:
    with pytest.raises(ValidationError) as info:
        _Payload.model_validate(SECRET)
    assert validation_message(info.value) == (
        "payload: Input should be a valid dictionary or instance of _Payload"
    )
    assert SECRET not in validation_message(info.value, whole="event")
    assert validation_message(info.value, whole="event").startswith("event: ")


@pytest.mark.parametrize(("value", "seconds"), [("11m", 660.0), ("1h", 3600.0), ("90", 90.0)])
def test_drain_timeout_is_a_duration(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: float
) -> None:
    monkeypatch.setenv("SESSIONS_DRAIN_TIMEOUT", value)
    assert WorkerSettings.load().drain_timeout == seconds


def test_drain_timeout_defaults_to_a_command_at_its_default_timeout() -> None:
    """A rollout lets a command with the default timeout finish (the exec activity's ceiling)."""
    ceiling = EXEC["start_to_close_timeout"]
    assert ceiling is not None
    assert WorkerSettings.load().drain_timeout == ceiling.total_seconds() == 660


@pytest.mark.parametrize("value", ["0s", "-1m", "soon", "26h", "inf"])
def test_drain_timeout_refuses_what_is_no_drain(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SESSIONS_DRAIN_TIMEOUT", value)
    assert config_error(WorkerSettings) == (
        f"SESSIONS_DRAIN_TIMEOUT must be a duration such as 11m (at most 25h), not {value!r}"
    )
