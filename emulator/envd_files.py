"""envd filesystem: Connect-RPC service (stat, list, mkdir, move, remove, watch) and `/files`.

As envd: the request's user (envd_users) decides where `~` and relative paths lead and who
owns what an operation creates (new directories and written files belong to that user; in
namespace mode they are chowned, as envd's EnsureDirs and upload do). It is no access check:
envd itself runs as root, and so do these operations.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import posixpath
import shutil
import stat
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import TYPE_CHECKING

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.filesystem import filesystem_pb as pb
from e2b.envd.filesystem.filesystem_connect import Filesystem
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .envd_entries import entry_info, host_of, read_metadata, replace_metadata, validate_metadata
from .envd_process import sandbox_of
from .envd_users import (
    PathError,
    SandboxUser,
    UnknownUser,
    connect_path,
    connect_user,
    lookup,
    resolve_path,
)
from .envd_watch import WatchService
from .errors import error_response

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from connectrpc.request import RequestContext

    from .sandboxes import Sandbox
    from .server import EmulatorCore


def ensure_dirs(sandbox: Sandbox, path: str, user: SandboxUser) -> None:
    """Create the missing directories of `path` (0755), owned by `user` (envd's EnsureDirs)."""
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = posixpath.join(current, part)
        host = host_of(sandbox, current)
        try:
            st = os.stat(host)
        except FileNotFoundError:
            os.mkdir(host, 0o755)
            if sandbox.runtime.isolated:
                os.chown(host, user.uid, user.gid)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(f"path is a file: {current}")


class FilesystemService(WatchService, Filesystem):
    def __init__(self, core: EmulatorCore):
        self.core = core
        super().__init__()

    def _target(self, ctx: RequestContext, path: str) -> tuple[Sandbox, SandboxUser, str]:
        sandbox = sandbox_of(self.core, ctx)
        user = connect_user(sandbox, ctx)
        return sandbox, user, connect_path(path, user)

    async def stat(self, request: pb.StatRequest, ctx: RequestContext) -> pb.StatResponse:
        sandbox, _, path = self._target(ctx, request.path)
        try:
            return pb.StatResponse(entry=entry_info(sandbox, path))
        except FileNotFoundError as e:
            raise ConnectError(Code.NOT_FOUND, f"file not found: {path}") from e

    async def make_dir(self, request: pb.MakeDirRequest, ctx: RequestContext) -> pb.MakeDirResponse:
        sandbox, user, path = self._target(ctx, request.path)
        host = host_of(sandbox, path)
        if host.exists():
            if host.is_dir():
                raise ConnectError(Code.ALREADY_EXISTS, f"directory already exists: {path}")
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"path already exists but it is not a directory: {path}"
            )
        try:
            ensure_dirs(sandbox, path, user)
        except OSError as e:
            raise ConnectError(Code.INTERNAL, f"error creating directory {path}: {e}") from e
        return pb.MakeDirResponse(entry=entry_info(sandbox, path))

    async def move(self, request: pb.MoveRequest, ctx: RequestContext) -> pb.MoveResponse:
        sandbox, user, src = self._target(ctx, request.source)
        dst = connect_path(request.destination, user)
        host_src = host_of(sandbox, posixpath.dirname(src)) / posixpath.basename(src)
        if not os.path.lexists(host_src):
            raise ConnectError(Code.NOT_FOUND, f"source file not found: {src}")
        try:
            ensure_dirs(sandbox, posixpath.dirname(dst), user)
            host_dst = host_of(sandbox, posixpath.dirname(dst)) / posixpath.basename(dst)
            os.rename(host_src, host_dst)
        except OSError as e:
            raise ConnectError(Code.INTERNAL, f"error renaming: {e.strerror or e}") from e
        return pb.MoveResponse(entry=entry_info(sandbox, dst))

    async def list_dir(self, request: pb.ListDirRequest, ctx: RequestContext) -> pb.ListDirResponse:
        sandbox, _, path = self._target(ctx, request.path)
        try:
            host = host_of(sandbox, path)
        except OSError as e:  # a symlink loop
            raise ConnectError(Code.INVALID_ARGUMENT, f"cyclic symlink at {path!r}") from e
        if not host.exists():
            raise ConnectError(Code.NOT_FOUND, f"directory not found: {path}")
        if not host.is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"path is not a directory: {path}")
        depth = request.depth or 1
        entries: list[pb.EntryInfo] = []

        def walk(dir_host: str, dir_path: str, level: int) -> None:
            for name in sorted(os.listdir(dir_host)):
                child_host, child = os.path.join(dir_host, name), posixpath.join(dir_path, name)
                try:
                    entries.append(entry_info(sandbox, child, host=Path(child_host)))
                except OSError:
                    continue
                if level < depth and os.path.isdir(child_host) and not os.path.islink(child_host):
                    walk(child_host, child, level + 1)

        await asyncio.to_thread(walk, str(host), path, 1)
        return pb.ListDirResponse(entries=entries)

    async def remove(self, request: pb.RemoveRequest, ctx: RequestContext) -> pb.RemoveResponse:
        """envd's os.RemoveAll: a path that is not there is no error."""
        sandbox, _, path = self._target(ctx, request.path)
        host = host_of(sandbox, posixpath.dirname(path)) / posixpath.basename(path)
        try:
            if host.is_dir() and not host.is_symlink():
                await asyncio.to_thread(shutil.rmtree, host)
            else:
                host.unlink(missing_ok=True)
        except OSError as e:
            raise ConnectError(Code.INTERNAL, f"error removing file or directory: {e}") from e
        return pb.RemoveResponse()

    async def watch_dir(
        self, request: pb.WatchDirRequest, ctx: RequestContext
    ) -> AsyncIterator[pb.WatchDirResponse]:
        sandbox, _, path = self._target(ctx, request.path)
        async for response in self.watch_stream(sandbox, path, request, ctx):
            yield response


