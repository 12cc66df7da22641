"""Directory watching as envd does it: the WatchDir stream and the polled watchers.

envd uses fsnotify (inotify); so does this, through ctypes. Events are fsnotify's: CREATE
(IN_CREATE, IN_MOVED_TO), WRITE (IN_MODIFY), REMOVE (IN_DELETE, the watched directory's
IN_DELETE_SELF), RENAME (IN_MOVED_FROM, the watched directory's IN_MOVE_SELF) and CHMOD
(IN_ATTRIB), named relative to the watched directory (`sub/file` when recursive). With
`include_entry` (envd >= 0.6.3) CREATE, WRITE and CHMOD carry the entry's EntryInfo when it
still exists; REMOVE and RENAME never do. Paths on network file systems (NFS, CIFS, SMB,
FUSE) are refused unless `allow_network_mounts` (envd >= 0.6.4).

A stream open when its sandbox is paused ends CANCELED, when it is killed UNAVAILABLE, the
same as a command's stream (see envd_process.stream_cut_error).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import posixpath
import secrets
import struct
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.filesystem import filesystem_pb as pb
from protobuf import Oneof

from .envd_entries import entry_info, host_of
from .envd_process import keepalive_interval, sandbox_of, stream_cut_error
from .envd_users import connect_path, connect_user

if TYPE_CHECKING:
    from connectrpc.request import RequestContext

    from .sandboxes import Sandbox
    from .server import EmulatorCore

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF
)  # fmt: skip
_EVENT = struct.Struct("iIII")
_NETWORK_FS = {0x6969, 0xFF534D42, 0x517B, 0xFE534D42, 0x65735546}  # NFS CIFS SMB SMB2 FUSE
_MAX_PENDING = 10_000
_STATE_POLL = 0.1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return lib if hasattr(lib, "inotify_init1") else None


_LIBC = _libc()


def _ops(mask: int, is_root: bool) -> list[pb.EventType]:
    """fsnotify's operations of one inotify event, in the order envd sends them."""
    ops = []
    if mask & (IN_CREATE | IN_MOVED_TO):
        ops.append(pb.EventType.CREATE)
    if mask & IN_MOVED_FROM or (is_root and mask & IN_MOVE_SELF):
        ops.append(pb.EventType.RENAME)
    if mask & IN_ATTRIB:
        ops.append(pb.EventType.CHMOD)
    if mask & IN_MODIFY:
        ops.append(pb.EventType.WRITE)
    if mask & IN_DELETE or (is_root and mask & IN_DELETE_SELF):
        ops.append(pb.EventType.REMOVE)
    return ops


def on_network_mount(host: Path) -> bool:
    """envd's IsPathOnNetworkMount: the file system type of `host` (statfs f_type)."""
    if _LIBC is None:
        return False
    buf = ctypes.create_string_buffer(512)
    if _LIBC.statfs(os.fsencode(host), buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF in _NETWORK_FS


class Watcher:
    """An inotify watch of one sandbox directory (and, recursively, its subdirectories)."""

    def __init__(
        self,
        sandbox: Sandbox,
        path: str,
        host: Path,
        *,
        recursive: bool,
        include_entry: bool,
        on_event: Callable[[pb.FilesystemEvent], None],
    ):
        if _LIBC is None:
            raise ConnectError(
                Code.UNIMPLEMENTED, "directory watching needs Linux inotify; the emulator "
                f"runs on {sys.platform}",
            )  # fmt: skip
        self.sandbox, self.path, self.host = sandbox, path, host
        self.recursive, self.include_entry, self.on_event = recursive, include_entry, on_event
        self.error: ConnectError | None = None
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory relative to `path`
        self._fd = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise ConnectError(Code.INTERNAL, f"error creating watcher: {_errno_text()}")
        try:
            self._add_tree(host, "")
        except ConnectError:
            os.close(self._fd)
            raise
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)

    def _add(self, host: Path, rel: str) -> None:
        assert _LIBC is not None
        wd = _LIBC.inotify_add_watch(self._fd, os.fsencode(host), _MASK)
        if wd < 0:
            raise ConnectError(
                Code.INTERNAL, f"error adding path {self.path} to watcher: {_errno_text()}"
            )
        self._dirs[wd] = rel

    def _add_tree(self, host: Path, rel: str) -> None:
        self._add(host, rel)
        if not self.recursive:
            return
        for dirpath, dirnames, _ in os.walk(host):
            base = os.path.relpath(dirpath, host)
            for name in dirnames:
                sub = posixpath.normpath(posixpath.join(rel, base, name))
                with contextlib.suppress(ConnectError):  # gone already: nothing to watch
                    self._add(Path(dirpath) / name, sub)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        except OSError as e:
            self._fail(f"watcher error: {e}")
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            self._handle(wd, mask, raw.rstrip(b"\0").decode(errors="surrogateescape"))

    def _handle(self, wd: int, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            self._fail("watcher error: queue or buffer overflow")
            return
        rel_dir = self._dirs.get(wd)
        if rel_dir is None:
            return
        if mask & IN_IGNORED:
            self._dirs.pop(wd, None)
            return
        is_root = rel_dir == "" and not name
        rel = posixpath.join(rel_dir, name) if name else (rel_dir or ".")
        if self.recursive and name and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
            with contextlib.suppress(OSError, ConnectError):
                self._add_tree(self.host / rel, rel)
        for op in _ops(mask, is_root):
            event = pb.FilesystemEvent(name=rel, type=op)
            if self.include_entry and op in (
                pb.EventType.CREATE, pb.EventType.WRITE, pb.EventType.CHMOD
            ):  # fmt: skip
                with contextlib.suppress(OSError):  # best effort, as envd: gone is no entry
                    event = pb.FilesystemEvent(
                        name=rel, type=op, entry=entry_info(self.sandbox, self._full(rel))
                    )
            self.on_event(event)

    def _full(self, rel: str) -> str:
        return self.path if rel == "." else posixpath.join(self.path, rel)

    def _fail(self, message: str) -> None:
        self.error = ConnectError(Code.INTERNAL, message)
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


def _response(field: str, value: object) -> pb.WatchDirResponse:
    event: Any = Oneof(field, value)  # one of the response's fields, named by the caller
    return pb.WatchDirResponse(event=event)


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())


