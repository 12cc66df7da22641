"""Emulator settings, resolved argument > environment variable > default in one place."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from .limits import TIERS, LimitFigures, Limits, LimitsUpdate, Tier

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 49982
DEFAULT_ENVD_PORT = 49983

#: Operations that latency and faults can target (control plane), plus envd's.
OPERATIONS = (
    "create",
    "get",
    "list",
    "pause",
    "connect",
    "resume",
    "timeout",
    "refresh",
    "kill",
    "events",
    "command",
    "files",
)

#: E2B's published figures, handy for `--latency realistic`.
REALISTIC_LATENCY: dict[str, float] = {"create": 0.15, "connect": 1.0, "resume": 1.0, "pause": 2.0}


class ScriptedFault(BaseModel):
    """The next `count` calls of `operation` are answered with `status`."""

    operation: str
    count: int = Field(default=1, ge=1)
    status: int = Field(default=500, ge=400, le=599)
    message: str | None = None
    should_retry: bool | None = None
    """Send `Should-Retry: true|false` (the SDK's retry policy obeys it; unset: by status)."""


class FaultSettings(BaseModel):
    """Injected failures of control-plane calls; all off by default. E2B's own limits (create
    rate, concurrency) are not faults: they are `emulator.limits` (`PUT /_emulator/limits`)."""

    model_config = ConfigDict(extra="forbid")

    rate_limit_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of calls answered 429 with `Retry-After`."""
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of calls answered `error_status`."""
    error_status: int = Field(default=500, ge=500, le=599)
    retry_after: float = Field(default=1.0, ge=0.0)
    """`Retry-After` of injected 429/503 (whole seconds); the SDK waits that long per retry."""
    should_retry: bool | None = None
    """Send `Should-Retry: true|false`; unset, the SDK retries 429/502/503/504 (3 times)."""
    operations: list[str] | None = None
    """Restrict the random faults to these operations (None: every operation)."""
    seed: int | None = None
    scripted: list[ScriptedFault] = Field(default_factory=list)


def _parse_latency(value: Any) -> dict[str, float]:
    """Accept a dict, `op=seconds,op=seconds`, a list of `op=seconds`, or `realistic`."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    items = value.split(",") if isinstance(value, str) else list(value)
    result: dict[str, float] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        if item == "realistic":
            result.update(REALISTIC_LATENCY)
            continue
        op, sep, seconds = item.partition("=")
        if not sep:
            raise ValueError(f"latency must look like op=seconds, got {item!r}")
        result[op.strip()] = float(seconds)
    return result


_ENV = {
    "host": "EMULATOR_HOST",
    "port": "EMULATOR_PORT",
    "envd_port": "EMULATOR_ENVD_PORT",
    "api_key": "E2B_API_KEY",
    "templates_file": "EMULATOR_TEMPLATES",
    "data_dir": "EMULATOR_DATA_DIR",
    "latency": "EMULATOR_LATENCY",
    "isolation": "EMULATOR_ISOLATION",
    "state_file": "EMULATOR_STATE_FILE",
    "tier": "EMULATOR_TIER",
    "max_lifetime": "EMULATOR_MAX_LIFETIME",
    "create_rate": "EMULATOR_CREATE_RATE",
    "max_running": "EMULATOR_MAX_RUNNING",
    "api_rate": "EMULATOR_API_RATE",
    "api_rate_period": "EMULATOR_API_RATE_PERIOD",
    "pause_seconds_per_gib": "EMULATOR_PAUSE_SECONDS_PER_GIB",
    "resume_seconds": "EMULATOR_RESUME_SECONDS",
}

LIMIT_FIELDS = tuple(LimitFigures.model_fields)
"""The figures a tier sets, each overridable by its own setting."""


class EmulatorConfig(LimitFigures):
    """Everything the emulator needs; missing fields come from the environment, then defaults.

    Environment: EMULATOR_HOST, EMULATOR_PORT, EMULATOR_ENVD_PORT, E2B_API_KEY (the key the
    emulator accepts), EMULATOR_TEMPLATES, EMULATOR_DATA_DIR, EMULATOR_LATENCY
    (`create=0.15,pause=2`), EMULATOR_FAULT_RATE (share answered 429), EMULATOR_ISOLATION,
    EMULATOR_STATE_FILE, EMULATOR_TIER and one EMULATOR_<FIGURE> per limit (below).

    Limits (`emulator.limits`): `tier` picks E2B's figures (`dev`: generous and fast; `hobby`,
    `pro`: E2B's published ones); each figure given here replaces the tier's. For the rates
    and the concurrency, 0 turns the limit off.
    """

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """Control plane port; 0 picks a free one."""
    envd_port: int = Field(default=DEFAULT_ENVD_PORT, ge=0, le=65535)
    """envd port; 0 picks a free one."""
    api_key: str | None = None
    """The key clients must send as X-API-Key; generated (and printed) when unset."""
    templates_file: Path | None = None
    latency: dict[str, float] = Field(default_factory=dict)
    faults: FaultSettings = Field(default_factory=FaultSettings)
    data_dir: Path | None = None
    """Where sandbox directories live; a fresh temporary directory when unset."""
    isolation: Literal["auto", "namespace", "process"] = "auto"
    """`namespace`: Linux mount+pid namespaces (root); `process`: plain processes; `auto`: try."""
    state_file: Path | None = None
    """Where the sandbox records are kept across restarts (see `emulator.state`); none: they
    live and die with this process."""
    tick_seconds: float = Field(default=0.1, gt=0)
    """How often sandbox timeouts are checked."""
    tier: Tier = "dev"
    """E2B's figures to enforce (`LimitFigures`, each overridable)."""
    quiet: bool = False
    """Do not print the start line (in-process test servers)."""

    model_config = ConfigDict(extra="forbid")
    """A misspelt setting is an error, not a silently default emulator."""

    _api_key_generated: bool = PrivateAttr(default=False)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        data = dict(data or {})
        legacy = data.pop("max_lifetime_seconds", None)  # the setting's earlier name
        if legacy is not None and data.get("max_lifetime") is None:
            data["max_lifetime"] = legacy
        for field, var in _ENV.items():
            if data.get(field) is None and os.environ.get(var):
                data[field] = os.environ[var]
        faults = data.get("faults")
        rate = os.environ.get("EMULATOR_FAULT_RATE")
        if faults is None and rate:
            data["faults"] = {"rate_limit_rate": float(rate)}
        return data

    @field_validator("latency", mode="before")
    @classmethod
    def _latency(cls, value: Any) -> dict[str, float]:
        return _parse_latency(value)

    @model_validator(mode="after")
    def _key(self) -> EmulatorConfig:
        if not self.api_key:
            self.api_key = "e2b_" + secrets.token_hex(20)
            self._api_key_generated = True
        return self

    @property
    def limits(self) -> Limits:
        """The tier's figures with every override given applied."""
        change = LimitsUpdate.model_validate({"tier": self.tier, **self.given_figures()})
        return change.apply(TIERS[self.tier])

    @property
    def api_key_generated(self) -> bool:
        """True when no key was given and one was generated (it is then printed once)."""
        return self._api_key_generated
