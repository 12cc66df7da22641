"""Waiting list: N sessions parked at a gate, then `SessionClient.waiting()` timed, and the
approvals inbox's page of them (`GET /inbox`, rendered, logged in).

`python -m bench.waiting --sessions 1000`. The list must come from visibility alone: the bench
counts the visibility RPCs the client sends and the queries the worker receives while listing
(a workflow interceptor on the in-process worker), and fails unless they are 1 and 0; the page
must show every gate, and ask no worker either.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import click
from temporalio.worker import (
    HandleQueryInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from bench.stack import BenchError, Stack, gather_limited, inprocess_worker, running_stack
from bench.stats import percentile
from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from provider.models import PoolConfig
from sessions.client import SessionClient
from workflows import SandboxSession, SessionInput, workflow_id_for

GATE = {"gate": "review", "summary": "parked by the benchmark", "requested_by": "bench"}


class QueryCounter(Interceptor):
    """Counts every query the worker's workflows handle (`status` or any other)."""

    def __init__(self) -> None:
        self.queries = 0

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        counter = self

        class Counting(WorkflowInboundInterceptor):
            def handle_query(self, input: HandleQueryInput) -> Any:
                counter.queries += 1
                return super().handle_query(input)

        return Counting


class VisibilityCounter:
    """Counts the client's `ListWorkflowExecutions` RPCs (each page is one)."""

    def __init__(self, stack: Stack) -> None:
        service = stack.client.workflow_service
        self.calls = 0
        original = service.list_workflow_executions

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await original(*args, **kwargs)

        service.list_workflow_executions = counted  # type: ignore[method-assign]


async def _park(stack: Stack, n: int, concurrency: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    ids = [f"wait-{tag}-{i}" for i in range(n)]

    async def park(sid: str) -> None:
        await stack.client.start_workflow(
            SandboxSession.run,
            SessionInput(session_id=sid, org_id="bench", pool=PoolConfig(template_id="base")),
            id=workflow_id_for(sid),
            task_queue=stack.task_queue,
            start_signal="request_approval",
            start_signal_args=[GATE],
        )

    await gather_limited(concurrency, [partial(park, s) for s in ids])
    wanted = set(ids)
    deadline = time.monotonic() + 120 + n * 0.5
    while True:
        boxes = stack.sandboxes(wanted)
        if len(boxes) == n and all(r.state == "paused" for r in boxes.values()):
            return ids
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {n} sessions to park")
        await asyncio.sleep(0.2)


async def run_waiting(workdir: Path, *, n: int, runs: int, concurrency: int) -> dict[str, Any]:
    """Park `n` sessions, wait until visibility shows them all, then time `runs` listings."""
    counter = QueryCounter()
    async with (
        running_stack(workdir) as stack,
        inprocess_worker(stack, interceptors=[counter]),
    ):
        t0 = time.perf_counter()
        await _park(stack, n, concurrency)
        park_seconds = time.perf_counter() - t0
        client = SessionClient(stack.client, task_queue=stack.task_queue)
        deadline = time.monotonic() + 60
        while len(await client.waiting(org_id="bench")) < n:  # visibility catching up
            if time.monotonic() > deadline:
                raise BenchError("visibility did not show every parked session within 60 s")
            await asyncio.sleep(0.5)
        rpcs = VisibilityCounter(stack)
        queries_before = counter.queries
        times, returned = [], []
        for _ in range(runs):
            t = time.perf_counter()
            rows = await client.waiting(org_id="bench")
            times.append(time.perf_counter() - t)
            returned.append((len(rows), sum(len(r.gates) for r in rows)))
        listing_rpcs = rpcs.calls
        page_times, shown = await _inbox_pages(stack, client, workdir, runs=runs)
        page_rpcs = rpcs.calls - listing_rpcs
        queries = counter.queries - queries_before
    return {
        "sessions": n,
        "park_seconds": round(park_seconds, 1),
        "returned": returned,
        "visibility_rpcs_per_listing": listing_rpcs / runs,
        "visibility_rpcs_per_page": page_rpcs / runs,
        "worker_queries_during_listing": queries,
        "p50_ms": round((percentile(times, 50) or 0) * 1000),
        "max_ms": round(max(times) * 1000),
        "runs": runs,
        "page_p50_ms": round((percentile(page_times, 50) or 0) * 1000),
        "page_max_ms": round(max(page_times) * 1000),
        "page_rows": shown,
    }


async def _inbox_pages(
    stack: Stack, client: SessionClient, workdir: Path, *, runs: int
) -> tuple[list[float], list[int]]:
    """`GET /inbox?org=bench` `runs` times through the inbox app (in process, logged in): the
    seconds each took and the gate rows each showed."""
    import httpx

    from common.settings import WebSettings
    from sessions.web.app import build_app
    from sessions.web.users import UsersFile

    key, token = "bench-inbox-key-" + "k" * 32, "bench-token-0123456789"
    users = UsersFile(workdir / "web-users")
    users.add("bench", token, replace=True)
    settings = WebSettings.load(
        web_secret=key, web_users=str(users.path), task_queue=stack.task_queue
    )
    app = build_app(
        settings, client=client, key=key.encode(), users=users, ledger_url=stack.ledger_url
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        page = await http.get("/login")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        await http.post("/login", data={"csrf": csrf, "name": "bench", "token": token})
        times, shown = [], []
        for _ in range(runs):
            t = time.perf_counter()
            answer = await http.get("/inbox?org=bench")
            times.append(time.perf_counter() - t)
            if answer.status_code != 200:
                raise BenchError(f"the inbox answered {answer.status_code}")
            shown.append(answer.text.count("<tr data-session="))
    return times, shown


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--sessions", "n", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option("--runs", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default="bench/results/waiting")
def command(n: int, runs: int, concurrency: int, workdir: str) -> int:
    """Time `sessions list --waiting` over N parked sessions; it must ask no worker."""
    r = asyncio.run(run_waiting(Path(workdir), n=n, runs=runs, concurrency=concurrency))
    rpcs = r["visibility_rpcs_per_listing"]
    print(
        f"waiting list: {n} sessions parked (in {r['park_seconds']} s), "
        f"{r['returned'][0][0]} returned ({r['returned'][0][1]} gates) from "
        f"{rpcs:g} visibility quer{'y' if rpcs == 1 else 'ies'} in {r['p50_ms']} ms "
        f"(p50 of {runs}; max {r['max_ms']} ms); "
        f"worker queries during listing: {r['worker_queries_during_listing']}",
        flush=True,
    )
    print(
        f"inbox page: {r['page_rows'][0]} gates shown in {r['page_p50_ms']} ms "
        f"(GET /inbox, logged in, rendered; p50 of {runs}; max {r['page_max_ms']} ms) "
        f"from {r['visibility_rpcs_per_page']:g} visibility query a page",
        flush=True,
    )
    if any(found != (n, n) for found in r["returned"]):
        raise BenchError(f"expected {n} sessions and {n} gates every run, got {r['returned']}")
    if any(rows != n for rows in r["page_rows"]):
        raise BenchError(f"expected the inbox to show {n} gates every run, got {r['page_rows']}")
    if r["worker_queries_during_listing"] or rpcs != 1 or r["visibility_rpcs_per_page"] != 1:
        raise BenchError(
            "the waiting list (or the inbox) asked a worker, or took more than one page"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """The exit code (`argv` given), else it ends the process itself (`common.cli.main`)."""
    return run_command(command, argv, prog_name="python -m bench.waiting", known=(BenchError,))


if __name__ == "__main__":
    main()
