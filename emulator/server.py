"""Running the emulator: both listeners, the sandbox timer, and a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import uvicorn
from pydantic import ValidationError

from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from common.errors import ConfigError
from common.serving import QuietServer

from .config import LIMIT_FIELDS, EmulatorConfig
from .envd import EnvdApp
from .errors import EmulatorError
from .faults import Chaos
from .limits import TIER_NAMES, Governor
from .routes import control_app
from .runtime import namespaces_available
from .sandboxes import SandboxManager
from .state import StateKeeper
from .templates import load_templates

log = logging.getLogger("emulator")


class EmulatorCore:
    """Shared state of both listeners: config, templates, sandboxes, injected chaos."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.templates = load_templates(config.templates_file)
        self.chaos = Chaos(config.latency, config.faults)
        self.governor = Governor(config.limits)
        self.isolated = self._isolation(config.isolation)
        self._own_data_dir = config.data_dir is None
        self.data_dir = Path(config.data_dir or tempfile.mkdtemp(prefix="e2b-emulator-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manager = SandboxManager(
            templates=self.templates,
            data_dir=self.data_dir,
            isolated=self.isolated,
            governor=self.governor,
        )
        self.state: StateKeeper | None = None
        if config.state_file is not None:
            self.state = StateKeeper(config.state_file, self.manager)
            restored = self.state.restore()
            if restored:
                log.info("%d sandbox records restored from %s", restored, config.state_file)
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
        """Kill every sandbox, forget the records, restore start-up latency, faults, limits."""
        await self.manager.reset()
        self.chaos.reset()
        self.governor.reset()

    async def close(self) -> None:
        await self.manager.kill_all("shutdown")
        if self.state is not None:
            await self.state.save()  # every sandbox now ended at its shutdown kill
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
        QuietServer(
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
    if core.state is not None:
        tasks.append(asyncio.create_task(core.state.run(config.tick_seconds)))
    try:
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        if not config.quiet:
            mode = "namespaces" if core.isolated else "plain processes"
            print(
                f"E2B emulator: API {core.api_url}  envd {core.sandbox_url}  ({mode}, "
                f"tier {core.governor.current.tier})",
                flush=True,
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
        for task in tasks[2:]:
            task.cancel()
        for sock in (api_sock, envd_sock):
            sock.close()


_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: How a person sets each setting: the option, and the environment variable it falls back to.
_SETTING_NAMES = {
    "host": "--host (env EMULATOR_HOST)",
    "port": "--port (env EMULATOR_PORT)",
    "envd_port": "--envd-port (env EMULATOR_ENVD_PORT)",
    "api_key": "--api-key (env E2B_API_KEY)",
    "templates_file": "--templates (env EMULATOR_TEMPLATES)",
    "data_dir": "--data-dir (env EMULATOR_DATA_DIR)",
    "latency": "--latency (env EMULATOR_LATENCY)",
    "isolation": "--isolation (env EMULATOR_ISOLATION)",
    "state_file": "--state-file (env EMULATOR_STATE_FILE)",
    "quiet": "--quiet",
    "faults": "--fault-rate (env EMULATOR_FAULT_RATE)",
    "faults.rate_limit_rate": "--fault-rate (env EMULATOR_FAULT_RATE)",
    "faults.error_rate": "--error-rate",
    "faults.error_status": "--error-status",
    "faults.retry_after": "--retry-after",
    "tier": "--tier (env EMULATOR_TIER)",
    "max_lifetime": "--max-lifetime (env EMULATOR_MAX_LIFETIME)",
    "create_rate": "--create-rate (env EMULATOR_CREATE_RATE)",
    "max_running": "--max-running (env EMULATOR_MAX_RUNNING)",
    "api_rate": "--api-rate (env EMULATOR_API_RATE)",
    "api_rate_period": "--api-rate-period (env EMULATOR_API_RATE_PERIOD)",
    "pause_seconds_per_gib": "--pause-seconds-per-gib (env EMULATOR_PAUSE_SECONDS_PER_GIB)",
    "resume_seconds": "--resume-seconds (env EMULATOR_RESUME_SECONDS)",
}


@click.command(
    context_settings=CONTEXT_SETTINGS, help="Local E2B-compatible API (control plane + envd)."
)
@click.option(
    "--host", metavar="HOST", help="listen address (env EMULATOR_HOST, default 127.0.0.1)"
)
@click.option(
    "--port", type=int, metavar="PORT", help="control plane port, 0 = free (default 49982)"
)
@click.option("--envd-port", type=int, metavar="PORT", help="envd port, 0 = free (default 49983)")
@click.option(
    "--api-key", metavar="KEY", help="the accepted X-API-Key (env E2B_API_KEY; else generated)"
)
@click.option(
    "--templates", metavar="FILE", help="templates file, YAML or JSON (env EMULATOR_TEMPLATES)"
)
@click.option(
    "--data-dir", metavar="DIR", help="where sandbox directories live (default: a temp dir)"
)
@click.option(
    "--latency",
    multiple=True,
    metavar="OP=SECONDS",
    help="op=seconds (repeatable or comma separated; `realistic` for E2B's figures)",
)
@click.option("--fault-rate", type=float, metavar="SHARE", help="share of API calls answered 429")
@click.option(
    "--error-rate", type=float, metavar="SHARE", help="share of API calls answered --error-status"
)
@click.option(
    "--error-status", type=int, metavar="STATUS", help="status of injected errors (default 500)"
)
@click.option(
    "--retry-after", type=float, metavar="SECONDS", help="Retry-After seconds of injected 429s"
)
@click.option("--isolation", type=click.Choice(["auto", "namespace", "process"]))
@click.option(
    "--state-file",
    metavar="FILE",
    help="keep sandbox records here across restarts (env EMULATOR_STATE_FILE; default: none)",
)
@click.option(
    "--tier",
    type=click.Choice(TIER_NAMES),
    help="E2B's limits to enforce: dev (generous, fast; default), hobby, pro (env EMULATOR_TIER)",
)
@click.option(
    "--max-lifetime", type=int, metavar="SECONDS", help="longest run of a sandbox (tier's default)"
)
@click.option("--create-rate", type=float, metavar="PER_SECOND", help="creates per second, 0: none")
@click.option("--max-running", type=int, metavar="N", help="sandboxes running at once, 0: none")
@click.option("--api-rate", type=int, metavar="N", help="calls per period per API route, 0: none")
@click.option("--api-rate-period", type=float, metavar="SECONDS", help="the --api-rate window")
@click.option(
    "--pause-seconds-per-gib", type=float, metavar="SECONDS", help="pause time per GiB of memory"
)
@click.option("--resume-seconds", type=float, metavar="SECONDS", help="how long a resume takes")
@click.option("--quiet", is_flag=True, help="do not print the start line")
@click.option("--log-level", default="warning", metavar="LEVEL")
def command(log_level: str, **options: Any) -> int:
    _configure_logging(log_level)
    config = config_from_options(options)

    async def run() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        await serve(config)

    try:
        asyncio.run(run())
    except (asyncio.CancelledError, KeyboardInterrupt):
        return 0  # a signal: a clean stop
    return 0


def _configure_logging(level: str) -> None:
    try:
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    except ValueError:
        raise ConfigError(
            f"invalid --log-level: {level!r} is not a level (one of {', '.join(_LOG_LEVELS)})"
        ) from None


def config_from_options(options: Mapping[str, Any]) -> EmulatorConfig:
    """The settings from the command's options (None: not given, so environment or default).

    A setting that breaks a rule is a `ConfigError` naming its option and variable, and the rule.
    """
    latency = options.get("latency")
    values: dict[str, Any] = {
        "host": options.get("host"),
        "port": options.get("port"),
        "envd_port": options.get("envd_port"),
        "api_key": options.get("api_key"),
        "templates_file": options.get("templates"),
        "data_dir": options.get("data_dir"),
        "latency": ",".join(latency) if latency else None,
        "isolation": options.get("isolation"),
        "state_file": options.get("state_file"),
        "quiet": options.get("quiet") or None,
        **{name: options.get(name) for name in ("tier", *LIMIT_FIELDS)},
    }
    faults = {
        "rate_limit_rate": options.get("fault_rate"),
        "error_rate": options.get("error_rate"),
        "error_status": options.get("error_status"),
        "retry_after": options.get("retry_after"),
    }
    faults = {k: v for k, v in faults.items() if v is not None}
    if faults:
        values["faults"] = faults
    try:
        return EmulatorConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as e:
        raise ConfigError(_settings_message(e)) from None
    except ValueError as e:
        raise ConfigError(f"invalid settings: {e}") from None


def _settings_message(err: ValidationError) -> str:
    """`invalid --port (env EMULATOR_PORT): Input should be ...`, each problem; never the value."""
    parts = []
    for problem in err.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in problem["loc"])
        name = _SETTING_NAMES.get(where, where or "settings")
        parts.append(f"invalid {name}: {problem['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts) or "invalid settings"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m emulator`: every failure one line on stderr (`error: ...`), never a trace.

    Exit 2 for a bad argument or setting, 1 for a failure at run time (a port in use), 0 after a
    signal. As the program (`argv` None) it ends the process itself (`common.cli.main`).
    """
    return run_command(command, argv, prog_name="python -m emulator", known=(EmulatorError,))
