"""The approvals inbox's users (`SESSIONS_WEB_AUTH=users`): names and salted scrypt hashes.

One file, one `name:scrypt$N$r$p$<salt>$<hash>` line per user, `#` comments allowed; written by
`sessions web add-user` and read by `sessions web`, which re-reads it when it changes, so a user
added or a token replaced counts without a restart. Only hashes are stored, none is ever shown,
and the file is written whole (a temp file renamed over it), mode 0600.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import SessionsError
from common.files import write_atomically
from common.text import first_unsafe

__all__ = [
    "MAX_NAME",
    "MAX_SECRET",
    "MIN_SECRET",
    "User",
    "UsersError",
    "UsersFile",
    "check_name",
    "check_secret",
    "hash_secret",
    "new_token",
    "verify_secret",
]

MAX_NAME = 200
MIN_SECRET = 12
MAX_SECRET = 1024
"""Longer is refused before hashing: a log-in form is no way to make the server hash megabytes."""

_N, _R, _P, _DKLEN, _SALT = 2**14, 8, 1, 32, 16
# What a stored hash may ask for: its parameters are read from the file, so a hostile or broken
# line must not make a log-in burn memory or minutes (ours need 16 MiB and about 50 ms).
_MAX_N = 2**20
_MAX_MEM = 64 * 2**20  # 128 * r * n bytes
_MAX_WORK = 4 * _N * _R * _P  # n * r * p
_NUMBER = re.compile(r"[1-9][0-9]{0,7}")
_DUMMY_HASH = (
    "scrypt$16384$8$1$vQKT0xbUY6YTyzY0bXeyZg==$2pKJor0QDoK5SUh45et5uLD/Php28YccYhBvuNlNAhA="
)
"""Hashed against when the name is unknown, so the time taken does not tell which names exist."""
_HEADER = "# sessions web users: one `name:scrypt-hash` line each (sessions web add-user NAME)\n"

_WRITE_LOCK = threading.Lock()
"""One writer at a time in this process: two adds at once must both land."""


class UsersError(SessionsError):
    """A user name, a secret or the users file is wrong: a person must fix it."""

    exit_code = 2


# ---------------------------------------------------------------- hashes


def hash_secret(secret: str) -> str:
    """`secret` salted and hashed with scrypt, in the one form the users file holds."""
    salt = secrets.token_bytes(_SALT)
    digest = _scrypt(secret, salt, _N, _R, _P, _DKLEN)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(stored: str, secret: str) -> bool:
    """Whether `secret` is the one `stored` was made from; False, never an error, for a stored
    string that is malformed or asks for more work than any hash of ours does."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    try:
        candidate = _scrypt(secret, salt, n, r, p, len(digest))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, digest)


