"""Who an envd call acts as, and where its paths lead, as envd's `permissions` package does.

The SDK names the user with an HTTP Basic `Authorization: Basic base64("<name>:")` header on
Connect calls and a `username` query parameter on `/files`; without one envd uses its default
user, `user` on E2B (SDK >= envd 0.4.0 sends nothing for the default). A name the sandbox does
not know is refused (Connect UNAUTHENTICATED "invalid username", HTTP 401), as envd's
`user.Lookup` does. Relative paths and `~` resolve against that user's home.

Namespace mode reads the sandbox's own /etc/passwd and /etc/group (see runtime.py), so every
user there is known and owners are named as the sandbox names them. Process mode cannot
switch users: `user` and `root` are both the emulator's own user with home /home/user.
"""

from __future__ import annotations

import base64
import binascii
import grp
import os
import posixpath
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from .runtime import SANDBOX_HOME, SANDBOX_UID, Credentials

if TYPE_CHECKING:
    from connectrpc.request import RequestContext

    from .sandboxes import Sandbox

DEFAULT_USER = "user"
_PROCESS_MODE_USERS = ("user", "root")


class UnknownUser(Exception):
    """The request names a user the sandbox does not have."""

    def __init__(self, name: str):
        super().__init__(f"invalid username: '{name}'")
        self.name = name


class PathError(Exception):
    """A path envd cannot expand (e.g. `~other/x`)."""


@dataclass(frozen=True)
class SandboxUser:
    name: str
    uid: int
    gid: int
    home: str

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.uid, self.gid)


# -- the sandbox's passwd and group ---------------------------------------------------------

_cache: dict[str, tuple[tuple[int, int], list[list[str]]]] = {}


def _table(path: str) -> list[list[str]]:
    """The colon-separated lines of a passwd/group file, re-read only when it changed."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    key = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = [line.rstrip("\n").split(":") for line in f if line.strip()]
    except OSError:
        return []
    if len(_cache) > 512:
        _cache.clear()
    _cache[path] = (key, rows)
    return rows


def _passwd(sandbox: Sandbox) -> list[list[str]]:
    return _table(str(sandbox.runtime.host_path("/etc/passwd")))


def _group(sandbox: Sandbox) -> list[list[str]]:
    return _table(str(sandbox.runtime.host_path("/etc/group")))


def lookup(sandbox: Sandbox, name: str | None) -> SandboxUser:
    """The sandbox's user `name` (None: the default user); UnknownUser when there is none."""
    name = DEFAULT_USER if name is None else name
    if not sandbox.runtime.isolated:
        if name not in _PROCESS_MODE_USERS:
            raise UnknownUser(name)
        return SandboxUser(name, os.getuid(), os.getgid(), SANDBOX_HOME)
    for row in _passwd(sandbox):
        if len(row) >= 6 and row[0] == name and row[2].isdigit() and row[3].isdigit():
            return SandboxUser(name, int(row[2]), int(row[3]), row[5] or "/")
    if name == DEFAULT_USER:  # a sandbox that broke its own passwd still has E2B's user
        return SandboxUser(name, SANDBOX_UID, SANDBOX_UID, SANDBOX_HOME)
    raise UnknownUser(name)


def owner_names(sandbox: Sandbox, uid: int, gid: int) -> tuple[str, str]:
    """Owner and group names as the sandbox sees them (the numbers when it has no name)."""
    if not sandbox.runtime.isolated:
        return _host_name(pwd.getpwuid, uid), _host_name(grp.getgrgid, gid)
    owner = next((r[0] for r in _passwd(sandbox) if len(r) > 2 and r[2] == str(uid)), str(uid))
    group = next((r[0] for r in _group(sandbox) if len(r) > 2 and r[2] == str(gid)), str(gid))
    return owner, group


def _host_name(func, ident: int) -> str:  # type: ignore[no-untyped-def]
    try:
        return str(func(ident)[0])
    except KeyError:
        return str(ident)


# -- the request's user -----------------------------------------------------------------------


def basic_auth_username(authorization: str | None) -> str | None:
    """The user name of a `Basic` Authorization header (the password part is ignored)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def request_user(sandbox: Sandbox, authorization: str | None) -> SandboxUser:
    """The user of a Connect call: its Basic auth user, else the default user."""
    return lookup(sandbox, basic_auth_username(authorization))


# -- paths --------------------------------------------------------------------------------------


def resolve_path(path: str, user: SandboxUser) -> str:
    """envd's ExpandAndResolve: `~` is the user's home, relative paths (and "") start there."""
    if path.startswith("~"):
        if len(path) > 1 and path[1] != "/":
            raise PathError(f"failed to expand path '{path}' for user '{user.name}': "
                            "cannot expand user-specific home dir")  # fmt: skip
        path = user.home + path[1:]
    if not path.startswith("/"):
        path = posixpath.join(user.home, path)
    return "/" + posixpath.normpath(path).lstrip("/")


def connect_user(sandbox: Sandbox, ctx: RequestContext) -> SandboxUser:
    """The call's user; an unknown one is UNAUTHENTICATED, as envd's authn middleware answers."""
    try:
        return request_user(sandbox, ctx.request_headers.get("authorization"))
    except UnknownUser as e:
        raise ConnectError(Code.UNAUTHENTICATED, str(e)) from e


def connect_path(path: str, user: SandboxUser) -> str:
    try:
        return resolve_path(path, user)
    except PathError as e:
        raise ConnectError(Code.INVALID_ARGUMENT, str(e)) from e
