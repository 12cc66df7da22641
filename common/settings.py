"""Every environment variable this product reads: its name, default, rule and message, here only.

Each process loads one model (`WorkerSettings`, `CliSettings`, `CodecServerSettings`) with
`load()`: keyword arguments (command-line flags) > environment variable > default. A value that
breaks its rule is one `ConfigError` naming the variable and what it must be; the value is shown
only for variables that cannot hold a secret. The README's configuration table and the deploy
check are made from these models (`settings_table()`, `variable_names()`), so they cannot drift.

Variables read by other libraries themselves (Temporal's `TEMPORAL_*` through
`temporalio.envconfig`, OpenTelemetry's `OTEL_*`, the per-org E2B keys that the credential chain
looks up at each call) are listed in `EXTERNAL` for the table and the deploy check.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonDict
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.errors import ConfigError
from common.ids import DEFAULT_TASK_QUEUE
from common.units import (
    DEFAULT_PRICE_PER_SECOND,
    MAX_DURATION_SECONDS,
    format_bound,
    parse_duration,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_DRAIN_SECONDS",
    "LOOPBACK_NAMES",
    "DEFAULT_PRICE_PER_SECOND",
    "EXTERNAL",
    "CliSettings",
    "CodecServerSettings",
    "ExternalVariable",
    "LedgerSettings",
    "NotifySettings",
    "NotifySinks",
    "ProviderSettings",
    "ReconcilerSettings",
    "TelemetrySettings",
    "TemporalSettings",
    "WebLinkSettings",
    "WebSettings",
    "WorkerSettings",
    "host_allowed",
    "org_var",
    "parse_duration",
    "parse_host",
    "parse_keys",
    "settings_table",
    "variable_names",
    "variable_prefixes",
]

DEFAULT_DATA_DIR = Path("./.sessions")
LEDGER_FILE = "ledger.db"

KEYS_ENV = "SESSIONS_PAYLOAD_KEYS"
KEY_BYTES = 32
KEY_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""What a key id may be: a payload naming anything else names no key of ours."""
_HOST_RE = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")


def parse_keys(raw: str) -> list[tuple[str, bytes]]:
    """`id:base64,id:base64` → [(id, key)], first one encrypts. Errors never show a key."""
    keys: list[tuple[str, bytes]] = []
    entries = [e.strip() for e in raw.split(",")]
    for n, entry in enumerate(entries, start=1):
        where = f"{KEYS_ENV} entry {n}"
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not KEY_ID_RE.match(key_id):
            raise ConfigError(
                f"{where} must be KEY_ID:BASE64_KEY with a key id of letters, digits, '.', '_' "
                "or '-' (e.g. k1:<base64 of 32 random bytes>)"
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where} (key id {key_id!r}): the key is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"{where} (key id {key_id!r}): the key must be {KEY_BYTES} bytes "
                f"(AES-256), not {len(key)}"
            )
        if any(key_id == known for known, _ in keys):
            raise ConfigError(f"{where}: key id {key_id!r} is listed twice")
        keys.append((key_id, key))
    return keys


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A `Host` header (or an allowed-hosts entry): (lower-case name, port or None), or None when
    it is not `name`, `name:port`, `[IPv6]` or `[IPv6]:port`."""
    match = _HOST_RE.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        return None
    return match["name"], port


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
"""Always answered at a server's own port."""


def host_allowed(
    given: list[str], server_port: int | None, hosts: set[tuple[str, int | None]]
) -> bool:
    """Whether a request's `Host` headers (`given`) name this server: one header, a loopback
    name at its own port, or one of `hosts` ((name, port), or (name, None) for any port). What
    the codec server and the inbox check first, so a DNS-rebinding page gets nothing."""
    if len(given) != 1 or (parsed := parse_host(given[0])) is None:
        return False
    name, port = parsed
    if (name, None) in hosts:
        return True
    if port is None:
        # A browser leaves out the scheme's default port, and behind a TLS-terminating proxy
        # the server cannot tell which scheme it used: https://x arrives as `Host: x`.
        return (name in LOOPBACK_NAMES and server_port == 80) or any(
            (name, default) in hosts for default in (80, 443)
        )
    if name in LOOPBACK_NAMES and port == server_port:
        return True
    return (name, port) in hosts


def _duration_setting(
    value: Any, name: str, example: str, *, maximum: float = MAX_DURATION_SECONDS
) -> Any:
    """A duration variable's value in seconds: text as `parse_duration` reads it, a number as
    given; refused in one line naming the variable."""
    if isinstance(value, str):
        try:
            return parse_duration(value, maximum=maximum)
        except ConfigError:
            raise ValueError(
                f"{name} must be a duration such as {example}, not {value!r}"
            ) from None
    if isinstance(value, int | float) and not 0 < value <= maximum:
        raise ValueError(f"a duration must be more than zero and at most {format_bound(maximum)}")
    return value


