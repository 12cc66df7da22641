"""The `sessions` command: one agent sandbox session per Temporal workflow, in a person's hands.

Every failure is one line on stderr and a non-zero exit; `exec` exits with the command's code.
"""

from __future__ import annotations

import asyncio
import math
import os
import shlex
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import click

from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from common.errors import ConfigError, SessionsError
from common.text import first_unsafe
from common.units import DEFAULT_PRICE_PER_SECOND, MAX_DURATION_SECONDS, parse_duration
from sessions.dev_env import apply_dev_env, parse_env_pairs

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_CONN_KEYS = ("address", "namespace", "task_queue")


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        ctx.find_root().meta[f"sessions.{param.name}"] = value
    return value


def connection_options(f: F) -> F:
    """`--address`, `--namespace`, `--task-queue`: accepted before or after the command name."""
    f = click.option(
        "--task-queue",
        metavar="QUEUE",
        expose_value=False,
        callback=_remember,
        help="Task queue of the session workflows (env SESSIONS_TASK_QUEUE; sandbox-sessions).",
    )(f)
    f = click.option(
        "--namespace",
        metavar="NS",
        expose_value=False,
        callback=_remember,
        help="Temporal namespace (env TEMPORAL_NAMESPACE; default).",
    )(f)
    f = click.option(
        "--address",
        metavar="HOST:PORT",
        expose_value=False,
        callback=_remember,
        help="Temporal frontend (env TEMPORAL_ADDRESS; localhost:7233).",
    )(f)
    return f


def _conn() -> dict[str, str | None]:
    meta = click.get_current_context().find_root().meta
    return {key: meta.get(f"sessions.{key}") for key in _CONN_KEYS}


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _client() -> Any:
    from sessions.client import SessionClient

    conn = _conn()
    return await SessionClient.connect(
        address=conn["address"], namespace=conn["namespace"], task_queue=conn["task_queue"]
    )


class _LazyRender:
    """`sessions.render` pulls in the client and the workflow models: load it when needed."""

    def __getattr__(self, name: str) -> Any:
        from sessions import render as module

        return getattr(module, name)


render = _LazyRender()


# ---------------------------------------------------------------- arguments

GATE_TIMEOUT_MAX_SECONDS = MAX_DURATION_SECONDS
"""`gate --timeout`: at most a year, as the workflow's `GateRequest` allows."""
EXEC_TIMEOUT_MAX_SECONDS = 24 * 3600.0
"""`exec --timeout`: at most a day, as the workflow's `ExecRequest` allows."""


def _duration(text: str | None, *, maximum: float) -> float | None:
    """A `--timeout`: None when not given; an empty one is no duration (`ConfigError`)."""
    return None if text is None else parse_duration(text, maximum=maximum)


def _text(what: str, value: str | None, *, lines: bool = False) -> None:
    """Text is data: what is typed here is shown back later (status, list, costs, errors), so a
    control or bidi character in it is refused before anything is sent. `lines`: a newline or a
    tab is allowed (a comment)."""
    if value is None:
        return
    found = first_unsafe(value, lines=lines)
    if found is None:
        return
    if "\ud800" <= found <= "\udfff":  # how Python passes on argv bytes that are not UTF-8
        raise ConfigError(f"{what} is not valid UTF-8")
    raise ConfigError(f"{what} contains a control character ({ord(found):#x})")


class _Price(click.ParamType):
    """Dollars per running second: a finite number, at least 0."""

    name = "usd"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            price = value
        else:
            try:
                price = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number of dollars", param, ctx)
        if not math.isfinite(price) or price < 0:
            self.fail(
                f"it must be a finite number of dollars, at least 0, not {value!r}", param, ctx
            )
        return price


