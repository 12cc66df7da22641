"""CLI settings resolved in one place: data directory, `dev.env`, price per second, durations.

Order everywhere: command-line flag > environment variable > `<data dir>/dev.env` (written by
a running `sessions dev`) > default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from sessions.errors import ConfigError

DATA_DIR_ENV = "SESSIONS_DATA_DIR"
DEFAULT_DATA_DIR = "./.sessions"
DEV_ENV_FILE = "dev.env"
PRICE_ENV = "SESSIONS_PRICE_PER_SECOND"
WORKER_TIMEOUT_ENV = "SESSIONS_WORKER_TIMEOUT"
DEFAULT_WORKER_TIMEOUT_SECONDS = 10.0
"""How long a query or an update waits for a worker to pick it up before saying none answered."""

E2B_VCPU_SECOND = 0.000014
"""E2B's published price per vCPU-second."""
E2B_GIB_SECOND = 0.0000045
"""E2B's published price per GiB-second of memory."""
DEFAULT_VCPUS = 2
DEFAULT_MEMORY_GIB = 0.5
DEFAULT_PRICE_PER_SECOND = E2B_VCPU_SECOND * DEFAULT_VCPUS + E2B_GIB_SECOND * DEFAULT_MEMORY_GIB
"""$0.00003025 per running second: E2B's default sandbox (2 vCPU, 512 MiB); paused costs $0."""

DEV_ENV_KEYS = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "SESSIONS_TASK_QUEUE",
    "LEDGER_URL",
)
"""What `sessions dev` tells the other commands (never a credential)."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def data_dir(value: str | os.PathLike[str] | None = None) -> Path:
    """Flag > `SESSIONS_DATA_DIR` > `./.sessions`."""
    return Path(value or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def dev_env_path(directory: Path | None = None) -> Path:
    return (directory or data_dir()) / DEV_ENV_FILE


def write_dev_env(path: Path, values: Mapping[str, str], *, pid: int) -> None:
    """Written atomically so a command reading it never sees half a file."""
    lines = [f"# written by `sessions dev` (pid {pid}); removed when it stops", f"PID={pid}"]
    lines += [f"{key}={values[key]}" for key in DEV_ENV_KEYS if values.get(key)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def read_dev_env(path: Path) -> dict[str, str]:
    """The settings of a running `sessions dev`; empty when there is none (or it died)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key.strip()] = value.strip()
    if not _alive(values.pop("PID", "")):
        return {}
    return {k: v for k, v in values.items() if k in DEV_ENV_KEYS}


def apply_dev_env(directory: Path | None = None) -> dict[str, str]:
    """Fill unset variables from a running `sessions dev`'s file; returns what was applied.

    A Temporal profile (`TEMPORAL_PROFILE` / `TEMPORAL_CONFIG_FILE`) set by the user wins over
    the file's address.
    """
    values = read_dev_env(dev_env_path(directory))
    if os.environ.get("TEMPORAL_PROFILE") or os.environ.get("TEMPORAL_CONFIG_FILE"):
        values.pop("TEMPORAL_ADDRESS", None)
        values.pop("TEMPORAL_NAMESPACE", None)
    applied = {k: v for k, v in values.items() if not os.environ.get(k)}
    os.environ.update(applied)
    return applied


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def price_per_second(value: float | None = None) -> float:
    """Flag > `SESSIONS_PRICE_PER_SECOND` > E2B's default sandbox price."""
    if value is not None:
        if value < 0:
            raise ConfigError("the price per second cannot be negative")
        return value
    raw = os.environ.get(PRICE_ENV, "").strip()
    if not raw:
        return DEFAULT_PRICE_PER_SECOND
    try:
        price = float(raw)
    except ValueError:
        raise ConfigError(f"{PRICE_ENV} must be a number of dollars, not {raw!r}") from None
    if price < 0 or price != price:
        raise ConfigError(f"{PRICE_ENV} must be a non-negative number")
    return price


def worker_timeout(value: float | None = None) -> float:
    """Argument > `SESSIONS_WORKER_TIMEOUT` (a duration) > 10 s."""
    if value is not None:
        if value <= 0:
            raise ConfigError("the worker timeout must be more than zero")
        return value
    raw = os.environ.get(WORKER_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_WORKER_TIMEOUT_SECONDS
    try:
        return parse_duration(raw)
    except ConfigError:
        raise ConfigError(
            f"{WORKER_TIMEOUT_ENV} must be a duration such as 10s, not {raw!r}"
        ) from None


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h`, `3d`, `1h30m`, or plain seconds: a number of seconds."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or not raw:
            raise ConfigError(
                f"invalid duration {text!r}: use a number with s, m, h or d (90s, 15m, 2h, 3d)"
            ) from None
    if seconds <= 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError(f"invalid duration {text!r}: it must be more than zero")
    return seconds


def parse_env_pairs(pairs: Iterable[str], *, flag: str = "--env") -> dict[str, str]:
    """`K=V` strings into a dict; a malformed one is one clear error that never echoes values."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            # A bare name is safe to show; anything else may be a pasted secret.
            got = f"got {pair!r}" if _ENV_NAME.match(pair) else "got a value with no '='"
            raise ConfigError(f"{flag} expects NAME=VALUE, {got}")
        if not _ENV_NAME.match(name):
            raise ConfigError(
                f"{flag}: invalid variable name {name!r} (letters, digits and _, "
                "not starting with a digit)"
            )
        env[name] = value
    return env
