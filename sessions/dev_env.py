"""`<data dir>/dev.env`: how a running `sessions dev` tells the other commands where its stack is,
and the CLI's `--env K=V` pairs.

Order everywhere: command-line flag > environment variable > `<data dir>/dev.env` (applied to the
environment before `common.settings.CliSettings` reads it) > default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from common.errors import ConfigError

DEV_ENV_FILE = "dev.env"

DEV_ENV_KEYS = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "SESSIONS_TASK_QUEUE",
    "LEDGER_URL",
)
"""What `sessions dev` tells the other commands (never a credential)."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def data_dir(value: str | os.PathLike[str] | None = None) -> Path:
    """Flag > `SESSIONS_DATA_DIR` > `./.sessions`."""
    if value:
        return Path(value)
    from common.settings import LedgerSettings  # on use: `sessions --help` stays quick

    return LedgerSettings.load().data_dir


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