class _Group(click.Group):
    """The `sessions` group: whatever goes wrong is said with the data in it escaped (a session's
    error, a gate name, an argument echoed back), so an error line drives no terminal either.
    `sessions` alone prints its help on stdout and exits 0: asking what there is is no error."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except click.ClickException as err:
            message = render.safe(err.format_message())
            if isinstance(err, click.UsageError):  # exit 2, with its `--help` hint
                raise click.UsageError(message, ctx=err.ctx) from None
            raise click.ClickException(message) from None
        except SessionsError as err:
            err.args = tuple(render.safe(a) if isinstance(a, str) else a for a in err.args)
            raise
        except BrokenPipeError:
            raise
        except Exception as err:
            pydantic_core = sys.modules.get("pydantic_core")
            if pydantic_core is not None and isinstance(err, pydantic_core.ValidationError):
                raise  # its messages name fields and rules, never the values sent
            # `common.cli`'s last net would print it raw: the same line, escaped.
            raise SessionsError(f"{type(err).__name__}: {render.safe(err)}") from err


# ---------------------------------------------------------------- the group


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@connection_options
@click.version_option(package_name="session-worker", prog_name="sessions")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run agent sandbox sessions as durable Temporal workflows.

    \b
    Try it on one machine:
      sessions dev                                  # Temporal + Web UI, E2B emulator, worker
      sessions start --org demo --template demo-runner --wait

    Connection: --address/--namespace, else TEMPORAL_ADDRESS/TEMPORAL_NAMESPACE (and the rest
    of temporalio.envconfig), else the settings of a `sessions dev` running from the same data
    directory (<SESSIONS_DATA_DIR>/dev.env), else localhost:7233.
    """
    if ctx.invoked_subcommand not in ("dev", "emulator"):
        apply_dev_env()
    if ctx.invoked_subcommand not in ("dev", "emulator", "worker"):
        # With OTEL_* set, a session started here joins the caller's trace; else a no-op.
        from telemetry import setup

        ctx.call_on_close(setup().shutdown)


# ---------------------------------------------------------------- local stack


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=7233,
    show_default=True,
    help="Temporal frontend (gRPC) port.",
)
@click.option(
    "--ui-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Temporal Web UI port [default: --port + 1000].",
)
@click.option(
    "--emulator-port",
    type=click.IntRange(1, 65535),
    default=49982,
    show_default=True,
    help="E2B emulator API port (envd listens on the next port).",
)
@click.option(
    "--web-port",
    type=click.IntRange(1, 65535),
    default=8088,
    show_default=True,
    help="The approvals inbox (`sessions web`).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the Temporal database, ledger and logs live (env SESSIONS_DATA_DIR; ./.sessions).",
)
def dev(
    port: int, ui_port: int | None, emulator_port: int, web_port: int, data_dir: str | None
) -> int:
    """Run everything here: Temporal dev server (persistent, Web UI), E2B emulator, a worker and
    the approvals inbox (a local user is made on first run: the banner says how to log in).

    Ctrl-C stops it all. A restart keeps Temporal's state and the ledger (in the data
    directory), not the sandboxes (in the emulator's memory): a session whose sandbox was live
    then ends `lost`, billed up to the moment the previous `sessions dev` stopped. Other
    `sessions` commands run from the same directory find this stack through <data dir>/dev.env.
    """
    from sessions.dev import DevOptions, run_dev

    return run_dev(
        DevOptions(
            port=port,
            ui_port=ui_port or port + 1000,
            emulator_port=emulator_port,
            envd_port=emulator_port + 1,
            web_port=web_port,
            data_dir=data_dir,
        )
    )


@cli.command()
@connection_options
@click.option("--ledger-url", metavar="URL", help="Billing ledger (env LEDGER_URL; SQLite file).")
def worker(ledger_url: str | None) -> int:
    """Run a session worker against the configured Temporal (same as `python worker.py`).

    The sandbox provider reads E2B_API_KEY, E2B_DOMAIN, E2B_API_URL and E2B_SANDBOX_URL.
    """
    import worker as worker_module

    conn = _conn()
    if conn["address"]:
        os.environ["TEMPORAL_ADDRESS"] = conn["address"]
    if conn["namespace"]:
        os.environ["TEMPORAL_NAMESPACE"] = conn["namespace"]
    return worker_module.serve(task_queue=conn["task_queue"], ledger_url=ledger_url)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--host", help="Listen address (env EMULATOR_HOST; 127.0.0.1).")
