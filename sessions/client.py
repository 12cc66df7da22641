"""`SessionClient`: start and steer session workflows from Python (the CLI is a thin layer over it).

Every Temporal failure is turned into a `SessionsError` in one place (`_translate`), so callers
catch one exception root and show one clear line.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    CancelledError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import (
    TimeoutError as WorkflowTimeoutError,
)
from temporalio.service import RPCError, RPCStatusCode

from common.failures import describe_failure
from common.ids import session_id_of
from common.search import (
    MEMO_USAGE,
    MEMO_WAITING_GATES,
    SESSION_ISSUE,
    SESSION_ORG,
    SESSION_STATE,
    SESSION_WAITING_GATES,
)
from common.settings import CliSettings
from common.temporal import connect_cause, connect_config, connect_temporal
from ledger.billing import Usage
from provider.models import ExecResult, PoolConfig
from sessions.errors import (
    ConfigError,
    RequestRejected,
    SessionEnded,
    SessionExists,
    SessionFailed,
    SessionNotFound,
    SessionsError,
    TemporalUnreachable,
    WorkerUnavailable,
)
from telemetry import with_tracing
from workflows.models import (
    ENDED_STATES,
    WORKFLOW_TYPE,
    ExecRequest,
    FinishRequest,
    Gate,
    GateDecision,
    GateRequest,
    OnTimeout,
    SessionInput,
    SessionResult,
    SessionStatus,
    UsageMemo,
    WaitingGate,
    workflow_id_for,
)

_M = TypeVar("_M", bound=BaseModel)

_REMIND_AT: float | None = GateRequest.model_fields["remind_at"].default
"""A gate's reminder by default: the workflow's own default."""
POLL_SECONDS = 0.5
_GRACE = timedelta(seconds=5)
"""RPC deadlines sit past our own timeout, so it is ours that fires and names the queue."""

"""A session in one of these has closed its sandbox's account: its figures are final."""

_CLOSED_STATE = {
    WorkflowExecutionStatus.COMPLETED: "finished",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
}


class SessionListing(BaseModel):
    """One row of `sessions list`: what visibility knows, plus the status query's answer."""

    session_id: str
    workflow_id: str
    workflow_status: str
    """Temporal's view: RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED, ..."""
    started_at: datetime | None
    closed_at: datetime | None
    status: SessionStatus | None
    """None when no worker answered the query (the workflow's own state is then unknown)."""

    @property
    def state(self) -> str:
        if self.status is not None:
            return self.status.state
        closed = _CLOSED_STATE.get(WorkflowExecutionStatus[self.workflow_status])
        return closed or "unknown"


class ListedGate(WaitingGate):
    """A waiting gate as `SessionClient.waiting` lists it. `requested_at` is None only for a
    gate the search attribute names but the memo does not describe (yet): shown by name."""

    requested_at: datetime | None = None  # type: ignore[assignment]


class WaitingSession(BaseModel):
    """One session with gates waiting for a decision (`sessions list --waiting`), from its
    search attributes and memo alone: no worker is asked, so it answers with none running."""

    session_id: str
    workflow_id: str
    org_id: str | None
    issue_id: str | None
    state: str | None
    """The session's state as it last published it (`SessionState`)."""
    gates: builtins.list[ListedGate]
    usage: UsageMemo | None
    """The sandbox's seconds counted up to the moment of asking (`as_of`)."""
    started_at: datetime | None
    """When the workflow's current run started (a continued-as-new run starts anew)."""

    @property
    def waiting_since(self) -> datetime | None:
        """When its newest gate began to wait (or was requested): the list's order."""
        times = [g.waiting_since or g.requested_at for g in self.gates]
        return max((t for t in times if t is not None), default=None)


WAITING_LIMIT = 1000
"""`waiting()` reads at most this many sessions: one visibility page (Temporal's largest)."""


StateCallback = Callable[[SessionStatus], Awaitable[None] | None]