class WatchService:
    """WatchDir, CreateWatcher, GetWatcherEvents and RemoveWatcher of envd's filesystem."""

    core: EmulatorCore

    def __init__(self) -> None:
        self._watchers: dict[str, tuple[Sandbox, dict[str, tuple[Watcher, list]]]] = {}

    def _open(
        self,
        sandbox: Sandbox,
        path: str,
        request: pb.WatchDirRequest | pb.CreateWatcherRequest,
        on_event: Callable[[pb.FilesystemEvent], None],
    ) -> Watcher:
        try:
            host = host_of(sandbox, path)
        except OSError as e:
            raise ConnectError(Code.INVALID_ARGUMENT, f"cyclic symlink at {path}") from e
        if not host.exists():
            raise ConnectError(Code.NOT_FOUND, f"path {path} not found")
        if not host.is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"path {path} not a directory")
        if not request.allow_network_mounts and on_network_mount(host):
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"cannot watch path on network filesystem: {path}"
            )
        return Watcher(
            sandbox, path, host, recursive=request.recursive,
            include_entry=request.include_entry, on_event=on_event,
        )  # fmt: skip

    async def watch_stream(
        self, sandbox: Sandbox, path: str, request: pb.WatchDirRequest, ctx: RequestContext
    ) -> AsyncIterator[pb.WatchDirResponse]:
        """Start, then events and keepalives until the client leaves, its deadline, or the
        sandbox pauses or dies."""
        queue: asyncio.Queue[pb.FilesystemEvent] = asyncio.Queue()
        watcher = self._open(sandbox, path, request, queue.put_nowait)
        loop = asyncio.get_running_loop()
        deadline = None if ctx.timeout_ms is None else loop.time() + ctx.timeout_ms / 1000
        keepalive = keepalive_interval(ctx)
        next_ping = loop.time() + keepalive
        try:
            yield _response("start", pb.WatchDirResponse.StartEvent())
            while True:
                if (cut := stream_cut_error(sandbox)) is not None:
                    raise cut
                if watcher.error is not None:
                    raise watcher.error
                now = loop.time()
                if deadline is not None and now >= deadline:
                    raise ConnectError(Code.DEADLINE_EXCEEDED, "the watch's timeout ran out")
                if now >= next_ping:
                    next_ping = now + keepalive
                    yield _response("keepalive", pb.WatchDirResponse.KeepAlive())
                    continue
                try:
                    event = await asyncio.wait_for(queue.get(), _STATE_POLL)
                except TimeoutError:
                    continue
                next_ping = loop.time() + keepalive
                yield _response("filesystem", event)
        finally:
            watcher.close()

    def _sweep(self) -> None:
        """Close the watchers of killed sandboxes (nobody will ever ask for their events)."""
        for sandbox_id, (sandbox, watchers) in list(self._watchers.items()):
            if sandbox.state == "killed":
                for watcher, _ in watchers.values():
                    watcher.close()
                del self._watchers[sandbox_id]

    def _registry(self, ctx: RequestContext) -> dict[str, tuple[Watcher, list]]:
        self._sweep()
        sandbox = sandbox_of(self.core, ctx)
        return self._watchers.setdefault(sandbox.sandbox_id, (sandbox, {}))[1]

    async def create_watcher(
        self, request: pb.CreateWatcherRequest, ctx: RequestContext
    ) -> pb.CreateWatcherResponse:
        registry = self._registry(ctx)
        sandbox = sandbox_of(self.core, ctx)
        path = connect_path(request.path, connect_user(sandbox, ctx))
        events: list[pb.FilesystemEvent] = []

        def keep(event: pb.FilesystemEvent) -> None:
            if len(events) < _MAX_PENDING:
                events.append(event)

        watcher = self._open(sandbox, path, request, keep)
        watcher_id = "w" + secrets.token_hex(8)
        registry[watcher_id] = (watcher, events)
        return pb.CreateWatcherResponse(watcher_id=watcher_id)

    def _get(self, ctx: RequestContext, watcher_id: str) -> tuple[Watcher, list]:
        found = self._registry(ctx).get(watcher_id)
        if found is None:
            raise ConnectError(Code.NOT_FOUND, f"watcher with id {watcher_id} not found")
        return found

    async def get_watcher_events(
        self, request: pb.GetWatcherEventsRequest, ctx: RequestContext
    ) -> pb.GetWatcherEventsResponse:
        watcher, events = self._get(ctx, request.watcher_id)
        if watcher.error is not None:
            raise watcher.error
        taken = list(events)
        events.clear()
        return pb.GetWatcherEventsResponse(events=taken)

    async def remove_watcher(
        self, request: pb.RemoveWatcherRequest, ctx: RequestContext
    ) -> pb.RemoveWatcherResponse:
        watcher, _ = self._get(ctx, request.watcher_id)
        watcher.close()
        del self._registry(ctx)[request.watcher_id]
        return pb.RemoveWatcherResponse()