def new_token() -> str:
    """A log-in token: 24 random bytes, URL-safe (32 characters)."""
    return secrets.token_urlsafe(24)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # surrogatepass: a string that is not valid UTF-8 still hashes (to something no one typed).
    data = secret.encode("utf-8", "surrogatepass")
    maxmem = 128 * r * (n + p + 2) + 2**16
    return hashlib.scrypt(data, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """`(n, r, p, salt, hash)` of a stored hash within bounds; None for anything else."""
    parts = stored.split("$") if len(stored) <= 512 else []
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    if not all(_NUMBER.fullmatch(part) for part in parts[1:4]):
        return None
    n, r, p = (int(part) for part in parts[1:4])
    if n < 2 or n > _MAX_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        return None
    if 128 * r * n > _MAX_MEM or n * r * p > _MAX_WORK:
        return None
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not 8 <= len(salt) <= 64 or not 16 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------- names and secrets


def check_name(name: str) -> str:
    """`name` without whitespace at its ends, if it can be a user name: it is shown in the inbox
    and recorded as who decided, and `:` ends it in the users file."""
    name = name.strip()
    if not name:
        raise UsersError("user name may not be empty")
    if len(name) > MAX_NAME:
        raise UsersError(f"user name may be at most {MAX_NAME} characters, not {len(name)}")
    found = first_unsafe(name)
    if found is not None:
        raise UsersError(f"user name may not contain a control character ({ord(found):#x})")
    if ":" in name:
        raise UsersError("user name may not contain ':'")
    return name


def check_secret(secret: str, *, what: str = "token") -> str:
    """`secret`, if it is long enough to guard the inbox and short enough to be checked."""
    if len(secret) < MIN_SECRET:
        raise UsersError(f"the {what} must be at least {MIN_SECRET} characters")
    if len(secret) > MAX_SECRET:
        raise UsersError(f"the {what} may be at most {MAX_SECRET} characters")
    return secret


# ---------------------------------------------------------------- the file


@dataclass(frozen=True)
class User:
    name: str
    hash: str = field(repr=False)  # never shown, not even in a traceback's locals

    @property
    def fingerprint_source(self) -> str:
        """What a log-in cookie is bound to: a new token changes it, so old cookies stop."""
        return self.hash


class UsersFile:
    """The users file at `path`; a missing file means no users."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}

    def get(self, name: str) -> User | None:
        """The user called `name` in any case, as the file says now; None for no such user."""
        try:
            key = check_name(name).casefold()
        except UsersError:
            return None  # no stored user can have that name
        return self._current().get(key)

    def names(self) -> list[str]:
        """Every user's name, sorted regardless of case."""
        return sorted((u.name for u in self._current().values()), key=str.casefold)

    async def authenticate(self, name: str, secret: str) -> User | None:
        """The user, if `secret` is their token or password; None otherwise. An unknown name
        costs the same hash as a known one, so timing does not reveal which names exist."""
        if len(secret) > MAX_SECRET or len(name) > 4 * MAX_NAME:
            return None
        return await asyncio.to_thread(self._authenticate, name, secret)

    def _authenticate(self, name: str, secret: str) -> User | None:
        user = self.get(name)
        ok = verify_secret(user.hash if user is not None else _DUMMY_HASH, secret)
        return user if ok and user is not None else None

    def add(self, name: str, secret: str, *, replace: bool = False) -> User:
        """Store `name` with `secret` hashed; with `replace`, over the same name's line (its old
        token stops working), else an existing name is refused."""
        name = check_name(name)
        user = User(name, hash_secret(check_secret(secret)))
        with _WRITE_LOCK:
            lines, entries = self._load()
            old = entries.get(name.casefold())
            entry = f"{name}:{user.hash}\n"
            if old is None:
                lines.append(entry)
            elif replace:
                lines[old[0]] = entry
            else:
                raise self.taken(old[1])
            self._write(lines)
        return user

    def taken(self, user: User) -> UsersError:
        """The refusal to add a name `user` already has."""
        return UsersError(
            f"user {user.name} is already in {self.path} (--replace gives them a new one)"
        )

    def remove(self, name: str) -> bool:
        """Take `name` (any case) out of the file; False if no such user."""
        try:
            key = check_name(name).casefold()
        except UsersError:
            return False
        with _WRITE_LOCK:
            lines, entries = self._load()
            if key not in entries:
                return False
            del lines[entries[key][0]]
            self._write(lines)
        return True

    # -- reading and writing

    def _current(self) -> dict[str, User]:
        """The users by folded name, read again only when the file changed (or appeared)."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._seen, self._users = None, {}
                return self._users
            except OSError as e:
                raise UsersError(f"cannot read the users file {self.path}: {e.strerror}") from None
            # The inode too: a rewrite is a new file, even when size and mtime look the same.
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen != self._seen:
                _, entries = self._load()
                self._users = {key: user for key, (_, user) in entries.items()}
                self._seen = seen
            return self._users

    def _load(self) -> tuple[list[str], dict[str, tuple[int, User]]]:
        """The file's lines, and each user by folded name with the index of its line."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [_HEADER], {}
        except UnicodeDecodeError:
            raise UsersError(f"the users file {self.path} is not UTF-8 text") from None
        except OSError as e:
            raise UsersError(f"cannot read the users file {self.path}: {e.strerror}") from None
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        entries: dict[str, tuple[int, User]] = {}
        for index, line in enumerate(lines):
            user = self._parse_line(line, index + 1)
            if user is None:
                continue
            key = user.name.casefold()
            if key in entries:
                raise UsersError(
                    f"{self.path} line {index + 1}: user {user.name} is already on line "
                    f"{entries[key][0] + 1}"
                )
            entries[key] = (index, user)
        return lines, entries

    def _parse_line(self, line: str, number: int) -> User | None:
        """The user on a line; None for a comment or a blank line. The message never quotes the
        line: what follows the name may be a hash, or a secret pasted there by mistake."""
        text = line.strip()
        if not text or text.startswith("#"):
            return None
        name, colon, stored = text.partition(":")
        where = f"{self.path} line {number}"
        if not colon:
            raise UsersError(f"{where}: expected `name:scrypt$...` (sessions web add-user NAME)")
        try:
            name = check_name(name)
        except UsersError as e:
            raise UsersError(f"{where}: {e}") from None
        if _parse(stored) is None:
            raise UsersError(
                f"{where}: the hash of user {name} is not one `sessions web add-user` writes"
            )
        return User(name, stored)

    def _write(self, lines: list[str]) -> None:
        """The whole file, or nothing (mode 0600)."""
        try:
            write_atomically(self.path, "".join(lines).encode("utf-8"))
        except OSError as e:
            raise UsersError(f"cannot write the users file {self.path}: {e.strerror}") from None