def new_session_id() -> str:
    """Short, readable, unique enough for one platform: 12 hex digits of a uuid4."""
    return uuid.uuid4().hex[:12]


class SessionClient:
    """A typed client for `SandboxSession` workflows: one workflow per agent session."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str | None = None,
        worker_timeout: float | None = None,
    ) -> None:
        """`task_queue`: argument > `SESSIONS_TASK_QUEUE` > `sandbox-sessions`; `worker_timeout`:
        seconds a query or update waits for a worker to pick it up (argument >
        `SESSIONS_WORKER_TIMEOUT` > 10 s), then `WorkerUnavailable`."""
        settings = CliSettings.load(task_queue=task_queue, worker_timeout=worker_timeout)
        self.client = client
        self.task_queue = settings.task_queue
        self.worker_timeout = timedelta(seconds=settings.worker_timeout)

    @classmethod
    async def connect(
        cls,
        *,
        address: str | None = None,
        namespace: str | None = None,
        task_queue: str | None = None,
        worker_timeout: float | None = None,
    ) -> SessionClient:
        """Connect with `temporalio.envconfig` (argument > TEMPORAL_* > profile > default),
        encrypting payloads with `SESSIONS_PAYLOAD_KEYS` when set."""
        try:
            client = await connect_temporal(
                address=address,
                namespace=namespace,
                payload_keys=CliSettings.load().payload_keys,
                interceptors=with_tracing(()),
            )
        except ValueError as err:  # the SDK's word for an address it cannot parse
            target = connect_config(address=address, namespace=namespace)["target_host"]
            raise ConfigError(
                f"invalid Temporal address {target!r} (--address, TEMPORAL_ADDRESS): "
                f"{_one_line(err)}"
            ) from None
        return cls(client, task_queue=task_queue, worker_timeout=worker_timeout)

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self,
        org_id: str,
        *,
        issue_id: str | None = None,
        session_id: str | None = None,
        pool: PoolConfig | Mapping[str, Any] | None = None,
        env_vars: Mapping[str, str] | None = None,
    ) -> str:
        """Start one session workflow; returns its session id. An id is never reused."""
        session_id = session_id or new_session_id()
        if not isinstance(pool, PoolConfig):
            pool = PoolConfig.model_validate(dict(pool or {}))
        inp = SessionInput.model_validate(
            {
                "session_id": session_id,
                "org_id": org_id,
                "issue_id": issue_id,
                "pool": pool,
                "env_vars": dict(env_vars or {}),
            }
        )
        async with _translated(session_id):
            await self.client.start_workflow(
                WORKFLOW_TYPE,
                inp,
                id=workflow_id_for(session_id),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                result_type=SessionResult,
            )
        return session_id

    async def wait(
        self, session_id: str, *, on_state: StateCallback | None = None
    ) -> SessionResult:
        """Wait for the session to end, reporting each new state (and gate change) on the way.

        A session that ends failed or cancelled raises `SessionFailed` after reporting it.
        """
        handle = self._handle(session_id)
        last: tuple[Any, ...] | None = None

        async def report(status: SessionStatus) -> None:
            nonlocal last
            key = (status.state, tuple((g.gate, g.state) for g in status.gates))
            if key != last and on_state is not None:
                last = key
                outcome = on_state(status)
                if asyncio.iscoroutine(outcome):
                    await outcome

        async with _translated(session_id):
            result_task = asyncio.ensure_future(handle.result())
            try:
                while not result_task.done():
                    with contextlib.suppress(SessionsError):
                        await report(await self.status(session_id))
                    await asyncio.wait({result_task}, timeout=POLL_SECONDS)
                result = result_task.result()
            except WorkflowFailureError as err:
                with contextlib.suppress(SessionsError):
                    await report(await self.status(session_id))
                raise SessionFailed(_failure_message(session_id, err)) from None
            finally:
                result_task.cancel()
        await report(result.status)
        return result

    async def finish(self, session_id: str) -> None:
        """Ask the session to end: the sandbox is terminated and its cost recorded."""
        async with _translated(session_id):
            await self._handle(session_id).signal("finish", FinishRequest())

    async def cancel(self, session_id: str) -> None:
        """Cancel the workflow: it still terminates the sandbox and records the cost."""
        async with _translated(session_id):
            handle = self._handle(session_id)
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                raise SessionEnded(_ended(f"session {session_id}", session_id))
            await handle.cancel()

    # ------------------------------------------------------------------ gates and exec

    async def request_gate(
        self,
        session_id: str,
        gate: str,
        *,
        title: str | None = None,
        summary: str | None = None,
        details: str | None = None,
        requested_by: str | None = None,
        approvers: Sequence[str] = (),
        allow_self_approval: bool = False,
        timeout_seconds: float | None = None,
        on_timeout: OnTimeout = "reject",
        remind_at: float | None = _REMIND_AT,
    ) -> Gate:
        """Request an approval gate; the workflow pauses the sandbox while it waits. `summary`
        (one line) and `details` (up to 16 KiB: the command, the diff, the URL) say what the
        person decides on; `approvers` who may decide (empty: anyone); `remind_at` the share
        of the timeout after which a reminder goes out (None: none)."""
        request = GateRequest(
            gate=gate,
            title=title,
            summary=summary,
            details=details,
            requested_by=requested_by,
            approvers=list(approvers),
            allow_self_approval=allow_self_approval,
            timeout_seconds=timeout_seconds,
            on_timeout=on_timeout,
            remind_at=remind_at,
        )
        return await self._update(session_id, "request_gate", request, Gate)

    async def approve(
        self, session_id: str, gate: str, *, by: str, comment: str | None = None
    ) -> Gate:
        decision = GateDecision(gate=gate, by=by, comment=comment)
        return await self._update(session_id, "approve_gate", decision, Gate)

    async def reject(
        self, session_id: str, gate: str, *, by: str, comment: str | None = None
    ) -> Gate:
        decision = GateDecision(gate=gate, by=by, comment=comment)
        return await self._update(session_id, "reject_gate", decision, Gate)

    async def exec(
        self,
        session_id: str,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_seconds: float | None = None,
    ) -> ExecResult:
        """Run one command in the session's sandbox; a non-zero exit is a result, not an error."""
        fields: dict[str, Any] = {"command": command, "env": dict(env or {}), "cwd": cwd}
        if timeout_seconds is not None:
            fields["timeout_seconds"] = timeout_seconds
        request = ExecRequest(**fields)
        rpc_timeout = timedelta(seconds=request.timeout_seconds + 60)
        return await self._update(session_id, "exec", request, ExecResult, rpc_timeout=rpc_timeout)

    # ------------------------------------------------------------------ reading

    async def status(self, session_id: str) -> SessionStatus:
        """The `status` query; a completed session answers from its result without a worker."""
        handle = self._handle(session_id)
        async with _translated(session_id):
            try:
                async with asyncio.timeout(self.worker_timeout.total_seconds()):
                    return live_figures(
                        await handle.query(
                            "status",
                            result_type=SessionStatus,
                            rpc_timeout=self.worker_timeout + _GRACE,
                        )
                    )
            except (RPCTimeoutOrCancelledError, RPCError, TimeoutError) as err:
                if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
                    raise
                desc = await handle.describe()
                if desc.status == WorkflowExecutionStatus.COMPLETED:
                    result = await handle.result()
                    return result.status
                raise WorkerUnavailable(await self._no_worker(session_id)) from None

    async def list(
        self,
        *,
        limit: int = 50,
        query: str | None = None,
        org_id: str | None = None,
        issue_id: str | None = None,
    ) -> builtins.list[SessionListing]:
        """Sessions newest first, via visibility, each with its status where the query answers;
        `org_id`/`issue_id` filter on the search attributes the sessions publish."""
        if limit < 1:
            raise ConfigError("limit must be at least 1")
        visibility = " AND ".join(_session_clauses(org_id=org_id, issue_id=issue_id))
        if query:
            visibility = f"{visibility} AND ({query})"
        rows: builtins.list[Any] = []
        async with _translated(None):
            async for execution in self.client.list_workflows(visibility, limit=limit):
                rows.append(execution)
        statuses = await asyncio.gather(*(self._listing_status(r) for r in rows))
        return [
            SessionListing(
                session_id=session_id_of(r.id) or r.id,
                workflow_id=r.id,
                workflow_status=r.status.name if r.status else "UNSPECIFIED",
                started_at=r.start_time,
                closed_at=r.close_time,
                status=status,
            )
            for r, status in zip(rows, statuses, strict=True)
        ]

    async def waiting(
        self,
        *,
        org_id: str | None = None,
        issue_id: str | None = None,
        limit: int = WAITING_LIMIT,
        now: datetime | None = None,
    ) -> builtins.list[WaitingSession]:
        """The sessions with gates waiting now, newest waiting first, from ONE visibility query
        (the search attributes and memo each session publishes): no workflow query, no worker.
        Seconds are counted up to `now` (this machine's clock by default)."""
        if limit < 1:
            raise ConfigError("limit must be at least 1")
        clauses = [
            *_session_clauses(org_id=org_id, issue_id=issue_id),
            "ExecutionStatus = 'Running'",
            f"{SESSION_WAITING_GATES.name} IS NOT NULL",
        ]
        at = now or datetime.now(UTC)
        rows: builtins.list[WaitingSession] = []
        async with _translated(None):
            async for execution in self.client.list_workflows(
                " AND ".join(clauses), limit=limit, page_size=min(limit, WAITING_LIMIT)
            ):
                rows.append(await _waiting_session(execution, at))
        epoch = datetime.min.replace(tzinfo=UTC)
        rows.sort(key=lambda r: r.waiting_since or r.started_at or epoch, reverse=True)
        return rows

    # ------------------------------------------------------------------ internals

    def _handle(self, session_id: str) -> WorkflowHandle[Any, SessionResult]:
        return self.client.get_workflow_handle(
            workflow_id_for(session_id), result_type=SessionResult
        )

    async def _update(
        self,
        session_id: str,
        name: str,
        arg: BaseModel,
        result_type: type[Any],
        *,
        rpc_timeout: timedelta = timedelta(seconds=60),
    ) -> Any:
        """Accepted (validated) within the worker timeout, so a missing worker is told soon."""
        async with _translated(session_id, queue=self.task_queue):
            try:
                async with asyncio.timeout(self.worker_timeout.total_seconds()):
                    # The SDK polls for acceptance until it comes: bound the whole wait.
                    update = await self._handle(session_id).start_update(
                        name,
                        arg,
                        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                        result_type=result_type,
                        rpc_timeout=self.worker_timeout + _GRACE,
                    )
            except (TimeoutError, RPCTimeoutOrCancelledError):
                raise WorkerUnavailable(await self._no_worker(session_id)) from None
            return await update.result(rpc_timeout=rpc_timeout)

    async def _no_worker(self, session_id: str) -> str:
        """Name the queue the session's workflow really runs on, not this client's default."""
        queue = self.task_queue
        with contextlib.suppress(Exception):
            queue = (await self._handle(session_id).describe()).task_queue or queue
        return _no_worker(session_id, queue)

    async def _listing_status(self, execution: Any) -> SessionStatus | None:
        if execution.status == WorkflowExecutionStatus.COMPLETED:
            with contextlib.suppress(Exception):
                handle = self.client.get_workflow_handle(
                    execution.id, run_id=execution.run_id, result_type=SessionResult
                )
                return (await handle.result()).status
        try:
            handle = self.client.get_workflow_handle(execution.id, run_id=execution.run_id)
            async with asyncio.timeout(self.worker_timeout.total_seconds()):
                return live_figures(
                    await handle.query(
                        "status", result_type=SessionStatus, rpc_timeout=self.worker_timeout
                    )
                )
        except Exception:  # no worker, or a run it cannot replay: show what visibility knows
            return None