# -- HTTP /files -------------------------------------------------------------------------


def _http_user(request: Request, sandbox: Sandbox) -> SandboxUser:
    name = request.query_params.get("username")
    try:
        return lookup(sandbox, name)
    except UnknownUser as e:
        message = f"error looking up user '{e.name}': user: unknown user {e.name}"
        raise _HttpError(401, message) from e


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _write_file(sandbox: Sandbox, path: str, data: bytes, user: SandboxUser,
                metadata: dict[str, str]) -> dict[str, object]:  # fmt: skip
    """envd's processFile: parents made for `user`, the file written and given to `user`,
    its metadata replaced as a whole; the answer carries the metadata read back."""
    try:
        ensure_dirs(sandbox, posixpath.dirname(path), user)
    except OSError as e:
        raise _HttpError(500, f"error ensuring directories: {e}") from e
    host = host_of(sandbox, path)
    if host.is_dir():
        raise _HttpError(400, f"path is a directory: {path}")
    try:
        with open(host, "wb") as f:
            f.write(data)
        if sandbox.runtime.isolated:
            os.chown(host, user.uid, user.gid)
        replace_metadata(host, metadata)
    except OSError as e:
        raise _HttpError(500, f"error writing file: {e.strerror or e}") from e
    info: dict[str, object] = {"name": posixpath.basename(path), "type": "file", "path": path}
    persisted = read_metadata(host)
    if persisted:
        info["metadata"] = persisted
    return info


def _metadata(request: Request) -> dict[str, str]:
    """`X-Metadata-<key>` headers, keys lowercased (an empty key is dropped), as envd reads them."""
    metadata: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower().removeprefix("x-metadata-")
        if name.lower().startswith("x-metadata-") and key and key not in metadata:
            metadata[key] = value
    return metadata


async def files_endpoint(request: Request, sandbox: Sandbox) -> Response:
    """GET reads a file, POST writes one (multipart/form-data or application/octet-stream)."""
    try:
        if request.method == "GET":
            return await _download(request, sandbox)
        if request.method == "POST":
            return await _upload(request, sandbox)
    except _HttpError as e:
        return error_response(e.status, e.message)
    return error_response(405, "method not allowed")


async def _download(request: Request, sandbox: Sandbox) -> Response:
    user = _http_user(request, sandbox)
    raw = request.query_params.get("path")
    if not raw:
        return error_response(400, "path query parameter is required")
    try:
        path = resolve_path(raw, user)
    except PathError as e:
        return error_response(400, f"error expanding and resolving path '{raw}': {e}")
    host = host_of(sandbox, path)
    if not host.exists():
        return error_response(404, f"path '{path}' does not exist")
    if host.is_dir():
        return error_response(400, f"path '{path}' is a directory")
    data = await asyncio.to_thread(host.read_bytes)
    headers = {"Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    return Response(data, media_type="application/octet-stream", headers=headers)


async def _upload(request: Request, sandbox: Sandbox) -> Response:
    user = _http_user(request, sandbox)
    metadata = _metadata(request)
    try:
        validate_metadata(metadata)
    except ValueError as e:
        return error_response(400, f"invalid metadata: {e}")
    body = await request.body()
    if request.headers.get("content-encoding", "") == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as e:
            return error_response(400, f"error decompressing request body: {e}")
    ctype = request.headers.get("content-type", "")
    given = request.query_params.get("path")
    files: list[tuple[str, bytes]] = []
    if ctype.startswith("application/octet-stream"):
        if not given:
            return error_response(400, "path query parameter is required for raw body upload")
        files.append((given, body))
    elif ctype.startswith("multipart/"):
        msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        if not msg.is_multipart():
            return error_response(400, "malformed multipart body")
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") != "file":
                continue
            raw = given or part.get_filename()
            if not raw:
                return error_response(400, "each file part needs a path (its filename)")
            payload = part.get_payload(decode=True)
            files.append((raw, payload if isinstance(payload, bytes) else b""))
    else:
        return error_response(
            400,
            f"unsupported content type: {ctype}, expected multipart/form-data or "
            "application/octet-stream",
        )
    written: list[dict[str, object]] = []
    for raw, data in files:
        try:
            path = resolve_path(raw, user)
        except PathError as e:
            return error_response(400, f"error resolving path: {e}")
        if any(w["path"] == path for w in written):
            return error_response(
                400, f"you cannot upload multiple files to the same path '{path}' in one "
                "upload request, only the first specified file was uploaded",
            )  # fmt: skip
        written.append(await asyncio.to_thread(_write_file, sandbox, path, data, user, metadata))
    return JSONResponse(written)


def envs_response(sandbox: Sandbox) -> Response:
    return Response(json.dumps(sandbox.command_env(None)), media_type="application/json")


__all__ = ["FilesystemService", "envs_response", "files_endpoint"]
