"""EntryInfo as envd builds it, and file metadata kept where envd keeps it.

- `mode` is the permission bits only (Go's `FileMode.Perm()`, `st_mode & 0o777`: no type,
  setuid, setgid or sticky bits); for a symlink, its target's. `permissions` is Go's
  `FileMode.String()` of the entry itself (`drwxr-xr-x`, `-rw-r--r--`, `Lrwxrwxrwx`,
  `dtrwxrwxrwx` for /tmp).
- A symlink's `type` is its target's, `is_symlink` is set and `symlink_target` is the fully
  resolved target (inside the sandbox), as in envd >= 0.6.
- Metadata (envd >= 0.6.2) lives in `user.e2b.<key>` extended attributes of the file, so it
  moves with the file, disappears with it, and is replaced as a whole by an overwrite.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from e2b.envd.filesystem import filesystem_pb as pb
from protobuf.wkt.google.protobuf.timestamp_pb import Timestamp

from .envd_users import owner_names

if TYPE_CHECKING:
    from .sandboxes import Sandbox

METADATA_PREFIX = "user.e2b."
_MAX_LINKS = 40
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


# -- Go's FileMode ------------------------------------------------------------------------------


def _go_type_letters(mode: int) -> str:
    """The type letters Go's FileMode.String() puts before `rwxrwxrwx`, in its order."""
    fmt = stat.S_IFMT(mode)
    letters = ""
    if fmt == stat.S_IFDIR:
        letters += "d"
    if fmt == stat.S_IFLNK:
        letters += "L"
    if fmt in (stat.S_IFBLK, stat.S_IFCHR):
        letters += "D"
    if fmt == stat.S_IFIFO:
        letters += "p"
    if fmt == stat.S_IFSOCK:
        letters += "S"
    if mode & stat.S_ISUID:
        letters += "u"
    if mode & stat.S_ISGID:
        letters += "g"
    if fmt == stat.S_IFCHR:
        letters += "c"
    if mode & stat.S_ISVTX:
        letters += "t"
    return letters or "-"


def go_permissions(mode: int) -> str:
    """Go's `os.FileMode.String()` for a `st_mode`."""
    bits = "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return _go_type_letters(mode) + bits


# -- paths inside the sandbox -----------------------------------------------------------------


def sandbox_realpath(sandbox: Sandbox, path: str) -> str:
    """`path` with every symlink resolved the way the sandbox sees it.

    Resolving through the host path would follow an absolute link (`/tmp/x`) to the host's
    file; here each link is read and its target resolved again from the sandbox's root.
    Missing components are kept as they are. Raises OSError(ELOOP) for a cycle.
    """
    host = sandbox.runtime.host_path
    parts = [p for p in path.split("/") if p]
    resolved = "/"
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            resolved = posixpath.dirname(resolved)
            continue
        candidate = posixpath.join(resolved, part)
        try:
            target = os.readlink(host(candidate))
        except OSError:  # not a link, or missing: keep it as it is
            resolved = candidate
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
        parts = [p for p in target.split("/") if p] + parts
        if target.startswith("/"):
            resolved = "/"
    return resolved


def host_of(sandbox: Sandbox, path: str) -> Path:
    """The host path that reaches the sandbox's (resolved) `path`."""
    return sandbox.runtime.host_path(sandbox_realpath(sandbox, path))


# -- metadata -------------------------------------------------------------------------------------


def validate_metadata(metadata: dict[str, str]) -> None:
    """ValueError for a key or value envd could not store (the SDK checks the same)."""
    for key, value in metadata.items():
        if not _TOKEN.match(key) or len((METADATA_PREFIX + key).encode()) > 255:
            raise ValueError(f"invalid metadata key {key!r}")
        if not _PRINTABLE.match(value) or len(value) > 65536:
            raise ValueError(f"invalid metadata value for key {key!r}")


def read_metadata(host: Path) -> dict[str, str]:
    """The file's `user.e2b.*` attributes (empty where the file system has none)."""
    try:
        names = os.listxattr(host)
    except OSError:
        return {}
    metadata = {}
    for name in names:
        if name.startswith(METADATA_PREFIX):
            try:
                metadata[name[len(METADATA_PREFIX) :]] = os.getxattr(host, name).decode(
                    errors="replace"
                )
            except OSError:
                continue
    return metadata


def replace_metadata(host: Path, metadata: dict[str, str]) -> None:
    """Make the file's metadata exactly `metadata` (an overwrite clears keys it does not set).

    A file system without extended attributes keeps none, as envd does (it logs and goes on).
    """
    try:
        for name in os.listxattr(host):
            if name.startswith(METADATA_PREFIX) and name[len(METADATA_PREFIX) :] not in metadata:
                os.removexattr(host, name)
        for key, value in metadata.items():
            os.setxattr(host, METADATA_PREFIX + key, value.encode())
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


# -- EntryInfo ------------------------------------------------------------------------------------


def _kind(mode: int) -> pb.FileType:
    if stat.S_ISDIR(mode):
        return pb.FileType.DIRECTORY
    if stat.S_ISREG(mode):
        return pb.FileType.FILE
    return pb.FileType.UNSPECIFIED


def entry_info(sandbox: Sandbox, path: str, host: Path | None = None) -> pb.EntryInfo:
    """envd's EntryInfo of the sandbox path `path` (not following a final symlink)."""
    host = (
        host
        if host is not None
        else host_of(sandbox, posixpath.dirname(path)) / (posixpath.basename(path))
    )
    st = os.lstat(host)
    kind, mode, target = _kind(st.st_mode), stat.S_IMODE(st.st_mode) & 0o777, None
    is_link, metadata_host = stat.S_ISLNK(st.st_mode), host
    if is_link:  # described by its target, as envd does
        try:
            target = sandbox_realpath(sandbox, path)
            metadata_host = sandbox.runtime.host_path(target)
            target_st = os.stat(metadata_host)
            kind, mode = _kind(target_st.st_mode), stat.S_IMODE(target_st.st_mode) & 0o777
        except OSError:  # dangling or a loop
            target = target or os.readlink(host)
            kind, mode = pb.FileType.UNSPECIFIED, 0
    owner, group = owner_names(sandbox, st.st_uid, st.st_gid)
    return pb.EntryInfo(
        name=posixpath.basename(path) or "/",
        type=kind,
        path=path,
        size=st.st_size,
        mode=mode,
        permissions=go_permissions(st.st_mode),
        owner=owner,
        group=group,
        modified_time=Timestamp(seconds=int(st.st_mtime), nanos=st.st_mtime_ns % 1_000_000_000),
        symlink_target=target,
        is_symlink=is_link,
        metadata=read_metadata(metadata_host),
    )