async def _waiting_session(execution: Any, now: datetime) -> WaitingSession:
    """A visibility row as a `WaitingSession`: the gates the search attribute names, described
    by the memo where it has them (a memo the data converter cannot decode names them only)."""
    attrs = execution.typed_search_attributes
    names = attrs.get(SESSION_WAITING_GATES) or []
    described: dict[str, ListedGate] = {}
    usage: UsageMemo | None = None
    with contextlib.suppress(Exception):  # an older session, or another codec's payloads
        memo = await execution.memo()  # one decode of the row's memo
        for raw in memo.get(MEMO_WAITING_GATES) or []:
            listed = _memo_model(ListedGate, raw)
            if listed is not None:
                described.setdefault(listed.gate, listed)
        usage = _memo_model(UsageMemo, memo.get(MEMO_USAGE))
    return WaitingSession(
        session_id=session_id_of(execution.id) or execution.id,
        workflow_id=execution.id,
        org_id=attrs.get(SESSION_ORG),
        issue_id=attrs.get(SESSION_ISSUE),
        state=attrs.get(SESSION_STATE),
        gates=[described.get(name) or ListedGate(gate=name) for name in names],
        usage=usage_now(usage, now),
        started_at=execution.start_time,
    )


def _memo_model(model: type[_M], raw: Any) -> _M | None:
    """`raw` as `model`, a null field taken as its default; None when it is not one."""
    if not isinstance(raw, dict):
        return None
    try:
        return model.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValueError:
        return None


