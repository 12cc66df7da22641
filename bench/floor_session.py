"""The floor: the same session written by hand, as plainly as Temporal allows.

A plain workflow whose activities make the same e2b SDK calls as the session (create, run,
pause, connect, kill) and insert one SQLite row; no validation, telemetry, ledger, retries
policy or pydantic. It takes the same signals and update, and its activities carry the same
names, so `bench.lifecycle`'s client and history timings drive and read both alike. Whatever
it costs is what Temporal and the SDK cost on this machine: the floor `bench.floor` measures
the project against.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from e2b import AsyncSandbox

TIMEOUT = timedelta(seconds=60)
SANDBOX_SECONDS = 900


def _sdk() -> dict[str, Any]:
    """The e2b SDK's options from the environment the bench gives the worker."""
    return {
        "api_key": os.environ["E2B_API_KEY"],
        "api_url": os.environ["E2B_API_URL"],
        "sandbox_url": os.environ["E2B_SANDBOX_URL"],
        "domain": os.environ.get("E2B_DOMAIN", "localhost"),
    }


@activity.defn(name="provision_sandbox")
async def create_sandbox(session_id: str) -> str:
    sbx = await AsyncSandbox.create(
        template="base", timeout=SANDBOX_SECONDS, metadata={"session_id": session_id}, **_sdk()
    )
    return sbx.sandbox_id


@activity.defn(name="exec_command")
async def run_command(sandbox_id: str, command: str) -> dict[str, Any]:
    sbx = await AsyncSandbox.connect(sandbox_id, timeout=SANDBOX_SECONDS, **_sdk())
    result = await sbx.commands.run(command)
    return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}


@activity.defn(name="pause_sandbox")
async def pause_sandbox(sandbox_id: str) -> None:
    await AsyncSandbox.pause(sandbox_id, **_sdk())


@activity.defn(name="resume_sandbox")
async def resume_sandbox(sandbox_id: str) -> None:
    await AsyncSandbox.connect(sandbox_id, timeout=SANDBOX_SECONDS, **_sdk())


@activity.defn(name="terminate_sandbox")
async def kill_sandbox(sandbox_id: str) -> None:
    await AsyncSandbox.kill(sandbox_id, **_sdk())


@activity.defn(name="record_cost")
async def record_cost_row(session_id: str, sandbox_id: str) -> None:
    with sqlite3.connect(os.environ["FLOOR_SQLITE"]) as db:
        db.execute("CREATE TABLE IF NOT EXISTS cost (session_id TEXT, sandbox_id TEXT)")
        db.execute("INSERT INTO cost VALUES (?, ?)", (session_id, sandbox_id))


ACTIVITIES: list[Callable[..., Any]] = [
    create_sandbox,
    run_command,
    pause_sandbox,
    resume_sandbox,
    kill_sandbox,
    record_cost_row,
]


@workflow.defn(name="FloorSession")
class FloorSession:
    """provision → (exec | gate: pause, wait, resume)* → finish: kill, one row."""

    def __init__(self) -> None:
        self._sandbox_id = ""
        self._gate = False
        self._approved = False
        self._finish = False

    @workflow.run
    async def run(self, input: dict[str, Any]) -> dict[str, Any]:
        self._sandbox_id = await workflow.execute_activity(
            create_sandbox, input["session_id"], start_to_close_timeout=TIMEOUT
        )
        while True:
            await workflow.wait_condition(lambda: self._gate or self._finish)
            if self._finish:
                break
            await workflow.execute_activity(
                pause_sandbox, self._sandbox_id, start_to_close_timeout=TIMEOUT
            )
            await workflow.wait_condition(lambda: self._approved or self._finish)
            await workflow.execute_activity(
                resume_sandbox, self._sandbox_id, start_to_close_timeout=TIMEOUT
            )
            self._gate = self._approved = False
        await workflow.execute_activity(
            kill_sandbox, self._sandbox_id, start_to_close_timeout=TIMEOUT
        )
        await workflow.execute_activity(
            record_cost_row,
            args=[input["session_id"], self._sandbox_id],
            start_to_close_timeout=TIMEOUT,
        )
        return {"status": {"sandbox_id": self._sandbox_id}}

    @workflow.update(name="exec")
    async def exec(self, request: dict[str, Any]) -> dict[str, Any]:
        return await workflow.execute_activity(
            run_command, args=[self._sandbox_id, request["command"]], start_to_close_timeout=TIMEOUT
        )

    @workflow.signal(name="request_approval")
    def request_approval(self, _: Any) -> None:
        self._gate = True

    @workflow.signal(name="approve")
    def approve(self, _: Any) -> None:
        self._approved = True

    @workflow.signal(name="finish")
    def finish(self, _: Any) -> None:
        self._finish = True
