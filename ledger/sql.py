"""The ledger on SQLAlchemy 2: SQLite by default, PostgreSQL (asyncpg) when several workers
share it. Reads go through the async engine (aiosqlite on SQLite); each write is one function of
a connection, run whole in a thread on SQLite and through the async engine on PostgreSQL.

Exactly-once comes from the database, not from the caller: `INSERT ... ON CONFLICT DO NOTHING` on
the (session, sandbox) key, then the stored row is read back in the same transaction; the running
segments likewise, on their (sandbox, start) key, and the gate audit trail on its (session, gate,
event, about, sink) key.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime
from datetime import time as clock_time
from typing import Any, TypeVar, get_args

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Select,
    Table,
    case,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ledger._schema import cost_events, cost_segments, gate_events, lock_for_migration, migrate
from ledger.billing import daily_costs
from ledger.config import LedgerTarget, parse_ledger_url, resolve_ledger_url
from ledger.errors import LedgerError, LedgerUnavailable
from ledger.models import (
    CostEvent,
    CostSummary,
    DailyBy,
    DailyCost,
    GateEvent,
    RecordResult,
    SegmentEvent,
    SummaryBy,
)

_M = TypeVar("_M", SegmentEvent, GateEvent)
_T = TypeVar("_T")

_EVENT_COLUMNS = tuple(CostEvent.model_fields)
_SEGMENT_COLUMNS = tuple(SegmentEvent.model_fields)
_GATE_COLUMNS = tuple(GateEvent.model_fields)
_GATE_KEY = ("session_id", "gate", "event", "about", "sink")
_BLANK_FOR_NONE = ("about", "sink")
"""Stored as '' for None: a NULL in the key would make every such row distinct."""
_GATE_LIFE_ORDER = {"requested": 0, "notified": 1}
"""Rows at the same instant in the order of a gate's life: requested, announced, then its end."""
_GROUP_COLUMN = {"session": "session_id", "issue": "issue_id", "org": "org_id"}