def usage_now(usage: UsageMemo | None, now: datetime) -> UsageMemo | None:
    """The memo's seconds brought up to `now`: the time since `as_of` is added to the seconds
    of the state the sandbox was in then (a clock behind the worker's adds nothing)."""
    if usage is None or usage.state is None or now <= usage.as_of:
        return usage
    field = f"{usage.state}_seconds"
    since = (now - usage.as_of).total_seconds()
    return usage.model_copy(update={field: getattr(usage, field) + since, "as_of": now})


def _session_clauses(*, org_id: str | None, issue_id: str | None) -> list[str]:
    """The visibility query's clauses for session workflows of this org and issue."""
    clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    if org_id is not None:
        clauses.append(f"{SESSION_ORG.name} = {_literal(org_id, '--org')}")
    if issue_id is not None:
        clauses.append(f"{SESSION_ISSUE.name} = {_literal(issue_id, '--issue')}")
    return clauses


def _literal(value: str, what: str) -> str:
    """`value` as a visibility query's string literal (a quote doubled). A double quote or a
    backslash is refused: Temporal's visibility stores do not all match them alike."""
    if '"' in value or "\\" in value:
        raise ConfigError(f"{what} may not contain a double quote or a backslash")
    return "'" + value.replace("'", "''") + "'"


