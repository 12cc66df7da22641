"""envd filesystem: Connect-RPC service (stat, list, mkdir, move, remove) and HTTP `/files`."""

from __future__ import annotations

import asyncio
import base64
import grp
import gzip
import hashlib
import json
import os
import pwd
import shutil
import stat
import time
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import TYPE_CHECKING

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.filesystem import filesystem_pb as pb
from e2b.envd.filesystem.filesystem_connect import Filesystem
from protobuf.wkt.google.protobuf.timestamp_pb import Timestamp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .envd_process import sandbox_of
from .errors import EmulatorError, error_response
from .runtime import SANDBOX_HOME

if TYPE_CHECKING:
    from connectrpc.request import RequestContext

    from .sandboxes import Sandbox
    from .server import EmulatorCore


def sandbox_path(path: str) -> str:
    """Absolute sandbox path; relative paths (and `~`) are relative to /home/user, as in envd."""
    if path.startswith("~"):
        path = SANDBOX_HOME + path[1:]
    if not path.startswith("/"):
        path = SANDBOX_HOME + "/" + path
    return os.path.normpath(path)


def _name(func, ident: int) -> str:  # type: ignore[no-untyped-def]
    try:
        return func(ident)[0]
    except KeyError:
        return str(ident)


def entry_info(host: Path, path: str) -> pb.EntryInfo:
    st = os.lstat(host)
    is_link = stat.S_ISLNK(st.st_mode)
    target = None
    if is_link:
        target = os.readlink(host)
        try:
            st = os.stat(host)
        except OSError:
            pass
    kind = (
        pb.FileType.DIRECTORY
        if stat.S_ISDIR(st.st_mode)
        else pb.FileType.FILE
        if stat.S_ISREG(st.st_mode)
        else pb.FileType.UNSPECIFIED
    )
    return pb.EntryInfo(
        name=os.path.basename(path) or "/",
        type=kind,
        path=path,
        size=st.st_size,
        mode=stat.S_IMODE(st.st_mode) | (stat.S_IFDIR if kind == pb.FileType.DIRECTORY else 0),
        permissions=stat.filemode(st.st_mode),
        owner=_name(pwd.getpwuid, st.st_uid),
        group=_name(grp.getgrgid, st.st_gid),
        modified_time=Timestamp(seconds=int(st.st_mtime), nanos=st.st_mtime_ns % 1_000_000_000),
        symlink_target=target,
        is_symlink=is_link,
    )


class FilesystemService(Filesystem):
    def __init__(self, core: EmulatorCore):
        self.core = core

    def _resolve(self, ctx: RequestContext, path: str) -> tuple[str, Path]:
        sandbox = sandbox_of(self.core, ctx)
        if not path:
            raise ConnectError(Code.INVALID_ARGUMENT, "path is required")
        p = sandbox_path(path)
        return p, sandbox.runtime.host_path(p)

    async def stat(self, request: pb.StatRequest, ctx: RequestContext) -> pb.StatResponse:
        path, host = self._resolve(ctx, request.path)
        if not os.path.lexists(host):
            raise ConnectError(Code.NOT_FOUND, f"path {path} does not exist")
        return pb.StatResponse(entry=entry_info(host, path))

    async def make_dir(self, request: pb.MakeDirRequest, ctx: RequestContext) -> pb.MakeDirResponse:
        path, host = self._resolve(ctx, request.path)
        if os.path.lexists(host):
            if host.is_dir():
                raise ConnectError(Code.ALREADY_EXISTS, f"directory {path} already exists")
            raise ConnectError(Code.INVALID_ARGUMENT, f"path {path} exists and is not a directory")
        try:
            host.mkdir(parents=True)
        except OSError as e:
            raise ConnectError(Code.INVALID_ARGUMENT, f"cannot create {path}: {e.strerror}") from e
        return pb.MakeDirResponse(entry=entry_info(host, path))

    async def move(self, request: pb.MoveRequest, ctx: RequestContext) -> pb.MoveResponse:
        src, host_src = self._resolve(ctx, request.source)
        dst, host_dst = self._resolve(ctx, request.destination)
        if not os.path.lexists(host_src):
            raise ConnectError(Code.NOT_FOUND, f"path {src} does not exist")
        try:
            host_dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(host_src, host_dst)
        except OSError as e:
            raise ConnectError(Code.INVALID_ARGUMENT, f"cannot move {src}: {e.strerror}") from e
        return pb.MoveResponse(entry=entry_info(host_dst, dst))

    async def list_dir(self, request: pb.ListDirRequest, ctx: RequestContext) -> pb.ListDirResponse:
        path, host = self._resolve(ctx, request.path)
        if not host.exists():
            raise ConnectError(Code.NOT_FOUND, f"path {path} does not exist")
        if not host.is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"path {path} is not a directory")
        depth = request.depth or 1
        entries: list[pb.EntryInfo] = []

        def walk(h: Path, p: str, level: int) -> None:
            for name in sorted(os.listdir(h)):
                child_h, child_p = h / name, (p.rstrip("/") + "/" + name)
                try:
                    entries.append(entry_info(child_h, child_p))
                except OSError:
                    continue
                if level < depth and child_h.is_dir() and not child_h.is_symlink():
                    walk(child_h, child_p, level + 1)

        await asyncio.to_thread(walk, host, path, 1)
        return pb.ListDirResponse(entries=entries)

    async def remove(self, request: pb.RemoveRequest, ctx: RequestContext) -> pb.RemoveResponse:
        path, host = self._resolve(ctx, request.path)
        if not os.path.lexists(host):
            raise ConnectError(Code.NOT_FOUND, f"path {path} does not exist")
        if host.is_dir() and not host.is_symlink():
            await asyncio.to_thread(shutil.rmtree, host)
        else:
            host.unlink()
        return pb.RemoveResponse()