@click.option("--port", type=int, help="Control plane port, 0 = free (49982).")
@click.option("--envd-port", type=int, help="envd port, 0 = free (49983).")
@click.option("--api-key", help="The X-API-Key it accepts (env E2B_API_KEY; else generated).")
@click.option("--templates", metavar="FILE", help="Templates file [default: the demo templates].")
@click.pass_context
def emulator(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    envd_port: int | None,
    api_key: str | None,
    templates: str | None,
) -> int:
    """Run the local E2B-compatible API (control plane + envd) with real local sandboxes.

    Further options are passed on to `python -m emulator` (see `python -m emulator --help`).
    """
    from common.errors import ConfigError

    try:  # only now: `sessions --help` and the other commands never load the emulator
        import emulator as emulator_module
        from emulator.server import command as emulator_command
    except ModuleNotFoundError as err:  # the worker image ships without the `local` extra
        raise ConfigError(
            f"the E2B emulator is not installed (no module named {err.name!r}): "
            "pip install 'session-worker[local]'"
        ) from None

    args: list[str] = []
    for flag, value in (
        ("--host", host),
        ("--port", port),
        ("--envd-port", envd_port),
        ("--api-key", api_key),
    ):
        if value is not None:
            args += [flag, str(value)]
    args += ["--templates", templates or str(emulator_module.DEMO_TEMPLATES), *ctx.args]
    try:
        # The emulator's own click command, inside this runner: its errors read like ours.
        rv = emulator_command.main(args=args, prog_name="python -m emulator", standalone_mode=False)
    except emulator_module.EmulatorError as err:  # at run time, e.g. a port in use
        raise SessionsError(err.message) from None
    return int(rv or 0)


# ---------------------------------------------------------------- sessions


@cli.command()
@connection_options
@click.option("--org", required=True, help="The org the session (and its E2B key) belongs to.")
@click.option("--issue", help="The issue the agent works on (for the cost ledger).")
@click.option("--session-id", help="Choose the id [default: 12 random hex digits]; never reused.")
@click.option("--template", help="E2B template of the sandbox [default: base].")
@click.option(
    "--launch-runner-inline",
    is_flag=True,
    help="Start the runner (donmai agent run) right after provisioning, with the session's "
    "env: how a donmai-worker sandbox gets its runner (a template's start command never sees "
    "the session).",
)
@click.option(
    "--env",
    "env_pairs",
    multiple=True,
    metavar="K=V",
    help="Environment variable for the sandbox (repeatable); values never logged.",
)
@click.option(
    "--wait", is_flag=True, help="Stay until the session ends, showing each state on stderr."
)
def start(
    org: str,
    issue: str | None,
    session_id: str | None,
    template: str | None,
    launch_runner_inline: bool,
    env_pairs: Sequence[str],
    wait: bool,
) -> int:
    """Start a session workflow and print its session id (on stdout, alone on its line)."""
    from provider.models import PoolConfig
    from sessions.client import new_session_id
    from workflows.models import SessionInput

    if session_id is not None and not session_id.strip():
        raise ConfigError("--session-id must not be empty: leave it out for a random id")
    env = parse_env_pairs(env_pairs)
    pool_fields: dict[str, Any] = {"launchRunnerInline": launch_runner_inline}
    if template:
        pool_fields["templateId"] = template
    pool = PoolConfig.model_validate(pool_fields)
    sid = session_id if session_id is not None else new_session_id()
    # The workflow's own rules, said before connecting: the same line it would answer.
    SessionInput.model_validate(
        {"session_id": sid, "org_id": org, "issue_id": issue, "pool": pool, "env_vars": env}
    )
    _text("--org", org)
    _text("--issue", issue)
    _text("--template", template)

    async def go() -> int:
        client = await _client()
        await client.start(org, issue_id=issue, session_id=sid, pool=pool, env_vars=env)
        click.echo(render.safe(sid))
        sys.stdout.flush()
        if wait:
            return await _wait(client, sid)
        return 0

    return _run(go())