def _env(
    name: str,
    default: Any = None,
    *,
    meaning: str,
    expect: str,
    shown_default: str | None = None,
    secret: bool = False,
    **rules: Any,
) -> Any:
    """A field read from the variable `name`.

    `expect` completes "NAME must be ..." in the error message; `shown_default` is the default
    as the README shows it; a `secret` variable's value never appears in a message.
    """
    extra: JsonDict = {"env": name, "expect": expect, "secret": secret}
    if shown_default is not None:
        extra["shown_default"] = shown_default
    if "default_factory" not in rules:
        rules["default"] = default
    return Field(validation_alias=name, description=meaning, json_schema_extra=extra, **rules)


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,  # compose and Kubernetes pass an unset value as an empty one
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """From the environment, with `overrides` (flags; None means "not given") on top."""
        given = {name: value for name, value in overrides.items() if value is not None}
        try:
            return cls(**given)
        except ValidationError as err:
            raise ConfigError(_describe(cls, err)) from None


def _describe(model: type[BaseSettings], err: ValidationError) -> str:
    """One line per broken variable: `NAME must be <rule>, not '<value>'`."""
    fields = {_meta(f)["env"]: f for f in model.model_fields.values()} | model.model_fields
    parts = []
    for problem in err.errors(include_url=False):
        field = fields.get(str(problem["loc"][0])) if problem["loc"] else None
        if field is None:
            parts.append(problem["msg"])
            continue
        meta = _meta(field)
        if problem["type"] == "value_error":  # a validator's own words
            text = problem["msg"].removeprefix("Value error, ")
            parts.append(text if meta["env"] in text else f"{meta['env']}: {text}")
            continue
        value = problem.get("input")
        shown = "" if meta["secret"] or not isinstance(value, str) else f", not {value!r}"
        parts.append(f"{meta['env']} must be {meta['expect']}{shown}")
    return "; ".join(parts)