async def read_costs(
    *, by: Literal["session", "issue", "org", "day"] | None = None, ledger_url: str | None = None
) -> list[Any]:
    """Cost events (`CostEvent`), sums (`CostSummary`) per session, issue or org, or running
    seconds per UTC day (`DailyCost`, from the segments) from the ledger, as `LedgerError`-free."""
    from ledger import LedgerError

    async with reading_ledger(ledger_url) as ledger:
        if ledger is None:
            return []
        try:
            if by is None:
                return list(await ledger.events())
            if by == "day":
                return list(await ledger.daily())
            return list(await ledger.summary(by))
        except LedgerError as err:
            raise SessionsError(f"ledger: {err}") from None


class LiveCost(BaseModel):
    """One open session's cost so far (`sessions costs --live`): the running segments the ledger
    holds, plus what the session's `status` says is still open, counted up to `as_of`."""

    session_id: str
    org_id: str | None
    issue_id: str | None
    sandbox_id: str | None
    template_id: str | None
    state: str
    running_seconds: float
    paused_seconds: float
    """The paused stretches the session knows of (billed $0)."""
    as_of: datetime
    """The caller's clock when asked: the open stretch is counted up to here."""


LIVE_LIMIT = 1000
"""`costs --live` reads at most this many running sessions (newest first)."""