# -- HTTP /files -------------------------------------------------------------------------


def _signature(path: str, operation: str, user: str, token: str, expiration: str | None) -> str:
    raw = f"{path}:{operation}:{user}:{token}" + (f":{expiration}" if expiration else "")
    digest = hashlib.sha256(raw.encode()).digest()
    return "v1_" + base64.b64encode(digest).rstrip(b"=").decode()


def check_file_signature(request: Request, sandbox: Sandbox, operation: str) -> bool:
    """True for a valid `signature` query parameter (download/upload URLs)."""
    q = request.query_params
    sig = q.get("signature")
    if not sig:
        return False
    expiration = q.get("signature_expiration")
    if expiration and expiration.isdigit() and int(expiration) < time.time():
        return False
    expected = _signature(
        q.get("path", ""), operation, q.get("username", ""), sandbox.access_token, expiration
    )
    return sig == expected


def _write_info(path: str, metadata: dict[str, str]) -> dict[str, object]:
    info: dict[str, object] = {"name": os.path.basename(path), "type": "file", "path": path}
    if metadata:
        info["metadata"] = metadata
    return info


def _write(host: Path, data: bytes) -> None:
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_bytes(data)


async def files_endpoint(request: Request, sandbox: Sandbox) -> Response:
    """GET reads a file, POST writes one (multipart/form-data or application/octet-stream)."""
    if request.method == "GET":
        raw = request.query_params.get("path")
        if not raw:
            return error_response(400, "path query parameter is required")
        path = sandbox_path(raw)
        host = sandbox.runtime.host_path(path)
        if not host.exists():
            return error_response(404, f"path '{path}' does not exist")
        if host.is_dir():
            return error_response(400, f"path '{path}' is a directory")
        data = await asyncio.to_thread(host.read_bytes)
        headers = {}
        if "gzip" in request.headers.get("accept-encoding", ""):
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        return Response(data, media_type="application/octet-stream", headers=headers)
    if request.method != "POST":
        return error_response(405, "method not allowed")

    metadata = {
        k[len("x-metadata-") :]: v
        for k, v in request.headers.items()
        if k.lower().startswith("x-metadata-")
    }
    body = await request.body()
    if request.headers.get("content-encoding", "") == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as e:
            return error_response(400, f"invalid gzip body: {e}")
    ctype = request.headers.get("content-type", "")
    written: list[dict[str, object]] = []
    try:
        if ctype.startswith("multipart/form-data"):
            msg = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + body
            )
            if not msg.is_multipart():
                return error_response(400, "malformed multipart body")
            parts = [
                p
                for p in msg.iter_parts()
                if p.get_param("name", header="content-disposition") == "file"
            ]
            default = request.query_params.get("path")
            for part in parts:
                raw = (default if len(parts) == 1 and default else None) or part.get_filename()
                if not raw:
                    return error_response(400, "each file part needs a path (its filename)")
                path = sandbox_path(raw)
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                await asyncio.to_thread(_write, sandbox.runtime.host_path(path), data)
                written.append(_write_info(path, metadata))
        else:
            raw = request.query_params.get("path")
            if not raw:
                return error_response(400, "path query parameter is required")
            path = sandbox_path(raw)
            await asyncio.to_thread(_write, sandbox.runtime.host_path(path), body)
            written.append(_write_info(path, metadata))
    except IsADirectoryError:
        return error_response(400, "path is a directory")
    except OSError as e:
        return error_response(400, f"cannot write file: {e.strerror}")
    if not written:
        return error_response(400, "no file in the request")
    return JSONResponse(written)


def envs_response(sandbox: Sandbox) -> Response:
    return Response(json.dumps(sandbox.command_env(None)), media_type="application/json")


__all__ = ["FilesystemService", "files_endpoint", "check_file_signature", "EmulatorError"]