async def _wait(client: Any, session_id: str) -> int:
    price = _price(None)
    console = render.stderr_console()

    def show(status: Any) -> None:
        console.print(render.progress_line(status, price=price))

    await client.wait(session_id, on_state=show)
    return 0


@cli.command()
@connection_options
@click.argument("session")
@click.argument("gate")
@click.option("--title", help="What the person is asked to approve.")
@click.option(
    "--timeout",
    "timeout",
    metavar="DURATION",
    help="How long to wait for a decision: 90s, 15m, 2h, 3d [default: the ceiling].",
)
@click.option(
    "--on-timeout",
    type=click.Choice(["reject", "terminate"]),
    default="reject",
    show_default=True,
    help="What a timeout means.",
)
@click.option("--summary", help="One line: what the agent asks to do.")
@click.option("--details", help="What the person decides on: a command, a diff, a URL (16 KiB).")
@click.option(
    "--details-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read --details from this file ('-': standard input).",
)
@click.option("--requested-by", metavar="WHO", help="Who asks (may not approve it themself).")
@click.option(
    "--approver",
    "approvers",
    multiple=True,
    metavar="WHO",
    help="Who may decide (repeatable) [default: anyone].",
)
@click.option(
    "--allow-self-approval", is_flag=True, help="Let --requested-by approve their own gate."
)
@click.option(
    "--remind-at",
    type=float,
    metavar="SHARE",
    help="Send a reminder when this share of the timeout has passed (0-1; 0: none) [0.5].",
)
def gate(
    session: str,
    gate: str,
    title: str | None,
    timeout: str | None,
    on_timeout: str,
    summary: str | None,
    details: str | None,
    details_file: str | None,
    requested_by: str | None,
    approvers: Sequence[str],
    allow_self_approval: bool,
    remind_at: float | None,
) -> int:
    """Request an approval gate: the sandbox is paused (billed $0) until it is decided."""
    from workflows.models import GateRequest

    seconds = _duration(timeout, maximum=GATE_TIMEOUT_MAX_SECONDS)
    _text("SESSION", session)
    if details_file is not None:
        if details is not None:
            raise ConfigError("give --details or --details-file, not both")
        details = _read_details(details_file)
    fields = {
        "gate": gate,
        "title": title,
        "summary": summary,
        "details": details,
        "requested_by": requested_by,
        "approvers": list(approvers),
        "allow_self_approval": allow_self_approval,
        "timeout_seconds": seconds,
        "on_timeout": on_timeout,
    }
    if remind_at is not None:  # unset: the workflow's default share
        fields["remind_at"] = remind_at or None
    # The workflow's own rules, said before connecting: the same line it would answer.
    GateRequest.model_validate(fields)
    _text("GATE", gate)
    _text("--title", title)
    _text("--summary", summary)
    _text("--details", details, lines=True)
    _text("--requested-by", requested_by)
    for name in approvers:
        _text("--approver", name)

    async def go() -> int:
        client = await _client()
        g = await client.request_gate(session, **fields)
        outcome = "rejected" if on_timeout == "reject" else "the session is terminated"
        limit = f"; undecided after {render.duration(seconds)}, {outcome}" if seconds else ""
        name, sid = render.safe(g.gate), render.safe(session)
        click.echo(
            f"gate {name} requested on session {sid}: the sandbox pauses until "
            f"`sessions approve {sid} {name} --by WHO` (or reject){limit}"
        )
        return 0

    return _run(go())


