"""Where an org's E2B API key comes from: pluggable, resolved inside activities only.

A key never enters a model, a log line or an exception message. Messages say where a key is
looked for (a variable name, a file path), never what it is.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from provider.errors import CredentialsMissing

SHARED_KEY_VAR = "E2B_API_KEY"
"""The key every org falls back to (the e2b SDK's own variable)."""
ORG_KEY_PREFIX = "E2B_API_KEY__"
CREDENTIALS_FILE_VAR = "SESSIONS_CREDENTIALS_FILE"

__all__ = [
    "CREDENTIALS_FILE_VAR",
    "ChainCredentialSource",
    "CredentialSource",
    "EnvCredentialSource",
    "FileCredentialSource",
    "SharedEnvCredentialSource",
    "StaticCredentialSource",
    "default_credentials",
    "describe_source",
    "org_key_var",
]


@runtime_checkable
class CredentialSource(Protocol):
    """Gives the E2B API key of an org, or raises `CredentialsMissing`.

    A source may also define `describe(org_id) -> str`: where the org's key comes from (or would
    be looked for), used in error messages; the provider works without it.
    """

    def api_key(self, org_id: str) -> str: ...


def org_key_var(org_id: str) -> str:
    """`E2B_API_KEY__<ORG>`: the org id upper-cased, every non-alphanumeric char as `_`."""
    return ORG_KEY_PREFIX + re.sub(r"[^A-Z0-9]", "_", org_id.upper())


def describe_source(source: CredentialSource, org_id: str) -> str:
    """Where `source` looks for the org's key, for messages (never the key)."""
    fn = getattr(source, "describe", None)
    if callable(fn):
        try:
            return str(fn(org_id))
        except Exception:  # noqa: BLE001 - a message helper must not fail the call
            pass
    return f"the credential source {type(source).__name__}"


class EnvCredentialSource:
    """The org's own variable, `E2B_API_KEY__<ORG>` (e.g. `E2B_API_KEY__ACME` for `acme`)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    def api_key(self, org_id: str) -> str:
        name = org_key_var(org_id)
        value = (self._environ if self._environ is not None else os.environ).get(name)
        if not value:
            raise CredentialsMissing(f"no E2B API key for org {org_id!r}: set {name}")
        return value

    def describe(self, org_id: str) -> str:
        return org_key_var(org_id)


class SharedEnvCredentialSource:
    """One key for every org: `E2B_API_KEY`, as the e2b SDK reads it."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, var: str = SHARED_KEY_VAR):
        self._environ = environ
        self._var = var

    def api_key(self, org_id: str) -> str:
        value = (self._environ if self._environ is not None else os.environ).get(self._var)
        if not value:
            raise CredentialsMissing(f"no E2B API key for org {org_id!r}: set {self._var}")
        return value

    def describe(self, org_id: str) -> str:
        return self._var


class StaticCredentialSource:
    """One key for every org, given in code (the local emulator's, a test's)."""

    def __init__(self, key: str, *, description: str = "a static key") -> None:
        if not key:
            raise ValueError("a static credential source needs a key")
        self._key = key
        self._description = description

    def api_key(self, org_id: str) -> str:
        return self._key

    def describe(self, org_id: str) -> str:
        return self._description


class FileCredentialSource:
    """A JSON object `{"<org id>": "<key>", ...}`; re-read whenever the file changes.

    The path is the argument, else `SESSIONS_CREDENTIALS_FILE` (read at each lookup); with
    neither, the source holds no key. A file that cannot be read or parsed is an error naming
    the file, never its content.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._path = Path(path) if path is not None else None
        self._environ = environ
        self._lock = threading.Lock()
        self._cache: tuple[Path, tuple[int, int], dict[str, str]] | None = None

    @property
    def path(self) -> Path | None:
        if self._path is not None:
            return self._path
        value = (self._environ if self._environ is not None else os.environ).get(
            CREDENTIALS_FILE_VAR
        )
        return Path(value) if value else None

    def api_key(self, org_id: str) -> str:
        path = self.path
        if path is None:
            raise CredentialsMissing(
                f"no E2B API key for org {org_id!r}: no credentials file "
                f"({CREDENTIALS_FILE_VAR} is not set)"
            )
        value = self._keys(path).get(org_id)
        if not value:
            raise CredentialsMissing(f"no E2B API key for org {org_id!r}: add it to {path}")
        return value

    def describe(self, org_id: str) -> str:
        return f"{self.path} (entry {org_id!r})"

    def _keys(self, path: Path) -> dict[str, str]:
        try:
            st = path.stat()
        except OSError as err:
            raise CredentialsMissing(
                f"credentials file {path} cannot be read: {err.strerror}"
            ) from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._cache is not None and self._cache[0] == path and self._cache[1] == stamp:
                return self._cache[2]
            keys = _parse_file(path)
            self._cache = (path, stamp, keys)
            return keys


def _parse_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CredentialsMissing(
            f"credentials file {path} cannot be read: {err.strerror}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        # The decoder's message names a position, never the file's content.
        if isinstance(err, json.JSONDecodeError):
            where = f"line {err.lineno} column {err.colno}"
        else:
            where = "encoding"
        raise CredentialsMissing(f"credentials file {path} is not valid JSON ({where})") from None
    if not isinstance(data, dict):
        raise CredentialsMissing(
            f'credentials file {path} must hold a JSON object {{"<org id>": "<key>"}}'
        )
    bad = sorted(str(org) for org, key in data.items() if not isinstance(key, str) or not key)
    if bad:
        raise CredentialsMissing(
            f"credentials file {path}: the key of {', '.join(map(repr, bad))} must be a "
            "non-empty string"
        )
    return dict(data)


class ChainCredentialSource:
    """The first source that has a key wins; none → one message naming every place to set it."""

    def __init__(self, *sources: CredentialSource) -> None:
        if not sources:
            raise ValueError("a credential chain needs at least one source")
        self.sources = sources

    def api_key(self, org_id: str) -> str:
        return self._find(org_id)[1]

    def describe(self, org_id: str) -> str:
        try:
            return describe_source(self._find(org_id)[0], org_id)
        except CredentialsMissing:
            return self._where(org_id)

    def _find(self, org_id: str) -> tuple[CredentialSource, str]:
        broken: list[str] = []
        for source in self.sources:
            try:
                return source, source.api_key(org_id)
            except CredentialsMissing as err:
                if isinstance(source, FileCredentialSource) and source.path is not None:
                    if "add it to" not in err.message:
                        broken.append(err.message)  # an unreadable file is worth saying
                continue
        message = f"no E2B API key for org {org_id!r}: set {self._where(org_id)}"
        if broken:
            message += f" ({'; '.join(broken)})"
        raise CredentialsMissing(message)

    def _where(self, org_id: str) -> str:
        places: list[str] = []
        for source in self.sources:
            if isinstance(source, FileCredentialSource):
                if source.path is not None:
                    places.append(f"an entry {org_id!r} in {source.path}")
            else:
                places.append(describe_source(source, org_id))
        return " or ".join(places)


def default_credentials(environ: Mapping[str, str] | None = None) -> ChainCredentialSource:
    """`E2B_API_KEY__<ORG>`, then the credentials file (if configured), then `E2B_API_KEY`."""
    return ChainCredentialSource(
        EnvCredentialSource(environ),
        FileCredentialSource(environ=environ),
        SharedEnvCredentialSource(environ),
    )