def _meta(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    assert isinstance(extra, dict), "every setting is declared with _env()"
    return dict(extra)


def _one_of(value: Any, choices: tuple[str, ...], *, upper: bool = False) -> Any:
    """A choice written in any case; anything else left as given, so the message quotes it."""
    if isinstance(value, str):
        normal = value.strip().upper() if upper else value.strip().lower()
        if normal in choices:
            return normal
    return value


Tier = Literal["hobby", "pro"]
OnTimeout = Literal["pause", "kill"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]


def _port_rules() -> dict[str, Any]:
    return {"ge": 1, "le": 65535, "expect": "a port number (1-65535)"}


# ---------------------------------------------------------------- one group per part


class TemporalSettings(_Settings):
    """Where sessions run; the connection itself is `temporalio.envconfig`'s (`TEMPORAL_*`)."""

    task_queue: str = _env(
        "SESSIONS_TASK_QUEUE",
        DEFAULT_TASK_QUEUE,
        meaning="task queue of the session workflows",
        expect="a task queue name",
        min_length=1,
        max_length=1000,
    )
    payload_keys: SecretStr | None = _env(
        "SESSIONS_PAYLOAD_KEYS",
        meaning="AES-256-GCM encryption of every payload in Temporal's history, "
        "`ID:BASE64,...` (the first encrypts; [docs/security.md](docs/security.md))",
        expect="KEY_ID:BASE64_KEY entries separated by commas",
        shown_default="off",
        secret=True,
    )

    @field_validator("payload_keys")
    @classmethod
    def _keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            try:
                parse_keys(value.get_secret_value())
            except ConfigError as err:  # it names the broken entry, never a key
                raise ValueError(str(err)) from None
        return value


class LedgerSettings(_Settings):
    """Where the billing ledger and `sessions dev`'s files live."""

    data_dir: Path = _env(
        "SESSIONS_DATA_DIR",
        DEFAULT_DATA_DIR,
        meaning="`sessions dev`'s files (dev server database, logs) and the default ledger",
        expect="a directory path",
        shown_default="`./.sessions`",
    )
    ledger_url: SecretStr | None = _env(
        "LEDGER_URL",
        meaning="the billing ledger: `sqlite:///path` or `postgresql://user@host/db`",
        expect="a database URL",
        shown_default="SQLite in the data directory",
        secret=True,  # may carry a password
    )

    @property
    def ledger_location(self) -> str:
        """The ledger URL as given, else a SQLite file in the data directory."""
        if self.ledger_url is not None and self.ledger_url.get_secret_value().strip():
            return self.ledger_url.get_secret_value().strip()
        return f"sqlite:///{self.data_dir / LEDGER_FILE}"


class ProviderSettings(_Settings):
    """E2B: where it is and how fast creates may go (keys: `provider.credentials`)."""

    e2b_api_url: str | None = _env(
        "E2B_API_URL",
        meaning="E2B's control plane (also read by the `e2b` SDK)",
        expect="a URL",
        shown_default="E2B's cloud",
    )
    e2b_sandbox_url: str | None = _env(
        "E2B_SANDBOX_URL",
        meaning="E2B's sandbox (envd) address (also read by the `e2b` SDK)",
        expect="a URL",
        shown_default="E2B's cloud",
    )
    e2b_domain: str | None = _env(
        "E2B_DOMAIN",
        meaning="E2B's domain (also read by the `e2b` SDK)",
        expect="a domain name",
        shown_default="`e2b.app`",
    )
    e2b_tier: Tier | None = _env(
        "E2B_TIER",
        meaning="pace creates to E2B's per-key limits: `hobby` (1/s, 20 running) or `pro` "
        "(5/s, 100) ([docs/reliability.md](docs/reliability.md))",
        expect=f"one of {', '.join(get_args(Tier))}",
        shown_default="no pacing, 429s retried",
    )
    e2b_create_rate: float | None = _env(
        "E2B_CREATE_RATE",
        meaning="creates per second, overriding the tier's; `0` turns the pacing off",
        expect="a number of creates per second, at least 0",
        shown_default="the tier's",
        ge=0,
        allow_inf_nan=False,
    )
    e2b_max_concurrent: int | None = _env(
        "E2B_MAX_CONCURRENT",
        meaning="sandboxes running at once, overriding the tier's; `0` turns the limit off",
        expect="a whole number, at least 0",
        shown_default="the tier's",
        ge=0,
    )
    e2b_max_lifetime: int | None = _env(
        "E2B_MAX_LIFETIME",
        meaning="seconds one run of a sandbox may last (E2B's cap: 3600 on `hobby`, 86400 on "
        "`pro`), overriding the tier's: a longer create timeout is shortened to it, and a "
        "session pauses and resumes its sandbox before the cap "
        "([docs/reliability.md](docs/reliability.md)); `0`: unknown (learned from E2B's answers)",
        expect="a whole number of seconds, at least 0",
        shown_default="the tier's",
        ge=0,
    )
    e2b_on_timeout: OnTimeout = _env(
        "E2B_ON_TIMEOUT",
        "pause",
        meaning="what E2B does with a sandbox nobody extended in time (every worker down "
        "longer than its timeout): `pause` keeps it, at no cost, for the session to bill and "
        "resume; `kill` ends it",
        expect="one of pause, kill",
        shown_default="`pause`",
    )

    @field_validator("e2b_tier", mode="before")
    @classmethod
    def _tier(cls, value: Any) -> Any:
        return _one_of(value, get_args(Tier))

    @field_validator("e2b_on_timeout", mode="before")
    @classmethod
    def _on_timeout(cls, value: Any) -> Any:
        return _one_of(value, get_args(OnTimeout))


class TelemetrySettings(_Settings):
    """Logs, probes and the Temporal SDK's metrics; traces and metrics are `OTEL_*`'s."""

    log_level: LogLevel = _env(
        "LOG_LEVEL",
        "INFO",
        meaning="worker log level",
        expect=f"one of {', '.join(get_args(LogLevel))}",
        shown_default="`INFO`",
    )
    log_format: LogFormat = _env(
        "LOG_FORMAT",
        "text",
        meaning="worker logs as text, or one JSON object per line with session, workflow and "
        "sandbox ids",
        expect="text or json",
        shown_default="`text`",
    )
    health_port: int | None = _env(
        "SESSIONS_HEALTH_PORT",
        meaning="serve `/healthz` and `/readyz` on this port",
        shown_default="off (deploy files: 8080)",
        **_port_rules(),
    )
    metrics_port: int | None = _env(
        "SESSIONS_METRICS_PORT",
        meaning="serve the Temporal SDK's metrics for Prometheus instead of over OTLP",
        shown_default="off: OTLP (deploy files too)",
        **_port_rules(),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return _one_of(value, get_args(LogLevel), upper=True)

    @field_validator("log_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        return _one_of(value, get_args(LogFormat))


class ReconcilerSettings(_Settings):
    """The stray-sandbox reconciler's Schedule."""

    reconciler: bool = _env(
        "SESSIONS_RECONCILER",
        True,
        meaning="the worker creates (or updates) the stray-sandbox reconciler Schedule",
        expect="on or off",
        shown_default="on",
    )
    reconciler_interval: float = _env(
        "SESSIONS_RECONCILER_INTERVAL",
        300.0,
        meaning="seconds between two reconciler passes",
        expect="a number of seconds above 0",
        shown_default="300",
        gt=0,
        allow_inf_nan=False,
    )
    reconciler_grace: float = _env(
        "SESSIONS_RECONCILER_GRACE",
        600.0,
        meaning="a sandbox younger than this many seconds is never a stray",
        expect="a number of seconds, at least 0",
        shown_default="600",
        ge=0,
        allow_inf_nan=False,
    )
    reconciler_orgs: Annotated[list[str], NoDecode] = _env(
        "SESSIONS_RECONCILER_ORGS",
        meaning="orgs whose E2B keys the reconciler lists with, comma-separated; `*` is the "
        "shared `E2B_API_KEY`",
        expect="org ids separated by commas",
        shown_default="`*`",
        default_factory=lambda: ["*"],
    )

    @field_validator("reconciler_orgs", mode="before")
    @classmethod
    def _orgs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [org.strip() for org in value.split(",") if org.strip()] or ["*"]
        return value


NOTIFY_URL_ENV = "SESSIONS_NOTIFY_URL"
NOTIFY_SECRET_ENV = "SESSIONS_NOTIFY_SECRET"
NOTIFY_SLACK_URL_ENV = "SESSIONS_NOTIFY_SLACK_URL"
_NOTIFY_VARS = (NOTIFY_URL_ENV, NOTIFY_SECRET_ENV, NOTIFY_SLACK_URL_ENV)
ORG_OFF = "off"
"""An org's own notify URL set to `off`: that sink is off for the org, whatever the default."""


def org_var(name: str, org_id: str) -> str:
    """`NAME__<ORG>`: the org id upper-cased, every non-alphanumeric char as `_` (the scheme of
    the per-org E2B keys, `E2B_API_KEY__<ORG>`)."""
    return f"{name}__{_org_suffix(org_id)}"


def _org_suffix(org_id: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", org_id.upper())


def _url_problem(value: str) -> str | None:
    """Why `value` is no http(s) URL with a host, in words that never quote it (it may hold a
    token); None when it is one."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return "it cannot be parsed as a URL"
    if parts.scheme not in ("http", "https"):
        return "its scheme is not http or https"
    if not parts.hostname:
        return "it has no host"
    return None


def _check_url(name: str, value: str) -> None:
    problem = _url_problem(value)
    if problem is not None:
        raise ValueError(
            f"{name} must be an http:// or https:// URL with a host "
            f"(e.g. https://hooks.example.com/sessions): {problem}"
        )


@dataclass(frozen=True)
class NotifySinks:
    """Where one org's gate notifications go; None: that sink is off for the org."""

    webhook_url: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    """Set whenever `webhook_url` is (the settings refuse one without the other)."""
    slack_url: SecretStr | None = None


MIN_WEB_SECRET = 32
"""Characters a `SESSIONS_WEB_SECRET` needs at least (`openssl rand -hex 32` gives 64)."""


def _duration_field(name: str, value: Any, *, least: float = 1.0) -> Any:
    """A duration variable's value: `90s`, `15m`, `12h`, `3d` or seconds, at least `least`."""
    if isinstance(value, str):
        try:
            value = parse_duration(value)
        except ConfigError:
            raise ValueError(f"{name} must be a duration such as 12h, not {value!r}") from None
    if isinstance(value, int | float) and not value >= least:
        raise ValueError(f"{name} must be at least {least:g} seconds")
    return value


class WebLinkSettings(_Settings):
    """What the approvals inbox and the workers' notices share: where the inbox is, and the key
    that signs its cookies and the notices' one-click decision links."""

    web_url: str | None = _env(
        "SESSIONS_WEB_URL",
        meaning="base URL of the approvals inbox (`sessions web`): notices link to "
        "`<URL>/sessions/<session>/gates/<gate>` and, with `SESSIONS_WEB_SECRET`, carry signed "
        "one-click approve and reject links; an https URL makes the inbox's cookies `Secure`",
        expect="an http(s) URL",
        shown_default="no link",
    )
    web_secret: SecretStr | None = _env(
        "SESSIONS_WEB_SECRET",
        meaning="the key that signs the inbox's log-in cookies, its CSRF tokens and the notices' "
        "one-click links; the workers and `sessions web` must share it (`sessions dev` makes "
        f"one); at least {MIN_WEB_SECRET} characters",
        expect=f"a secret of at least {MIN_WEB_SECRET} characters",
        shown_default="none: no one-click links, and `sessions web` will not start",
        secret=True,
    )
    web_link_ttl: float = _env(
        "SESSIONS_WEB_LINK_TTL",
        24 * 3600.0,
        meaning="how long a one-click link in a notice stays valid (never past the gate's own "
        "deadline)",
        expect="a duration such as 24h",
        shown_default="24h",
    )

    @field_validator("web_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url("SESSIONS_WEB_URL", value)
        return value

    @field_validator("web_secret")
    @classmethod
    def _web_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_WEB_SECRET:
            raise ValueError(
                f"SESSIONS_WEB_SECRET must be at least {MIN_WEB_SECRET} characters "
                "(e.g. `openssl rand -hex 32`)"
            )
        return value

    @field_validator("web_link_ttl", mode="before")
    @classmethod
    def _link_ttl(cls, value: Any) -> Any:
        return _duration_field("SESSIONS_WEB_LINK_TTL", value, least=60)

    @property
    def link_secret(self) -> bytes | None:
        """The signing key as bytes, or None when no secret is set."""
        if self.web_secret is None:
            return None
        return self.web_secret.get_secret_value().strip().encode()


class NotifySettings(WebLinkSettings):
    """Gate notifications: a signed webhook and a Slack incoming webhook, per org or shared.

    An org's own `..._URL__<ORG>` (with its own secret) and `..._SLACK_URL__<ORG>` replace the
    shared ones for that org (`off` turns a sink off for it); they are read at load with the
    rest, so a broken one stops the worker at start, never a notification later.
    """

    notify_url: SecretStr | None = _env(
        NOTIFY_URL_ENV,
        meaning="POST a signed JSON notice here when a gate starts waiting, is reminded, decided "
        "or times out (see Gate notifications); an org's own: `SESSIONS_NOTIFY_URL__<ORG>`",
        expect="an http(s) URL",
        shown_default="off",
        secret=True,  # may carry a token
    )
    notify_secret: SecretStr | None = _env(
        NOTIFY_SECRET_ENV,
        meaning="the HMAC-SHA256 key of the webhook's `Sessions-Signature` header (required with "
        "`SESSIONS_NOTIFY_URL`); an org's own: `SESSIONS_NOTIFY_SECRET__<ORG>`",
        expect="a secret string",
        shown_default="none",
        secret=True,
    )
    notify_slack_url: SecretStr | None = _env(
        NOTIFY_SLACK_URL_ENV,
        meaning="a Slack incoming webhook URL for the same notices (a Block Kit message); an "
        "org's own: `SESSIONS_NOTIFY_SLACK_URL__<ORG>`",
        expect="an http(s) URL",
        shown_default="off",
        secret=True,  # a Slack webhook URL is its own credential
    )
    _notify_orgs: dict[str, dict[str, SecretStr | None]] = PrivateAttr(default_factory=dict)
    """Per org (its variable suffix): the org's own values by base variable name; None: off."""

    @field_validator("notify_url", "notify_slack_url")
    @classmethod
    def _secret_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            _check_url(
                _meta(cls.model_fields[str(info.field_name)])["env"], value.get_secret_value()
            )
        return value

    @field_validator("notify_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(f"{NOTIFY_SECRET_ENV} must not be blank")
        return value

    @model_validator(mode="after")
    def _sinks(self) -> Self:
        try:
            _pair(NOTIFY_URL_ENV, self.notify_url, NOTIFY_SECRET_ENV, self.notify_secret)
            self._notify_orgs = _org_sinks(os.environ)
        except ValueError as err:  # one line naming the variable, never its value
            raise PydanticCustomError("notify_settings", str(err)) from None
        return self

    @property
    def orgs_with_own_sinks(self) -> list[str]:
        """The orgs (as their variables spell them) with sinks of their own."""
        return sorted(self._notify_orgs)

    def sinks(self, org_id: str) -> NotifySinks:
        """The org's sinks: its own where it has them, else the shared ones."""
        own = self._notify_orgs.get(_org_suffix(org_id), {})
        if NOTIFY_URL_ENV in own:
            url, secret = own[NOTIFY_URL_ENV], own.get(NOTIFY_SECRET_ENV)
        else:
            url, secret = self.notify_url, self.notify_secret
        slack = own[NOTIFY_SLACK_URL_ENV] if NOTIFY_SLACK_URL_ENV in own else self.notify_slack_url
        return NotifySinks(url, secret if url is not None else None, slack)


def _pair(url_name: str, url: SecretStr | None, secret_name: str, secret: Any) -> None:
    """A webhook URL needs its secret (unsigned notices could be forged), and a secret alone
    signs nothing: either is a mistake worth stopping for."""
    if url is not None and secret is None:
        raise ValueError(
            f"{url_name} is set but {secret_name} is not (or is empty): a webhook must be signed"
        )
    if secret is not None and url is None:
        raise ValueError(f"{secret_name} is set but {url_name} is not: it would sign nothing")


def _org_sinks(environ: Mapping[str, str]) -> dict[str, dict[str, SecretStr | None]]:
    """The per-org notify variables in `environ`, checked: {org suffix: {base name: value}}."""
    orgs: dict[str, dict[str, SecretStr | None]] = {}
    for name, raw in sorted(environ.items()):
        base = next((b for b in _NOTIFY_VARS if name.startswith(f"{b}__")), None)
        if base is None or not raw:  # empty: unset, as everywhere
            continue
        org = name.removeprefix(f"{base}__")
        value = raw.strip()
        if not org:
            raise ValueError(f"{name} names no org: use {base}__<ORG>")
        if not value:
            raise ValueError(f"{name} must not be blank")
        off = base != NOTIFY_SECRET_ENV and value.lower() == ORG_OFF
        if not off and base != NOTIFY_SECRET_ENV:
            _check_url(name, value)
        orgs.setdefault(org, {})[base] = None if off else SecretStr(value)
    for org, own in orgs.items():
        url_name, secret_name = (f"{base}__{org}" for base in _NOTIFY_VARS[:2])
        off = NOTIFY_URL_ENV in own and own[NOTIFY_URL_ENV] is None  # `off` needs no secret
        if not off:
            _pair(url_name, own.get(NOTIFY_URL_ENV), secret_name, own.get(NOTIFY_SECRET_ENV))
    return orgs


DEFAULT_DRAIN_SECONDS = 660.0
"""A stopping worker's drain: the exec activity's ceiling for a command with the default timeout
(600 s, the seed's) plus the minute the activity allows for connect and kill
(`activities.sandbox.EXEC`; tests/deploy holds the two together)."""
MAX_DRAIN_SECONDS = 25 * 3600.0
"""A command may be given up to 24 h; its activity an hour more at most."""


class WorkerSettings(
    TemporalSettings,
    LedgerSettings,
    ProviderSettings,
    TelemetrySettings,
    ReconcilerSettings,
    NotifySettings,
):
    """Everything `sessions worker` (or `python worker.py`) reads."""

    max_cached_workflows: int = _env(
        "SESSIONS_MAX_CACHED_WORKFLOWS",
        2000,
        meaning="workflows the worker keeps cached (a parked session is cheap to keep)",
        expect="a whole number, at least 1",
        shown_default="2000",
        ge=1,
    )
    watch_interval: float = _env(
        "SESSIONS_WATCH_INTERVAL",
        5.0,
        meaning="seconds between two listings of the managed sandboxes (with the reconciler's "
        "org keys): a session whose sandbox vanished is told to check it, so a sandbox E2B "
        "killed is noticed within about this long; 0 turns the watch off",
        expect="a number of seconds, at least 0",
        shown_default="5",
        ge=0,
        allow_inf_nan=False,
    )
    max_concurrent_activities: int = _env(
        "SESSIONS_MAX_CONCURRENT_ACTIVITIES",
        200,
        meaning="activities (E2B and ledger calls) the worker runs at once",
        expect="a whole number, at least 1",
        shown_default="200",
        ge=1,
    )
    drain_timeout: float = _env(
        "SESSIONS_DRAIN_TIMEOUT",
        DEFAULT_DRAIN_SECONDS,
        meaning="how long a stopping worker (SIGTERM) lets its running activities finish before "
        "it cancels them; at least the longest command's timeout plus a minute, so a rollout "
        "never cuts a command short ([docs/deploy.md](docs/deploy.md)); give the pod as long "
        "plus 30 s (`terminationGracePeriodSeconds`)",
        expect="a duration such as 11m",
        shown_default="11m (a command's default 10-minute timeout, plus a minute)",
    )

    @field_validator("drain_timeout", mode="before")
    @classmethod
    def _drain(cls, value: Any) -> Any:
        return _duration_setting(
            value, "SESSIONS_DRAIN_TIMEOUT", "11m (at most 25h)", maximum=MAX_DRAIN_SECONDS
        )


class CliSettings(TemporalSettings, LedgerSettings):
    """Everything the `sessions` commands read (besides the Temporal connection)."""

    price_per_second: float = _env(
        "SESSIONS_PRICE_PER_SECOND",
        DEFAULT_PRICE_PER_SECOND,
        meaning="dollars per running second in `sessions status` and `sessions costs`",
        expect="a number of dollars, at least 0",
        shown_default="0.00003025 (E2B's 2 vCPU, 512 MiB)",
        ge=0,
        allow_inf_nan=False,
    )
    worker_timeout: float = _env(
        "SESSIONS_WORKER_TIMEOUT",
        10.0,
        meaning="how long a query or an update waits for a worker before saying none answered",
        expect="a duration such as 10s",
        shown_default="10s",
    )

    @field_validator("worker_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _duration_setting(value, "SESSIONS_WORKER_TIMEOUT", "10s")


class CodecServerSettings(TemporalSettings):
    """Everything `python -m sessions.codec_server` reads."""

    codec_auth: SecretStr | None = _env(
        "SESSIONS_CODEC_AUTH",
        meaning="the exact `Authorization` header the codec server demands; `off` serves "
        "without one ([docs/security.md](docs/security.md))",
        expect="a header value",
        shown_default="none: the codec server refuses to start",
        secret=True,
    )
    codec_allowed_hosts: Annotated[list[str], NoDecode] = _env(
        "SESSIONS_CODEC_ALLOWED_HOSTS",
        meaning="`Host` headers the codec server answers besides `localhost`, `127.0.0.1` and "
        "`[::1]` at its port, comma-separated: `name` (any port) or `name:port`",
        expect="host names or host:port entries separated by commas",
        shown_default="none",
        default_factory=list,
    )
    codec_max_body_bytes: int = _env(
        "SESSIONS_CODEC_MAX_BODY_BYTES",
        4 * 1024 * 1024,
        meaning="the largest request body the codec server reads; a larger one is answered 413",
        expect="a whole number of bytes, at least 1024",
        shown_default="4194304 (4 MiB)",
        ge=1024,
    )

    @field_validator("codec_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        entries = [entry.strip().lower() for entry in value.split(",") if entry.strip()]
        for n, entry in enumerate(entries, start=1):
            if parse_host(entry) is None:
                raise ValueError(
                    f"SESSIONS_CODEC_ALLOWED_HOSTS entry {n} must be a host name or an IP "
                    f"address ([...] for IPv6), with or without :port, not {entry!r}"
                )
        return entries

    @property
    def codec_auth_off(self) -> bool:
        """`SESSIONS_CODEC_AUTH=off`: serve without an `Authorization` header, on purpose."""
        auth = self.codec_auth
        return auth is not None and auth.get_secret_value().strip().lower() == "off"


WebAuth = Literal["users", "proxy"]


class WebSettings(CliSettings, WebLinkSettings):
    """Everything `sessions web`, the approvals inbox, reads."""

    web_host: str = _env(
        "SESSIONS_WEB_HOST",
        "127.0.0.1",
        meaning="the address `sessions web` listens on",
        expect="a host name or IP address",
        min_length=1,
    )
    web_port: int = _env(
        "SESSIONS_WEB_PORT",
        8088,
        meaning="the port `sessions web` listens on",
        **_port_rules(),
    )
    web_auth: WebAuth = _env(
        "SESSIONS_WEB_AUTH",
        "users",
        meaning="who is logged in: `users` (names and hashed tokens in `SESSIONS_WEB_USERS`, "
        "signed cookies) or `proxy` (the user named by `SESSIONS_WEB_PROXY_HEADER`, from "
        "`SESSIONS_WEB_PROXY_FROM` only); see Approvals inbox",
        expect="users or proxy",
        shown_default="users",
    )
    web_users: Path | None = _env(
        "SESSIONS_WEB_USERS",
        meaning="the inbox's users file (`sessions web add-user NAME`): one `name:hash` line "
        "each, salted scrypt hashes only",
        expect="a file path",
        shown_default="`web-users` in the data directory",
    )
    web_proxy_header: str | None = _env(
        "SESSIONS_WEB_PROXY_HEADER",
        meaning="with `SESSIONS_WEB_AUTH=proxy`: the header naming the logged-in user, set by "
        "your authenticating proxy (e.g. `X-Forwarded-Email` from oauth2-proxy); ignored "
        "otherwise",
        expect="a header name",
        shown_default="none",
    )
    web_proxy_from: Annotated[list[str], NoDecode] = _env(
        "SESSIONS_WEB_PROXY_FROM",
        meaning="with `SESSIONS_WEB_AUTH=proxy`: the addresses the proxy connects from, as "
        "comma-separated networks; any other peer is refused",
        expect="IP networks such as 10.0.0.0/8 separated by commas",
        shown_default="`127.0.0.1/32,::1/128`",
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
    )
    web_session_ttl: float = _env(
        "SESSIONS_WEB_SESSION_TTL",
        12 * 3600.0,
        meaning="how long a log-in to the inbox lasts",
        expect="a duration such as 12h",
        shown_default="12h",
    )
    web_refresh: float = _env(
        "SESSIONS_WEB_REFRESH",
        10.0,
        meaning="seconds between two refreshes of an open inbox page",
        expect="a number of seconds, at least 2",
        shown_default="10",
        ge=2,
        le=3600,
    )

    @field_validator("web_auth", mode="before")
    @classmethod
    def _auth(cls, value: Any) -> Any:
        return _one_of(value, get_args(WebAuth))

    @field_validator("web_session_ttl", mode="before")
    @classmethod
    def _session_ttl(cls, value: Any) -> Any:
        return _duration_field("SESSIONS_WEB_SESSION_TTL", value, least=60)

    @field_validator("web_proxy_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value.strip()):
            raise ValueError(
                f"SESSIONS_WEB_PROXY_HEADER must be a header name (letters, digits, '-'), "
                f"not {value!r}"
            )
        return None if value is None else value.strip()

    @field_validator("web_proxy_from", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        for n, entry in enumerate(entries, start=1):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"SESSIONS_WEB_PROXY_FROM entry {n} must be an IP network such as "
                    f"10.0.0.0/8 or an address, not {entry!r}"
                ) from None
        if not entries:
            raise ValueError("SESSIONS_WEB_PROXY_FROM must name at least one network")
        return entries

    @model_validator(mode="after")
    def _proxy(self) -> Self:
        if self.web_auth == "proxy" and self.web_proxy_header is None:
            raise PydanticCustomError(
                "web_settings",
                "SESSIONS_WEB_AUTH=proxy needs SESSIONS_WEB_PROXY_HEADER: the header your "
                "proxy names the user in",
            )
        return self

    @property
    def users_file(self) -> Path:
        return self.web_users or self.data_dir / WEB_USERS_FILE

    @property
    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(entry, strict=False) for entry in self.web_proxy_from]


WEB_USERS_FILE = "web-users"


# ---------------------------------------------------------------- the documented whole


@dataclass(frozen=True)
class ExternalVariable:
    """Variables read by a library (or looked up per org), documented beside ours."""

    names: tuple[str, ...]
    meaning: str
    default: str
    prefixes: tuple[str, ...] = ()
    """Families of names: `OTEL_` stands for every `OTEL_*` variable."""
    shown: tuple[str, ...] = ()
    """How the table names them all (`E2B_API_KEY__<ORG>`, ...); default: the names, then each
    family as `<prefix>*`."""


EXTERNAL: tuple[ExternalVariable, ...] = (
    ExternalVariable(
        (
            "TEMPORAL_ADDRESS",
            "TEMPORAL_NAMESPACE",
            "TEMPORAL_API_KEY",
            "TEMPORAL_PROFILE",
            "TEMPORAL_CONFIG_FILE",
        ),
        "Temporal connection, read by `temporalio.envconfig`",
        "`localhost:7233`, `default`",
        prefixes=("TEMPORAL_TLS_",),
    ),
    ExternalVariable(
        ("E2B_API_KEY", "SESSIONS_CREDENTIALS_FILE"),
        "E2B keys, looked up at each call in this order: the org's own variable, its entry in "
        "the JSON credentials file, the shared key (see Credentials below)",
        "none",
        prefixes=("E2B_API_KEY__",),
        shown=("E2B_API_KEY__<ORG>", "SESSIONS_CREDENTIALS_FILE", "E2B_API_KEY"),
    ),
    ExternalVariable(
        (),
        "an org's own gate notification sinks, replacing the shared ones for that org (`off`: "
        "none for it); the org id as in `E2B_API_KEY__<ORG>`",
        "the shared ones",
        prefixes=tuple(f"{name}__" for name in _NOTIFY_VARS),
        shown=tuple(f"{name}__<ORG>" for name in _NOTIFY_VARS),
    ),
    ExternalVariable(
        (),
        "OpenTelemetry traces and metrics, OpenTelemetry's own variables "
        "([docs/observability.md](docs/observability.md))",
        "no export",
        prefixes=("OTEL_",),
    ),
)

_GROUPS: tuple[type[_Settings], ...] = (
    TemporalSettings,
    LedgerSettings,
    ProviderSettings,
    ReconcilerSettings,
    TelemetrySettings,
    NotifySettings,
    WorkerSettings,
    CliSettings,
    CodecServerSettings,
    WebSettings,
)
"""The order of the README's table: by part, then what each process adds."""


def _fields() -> dict[str, FieldInfo]:
    """Every setting once, by variable name, in the order of `_GROUPS`."""
    seen: dict[str, FieldInfo] = {}
    for model in _GROUPS:
        for field in model.model_fields.values():
            seen.setdefault(_meta(field)["env"], field)
    return seen


def variable_names() -> set[str]:
    """Every variable name this product reads or documents."""
    names = set(_fields())
    for ext in EXTERNAL:
        names.update(ext.names)
    return names


def variable_prefixes() -> tuple[str, ...]:
    """Families of variables documented by prefix (`OTEL_*`, `E2B_API_KEY__<ORG>`, ...)."""
    return tuple(p for ext in EXTERNAL for p in ext.prefixes)


def settings_table() -> str:
    """The README's configuration table, as Markdown."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for ext in EXTERNAL:
        shown = ext.shown or (*ext.names, *(f"{p}*" for p in ext.prefixes))
        names = [f"`{n}`" for n in shown]
        rows.append(f"| {', '.join(names)} | {ext.meaning} | {ext.default} |")
    for env, field in _fields().items():
        meta = _meta(field)
        default = meta.get("shown_default") or f"`{field.get_default(call_default_factory=True)}`"
        rows.append(f"| `{env}` | {field.description} | {default} |")
    return "\n".join(rows)


if __name__ == "__main__":  # the README's configuration table
    print(settings_table())