def _read_details(path: str) -> str:
    """`--details-file`: the file's text ('-': standard input), UTF-8."""
    from workflows.models import MAX_DETAILS

    where = "standard input" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_DETAILS + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_DETAILS + 1)
    except OSError as err:
        raise ConfigError(f"cannot read --details-file {where}: {err.strerror or err}") from None
    if len(data) > MAX_DETAILS:
        raise ConfigError(
            f"--details-file {where}: details is over {MAX_DETAILS} bytes; "
            f"at most {MAX_DETAILS} (16 KiB)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--details-file {where} is not UTF-8 text") from None


def _decide_command(verb: str) -> Callable[..., int]:
    past = "approved" if verb == "approve" else "rejected"

    @connection_options
    @click.argument("session")
    @click.argument("gate")
    @click.option("--by", required=True, help="Who decides (kept in the gate history).")
    @click.option("--comment", help="Why.")
    def command(session: str, gate: str, by: str, comment: str | None) -> int:
        from workflows.models import GateDecision

        _text("SESSION", session)
        # The workflow's own rules, said before connecting: the same line it would answer.
        GateDecision.model_validate({"gate": gate, "by": by, "comment": comment})
        _text("GATE", gate)
        _text("--by", by)
        _text("--comment", comment, lines=True)

        async def go() -> int:
            client = await _client()
            method = client.approve if verb == "approve" else client.reject
            g = await method(session, gate, by=by, comment=comment)
            follow = "the sandbox resumes" if verb == "approve" else "the session carries on"
            click.echo(
                f"gate {render.safe(g.gate)} {past} by {render.safe(g.decided_by)} "
                f"on session {render.safe(session)}: {follow}"
            )
            return 0

        return _run(go())

    command.__doc__ = (
        f"{verb.capitalize()} a waiting gate; an unknown or already decided gate is an error."
    )
    return command


cli.command("approve")(_decide_command("approve"))
cli.command("reject")(_decide_command("reject"))


@cli.command("exec")
@connection_options
@click.argument("session")
@click.argument("command", nargs=-1, required=True)
@click.option(
    "--env", "env_pairs", multiple=True, metavar="K=V", help="Extra variable (repeatable)."
)
@click.option("--cwd", help="Working directory in the sandbox.")
@click.option("--timeout", "timeout", metavar="DURATION", help="Command timeout [default: 10m].")
def exec_(
    session: str,
    command: Sequence[str],
    env_pairs: Sequence[str],
    cwd: str | None,
    timeout: str | None,
) -> int:
    """Run one command in the session's sandbox; exit with the command's exit code.

    \b
    sessions exec S -- ls -la /home/user        # several words: run as that argv (quoted)
    sessions exec S -- 'make test && echo ok'   # one word: a shell command line
    """
    _text("SESSION", session)
    env = parse_env_pairs(env_pairs)
    seconds = _duration(timeout, maximum=EXEC_TIMEOUT_MAX_SECONDS)
    line = command[0] if len(command) == 1 else shlex.join(command)

    async def go() -> int:
        client = await _client()
        result = await client.exec(session, line, env=env, cwd=cwd, timeout_seconds=seconds)
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        sys.stderr.flush()
        return result.exit_code

    return _run(go())


@cli.command()
@connection_options
@click.argument("session")
@click.option("--json", "as_json", is_flag=True, help="Print the status query's JSON object.")
@click.option(
    "--price-per-second",
    type=_Price(),
    help="Dollars per running second (env SESSIONS_PRICE_PER_SECOND).",
)
def status(session: str, as_json: bool, price_per_second: float | None) -> int:
    """State, sandbox, gate history, seconds running and paused of one session."""
    _text("SESSION", session)
    price = _price(price_per_second)

    async def go() -> int:
        client = await _client()
        st = await client.status(session)
        if as_json:
            render.print_json(render.status_json(st))
        else:
            render.show_status(st, price=price)
        return 0

    return _run(go())


