"""Where the ledger lives: `url` argument > `LEDGER_URL` > a SQLite file in the data directory
(`common.settings.LedgerSettings`), and how a URL becomes a driver's."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from common.settings import LedgerSettings
from ledger.errors import LedgerConfigError

_FORMS = "sqlite:///path/to/ledger.db or postgresql://user:password@host:5432/db"
_SQLITE = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES = {"postgresql", "postgres", "postgresql+asyncpg", "postgres+asyncpg"}
_PASSWORD = re.compile(r"(://[^:/@]*):.*@")


@dataclass(frozen=True)
class LedgerTarget:
    """A resolved ledger location: the async driver URL plus what the driver needs besides."""

    url: URL
    backend: Literal["sqlite", "postgresql"]
    connect_args: dict[str, Any] = field(default_factory=dict)

    @property
    def display(self) -> str:
        """The URL with its password masked: the only form fit for logs and messages."""
        return self.url.render_as_string(hide_password=True)


def resolve_ledger_url(url: str | None = None) -> str:
    """The URL the user asked for, as written: argument > `LEDGER_URL` > the default file."""
    if url is not None and url.strip():
        return url.strip()
    return LedgerSettings.load().ledger_location


def mask_url(raw: str) -> str:
    """Hide a password in a URL that may not even parse."""
    return _PASSWORD.sub(r"\1:***@", raw)


def parse_ledger_url(raw: str) -> LedgerTarget:
    """Map the plain forms users write to the async drivers; anything else is one clear error."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise LedgerConfigError(
            f"ledger URL {mask_url(raw)!r} is not a database URL: use {_FORMS}"
        ) from None
    scheme = url.drivername.lower()
    if scheme in _SQLITE:
        return _sqlite(url)
    if scheme in _POSTGRES:
        return _postgres(url)
    raise LedgerConfigError(
        f"ledger URL {url.render_as_string(hide_password=True)!r} is not supported: use {_FORMS}"
    )


def _sqlite(url: URL) -> LedgerTarget:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise LedgerConfigError(
            "an in-memory SQLite ledger would lose every cost event when the worker stops: "
            "give a file, e.g. sqlite:///.sessions/ledger.db"
        )
    if url.query:
        raise LedgerConfigError(
            f"SQLite ledger URL options are not supported: {', '.join(sorted(url.query))}"
        )
    path = Path(database).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LedgerConfigError(
            f"cannot create the ledger directory {str(path.parent)!r}: {err.strerror}"
        ) from None
    return LedgerTarget(
        url=url.set(drivername="sqlite+aiosqlite", database=str(path)),
        backend="sqlite",
        # sqlite3's busy timeout: concurrent writers wait for the lock instead of failing.
        connect_args={"timeout": 30.0},
    )


def _postgres(url: URL) -> LedgerTarget:
    query = dict(url.query)
    connect_args: dict[str, Any] = {}
    options = query.pop("options", None)
    if options is not None:
        connect_args["server_settings"] = _libpq_options(_single(options, "options"))
    sslmode = query.pop("sslmode", None)
    if sslmode is not None:
        connect_args["ssl"] = _single(sslmode, "sslmode")
    url = url.set(drivername="postgresql+asyncpg", query=query)
    return LedgerTarget(url=url, backend="postgresql", connect_args=connect_args)


def _single(value: str | tuple[str, ...], name: str) -> str:
    if isinstance(value, tuple):
        raise LedgerConfigError(f"ledger URL option {name!r} is given more than once")
    return value


def _libpq_options(options: str) -> dict[str, str]:
    """libpq's `options=-c key=value ...` (e.g. `-csearch_path=billing`) as server settings."""
    settings: dict[str, str] = {}
    words = shlex.split(options)
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-c" and index + 1 < len(words):
            index += 1
            setting = words[index]
        elif word.startswith("-c"):
            setting = word[2:]
        elif word.startswith("--"):
            setting = word[2:]
        else:
            setting = ""
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise LedgerConfigError(
                f"ledger URL options {options!r} not understood: use -c name=value"
            )
        settings[key.replace("-", "_")] = value
        index += 1
    return settings