class SqlLedger:
    """A `Ledger` on one SQLAlchemy async engine; safe for many workers on one database."""

    def __init__(self, target: LedgerTarget) -> None:
        self._target = target
        self._engine = _engine(target)
        self._writer = _SqliteWriter(target) if target.backend == "sqlite" else None

    @property
    def url(self) -> str:
        """Where the ledger lives, password masked."""
        return self._target.display

    @property
    def backend(self) -> str:
        return self._target.backend

    async def migrate(self) -> None:
        """Create or upgrade the schema; several workers may do this at the same moment."""
        async with self._transaction(write=True) as conn:
            await conn.run_sync(_locked_migrate)

    async def record(self, event: CostEvent, segments: Sequence[SegmentEvent] = ()) -> RecordResult:
        return await self._write(functools.partial(_record, event, segments, datetime.now(UTC)))

    async def record_segment(self, segment: SegmentEvent) -> bool:
        now = datetime.now(UTC)
        return await self._write(lambda conn: _insert_segments(conn, [segment], now) == 1)

    async def segments(
        self,
        *,
        session_id: str | None = None,
        org_id: str | None = None,
        issue_id: str | None = None,
    ) -> list[SegmentEvent]:
        return await self._segments(session_id=session_id, org_id=org_id, issue_id=issue_id)

    async def daily(
        self,
        *,
        org_id: str | None = None,
        by: DailyBy | None = None,
        since: date | None = None,
    ) -> list[DailyCost]:
        if by is not None and by not in get_args(DailyBy):
            raise LedgerError(f"cannot split days by {by!r}: choose org or issue")
        if isinstance(since, datetime):
            raise LedgerError("daily costs since a day: give a date, not a time")
        if since is None:
            return daily_costs(await self._segments(org_id=org_id), by=by)
        # The database drops the segments over before that day; the cut days go here.
        midnight = datetime.combine(since, clock_time(), tzinfo=UTC)
        segments = await self._segments(org_id=org_id, ended_from=midnight)
        return [row for row in daily_costs(segments, by=by) if row.day >= since]

    async def _segments(
        self,
        *,
        session_id: str | None = None,
        org_id: str | None = None,
        issue_id: str | None = None,
        ended_from: datetime | None = None,
    ) -> list[SegmentEvent]:
        """The segments, oldest first, filtered by the ids given and (`ended_from`) by their end
        at or after that time."""
        query = _filtered(
            select(*(cost_segments.c[name] for name in _SEGMENT_COLUMNS)).order_by(
                cost_segments.c.started_at, cost_segments.c.sandbox_id
            ),
            cost_segments,
            session_id=session_id,
            org_id=org_id,
            issue_id=issue_id,
        )
        if ended_from is not None:
            query = query.where(cost_segments.c.ended_at >= ended_from)
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [SegmentEvent.model_validate(dict(row._mapping)) for row in rows]

    async def events(
        self,
        *,
        session_id: str | None = None,
        org_id: str | None = None,
        issue_id: str | None = None,
    ) -> list[CostEvent]:
        query = _filtered(
            select(*(cost_events.c[name] for name in _EVENT_COLUMNS)).order_by(
                cost_events.c.started_at, cost_events.c.session_id, cost_events.c.sandbox_id
            ),
            cost_events,
            session_id=session_id,
            org_id=org_id,
            issue_id=issue_id,
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [_event(row) for row in rows]

    async def summary(self, by: SummaryBy) -> list[CostSummary]:
        if by not in get_args(SummaryBy):
            raise LedgerError(f"cannot sum by {by!r}: choose one of session, issue, org")
        key: ColumnElement[Any] = cost_events.c[_GROUP_COLUMN[by]]
        query = (
            select(
                key.label("key"),
                func.count(cost_events.c.session_id.distinct()).label("sessions"),
                func.coalesce(func.sum(cost_events.c.running_seconds), 0.0).label("running"),
                func.coalesce(func.sum(cost_events.c.paused_seconds), 0.0).label("paused"),
                func.coalesce(func.sum(cost_events.c.wall_seconds), 0.0).label("wall"),
            )
            .group_by(key)
            .order_by(key.is_(None), key)
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [
            CostSummary(
                key=row.key,
                by=by,
                sessions=row.sessions,
                running_seconds=row.running,
                paused_seconds=row.paused,
                wall_seconds=row.wall,
            )
            for row in rows
        ]

    async def record_gate_events(self, events: Sequence[GateEvent]) -> int:
        rows = [_gate_values(_revalidated(GateEvent, e)) for e in events]
        # In key order: two writers of the same rows lock them in one order (no deadlock).
        rows.sort(key=lambda row: tuple(row[name] for name in _GATE_KEY))
        now = datetime.now(UTC)
        stamped = [{**row, "recorded_at": now} for row in rows]
        return await self._write(
            lambda conn: _insert_new(conn, gate_events, stamped, key=_GATE_KEY)
        )

    async def gate_events(
        self,
        *,
        session_id: str | None = None,
        org_id: str | None = None,
        gate: str | None = None,
        since: datetime | None = None,
    ) -> list[GateEvent]:
        if since is not None and since.tzinfo is None:
            raise LedgerError("gate events since a time: give it a time zone (UTC)")
        query = _filtered(
            select(*(gate_events.c[name] for name in _GATE_COLUMNS)).order_by(
                gate_events.c.at,
                gate_events.c.session_id,
                gate_events.c.gate,
                case(_GATE_LIFE_ORDER, value=gate_events.c.event, else_=2),
                *(gate_events.c[name] for name in _GATE_KEY[2:]),
            ),
            gate_events,
            session_id=session_id,
            org_id=org_id,
            gate=gate,
        )
        if since is not None:
            query = query.where(gate_events.c.at >= since)
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [_gate_event(row) for row in rows]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        await self._engine.dispose()

    async def __aenter__(self) -> SqlLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _write(self, work: Callable[[Connection], _T]) -> _T:
        """`work` in one write transaction, written once for both backends: on SQLite the whole
        transaction in one trip to a thread (a synchronous engine), where aiosqlite made one
        trip per statement; on PostgreSQL through the async engine."""
        if self._writer is not None:
            return await self._writer.run(work)
        async with self._transaction(write=True) as conn:
            return await conn.run_sync(work)

    @asynccontextmanager
    async def _transaction(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction; a database failure becomes `LedgerUnavailable` (worth a retry)."""
        with _unavailable(self.url):
            async with self._engine.connect() as conn:
                if write:
                    conn = await conn.execution_options(ledger_write=True)
                async with conn.begin():
                    yield conn


class _SqliteWriter:
    """The SQLite ledger's writes: a synchronous engine on the same file, run in a few threads
    (SQLite takes one writer at a time anyway: BEGIN IMMEDIATE and the busy timeout queue
    them)."""

    def __init__(self, target: LedgerTarget) -> None:
        self._display = target.display
        self._engine = create_engine(
            target.url.set(drivername="sqlite"),
            connect_args={**target.connect_args, "check_same_thread": False},
        )
        _sqlite_transactions(self._engine)
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ledger-write")

    async def run(self, work: Callable[[Connection], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._transaction, work)

    def _transaction(self, work: Callable[[Connection], _T]) -> _T:
        with _unavailable(self._display), self._engine.connect() as conn:
            conn = conn.execution_options(ledger_write=True)
            with conn.begin():
                return work(conn)

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self._engine.dispose()


@contextmanager
def _unavailable(display: str) -> Iterator[None]:
    """A database failure becomes `LedgerUnavailable` (worth a retry), naming the ledger."""
    try:
        yield
    except LedgerError:
        raise
    except DBAPIError as err:
        # The driver's own exception says most (asyncpg's sits behind SQLAlchemy's adapter).
        raise LedgerUnavailable(f"ledger at {display}: {_reason(err.orig)}") from None
    except (SQLAlchemyError, OSError) as err:
        raise LedgerUnavailable(f"ledger at {display}: {_reason(err)}") from None


def _record(
    event: CostEvent, segments: Sequence[SegmentEvent], now: datetime, conn: Connection
) -> RecordResult:
    """Insert the cost row unless the (session, sandbox) has one; the stored row either way."""
    values = {**event.model_dump(), "recorded_at": now}
    returned = [cost_events.c[name] for name in _EVENT_COLUMNS]
    insert = (
        _insert(conn, cost_events)
        .values(values)
        .on_conflict_do_nothing(index_elements=["session_id", "sandbox_id"])
    )
    row = conn.execute(insert.returning(*returned)).first()
    if row is not None:
        # The account that won brings its segments, in the same transaction.
        _insert_segments(conn, segments, now)
        return RecordResult(inserted=True, event=_event(row))
    stored = conn.execute(
        select(*returned).where(
            cost_events.c.session_id == event.session_id,
            cost_events.c.sandbox_id == event.sandbox_id,
        )
    ).one()
    if _event(stored) == event:  # this very account, recorded before: add what it lacks
        _insert_segments(conn, segments, now)
    return RecordResult(inserted=False, event=_event(stored))


async def open_ledger(url: str | None = None) -> SqlLedger:
    """Open the ledger (argument > `LEDGER_URL` > SQLite in `SESSIONS_DATA_DIR`), schema ready."""
    ledger = SqlLedger(parse_ledger_url(resolve_ledger_url(url)))
    try:
        await ledger.migrate()
    except BaseException:
        await ledger.close()
        raise
    return ledger


def _engine(target: LedgerTarget) -> AsyncEngine:
    engine = create_async_engine(
        target.url,
        connect_args=target.connect_args,
        # A server's connection can drop while pooled; a local SQLite file's cannot, and the
        # ping would cost every transaction one more trip through aiosqlite's thread.
        pool_pre_ping=target.backend != "sqlite",
    )
    if target.backend == "sqlite":
        _sqlite_transactions(engine.sync_engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy emit BEGIN (the sqlite3 driver's legacy mode skips it for DDL and SELECT).

    Writes take the write lock up front (BEGIN IMMEDIATE) so concurrent writers queue on the
    busy timeout instead of failing with "database is locked"; WAL lets readers run meanwhile.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        _set_wal(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ledger_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _set_wal(dbapi_connection: Any, *, attempts: int = 100) -> None:
    """Switch a connection to WAL. Two workers opening a new file at once can collide here,
    and SQLite answers "database is locked" at once instead of waiting on the busy timeout."""
    for attempt in range(attempts):
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            finally:
                cursor.close()
            return
        except Exception as err:  # the driver's OperationalError, whichever adapter wraps it
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _locked_migrate(conn: Connection) -> None:
    lock_for_migration(conn)
    migrate(conn)


def _insert(conn: Connection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _insert_segments(conn: Connection, segments: Iterable[SegmentEvent], now: datetime) -> int:
    """Insert the segments not there yet (a row that is there stays as it is); how many were
    new."""
    rows = []
    for segment in segments:
        segment = _revalidated(SegmentEvent, segment)
        rows.append({**segment.model_dump(), "seconds": segment.seconds, "recorded_at": now})
    return _insert_new(conn, cost_segments, rows, key=("sandbox_id", "started_at"))


_ROWS_PER_INSERT = 500
"""Rows per multi-row INSERT: well inside SQLite's 32,766 bound variables (and PostgreSQL's)."""


def _insert_new(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, key: Sequence[str]
) -> int:
    """Insert the rows whose `key` is not there yet, in one statement per `_ROWS_PER_INSERT`
    (a round trip per row cost more than the write); how many were new."""
    inserted = 0
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        insert = (
            _insert(conn, table)
            .values(list(rows[start : start + _ROWS_PER_INSERT]))
            .on_conflict_do_nothing(index_elements=list(key))
            .returning(table.c[key[0]])
        )
        inserted += len(conn.execute(insert).all())
    return inserted


def _filtered(query: Select[Any], table: Table, **ids: str | None) -> Select[Any]:
    """`query` narrowed to the rows whose ids equal the ones given (None: any)."""
    for name, value in ids.items():
        if value is not None:
            query = query.where(table.c[name] == value)
    return query


def _event(row: Row[Any]) -> CostEvent:
    return CostEvent.model_validate(dict(row._mapping))


def _revalidated(model: type[_M], value: _M) -> _M:
    """A model built without validation (`model_construct`) must not reach the database."""
    return model.model_validate(dict(value))


def _gate_values(event: GateEvent) -> dict[str, Any]:
    values = event.model_dump()
    for name in _BLANK_FOR_NONE:
        values[name] = values[name] or ""
    return values


def _gate_event(row: Row[Any]) -> GateEvent:
    values = dict(row._mapping)
    for name in _BLANK_FOR_NONE:
        values[name] = values[name] or None
    return GateEvent.model_validate(values)


def _reason(err: BaseException | None) -> str:
    """One line: the innermost driver error's class and first line (never the SQL or values)."""
    inner = err.__cause__ if err is not None and err.__cause__ is not None else err
    text = str(inner).strip()
    line = text.splitlines()[0] if text else "no detail"
    return f"{type(inner).__name__}: {line}"