@cli.command("list")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per session.")
@click.option("--limit", type=click.IntRange(1, 10_000), help="At most this many [50; 1000].")
@click.option(
    "--waiting",
    is_flag=True,
    help="Only the gates waiting now, from one visibility query (no worker needed).",
)
@click.option("--org", "org_id", metavar="O", help="Only this org's sessions.")
@click.option("--issue", "issue_id", metavar="I", help="Only this issue's sessions.")
@click.option(
    "--price-per-second",
    type=_Price(),
    help="Dollars per running second (env SESSIONS_PRICE_PER_SECOND).",
)
def list_(
    as_json: bool,
    limit: int | None,
    waiting: bool,
    org_id: str | None,
    issue_id: str | None,
    price_per_second: float | None,
) -> int:
    """Sessions, newest first, with their state where a worker answers; with --waiting, the
    gates waiting for a decision, newest first, with what each asks and who may decide."""
    from datetime import UTC, datetime

    _text("--org", org_id)
    _text("--issue", issue_id)
    price = _price(price_per_second)

    async def go() -> int:
        client = await _client()
        if waiting:
            now = datetime.now(UTC)
            rows = await client.waiting(
                org_id=org_id, issue_id=issue_id, limit=limit or 1000, now=now
            )
            if as_json:
                render.print_json([render.waiting_json(r) for r in rows])
            else:
                render.show_waiting(rows, price=price, now=now)
            return 0
        items = await client.list(limit=limit or 50, org_id=org_id, issue_id=issue_id)
        if as_json:
            render.print_json([render.listing_json(i) for i in items])
        else:
            render.show_list(items)
        return 0

    return _run(go())


def _end_command(verb: str) -> Callable[..., int]:
    @connection_options
    @click.argument("session")
    @click.option("--wait", is_flag=True, help="Stay until the sandbox is terminated and billed.")
    def command(session: str, wait: bool) -> int:
        _text("SESSION", session)

        async def go() -> int:
            client = await _client()
            if verb == "finish":
                await client.finish(session)
            else:
                await client.cancel(session)
            click.echo(
                f"session {render.safe(session)}: {verb} requested; the sandbox is terminated "
                "and its cost recorded"
            )
            if wait:
                try:
                    return await _wait(client, session)
                except SessionsError as err:
                    if verb == "cancel" and "cancelled" in str(err):
                        return 0
                    raise
            return 0

        return _run(go())

    command.__doc__ = (
        "End the session: the sandbox is terminated and its cost recorded."
        if verb == "finish"
        else "Cancel the session's workflow: it still terminates the sandbox and records the cost."
    )
    return command


cli.command("finish")(_end_command("finish"))
cli.command("cancel")(_end_command("cancel"))