async def live_costs(
    client: SessionClient,
    *,
    ledger_url: str | None = None,
    now: datetime | None = None,
    limit: int = LIVE_LIMIT,
) -> list[LiveCost]:
    """The running sessions' cost as it accrues, newest first: per session, the closed running
    segments the ledger holds (every sandbox of it), the running stretches its `status` knows
    that the ledger does not hold yet, and its open one up to `now` (this machine's clock when
    not given). A session no worker answers for shows what the ledger holds, state `unknown`."""
    from ledger import LedgerError, Segment

    listings = await client.list(limit=limit, query="ExecutionStatus = 'Running'")
    at = now or datetime.now(UTC)
    rows: builtins.list[LiveCost] = []
    async with reading_ledger(ledger_url) as ledger:
        for item in listings:
            recorded: builtins.list[Any] = []  # SegmentEvents
            if ledger is not None:
                try:
                    recorded = await ledger.segments(session_id=item.session_id)
                except LedgerError as err:
                    raise SessionsError(f"ledger: {err}") from None
            status = item.status
            # One stretch per (sandbox, start): the ledger's closed one wins over the status's.
            running: dict[tuple[str, datetime], Segment] = {
                (s.sandbox_id, s.started_at): Segment(
                    state="running", start=s.started_at, end=s.ended_at
                )
                for s in recorded
            }
            paused: builtins.list[Segment] = []
            if status is not None and status.sandbox_id is not None:
                for seg in status.segments:
                    if seg.state == "paused":
                        paused.append(seg)
                    else:
                        running.setdefault((status.sandbox_id, seg.start.astimezone(UTC)), seg)
            # Who it is: the session's own answer, else what its recorded segments say.
            known: Any = status if status is not None else (recorded[-1] if recorded else None)
            rows.append(
                LiveCost(
                    session_id=item.session_id,
                    org_id=getattr(known, "org_id", None),
                    issue_id=getattr(known, "issue_id", None),
                    sandbox_id=getattr(known, "sandbox_id", None),
                    template_id=getattr(known, "template_id", None),
                    state=item.state,
                    running_seconds=Usage(running.values()).seconds("running", at),
                    paused_seconds=Usage(paused).seconds("paused", at),
                    as_of=at,
                )
            )
    return rows


@contextlib.asynccontextmanager
async def reading_ledger(ledger_url: str | None) -> AsyncIterator[Any]:
    """The ledger, opened to read (a `SqlLedger`), or None when there is none yet: reading must
    not create a SQLite file. Its failures are `SessionsError`s."""
    from ledger import LedgerError, open_ledger, resolve_ledger_url

    url = resolve_ledger_url(ledger_url)
    if url.startswith("sqlite") and not _sqlite_file_exists(url):
        yield None  # nothing recorded yet
        return
    try:
        ledger = await open_ledger(ledger_url)
    except LedgerError as err:
        raise SessionsError(f"ledger: {err}") from None
    try:
        yield ledger
    finally:
        await ledger.close()


def _sqlite_file_exists(url: str) -> bool:
    from pathlib import Path

    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:  # a malformed URL: let the ledger say what is wrong with it
        return True
    return not database or database == ":memory:" or Path(database).exists()


def live_figures(status: SessionStatus, now: datetime | None = None) -> SessionStatus:
    """`status` with its running and paused seconds counted up to `now` (this machine's clock,
    by default the moment of asking), from the sandbox's segments.

    The workflow answers its `status` query with its seconds counted up to its last workflow
    task, so a running session's figures would freeze between tasks, then jump. Every reading
    of a status (`status`, `list`, `wait`, `--json`) goes through here, so they all agree. An
    ended session keeps the workflow's figures (they are its bill); a clock behind the worker's
    never makes a figure smaller than the workflow's own.
    """
    if status.state in ENDED_STATES or not status.segments:
        return status
    usage = Usage(status.segments)
    at = now or datetime.now(UTC)
    return status.model_copy(
        update={
            "running_seconds": max(status.running_seconds, usage.seconds("running", at)),
            "paused_seconds": max(status.paused_seconds, usage.seconds("paused", at)),
        }
    )


