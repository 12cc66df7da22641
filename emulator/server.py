"""Running the emulator: both listeners, the sandbox timer, and a clean shutdown."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from .config import EmulatorConfig, FaultSettings
from .control import control_app
from .envd import EnvdApp
from .errors import EmulatorError
from .faults import Chaos
from .runtime import namespaces_available
from .sandboxes import SandboxManager
from .templates import load_templates

log = logging.getLogger("emulator")


class EmulatorCore:
    """Shared state of both listeners: config, templates, sandboxes, injected chaos."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.templates = load_templates(config.templates_file)
        self.chaos = Chaos(config.latency, config.faults)
        self.isolated = self._isolation(config.isolation)
        self._own_data_dir = config.data_dir is None
        self.data_dir = Path(config.data_dir or tempfile.mkdtemp(prefix="e2b-emulator-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manager = SandboxManager(
            templates=self.templates,
            data_dir=self.data_dir,
            isolated=self.isolated,
            max_lifetime=config.max_lifetime_seconds,
        )
        self.api_url = ""
        self.sandbox_url = ""

    @staticmethod
    def _isolation(mode: str) -> bool:
        if mode == "process":
            return False
        available = namespaces_available()
        if mode == "namespace" and not available:
            raise EmulatorError(
                500, "namespace isolation requested but unshare is not permitted here (need root)"
            )
        if not available:
            log.warning(
                "Linux namespaces are not available (not root?): sandboxes run as plain processes "
                "sharing this machine's /tmp and process table; see emulator/README.md"
            )
        return available

    async def reset(self) -> None:
        await self.manager.reset()
        self.chaos.reset()

    async def close(self) -> None:
        await self.manager.kill_all("shutdown")
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it every response (headers, then body) waits out a 40 ms delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise EmulatorError(500, f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: whoever runs `serve` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve(
    config: EmulatorConfig, *, on_ready: Callable[[EmulatorCore], None] | None = None
) -> None:
    """Run both listeners until cancelled; on exit every sandbox is killed and its files removed."""
    core = EmulatorCore(config)
    api_sock = _bind(config.host, config.port)
    envd_sock = _bind(config.host, config.envd_port)
    core.api_url = _url(config.host, api_sock.getsockname()[1])
    core.sandbox_url = _url(config.host, envd_sock.getsockname()[1])
    servers = [
        _Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=1,
                timeout_keep_alive=30,
            )
        )
        for app in (control_app(core), EnvdApp(core))
    ]
    tasks = [
        asyncio.create_task(servers[0].serve(sockets=[api_sock])),
        asyncio.create_task(servers[1].serve(sockets=[envd_sock])),
        asyncio.create_task(core.manager.run_timer(config.tick_seconds)),
    ]
    try:
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        if not config.quiet:
            mode = "namespaces" if core.isolated else "plain processes"
            print(
                f"E2B emulator: API {core.api_url}  envd {core.sandbox_url}  ({mode})", flush=True
            )
            if config.api_key_generated:
                print(f"E2B emulator: generated E2B_API_KEY={config.api_key}", flush=True)
        if on_ready is not None:
            on_ready(core)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(core.close())
        for s in servers:
            s.should_exit = True
        for task in tasks[:2]:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task), 3)
        tasks[2].cancel()
        for sock in (api_sock, envd_sock):
            sock.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m emulator", description="Local E2B-compatible API (control plane + envd)."
    )
    p.add_argument("--host", help="listen address (env EMULATOR_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="control plane port, 0 = free (default 49982)")
    p.add_argument("--envd-port", type=int, help="envd port, 0 = free (default 49983)")
    p.add_argument("--api-key", help="the accepted X-API-Key (env E2B_API_KEY; else generated)")
    p.add_argument("--templates", help="templates file, YAML or JSON (env EMULATOR_TEMPLATES)")
    p.add_argument("--data-dir", help="where sandbox directories live (default: a temp dir)")
    p.add_argument(
        "--latency",
        action="append",
        help="op=seconds (repeatable or comma separated; `realistic` for E2B's figures)",
    )
    p.add_argument("--fault-rate", type=float, help="share of API calls answered 429")
    p.add_argument("--error-rate", type=float, help="share of API calls answered --error-status")
    p.add_argument("--error-status", type=int, help="status of injected errors (default 500)")
    p.add_argument("--retry-after", type=float, help="Retry-After seconds of injected 429s")
    p.add_argument("--isolation", choices=["auto", "namespace", "process"])
    p.add_argument("--quiet", action="store_true", help="do not print the start line")
    p.add_argument("--log-level", default="warning")
    return p


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    values = {
        "host": args.host,
        "port": args.port,
        "envd_port": args.envd_port,
        "api_key": args.api_key,
        "templates_file": args.templates,
        "data_dir": args.data_dir,
        "latency": ",".join(args.latency) if args.latency else None,
        "isolation": args.isolation,
        "quiet": args.quiet or None,
    }
    faults = {
        "rate_limit_rate": args.fault_rate,
        "error_rate": args.error_rate,
        "error_status": args.error_status,
        "retry_after": args.retry_after,
    }
    faults = {k: v for k, v in faults.items() if v is not None}
    if faults:
        values["faults"] = FaultSettings(**faults)
    return EmulatorConfig(**{k: v for k, v in values.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code. Bad input is one line on stderr, never a trace."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        print(f"emulator: invalid {where}: {first['msg']}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"emulator: invalid settings: {e}", file=sys.stderr)
        return 2

    async def run() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        await serve(config)

    try:
        asyncio.run(run())
    except asyncio.CancelledError:
        return 0
    except KeyboardInterrupt:
        return 0
    except EmulatorError as e:
        print(f"emulator: {e.message}", file=sys.stderr)
        return 1
    return 0