@cli.command()
@connection_options
@click.option(
    "--by",
    type=click.Choice(["session", "issue", "org", "day"]),
    help="Sum per session, issue or org, or per UTC day from the running segments "
    "[default: one row per cost event].",
)
@click.option(
    "--live",
    is_flag=True,
    help="The running sessions' cost so far: recorded segments plus the open one, up to now.",
)
@click.option("--json", "as_json", is_flag=True, help="The contract's JSON shapes.")
@click.option("--ledger-url", metavar="URL", help="The ledger (env LEDGER_URL; SQLite file).")
@click.option(
    "--price-per-second",
    type=_Price(),
    help="Dollars per running second (env SESSIONS_PRICE_PER_SECOND) "
    f"[default: {DEFAULT_PRICE_PER_SECOND:.8f}].",
)
def costs(
    by: str | None,
    live: bool,
    as_json: bool,
    ledger_url: str | None,
    price_per_second: float | None,
) -> int:
    """The billing ledger: one cost event per session and sandbox, or sums of them.

    A cost event is recorded when a session's sandbox ends; its running stretches are recorded
    as each one closes (a pause, the end). `--by day` sums those stretches per UTC day (one
    that crosses midnight counts on both sides). `--live` shows the sessions still open: what
    the ledger holds of them plus the stretch running now, counted up to this machine's clock
    (it asks Temporal, like `sessions list`). An ENDED time marked "(last seen)" is a sandbox
    lost with no record of its end, billed to the last moment it was known alive.

    The dollar figure is an estimate: running seconds x E2B's published per-second price for
    its default sandbox, 2 vCPU x $0.000014 + 0.5 GiB x $0.0000045 = $0.00003025 per second.
    Paused seconds cost nothing. Set your own rate with --price-per-second or
    SESSIONS_PRICE_PER_SECOND.
    """
    from sessions.client import read_costs

    price = _price(price_per_second)
    if live:
        if by is not None:
            raise click.UsageError("--live shows each open session: it takes no --by")
        return _live_costs(as_json=as_json, ledger_url=ledger_url, price=price)
    rows = _run(read_costs(by=by, ledger_url=ledger_url))  # type: ignore[arg-type]
    if as_json:
        if by is None:
            render.print_json([e.model_dump(mode="json") for e in rows])
        elif by == "day":
            render.print_json([render.daily_json(d) for d in rows])
        else:
            render.print_json([render.summary_json(s) for s in rows])
    elif by == "day":
        render.show_daily(rows, price=price)
    else:
        render.show_costs(rows, by=by, price=price)
    return 0


def _live_costs(*, as_json: bool, ledger_url: str | None, price: float) -> int:
    """`costs --live`: the open stretch is counted up to this machine's clock, not a worker's."""
    from datetime import UTC, datetime

    from sessions.client import live_costs

    async def go() -> int:
        client = await _client()
        rows = await live_costs(client, ledger_url=ledger_url)  # now: once the statuses are in
        if as_json:
            render.print_json([render.live_json(r) for r in rows])
        else:
            render.show_live(rows, price=price, as_of=rows[0].as_of if rows else datetime.now(UTC))
        return 0

    return _run(go())


@cli.command("audit")
@click.option("--session", "session_id", metavar="S", help="Only this session's gates.")
@click.option("--org", "org_id", metavar="O", help="Only this org's gates.")
@click.option(
    "--since",
    metavar="T",
    help="From this time on: ISO-8601 (UTC unless it says) or back from now (90m, 24h, 7d).",
)
@click.option("--json", "as_json", is_flag=True, help="A list of gate events (JSON).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV: a header row, one row per event.")
@click.option("--ledger-url", metavar="URL", help="The ledger (env LEDGER_URL; SQLite file).")
def audit_(
    session_id: str | None,
    org_id: str | None,
    since: str | None,
    as_json: bool,
    as_csv: bool,
    ledger_url: str | None,
) -> int:
    """The gate audit trail: every gate requested, notified, decided or timed out, oldest first.

    Each row says who, when, the comment, how long the gate waited, the seconds the sandbox was
    paused for it and a digest of the gate's summary and details; the ledger keeps them after
    the workflow history is gone.
    """
    from sessions.audit import audit, parse_since, read_gate_events

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    after = None if since is None else parse_since(since)
    events = _run(
        read_gate_events(session_id=session_id, org_id=org_id, since=after, ledger_url=ledger_url)
    )
    return audit(events, output="json" if as_json else "csv" if as_csv else "table")


def _price(value: float | None) -> float:
    """Flag > `SESSIONS_PRICE_PER_SECOND` > E2B's default sandbox price."""
    from common.settings import CliSettings

    return CliSettings.load(price_per_second=value).price_per_second


from sessions.web.cli import web as _web  # noqa: E402  (its own module: the inbox is a part)

cli.add_command(_web)


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every failure is one line on stderr, never a traceback (`common.cli.main`)."""
    return run_command(cli, argv, prog_name="sessions")


__all__ = ["cli", "main"]
