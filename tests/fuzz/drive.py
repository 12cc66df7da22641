"""`SessionDriver`: one session id driven through its start, random and targeted traffic, gate
cycles, an ending (finish, cancel, terminate, or races of them), messages after the end and
maybe a restart; a start that must or may be refused is judged first.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import ApplicationError

from common.ids import workflow_id_for
from tests.fuzz.generator import Generator
from tests.fuzz.invariants import task_failures
from tests.fuzz.payloads import CHECK, Answer, Send, error_text, js, visible
from workflows import WORKFLOW_TYPE

if TYPE_CHECKING:
    from tests.fuzz.campaign import Campaign

TASK_FAILING = "Workflow Task in failed state"
"""How the server refuses a query or an update to a workflow whose task keeps failing."""
_RUNNING = WorkflowExecutionStatus.RUNNING
ENDINGS = (
    "finish finish finish finish-noargs cancel terminate cancel-races-finish "
    "terminate-races-finish cancel-races-decision terminate-races-decision "
    "finish-races-decision cancel-while-terminating gate-timeout-terminate"
).split()


class _Wedging:
    """A session's workflow task failing for more than 3 s on end: the session is wedged."""

    def __init__(self, driver: SessionDriver) -> None:
        self.driver = driver
        self.since: float | None = None

    async def failures(self, attempt: int) -> list[str]:
        """The task's failures once they have lasted 3 s (the driver then marked wedged);
        none before, nor while the task is not being retried (`attempt` below 2)."""
        if attempt < 2:
            return []
        failures = await task_failures(self.driver.handle)
        if not failures:
            return []
        self.since = self.since or time.monotonic()
        if time.monotonic() - self.since <= 3:
            return []
        self.driver.wedged = True
        return failures


