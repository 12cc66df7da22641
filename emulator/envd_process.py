"""envd's process service (Connect-RPC), as far as the e2b SDK uses it.

Commands run as the call's user (Basic auth user, default `user`; see envd_users) with envd's
environment (HOME, USER, LOGNAME of that user, then the sandbox's and the command's envs) in
its cwd, relative to its home. PTYs (Start with `pty`, Update, PTY input) answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.process import process_pb as pb
from e2b.envd.process.process_connect import Process
from protobuf import Oneof

from .envd_users import SandboxUser, connect_path, connect_user
from .errors import EmulatorError
from .processes import ManagedProcess, ProcessConfig
from .runtime import RuntimeError_

if TYPE_CHECKING:
    from connectrpc.request import RequestContext

    from .sandboxes import Sandbox
    from .server import EmulatorCore

_SIGNALS = {pb.Signal.SIGKILL: signal.SIGKILL, pb.Signal.SIGTERM: signal.SIGTERM}
_DEFAULT_KEEPALIVE = 50.0
_DEADLINE_GRACE = 0.25


def sandbox_of(core: EmulatorCore, ctx: RequestContext) -> Sandbox:
    """The sandbox named by the request (the envd dispatcher already checked it is running)."""
    sandbox_id = ctx.request_headers.get("e2b-sandbox-id", "")
    sandbox = core.manager.sandboxes.get(sandbox_id)
    if sandbox is None or sandbox.state != "running":
        raise ConnectError(Code.UNAVAILABLE, f"The sandbox {sandbox_id} was not found")
    return sandbox


def stream_cut_error(sandbox: Sandbox) -> ConnectError | None:
    """How a stream open while its sandbox stops ends, so the SDK raises what E2B makes it raise.

    Killed: the connection to the sandbox ends under the stream, an UNAVAILABLE that does not
    say why; the SDK probes the sandbox (502 "not found") and raises SandboxNotRunningException
    "...killed or reached its end of life while the request was in flight". Paused: the stream
    is cancelled, CANCELED, which the SDK raises as TimeoutException "...cancelled by the
    server or a proxy while it was in flight — for example when the sandbox is paused".
    """
    if sandbox.state == "killed":
        return ConnectError(
            Code.UNAVAILABLE,
            f"the connection to sandbox {sandbox.sandbox_id} ended before the stream completed",
        )
    if sandbox.state == "paused":
        return ConnectError(
            Code.CANCELED, f"sandbox {sandbox.sandbox_id} was paused while the stream was open"
        )
    return None


def keepalive_interval(ctx: RequestContext) -> float:
    try:
        return max(1.0, float(ctx.request_headers.get("keepalive-ping-interval", "")))
    except ValueError:
        return _DEFAULT_KEEPALIVE


def _event(**kwargs: object) -> pb.ProcessEvent:
    ((field, value),) = kwargs.items()
    event: Any = Oneof(field, value)  # one of the event's fields, named by the caller
    return pb.ProcessEvent(event=event)


class ProcessService(Process):
    def __init__(self, core: EmulatorCore):
        self.core = core

    def _find(self, sandbox: Sandbox, selector: pb.ProcessSelector | None) -> ManagedProcess:
        match selector.selector if selector is not None else None:
            case Oneof(field="pid", value=int() as pid):
                process = sandbox.find_process(pid=pid)
            case Oneof(field="tag", value=str() as tag):
                process = sandbox.find_process(tag=tag)
            case _:
                raise ConnectError(
                    Code.INVALID_ARGUMENT, "a process selector (pid or tag) is required"
                )
        if process is None:
            raise ConnectError(Code.NOT_FOUND, "process not found")
        return process

    async def list(self, request: pb.ListRequest, ctx: RequestContext) -> pb.ListResponse:
        sandbox = sandbox_of(self.core, ctx)
        return pb.ListResponse(
            processes=[
                pb.ProcessInfo(
                    pid=p.pid,
                    tag=p.config.tag,
                    config=pb.ProcessConfig(
                        cmd=p.config.cmd, args=p.config.args, envs=p.config.envs, cwd=p.config.cwd
                    ),
                )
                for p in sandbox.running_processes()
            ]
        )

    async def start(
        self, request: pb.StartRequest, ctx: RequestContext
    ) -> AsyncIterator[pb.StartResponse]:
        sandbox = sandbox_of(self.core, ctx)
        user = connect_user(sandbox, ctx)
        cfg = request.process
        if cfg is None or not cfg.cmd:
            raise ConnectError(Code.INVALID_ARGUMENT, "process.cmd is required")
        if request.pty is not None:
            raise ConnectError(
                Code.UNIMPLEMENTED, "PTY processes (sandbox.pty) are not supported by the emulator"
            )
        await self.core.chaos.delay("command")
        config = ProcessConfig(
            cmd=cfg.cmd,
            args=list(cfg.args),
            envs=dict(cfg.envs),
            cwd=cfg.cwd if cfg.has_field("cwd") and cfg.cwd else None,
            tag=request.tag if request.has_field("tag") else None,
            stdin=request.stdin if request.has_field("stdin") else True,
        )
        process = await self._spawn(sandbox, config, user)
        timer = None
        if ctx.timeout_ms is not None:
            # As envd: the command's deadline bounds the process, not just the stream. The
            # grace stands for the network: the client's own deadline fires first, as on E2B.
            timer = asyncio.get_running_loop().call_later(
                max(ctx.timeout_ms, 0) / 1000 + _DEADLINE_GRACE, process.send_signal, signal.SIGKILL
            )
        try:
            async for event in self._stream(sandbox, process, ctx):
                yield pb.StartResponse(event=event)
        finally:
            if timer is not None and not process.running:
                timer.cancel()

    async def _spawn(
        self, sandbox: Sandbox, config: ProcessConfig, user: SandboxUser
    ) -> ManagedProcess:
        """Sandbox.start_process with envd's user: its credentials, HOME/USER/LOGNAME and cwd.

        The sandbox's own envs (template, create) and the command's still override them, in
        envd's order."""
        cwd = connect_path(config.cwd or "", user)
        env = sandbox.command_env(None)
        for key, value in (("HOME", user.home), ("USER", user.name), ("LOGNAME", user.name)):
            if key not in sandbox.template.envs and key not in sandbox.envs:
                env[key] = value
        env.update(config.envs)
        try:
            return await sandbox.start_process(config, env=env, cwd=cwd, user=user.credentials)
        except RuntimeError_ as e:
            raise ConnectError(Code.INVALID_ARGUMENT, str(e)) from e
        except EmulatorError as e:
            raise ConnectError(Code.ALREADY_EXISTS, e.message) from e

    async def connect(
        self, request: pb.ConnectRequest, ctx: RequestContext
    ) -> AsyncIterator[pb.ConnectResponse]:
        sandbox = sandbox_of(self.core, ctx)
        process = self._find(sandbox, request.process)
        async for event in self._stream(sandbox, process, ctx):
            yield pb.ConnectResponse(event=event)

    async def _stream(
        self, sandbox: Sandbox, process: ManagedProcess, ctx: RequestContext
    ) -> AsyncIterator[pb.ProcessEvent]:
        """Start event, output, end event; DEADLINE_EXCEEDED when the call's timeout runs out."""
        queue = process.subscribe()
        keepalive = keepalive_interval(ctx)
        loop = asyncio.get_running_loop()
        deadline = None if ctx.timeout_ms is None else loop.time() + ctx.timeout_ms / 1000
        try:
            yield _event(start=pb.ProcessEvent.StartEvent(pid=process.pid))
            while True:
                wait = keepalive if deadline is None else min(keepalive, deadline - loop.time())
                try:
                    ev = await asyncio.wait_for(queue.get(), max(wait, 0))
                except TimeoutError:
                    if deadline is not None and loop.time() >= deadline:
                        raise ConnectError(
                            Code.DEADLINE_EXCEEDED, "the command's timeout ran out"
                        ) from None
                    yield _event(keepalive=pb.ProcessEvent.KeepAlive())
                    continue
                if ev.kind in ("stdout", "stderr"):
                    output: Any = Oneof(ev.kind, ev.data)
                    data = pb.ProcessEvent.DataEvent(output=output)
                    yield _event(data=data)
                elif ev.kind == "end":
                    end = pb.ProcessEvent.EndEvent(
                        exit_code=ev.exit_code, exited=ev.exited, status=ev.status, error=ev.error
                    )
                    yield _event(end=end)
                    return
                else:
                    raise stream_cut_error(sandbox) or ConnectError(Code.UNAVAILABLE, ev.message)
        finally:
            process.unsubscribe(queue)

    async def update(self, request: pb.UpdateRequest, ctx: RequestContext) -> pb.UpdateResponse:
        raise ConnectError(
            Code.UNIMPLEMENTED, "resizing a PTY (Process.Update) is not supported by the emulator"
        )

    async def send_signal(
        self, request: pb.SendSignalRequest, ctx: RequestContext
    ) -> pb.SendSignalResponse:
        sandbox = sandbox_of(self.core, ctx)
        process = self._find(sandbox, request.process)
        sig = _SIGNALS.get(request.signal)
        if sig is None:
            raise ConnectError(Code.INVALID_ARGUMENT, f"unsupported signal {request.signal}")
        process.send_signal(sig)
        return pb.SendSignalResponse()

    async def _input(self, process: ManagedProcess, value: pb.ProcessInput | None) -> None:
        match value.input if value is not None else None:
            case Oneof(field="stdin", value=data):
                try:
                    await process.write_stdin(data)
                except (BrokenPipeError, ConnectionResetError) as e:
                    raise ConnectError(
                        Code.FAILED_PRECONDITION, f"stdin of process {process.pid} is closed"
                    ) from e
            case Oneof(field="pty"):
                raise ConnectError(Code.UNIMPLEMENTED, "PTY input is not supported by the emulator")
            case _:
                raise ConnectError(Code.INVALID_ARGUMENT, "input is required")

    async def send_input(
        self, request: pb.SendInputRequest, ctx: RequestContext
    ) -> pb.SendInputResponse:
        sandbox = sandbox_of(self.core, ctx)
        await self._input(self._find(sandbox, request.process), request.input)
        return pb.SendInputResponse()

    async def stream_input(
        self, request: AsyncIterator[pb.StreamInputRequest], ctx: RequestContext
    ) -> pb.StreamInputResponse:
        sandbox = sandbox_of(self.core, ctx)
        process: ManagedProcess | None = None
        async for message in request:
            match message.event:
                case Oneof(field="start", value=pb.StreamInputRequest.StartEvent() as start):
                    process = self._find(sandbox, start.process)
                case Oneof(field="data", value=pb.StreamInputRequest.DataEvent() as data):
                    if process is None:
                        raise ConnectError(Code.FAILED_PRECONDITION, "start event must come first")
                    await self._input(process, data.input)
        return pb.StreamInputResponse()

    async def close_stdin(
        self, request: pb.CloseStdinRequest, ctx: RequestContext
    ) -> pb.CloseStdinResponse:
        sandbox = sandbox_of(self.core, ctx)
        process = self._find(sandbox, request.process)
        with contextlib.suppress(Exception):
            process.close_stdin()
        return pb.CloseStdinResponse()