def _ended(who: str, session_id: str | None) -> str:
    """A refusal because the session is over, saying where to read how it ended (finished,
    failed, cancelled, lost): the refused call itself cannot know."""
    how = f": `sessions status {session_id}` says how" if session_id else ""
    return f"{who} has ended{how}"


def _no_worker(session_id: str, queue: str) -> str:
    return (
        f"no worker answered for session {session_id} (task queue {queue}): "
        "is `sessions worker` or `sessions dev` running?"
    )


@contextlib.asynccontextmanager
async def _translated(session_id: str | None, *, queue: str | None = None) -> AsyncIterator[None]:
    """Run a Temporal call, turning its failures into `SessionsError`s."""
    try:
        yield
    except SessionsError:
        raise
    except Exception as err:
        _translate(err, session_id, queue=queue)


def _translate(err: BaseException, session_id: str | None, *, queue: str | None = None) -> NoReturn:
    """The one place Temporal's exceptions become the client's: one clear line each."""
    who = f"session {session_id}" if session_id else "the request"
    if isinstance(err, WorkflowAlreadyStartedError):
        raise SessionExists(
            f"session {session_id} already exists: choose another --session-id"
        ) from None
    if isinstance(err, WorkflowUpdateFailedError):
        message = _cause_message(err.cause) or "the workflow refused the request"
        raise RequestRejected(message) from None
    if isinstance(err, WorkflowFailureError):
        raise SessionFailed(_failure_message(session_id or "?", err)) from None
    if isinstance(err, WorkflowQueryRejectedError | WorkflowQueryFailedError):
        raise RequestRejected(f"{who}: query failed: {_one_line(err)}") from None
    if isinstance(err, RPCTimeoutOrCancelledError):
        raise WorkerUnavailable(
            _no_worker(session_id, queue or "?") if session_id else "the call timed out"
        ) from None
    if isinstance(err, RPCError):
        message = _one_line(err)
        if err.status == RPCStatusCode.NOT_FOUND:
            if "already completed" in message or "already finished" in message:
                raise SessionEnded(_ended(who, session_id)) from None
            raise SessionNotFound(f"no session {session_id}") from None
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            if session_id and err.status == RPCStatusCode.DEADLINE_EXCEEDED:
                raise WorkerUnavailable(_no_worker(session_id, queue or "?")) from None
            raise TemporalUnreachable(
                f"Temporal did not answer: is `sessions dev` running? ({connect_cause(message)})"
            ) from None
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ConfigError(message) from None
        raise SessionsError(f"Temporal: {message}") from None
    raise err


def _failure_message(session_id: str, err: WorkflowFailureError) -> str:
    cause = err.cause
    if isinstance(cause, CancelledError):
        return f"session {session_id} was cancelled"
    if isinstance(cause, TerminatedError):
        return f"session {session_id} was terminated: {_cause_message(cause)}"
    if isinstance(cause, WorkflowTimeoutError):
        return f"session {session_id} timed out"
    return f"session {session_id} failed: {_cause_message(cause)}"


def _cause_message(err: BaseException | None) -> str:
    """The failure's own cause, `Type: message` (`common.failures`)."""
    return describe_failure(err) if err is not None else ""


def _one_line(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err)
    return " ".join(str(message).split())[:1000] or type(err).__name__


__all__ = [
    "ListedGate",
    "LiveCost",
    "SessionClient",
    "SessionListing",
    "WaitingSession",
    "live_costs",
    "new_session_id",
    "read_costs",
    "reading_ledger",
    "usage_now",
]