class SessionDriver:
    """Drives one session id: its start, its traffic, its ending, maybe a restart."""

    def __init__(self, campaign: Campaign, sid: str, rng: random.Random) -> None:
        self.c = campaign
        self.cfg = campaign.cfg
        self.sid = sid
        self.rng = rng
        self.gen = Generator(rng, campaign.secret, campaign.cfg.huge_rate)
        self.wid = workflow_id_for(sid)
        self.handle: WorkflowHandle[Any, Any] = campaign.stack.client.get_workflow_handle(self.wid)
        self.gates: list[str] = []
        self._gate_no = 0
        self.wedged = False
        self.query_failed = False
        campaign.sends.setdefault(sid, [])

    # ------------------------------------------------------------ sending

    def new_gate(self) -> str:
        self._gate_no += 1
        name = self.rng.choice(["deploy", "publish", "déploiement-🚀", "pay"])
        return f"{name}-{self._gate_no}"

    def log(self, label: str, outcome: str) -> None:
        self.c.sends[self.sid].append((time.time(), label, outcome, ""))

    async def send(self, s: Send) -> Answer:
        self.c.messages += 1
        began = time.time()
        self.c.sends[self.sid].append((began, s.label, "...", s.detail))
        index = len(self.c.sends[self.sid]) - 1
        answer = await self._send(s)
        outcome = "ok" if answer.ok else ("timeout" if answer.timed_out else answer.error or "")
        self.c.sends[self.sid][index] = (began, s.label, visible(outcome, 300), s.detail)
        if answer.error:
            self.c.answers.append((self.sid, s.label, answer.error))
            if TASK_FAILING in answer.error:
                self.wedged = True
        if answer.ok and s.check_output:
            self.check_exec_output(answer.value, s.label)
        if answer.timed_out and s.kind in ("update", "query"):
            await self.check_wedged()
        return answer

    async def _send(self, s: Send) -> Answer:
        client = self.c.stack.client
        try:
            if s.kind == "start":
                await asyncio.wait_for(
                    client.start_workflow(
                        s.name, args=s.args, id=self.wid, task_queue=self.c.stack.queue
                    ),
                    self.cfg.signal_timeout,
                )
                self.handle = client.get_workflow_handle(self.wid)
                self.c.started.add(self.sid)
                return Answer(True)
            if s.kind == "signal":
                await asyncio.wait_for(
                    self.handle.signal(s.name, args=s.args), self.cfg.signal_timeout
                )
                return Answer(True)
            if s.kind == "update":
                value = await asyncio.wait_for(
                    self.handle.execute_update(s.name, args=s.args), self.cfg.update_timeout
                )
                return Answer(True, value)
            value = await asyncio.wait_for(
                self.handle.query(s.name, args=s.args), self.cfg.signal_timeout
            )
            return Answer(True, value)
        except TimeoutError:
            return Answer(False, timed_out=True)
        except Exception as err:  # noqa: BLE001 - every refusal is an answer to record
            return Answer(False, error=error_text(err))

    def check_exec_output(self, value: Any, label: str) -> None:
        stdout = value.get("stdout") if isinstance(value, dict) else None
        if stdout is not None and stdout != self.sid:
            self.c.reached(self.sid, visible(stdout, 80) or "?", "?", "exec output")

    async def status(self) -> dict[str, Any] | None:
        """The `status` query (counted as a message), its sandbox noted for the checks."""
        s = Send("query", "status", [], "valid")
        self.c.messages += 1
        try:
            value = await asyncio.wait_for(self.handle.query("status"), self.cfg.signal_timeout)
        except WorkflowQueryFailedError as err:
            if not self.query_failed and not self.wedged:
                self.query_failed = True
                self.c.violation(
                    1, self.sid, f"status query failed: {visible(str(err), 200)}", self.last_send()
                )
                await self.keep_history("query-failed")
            self.log(s.label, f"failed: {err}")
            return None
        except Exception as err:  # noqa: BLE001 - a killed worker, a closed workflow: retried
            text = error_text(err)
            self.log(s.label, visible(text, 200))
            if TASK_FAILING in text:
                self.wedged = True
            return None
        if isinstance(value, dict):
            self.c.observe(self.sid, value)
            if value.get("error"):
                self.c.answers.append((self.sid, "status.error", str(value["error"])))
            return value
        return None

    async def keep_history(self, why: str) -> None:
        """The session's history beside the logs (`<workdir>/history-<session>-<why>.json`), so
        a violation can be replayed (`bench.replay.load_history`) after the server is gone."""
        path = self.c.stack.workdir / f"history-{self.sid}-{why}.json"
        try:
            history = await self.handle.fetch_history()
            path.write_text(json.dumps(history.to_json_dict(), indent=1))
            self.log("history", f"kept in {path}")
        except Exception as err:  # noqa: BLE001 - evidence only: never fail the campaign
            self.log("history", f"not kept: {visible(error_text(err), 200)}")

    def last_send(self) -> str:
        sends = [label for _, label, *_ in self.c.sends[self.sid] if not label.startswith("query")]
        return sends[-1] if sends else ""

    async def describe(self) -> tuple[WorkflowExecutionStatus | None, int]:
        try:
            desc = await self.handle.describe()
        except Exception:  # noqa: BLE001 - not started, or the server is busy
            return None, 0
        raw_desc = desc.raw_description
        attempt = (
            raw_desc.pending_workflow_task.attempt
            if raw_desc.HasField("pending_workflow_task")
            else 0
        )
        return desc.status, attempt

    async def check_wedged(self) -> bool:
        status, attempt = await self.describe()
        if status == _RUNNING and attempt >= 2:
            failures = await task_failures(self.handle)
            if failures:
                self.wedged = True
        return self.wedged

    async def wait_state(self, states: set[str], timeout: float | None = None) -> str | None:
        """Poll `status` until the state is one of `states`, the workflow closes, or time runs
        out; the last state seen (`closed` when the workflow closed)."""
        deadline = time.monotonic() + (timeout or self.cfg.state_timeout)
        last: str | None = None
        polls = 0
        while time.monotonic() < deadline and not self.wedged:
            value = await self.status()
            self.c.messages -= 1  # polling is not traffic
            if value is not None:
                last = value.get("state")
                if last in states:
                    return last
            polls += 1
            if polls % 5 == 0:
                status, _ = await self.describe()
                if status is not None and status != _RUNNING:
                    return "closed"
                await self.check_wedged()
            await asyncio.sleep(0.2)
        return last

    async def wait_closed(self, timeout: float | None = None) -> str:
        """`closed`, `wedged` (a workflow task keeps failing), or `hung` (neither)."""
        deadline = time.monotonic() + (timeout or self.cfg.close_timeout)
        wedging = _Wedging(self)
        while time.monotonic() < deadline:
            status, attempt = await self.describe()
            if status is not None and status != _RUNNING:
                return "closed"
            if await wedging.failures(attempt):
                return "wedged"
            await asyncio.sleep(0.5)
        return "hung"

    async def cancel(self) -> None:
        await self.control("cancel", self.handle.cancel)

    async def terminate(self, reason: str = "fuzz") -> None:
        await self.control(f"terminate ({reason})", lambda: self.handle.terminate(reason=reason))

    async def control(self, label: str, call: Callable[[], Awaitable[Any]]) -> None:
        """A cancel or a terminate (counted as a message), its outcome logged."""
        self.c.messages += 1
        try:
            await call()
            self.log(label, "ok")
        except Exception as err:  # noqa: BLE001
            self.log(label, visible(error_text(err), 200))

    async def close_or_terminate(self, why: str) -> str:
        """Wait for the workflow to close; a wedged or hung one is terminated (and reported).

        A session may rightly still wait for a human (a gate the traffic requested without a
        timeout queued before the ending's own): a valid `finish` after a while must end it.
        """
        first = min(45.0, self.cfg.close_timeout)
        outcome = await self.wait_closed(first)
        if outcome == "hung":
            if "cancel" in why:
                self.c.violation(
                    1, self.sid, f"still open {first:.0f}s after {why}", self.last_send()
                )
            await self.send(Send("signal", "finish", [js({})], "valid"))
            outcome = await self.wait_closed(self.cfg.close_timeout - first)
        if outcome == "hung":
            state = await self.status()
            self.c.violation(
                1,
                self.sid,
                f"not closed {self.cfg.close_timeout:.0f}s after {why} and a finish "
                f"(state {state and state.get('state')}, no failed workflow task)",
                self.last_send(),
            )
        if outcome != "closed":
            await self.terminate(f"fuzz: {outcome} after {why}")
        return outcome

    # ------------------------------------------------------------ flows

    async def run_valid(self, start: Send, *, gate_cycle: bool = False) -> None:
        answer = await self.send(start)
        if not answer.ok:
            self.c.violation(0, self.sid, f"a valid start was refused: {answer.error}", start.label)
            return
        await self.drive(gate_cycle=gate_cycle)

    async def drive(self, *, gate_cycle: bool = False, short: bool = False) -> None:
        """Traffic on a started session, then its ending, then what follows an ending."""
        await self.wait_state({"running", "paused"})
        low, high = self.cfg.messages
        count = self.rng.randint(3, 6) if short else self.rng.randint(low, high)
        if gate_cycle:
            await self.gate_cycle()
        await self.exec_check()
        for _ in range(0 if short else 3):
            await self.send(self.gen.targeted(self.gates))
        for _ in range(count):
            if self.wedged:
                break
            r = self.rng.random()
            if r < 0.1:
                await self.gate_cycle()
            elif r < 0.2:
                await self.exec_check()
            elif r < 0.23:
                await self.duplicate_start()
            else:
                send = self.gen.traffic(self.gates, self._new_known_gate)
                await self.send(send)
            if self.rng.random() < 0.3:
                await asyncio.sleep(self.rng.uniform(0, 0.3))
        ending = self.rng.choice(ENDINGS)
        if self.wedged:
            ending = "finish"
        await self.end(ending)
        await self.after_end()

    def _new_known_gate(self) -> str:
        name = self.new_gate()
        self.gates.append(name)
        return name

    async def exec_check(self) -> None:
        args = [js({"command": CHECK})]
        await self.send(Send("update", "exec", args, "valid", check_output=True))

    async def duplicate_start(self) -> None:
        await self.send(Send("start", WORKFLOW_TYPE, [js(self.gen.valid_start(self.sid))], "dup"))

    async def gate_cycle(self) -> None:
        gate = self._new_known_gate()
        answer = await self.send(
            Send("update", "request_gate", [js(self.gen.gate_request(gate))], "valid")
        )
        if not answer.ok:
            return
        await self.wait_state({"paused"})
        for _ in range(self.rng.randint(0, 3)):
            await self.send(self.gen.traffic(self.gates, self._new_known_gate))
        await self.decide(gate)
        if await self.wait_state({"running"}, timeout=10) == "paused":
            await self.settle()
            await self.wait_state({"running"})

    async def settle(self) -> None:
        """Decide every gate still waiting (the traffic may have queued one with no timeout):
        rejected by one of its approvers, whom a gate always lets reject."""
        value = await self.status()
        for gate in (value or {}).get("gates") or []:
            if gate.get("state") == "waiting":
                by = (gate.get("approvers") or ["fuzz-settle"])[0]
                body = {"gate": gate.get("gate"), "by": by}
                await self.send(Send("signal", "reject", [js(body)], "valid"))

    async def decide(self, gate: str) -> None:
        name = self.rng.choice(["approve", "reject", "approve_gate", "reject_gate"])
        kind = "update" if name.endswith("_gate") else "signal"
        await self.send(Send(kind, name, [js(self.gen.decision(gate))], "valid"))

    async def end(self, ending: str) -> None:
        finish = Send("signal", "finish", [js({})], "valid")
        if ending == "finish":
            await self.send(finish)
        elif ending == "finish-noargs":
            await self.send(Send("signal", "finish", [], "no-args"))
        elif ending == "cancel":
            await self.cancel()
        elif ending == "terminate":
            await self.terminate()
        elif ending == "cancel-races-finish":
            await asyncio.gather(self.send(finish), self.cancel())
        elif ending == "terminate-races-finish":
            await self.send(finish)
            await asyncio.sleep(self.rng.uniform(0, 0.5))
            await self.terminate()
        elif ending.endswith("-races-decision"):
            gate = self._new_known_gate()
            await self.send(Send("update", "request_gate", [js({"gate": gate})], "valid"))
            await self.wait_state({"paused"})
            if ending == "cancel-races-decision":
                await asyncio.gather(self.decide(gate), self.cancel())
            elif ending == "terminate-races-decision":
                await asyncio.gather(self.decide(gate), self.terminate())
            else:
                await asyncio.gather(self.decide(gate), self.send(finish))
        elif ending == "cancel-while-terminating":
            await self.send(finish)
            await self.wait_state({"terminating"}, timeout=5)
            await self.cancel()
        else:  # gate-timeout-terminate
            body = {"gate": self._new_known_gate(), "timeout_seconds": 1, "on_timeout": "terminate"}
            await self.send(Send("update", "request_gate", [js(body)], "valid"))
        self.log(f"ending {ending}", "")
        await self.close_or_terminate(f"ending {ending}")

    async def after_end(self) -> None:
        """Messages to an ended session; sometimes the same id started again."""
        if self.rng.random() < 0.5:
            await self.send(Send("signal", "approve", [js({"gate": "late", "by": "ana"})]))
            await self.send(Send("update", "exec", [js({"command": CHECK})]))
            await self.status()
        if self.rng.random() < self.cfg.restart_rate:
            start = Send("start", WORKFLOW_TYPE, [js(self.gen.valid_start(self.sid))], "restart")
            if (await self.send(start)).ok:
                await self.wait_state({"running", "paused"})
                await self.exec_check()
                await self.send(Send("signal", "finish", [js({})], "valid"))
                await self.close_or_terminate("finish after a restart")

    async def verdict(self) -> tuple[str, str]:
        """What became of a start: (`refused`, type) / (`accepted`, state) / (`wedged`, failure)
        / (`failed`, type and message) / (`hung`, state) / (`closed`, status)."""
        deadline = time.monotonic() + self.cfg.verdict_timeout
        wedging = _Wedging(self)
        state: str | None = None
        while time.monotonic() < deadline:
            status, attempt = await self.describe()
            if status is not None and status != _RUNNING:
                return await self.failure_of_closed(status)
            failures = await wedging.failures(attempt)
            if failures:
                return "wedged", failures[0]
            value = await self.status()
            self.c.messages -= 1
            if value is not None:
                state = value.get("state")
                if state in ("running", "paused"):
                    return "accepted", state
            await asyncio.sleep(0.3)
        return "hung", f"state {state}"

    async def failure_of_closed(self, status: WorkflowExecutionStatus) -> tuple[str, str]:
        try:
            await asyncio.wait_for(self.handle.result(), self.cfg.signal_timeout)
        except WorkflowFailureError as err:
            self.c.answers.append((self.sid, "result", error_text(err)))
            cause = err.cause
            if isinstance(cause, ApplicationError):
                if cause.type == "InvalidInput" and cause.non_retryable:
                    return "refused", "InvalidInput"
                return "failed", f"{cause.type} (non_retryable={cause.non_retryable}): {cause}"
            return "closed", f"{status.name}: {error_text(err)}"
        except Exception as err:  # noqa: BLE001
            return "closed", f"{status.name}: {error_text(err)}"
        return "closed", status.name

    async def run_checked_start(self, start: Send, expect: str) -> None:
        """A start that must be refused (`refuse`) or may be (`either`): judged, then, if it
        ran, driven like any session so its consequences are checked too."""
        answer = await self.send(start)
        if not answer.ok:
            self.log("start refused at the door", answer.error or "")
            return
        verdict, detail = await self.verdict()
        self.log(f"verdict {verdict}", detail)
        self.c.figures["starts_" + verdict] = self.c.figures.get("starts_" + verdict, 0) + 1
        if verdict == "refused":
            return
        if verdict in ("wedged", "hung"):
            if expect == "refuse":
                self.c.violation(
                    6, self.sid, f"{start.shape}: not refused, {verdict}: {detail}", start.label
                )
            elif verdict == "hung":
                what = f"{start.shape}: neither refused nor running ({detail})"
                self.c.violation(1, self.sid, what, start.label)
            await self.terminate(f"fuzz: start {verdict}")
            return
        if verdict in ("failed", "closed"):
            self.c.violation(
                6, self.sid, f"{start.shape}: ended {detail}, not InvalidInput", start.label
            )
            return
        # accepted: it runs
        if expect == "refuse":
            value = await self.status()
            sandbox = value.get("sandbox_id") if value else None
            self.c.violation(
                6,
                self.sid,
                f"{start.shape}: accepted (state {detail}, sandbox {sandbox})",
                start.label,
            )
        await self.drive(gate_cycle=True, short=expect == "refuse")
