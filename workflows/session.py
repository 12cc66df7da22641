"""`SandboxSession`: one durable workflow for the whole life of an agent's sandbox.

provision → (launch runner) → run, pausing the sandbox at each approval gate until a human
decides, → terminate → record the sandbox-seconds cost exactly once, whatever the ending.
Times come from activity results (provider-confirmed) or `workflow.now()`, never the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

with workflow.unsafe.imports_passed_through():  # also passed through at the worker (worker.py)
    from pydantic import ValidationError

    from activities.ledger import (
        RECORD_COST,
        RECORD_COST_LOCAL,
        RECORD_SEGMENT,
        RECORD_SEGMENT_LOCAL,
        LedgerActivities,
        RecordCostInput,
        RecordCostResult,
        RecordSegmentInput,
    )
    from activities.notify import NOTIFY_GATE, GateNotice, NoticeResult
    from activities.sandbox import (
        CHECK,
        KEEP_ALIVE,
        PAUSE,
        PROVISION,
        PROVISION_PACED,
        RESUME,
        TERMINATE,
        SandboxActivities,
        exec_config,
    )
    from common.errors import validation_message
    from common.failures import describe_failure
    from common.ids import (
        CHECK_SANDBOX_SIGNAL,
        creates_task_queue,
        session_id_of,
        workflow_id_for,
    )
    from ledger import BilledState, CostEvent, NoticeAbout, SegmentEvent, Usage
    from provider.models import (
        CheckInput,
        CheckResult,
        ExecInput,
        ExecResult,
        KeepAliveInput,
        KeepAliveResult,
        PauseInput,
        PauseResult,
        PoolConfig,
        ProvisionInput,
        ProvisionResult,
        ResumeInput,
        ResumeResult,
        SandboxHandle,
        SandboxRef,
        TerminateInput,
    )
    from telemetry.instruments import GATE_OUTCOME, GATE_WAIT
    from workflows import gates as _gates
    from workflows import lifetime as _lifetime
    from workflows.models import (
        ENDED_STATES,
        WORKFLOW_TYPE,
        CheckRequest,
        ExecRequest,
        ExecRequestArg,
        FinishRequest,
        Gate,
        GateDecision,
        GateDecisionArg,
        GateRequest,
        GateRequestArg,
        Outcome,
        SessionCarry,
        SessionInput,
        SessionResult,
        SessionState,
        SessionStatus,
        read_payload,
        valid_payload,
    )

_DRAIN = timedelta(minutes=2)
"""How long an ending session waits for its in-flight updates (an exec the termination cut
short) to answer their callers."""
_HISTORY_BYTES_LIMIT = 8 * 1024 * 1024
"""Continue-as-new past this history size even if Temporal has not suggested it (it terminates
a workflow at 50 MB, with no compensation): a flood of ignored signals cannot get that far."""
_IGNORED_LOGGED = 20
"""Ignored messages logged one by one per run; after that one line in a hundred, with a count,
so a flood of bad signals cannot flood the log either."""


_CHECK_SPACING = timedelta(seconds=5)
"""Hinted checks run at most this often: a flood of `check_sandbox` signals costs a provider
call every few seconds at worst, never one per signal."""
_LOST_PATCH = "sandbox-lost"
"""A sandbox found gone by an activity is checked, and the session ends `lost` (histories
recorded before it failed the session at once)."""
_GATES_PATCH = "gates-published"
"""The session publishes its search attributes and memo, audits its gates and announces them
(histories recorded before it did none of that)."""
_NOTICE_DRAIN = timedelta(seconds=5)
"""How long an ending session waits for its gate notices in flight (a rejection's follow-up
just before the end): a healthy sink takes one in milliseconds; one that is down is not worth
delaying the result for (the audit rows go with the cost record anyway)."""
_NOTIFY_ACTIVITY = "notify_gate"
_LIFETIME_PATCH = "e2b-lifetime"
"""The session rolls its sandbox over before E2B's maximum lifetime and takes back a sandbox E2B
paused on its own (histories recorded before it did neither)."""
_NOTIFY_BOUND = timedelta(minutes=10)
"""How long a notice is retried, in rounds of NOTIFY_GATE's schedule-to-close: a notice in
flight is done or given up by then (and a continue-as-new waits no longer for it)."""
_LEDGER_LOCAL_PATCH = "ledger-local"
"""Since: the ledger writes (`record_segment`, `record_cost`) run as local activities."""
_CREATES_PATCH = "creates-queue"
"""Since: the sandbox create (`provision_sandbox`) runs on the creates queue
(`common.ids.creates_task_queue`), which the server paces for the whole fleet."""


class _SessionEnded(Exception):
    """Raised inside the run loop when the session must stop (finish, gate policy)."""


class _SandboxLost(Exception):
    """Raised inside the run loop when the provider confirms the sandbox is gone."""


@workflow.defn(name=WORKFLOW_TYPE)
class SandboxSession:
    @workflow.init
    def __init__(self, input: SessionInput | None = None, *extra: Any) -> None:
        session, self._invalid = _read_input(input, extra)
        input = session or _placeholder_input()
        self._input = input
        carry = input.carry
        self._state: SessionState = carry.state if carry else "provisioning"
        self._handle: SandboxHandle | None = carry.handle if carry else None
        self._gates: list[Gate] = list(carry.gates) if carry else []
        self._usage = Usage(carry.segments if carry else ())
        self._finish = carry.finish_requested if carry else False
        self._runner_pid: int | None = carry.runner_pid if carry else None
        self._alive_at: datetime | None = carry.alive_at if carry else None
        self._rollovers = carry.rollovers if carry else 0
        self._run_ends_at: datetime | None = carry.run_ends_at if carry else None
        self._lifetime_aware: bool | None = None
        self._check_wanted = False
        self._last_check: datetime | None = None
        self._lost: CheckResult | None = None
        self._end_reason: str | None = None
        self._error: str | None = None
        self._cost: CostEvent | None = None
        self._owed: CostEvent | None = None
        self._sandbox_lock = asyncio.Lock()
        self._ignored = 0
        self._publishing: bool | None = None
        self._ledger_local: bool | None = None
        self._attrs: dict[str, Any] = {}
        self._memo: dict[str, Any] = {}
        self._announced: set[tuple[str, NoticeAbout]] = set()
        self._notices_in_flight = 0

    @property
    def sandbox_id(self) -> str | None:
        """The sandbox this session holds, for its log records (`telemetry.logging`)."""
        return self._handle.sandbox_id if self._handle else None

    # ---------------------------------------------------------------- run

    @workflow.run
    async def run(self, input: SessionInput | None = None, *extra: Any) -> SessionResult:
        """`*extra` makes the SDK decode every argument without a type (see `_read_input`)."""
        if self._invalid is not None:  # fail the workflow, not its task: no retry can fix it
            self._state = "failed"
            self._error = f"invalid session input: {self._invalid}"
            workflow.logger.error("session not started: %s", self._error)
            raise ApplicationError(self._error, type="InvalidInput", non_retryable=True)
        self._publish()
        try:
            if self._handle is None:
                await self._provision()
            await self._live()
        except asyncio.CancelledError:
            await self._end("cancelled")
            raise
        except _SessionEnded:
            pass
        except _SandboxLost:
            await self._end_lost()
        except (ActivityError, ApplicationError) as err:
            if await self._gone_behind(err):
                await self._end_lost()
            self._error = describe_failure(err, limit=500)
            workflow.logger.error("session failed: %s", self._error)
            await self._end("failed")
            raise ApplicationError(self._error, type="SessionFailed", non_retryable=True) from None
        recorded = await self._end("finished")
        return SessionResult(
            status=self.status(),
            outcome="finished",
            cost_recorded=recorded,
            cost=self._cost,
            reason=self._end_reason,
        )

    async def _end_lost(self) -> None:
        """The sandbox died behind the session's back: bill it to its end, then fail."""
        assert self._handle is not None
        ended, confirmed = self._lost_end()
        how = (
            "the provider's record of its end"
            if confirmed
            else "the last moment it was known alive (the provider keeps no record of its end)"
        )
        self._error = (
            f"sandbox {self._handle.sandbox_id} was lost while the session was {self._state}: "
            f"it ended at {ended.isoformat()}, billed to {how}"
        )
        self._end_reason = self._error
        workflow.logger.error("session lost: %s", self._error)
        await self._end("lost")
        raise ApplicationError(self._error, type="SandboxLost", non_retryable=True)

    async def _gone_behind(self, err: BaseException) -> bool:
        """True when an activity failed because the sandbox is gone and the provider confirms
        it: the session then ends `lost`, billed to the sandbox's end, not `failed`."""
        if not _sandbox_gone(err):
            return False
        if self._handle is None or not workflow.patched(_LOST_PATCH):
            return False
        try:
            await self._check(spaced=False)
        except _SandboxLost:
            return True
        return False

    async def _end(self, outcome: Outcome) -> bool:
        """Every ending: the compensation, then let in-flight updates answer their callers.

        Shielded: a cancel that arrives while a session ends (after `finish`, a failure or a
        gate's timeout) cannot cut the terminate or the cost row short; the ending it would
        interrupt completes, and the session ends as it was already ending.
        """
        ending = asyncio.ensure_future(self._compensate_and_drain(outcome))
        try:
            return await asyncio.shield(ending)
        except asyncio.CancelledError:
            workflow.logger.info(
                "cancel requested while the session ends %s: ending first", outcome
            )
            return await ending

    async def _compensate_and_drain(self, outcome: Outcome) -> bool:
        recorded = await self._compensate(outcome)
        await self._drain_handlers()
        await self._drain_notices(_NOTICE_DRAIN)
        return recorded

    async def _provision(self) -> None:
        inp = self._input
        result: ProvisionResult = await self._shielded(
            SandboxActivities.provision_sandbox,
            ProvisionInput(
                session_id=inp.session_id,
                owner=workflow.info().first_execution_run_id,
                org_id=inp.org_id,
                issue_id=inp.issue_id,
                pool=inp.pool,
                env_vars=inp.env_vars,
            ),
            self._provision_config(),
            on_result=self._provisioned,
        )
        workflow.logger.info(
            "sandbox %s provisioned (template %s, runner %s)",
            result.handle.sandbox_id,
            result.handle.template_id,
            "launched" if result.runner else "from template",
        )

    def _provision_config(self) -> workflow.ActivityConfig:
        """The create runs on the fleet's creates queue since `_CREATES_PATCH`, paced there by
        the server for every worker at once; before, on the session's own queue."""
        if not workflow.patched(_CREATES_PATCH):
            return PROVISION
        return {**PROVISION_PACED, "task_queue": creates_task_queue(workflow.info().task_queue)}

    def _provisioned(self, result: ProvisionResult) -> None:
        self._handle = result.handle
        self._runner_pid = result.runner.pid if result.runner else None
        self._transition("running", result.handle.started_at)

    async def _live(self) -> None:
        """Run until finished: keep the sandbox alive, hold gates, continue-as-new when told."""
        interval = timedelta(seconds=self._keep_alive_seconds())
        if self._state == "paused" and self._next_gate() is None and not self._finish:
            # Continued as new at a gate that was decided as the run handed over.
            await self._resume()
        next_keep_alive = workflow.now() + interval
        while True:
            if self._finish:
                return
            if self._check_wanted:
                await self._check()
            gate = self._next_gate()
            if gate is not None:
                await self._hold(gate)
                next_keep_alive = workflow.now() + interval
                continue
            if self._state == "paused" and self._knows_lifetime():
                await self._resume()  # E2B paused it on its own (found by a keep-alive or check)
                next_keep_alive = workflow.now() + interval
                continue
            if self._should_continue_as_new():
                await self._continue_as_new()
            rollover_at = self._rollover_due()
            wake = next_keep_alive if rollover_at is None else min(next_keep_alive, rollover_at)
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._finish
                        or self._check_wanted
                        or self._next_gate() is not None
                        or self._should_continue_as_new()
                    ),
                    timeout=max(wake - workflow.now(), timedelta(seconds=1)),
                )
            except TimeoutError:
                if rollover_at is not None and workflow.now() >= rollover_at:
                    await self._rollover()
                else:
                    await self._keep_alive()
                next_keep_alive = workflow.now() + interval

    async def _keep_alive(self) -> None:
        result: KeepAliveResult = await workflow.execute_activity_method(
            SandboxActivities.keep_alive_sandbox,
            KeepAliveInput(ref=self._ref(), timeout_seconds=self._input.pool.timeout_seconds),
            **KEEP_ALIVE,
        )
        if self._knows_lifetime():
            if result.state == "paused":
                self._found_paused(result.paused_at or result.expires_at)
                return
            self._run_ends_at = result.run_ends_at
        self._alive_at = workflow.now()

    # ---------------------------------------------------------------- E2B's lifetime

    def _knows_lifetime(self) -> bool:
        """Whether this run handles E2B's lifetime cap and on-timeout pause (`_LIFETIME_PATCH`)."""
        if self._lifetime_aware is None:
            self._lifetime_aware = workflow.patched(_LIFETIME_PATCH)
        return self._lifetime_aware

    def _rollover_due(self) -> datetime | None:
        if not self._knows_lifetime():
            return None
        return _lifetime.rollover_due(
            self._run_ends_at, self._input.lifetime_rollover_seconds, self._usage.latest
        )

    async def _rollover(self) -> None:
        """Pause and resume the sandbox before E2B's maximum lifetime ends its run: E2B starts a
        new run on resume, so the session keeps its sandbox (memory, files, processes) past the
        cap. Exact billing: the seconds in between are paused. A running command finishes first
        (the lock): a pause would cut its stream."""
        ends = self._run_ends_at
        self._run_ends_at = None  # the next keep-alive learns the new run's end
        async with self._sandbox_lock:
            if self._state != "running" or self._finish:
                return
            await self._pause()
        self._rollovers += 1
        _lifetime.count_rollover()
        asyncio.ensure_future(self._record_closed_segment())
        workflow.logger.info(
            "sandbox rolled over before E2B's maximum lifetime (its run would end at %s): "
            "rollover %d",
            ends.isoformat() if ends else "unknown",
            self._rollovers,
        )
        if self._next_gate() is None and not self._finish:
            await self._resume()  # else the gate holds it paused, or the session ends

    def _found_paused(self, at: datetime) -> None:
        """E2B paused the sandbox on its own (its timeout ran out while no keep-alive reached it:
        every worker down longer than the pool's timeout). Billed as paused from E2B's pause;
        the run loop resumes it, or a gate holds it, or the session ends."""
        workflow.logger.warning(
            "sandbox was found paused by E2B (since %s): its timeout ran out with no keep-alive; "
            "billed as paused from then",
            at.isoformat(),
        )
        self._run_ends_at = None
        self._transition("paused", at)
        _lifetime.count_found_paused()
        asyncio.ensure_future(self._record_closed_segment())

    async def _check(self, *, spaced: bool = True) -> None:
        """Ask the provider whether the sandbox lives; raise `_SandboxLost` when it does not.

        A hinted check waits out `_CHECK_SPACING` since the last one, so hints cost little.
        """
        self._check_wanted = False
        if spaced and self._last_check is not None:
            wait = self._last_check + _CHECK_SPACING - workflow.now()
            if wait > timedelta(0):
                await workflow.sleep(wait)
        self._last_check = workflow.now()
        try:
            result: CheckResult = await workflow.execute_activity_method(
                SandboxActivities.check_sandbox, CheckInput(ref=self._ref()), **CHECK
            )
        except ActivityError as err:
            # No answer is no verdict: a hint (forged, or during an E2B outage) never ends a
            # session on its own; the next keep-alive or sandbox call finds out.
            workflow.logger.warning(
                "sandbox check gave no answer: %s", describe_failure(err, limit=300)
            )
            return
        if result.alive:
            self._alive_at = result.checked_at
            if result.state == "paused" and self._state == "running" and self._knows_lifetime():
                self._found_paused(result.paused_at or result.checked_at)
            return
        self._lost = result
        raise _SandboxLost()

    def _last_alive(self) -> datetime:
        """The last moment the sandbox was known alive: a provider call that reached it, or
        its last provider-confirmed transition, whichever is later."""
        known = [t for t in (self._usage.latest, self._alive_at) if t is not None]
        return max(known) if known else workflow.now()

    def _lost_end(self) -> tuple[datetime, bool]:
        """When the lost sandbox ended, and whether that is the provider's record of it."""
        assert self._lost is not None
        if self._lost.ended_at is not None and self._lost.end_confirmed:
            return self._lost.ended_at, True
        return self._last_alive(), False

    # ---------------------------------------------------------------- gates

    def _next_gate(self) -> Gate | None:
        return next((g for g in self._gates if g.state == "waiting"), None)

    async def _hold(self, gate: Gate) -> None:
        """Pause the sandbox while the gate waits for a human, then resume it.

        A run continued-as-new at a gate finds the sandbox already paused and the gate's wait
        begun: it goes on waiting for what is left of the gate's time.
        """
        if self._state != "paused":
            async with self._sandbox_lock:  # let a running exec finish first
                pause = await self._pause()
            workflow.logger.info(
                "gate %s waiting; sandbox paused at %s", gate.gate, pause.paused_at
            )
            if workflow.patched("segments-as-they-close"):
                # In the background: a slow ledger must not hold the gate.
                asyncio.ensure_future(self._record_closed_segment())
        if gate.waiting_since is None:
            gate.waiting_since = workflow.now()
            self._publish()
        waiting_since = gate.waiting_since
        if gate.notified_at is None:
            self._announce(gate, "requested")
        ceiling = self._input.gate_ceiling_seconds
        limit = min(gate.timeout_seconds or ceiling, ceiling)
        left = limit - (workflow.now() - waiting_since).total_seconds()
        may_continue = workflow.patched("continue-as-new-at-gate")
        remind = self._publishes() and gate.remind_at is not None and gate.reminded_at is None
        try:
            while True:
                wait = left
                if remind and gate.remind_at is not None:
                    due = limit * gate.remind_at - (workflow.now() - waiting_since).total_seconds()
                    wait = min(left, due)
                try:
                    await workflow.wait_condition(
                        lambda: (
                            gate.state != "waiting"
                            or self._finish
                            or self._check_wanted
                            or (may_continue and self._history_too_long())
                        ),
                        timeout=timedelta(seconds=max(wait, 0.001)),
                    )
                except TimeoutError:
                    if not remind or wait >= left:
                        raise
                    remind = False  # the reminder fell due, not the gate's timeout
                    gate.reminded_at = workflow.now()
                    self._announce(gate, "reminder")
                    left = limit - (workflow.now() - waiting_since).total_seconds()
                    continue
                if not self._check_wanted or gate.state != "waiting" or self._finish:
                    break
                await self._check()  # raises _SandboxLost when the paused sandbox is gone
                left = limit - (workflow.now() - waiting_since).total_seconds()
                if left <= 0:
                    raise TimeoutError()
        except TimeoutError:
            gate.state = "timed_out"
            gate.decided_at = workflow.now()
            _record_gate_wait(gate)
            self._publish()
            self._announce(gate, "timed_out")
            policy = gate.on_timeout if gate.timeout_seconds and limit < ceiling else "terminate"
            workflow.logger.info("gate %s timed out after %ss: %s", gate.gate, limit, policy)
            if policy == "terminate":
                self._end_reason = (
                    f"gate {gate.gate!r} timed out after {limit:g}s: its on_timeout policy "
                    "`terminate` ended the session"
                    if gate.timeout_seconds and limit < ceiling
                    else f"gate {gate.gate!r} waited {limit:g}s, the longest any gate may "
                    "(gate_ceiling_seconds): the session was ended"
                )
                raise _SessionEnded() from None
        if self._finish:
            return
        if gate.state == "waiting":  # the history grew too long while the gate waits
            await self._continue_as_new()
        await self._resume()

    def _segment_events(self) -> list[SegmentEvent]:
        assert self._handle is not None
        return self._usage.running_segment_events(
            session_id=self._input.session_id,
            org_id=self._input.org_id,
            issue_id=self._input.issue_id,
            sandbox_id=self._handle.sandbox_id,
            template_id=self._handle.template_id,
        )

    async def _record_closed_segment(self) -> None:
        """The running stretch a pause just closed goes to the ledger now, so a long session's
        cost accrues as it is spent (`sessions costs --live`, `--by day`). Exactly once by the
        ledger's key; the final cost row carries every stretch again, so a failure (or the
        session ending first) loses nothing."""
        closed = self._segment_events()
        if not closed:
            return
        try:
            await self._ledger_write(
                LedgerActivities.record_segment,
                RecordSegmentInput(segment=closed[-1]),
                RECORD_SEGMENT,
                RECORD_SEGMENT_LOCAL,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "running segment not recorded yet: %s", describe_failure(err, limit=300)
            )

    async def _pause(self) -> PauseResult:
        """Pause the sandbox (the caller holds the sandbox lock): paused from E2B's time."""
        result: PauseResult = await self._shielded(
            SandboxActivities.pause_sandbox,
            PauseInput(ref=self._ref()),
            PAUSE,
            on_result=lambda r: self._transition("paused", r.paused_at),
        )
        return result

    async def _resume(self) -> None:
        async with self._sandbox_lock:
            await self._shielded(
                SandboxActivities.resume_sandbox,
                ResumeInput(ref=self._ref(), timeout_seconds=self._input.pool.timeout_seconds),
                RESUME,
                on_result=self._resumed,
            )

    def _resumed(self, result: ResumeResult) -> None:
        self._transition("running", result.resumed_at)
        if self._knows_lifetime():
            self._run_ends_at = result.run_ends_at  # a resume starts a new run

    def _transition(self, state: BilledState, at: datetime) -> None:
        """The sandbox is `state` since `at`, a provider-confirmed time."""
        self._usage.enter(state, at)
        self._state = state
        self._publish()

    # ---------------------------------------------------------------- publishing

    def _publishes(self) -> bool:
        """Whether this run publishes and announces its gates (see `_GATES_PATCH`)."""
        if self._publishing is None:
            self._publishing = workflow.patched(_GATES_PATCH)
        return self._publishing

    async def _ledger_write(
        self,
        method: Any,
        arg: Any,
        config: workflow.ActivityConfig,
        local: workflow.LocalActivityConfig,
    ) -> Any:
        """A ledger write: a local activity since `_LEDGER_LOCAL_PATCH` (decided once per run),
        an activity in the runs recorded before it."""
        if self._ledger_local is None:
            self._ledger_local = workflow.patched(_LEDGER_LOCAL_PATCH)
        if self._ledger_local:
            return await workflow.execute_local_activity_method(method, arg, **local)
        return await workflow.execute_activity_method(method, arg, **config)

    def _publish(self) -> None:
        """Upsert the search attributes and memo that changed: at every transition, so a client
        finds the session (and what waits in it) with one visibility query, no worker asked."""
        if self._invalid is not None or not self._publishes():
            return
        attrs = _gates.published_attributes(self._state, self._input, self._gates)
        updates = [
            key.value_unset() if value is None else key.value_set(value)
            for key, value in attrs.items()
            if key.name not in self._attrs or self._attrs[key.name] != value
        ]
        if updates:
            workflow.upsert_search_attributes(updates)
            self._attrs.update({key.name: value for key, value in attrs.items()})
        memo = _gates.published_memo(self._state, self._gates, self._usage)
        changed = {k: v for k, v in memo.items() if k not in self._memo or self._memo[k] != v}
        if changed:
            workflow.upsert_memo(changed)
            self._memo.update(changed)

    def _announce(self, gate: Gate, about: NoticeAbout) -> None:
        """Audit and announce a gate event in the background: a slow or failing sink never holds
        the session; a failure after the notice's retries shows on the gate (`notify_error`)."""
        if not self._publishes() or (gate.gate, about) in self._announced:
            return
        self._announced.add((gate.gate, about))
        self._notices_in_flight += 1
        notice = _gates.notice(
            gate,
            about,
            session=self._input,
            sandbox_id=self.sandbox_id,
            usage=self._usage,
            now=workflow.now(),
        )
        asyncio.ensure_future(self._notify(gate, notice))

    async def _notify(self, gate: Gate, notice: GateNotice) -> None:
        """Deliver in rounds (NOTIFY_GATE's few minutes each, up to `_NOTIFY_BOUND`): after a
        round that failed, the gate's status says why while the next round goes on trying."""
        give_up = workflow.now() + _NOTIFY_BOUND
        try:
            while True:
                try:
                    result: NoticeResult = await workflow.execute_activity(
                        _NOTIFY_ACTIVITY, notice, result_type=NoticeResult, **NOTIFY_GATE
                    )
                except ActivityError as err:
                    gate.notify_error = (
                        f"{notice.about} notice not delivered: {describe_failure(err, limit=300)}"
                    )
                    workflow.logger.warning("gate %s: %s", gate.gate, gate.notify_error)
                    if err.retry_state != RetryState.TIMEOUT or workflow.now() >= give_up:
                        return  # a notice no retry can fix, or retried long enough
                    continue
                gate.notify_error = None
                if notice.about == "requested" and result.delivered:
                    gate.notified_at = result.at or workflow.now()
                return
        finally:
            self._notices_in_flight -= 1

    async def _drain_notices(self, timeout: timedelta) -> None:
        if self._notices_in_flight:
            try:
                await workflow.wait_condition(lambda: self._notices_in_flight == 0, timeout=timeout)
            except TimeoutError:
                workflow.logger.warning(
                    "%d gate notices still in flight: not waiting for them",
                    self._notices_in_flight,
                )

    # ---------------------------------------------------------------- end

    async def _compensate(self, outcome: Outcome) -> bool:
        """Terminate the sandbox, then record its cost: every ending runs exactly this.

        True when the ledger's row for the sandbox is this session's own account of it.
        """
        if self._handle is None:
            self._state = outcome
            self._publish()
            return False
        await self._learn_state_before_end()
        self._state = "terminating"
        self._publish()
        ended_at, confirmed = await self._terminate()
        handle = self._handle
        event = self._usage.cost_event(
            session_id=self._input.session_id,
            org_id=self._input.org_id,
            issue_id=self._input.issue_id,
            sandbox_id=handle.sandbox_id,
            template_id=handle.template_id,
            ended_at=ended_at,
            outcome=outcome,
            end_confirmed=confirmed,
        )
        self._owed = event
        arg = RecordCostInput(
            event=event,
            segments=self._segment_events(),
            gate_events=(
                _gates.audit_rows(self._gates, session=self._input, usage=self._usage)
                if self._publishes()
                else []
            ),
        )
        result: RecordCostResult = await self._ledger_write(
            LedgerActivities.record_cost, arg, RECORD_COST, RECORD_COST_LOCAL
        )
        self._owed = None
        self._cost = result.event
        self._state = outcome
        self._publish()
        workflow.logger.info(
            "session %s: %.3fs running, %.3fs paused billed",
            outcome,
            result.event.running_seconds,
            result.event.paused_seconds,
        )
        if result.event != event:
            workflow.logger.warning(
                "the ledger already held another account of sandbox %s (outcome %s): kept it",
                handle.sandbox_id,
                result.event.outcome,
            )
            return False
        return True

    async def _learn_state_before_end(self) -> None:
        """A sandbox no keep-alive reached for its whole timeout (every worker down) may have
        been paused by E2B: ask once before the kill, so that stretch is billed paused. A
        session whose keep-alives ran (every one) never pays for this call."""
        if self._handle is None or self._state != "running" or self._lost is not None:
            return
        if not self._knows_lifetime():
            return
        silent = workflow.now() - self._last_alive()
        if silent < timedelta(seconds=self._input.pool.timeout_seconds):
            return
        with contextlib.suppress(_SandboxLost):  # then `_terminate` bills it to its end
            await self._check(spaced=False)

    async def _terminate(self) -> tuple[datetime, bool]:
        """Kill the sandbox; when (and whether the provider confirms when) it ended.

        A lost sandbox is not killed again: the check that found it gone says when it ended.
        One found already gone by the kill (lost unnoticed) ended at the provider's record of
        its end, else at the last moment it was known alive, never at the moment of the kill.
        """
        if self._lost is not None:
            return self._lost_end()
        try:
            term = await workflow.execute_activity_method(
                SandboxActivities.terminate_sandbox, TerminateInput(ref=self._ref()), **TERMINATE
            )
        except ActivityError as err:
            # The cost is owed whether or not the kill went through; the reconciler mops up.
            self._error = self._error or f"terminate failed: {describe_failure(err, limit=500)}"
            workflow.logger.error("terminate failed: %s", describe_failure(err, limit=500))
            return workflow.now(), False
        if term.already_gone and not term.end_confirmed:
            return self._last_alive(), False
        return term.terminated_at, True

    # ---------------------------------------------------------------- messages

    @workflow.signal(name="request_approval")
    def request_approval(self, *payloads: Any) -> None:
        request = self._parse(GateRequest, payloads, "request_approval")
        if request is not None:
            problem = self._gate_request_problem(request)
            if problem:
                self._ignore(f"request_approval ignored: {problem}")
            else:
                self._add_gate(request)

    @workflow.signal(name="approve")
    def approve(self, *payloads: Any) -> None:
        self._decide_signal(payloads, "approved", "approve")

    @workflow.signal(name="reject")
    def reject(self, *payloads: Any) -> None:
        self._decide_signal(payloads, "rejected", "reject")

    @workflow.signal(name="finish")
    def finish(self, *payloads: Any) -> None:
        if payloads and self._parse(FinishRequest, payloads, "finish") is None:
            return
        self._finish = True

    @workflow.signal(name=CHECK_SANDBOX_SIGNAL)
    def check_sandbox(self, *payloads: Any) -> None:
        """A hint that the sandbox may be gone; `_check` asks the provider before believing it."""
        if payloads and self._parse(CheckRequest, payloads, "check_sandbox") is None:
            return
        if self._handle is None or self._state in (*ENDED_STATES, "terminating"):
            return
        self._check_wanted = True

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        # Without this the SDK buffers a misspelt signal (`approve_all`) silently until the end.
        self._ignore(f"signal {ascii(name[:64])} ignored: this workflow has no such signal")

    @workflow.update(name="request_gate")
    def request_gate(self, request: GateRequestArg = None) -> Gate:
        return self._add_gate(valid_payload(request, GateRequest, "request_gate"))

    @request_gate.validator
    def _validate_request_gate(self, request: GateRequestArg = None) -> None:
        problem = self._gate_request_problem(valid_payload(request, GateRequest, "request_gate"))
        if problem:
            raise ValueError(problem)

    @workflow.update(name="approve_gate")
    def approve_gate(self, decision: GateDecisionArg = None) -> Gate:
        return self._decide(valid_payload(decision, GateDecision, "approve_gate"), "approved")

    @approve_gate.validator
    def _validate_approve(self, decision: GateDecisionArg = None) -> None:
        self._check_decision(valid_payload(decision, GateDecision, "approve_gate"), "approve")

    @workflow.update(name="reject_gate")
    def reject_gate(self, decision: GateDecisionArg = None) -> Gate:
        return self._decide(valid_payload(decision, GateDecision, "reject_gate"), "rejected")

    @reject_gate.validator
    def _validate_reject(self, decision: GateDecisionArg = None) -> None:
        self._check_decision(valid_payload(decision, GateDecision, "reject_gate"), "reject")

    @workflow.update(name="exec")
    async def exec(self, request: ExecRequestArg = None) -> ExecResult:
        request = valid_payload(request, ExecRequest, "exec")
        async with self._sandbox_lock:
            self._check_exec()  # a gate may have paused the sandbox while this one queued
            try:
                result: ExecResult = await workflow.execute_activity_method(
                    SandboxActivities.exec_command,
                    ExecInput(
                        ref=self._ref(),
                        command=request.command,
                        env=request.env,
                        cwd=request.cwd,
                        timeout_seconds=request.timeout_seconds,
                    ),
                    **exec_config(request.timeout_seconds),
                )
            except ActivityError as err:
                if _sandbox_gone(err) or _failure_type(err) == "SandboxPaused":
                    # The run loop asks the provider: a lost sandbox ends the session, one E2B
                    # paused is billed paused and resumed.
                    self.check_sandbox()
                raise
            self._alive_at = workflow.now()
            return result

    @exec.validator
    def _validate_exec(self, request: ExecRequestArg = None) -> None:
        valid_payload(request, ExecRequest, "exec")
        self._check_exec()

    @workflow.query(name="status")
    def status(self) -> SessionStatus:
        now = workflow.now()
        return SessionStatus(
            session_id=self._input.session_id,
            org_id=self._input.org_id,
            issue_id=self._input.issue_id,
            state=self._state,
            sandbox_id=self._handle.sandbox_id if self._handle else None,
            template_id=self._handle.template_id if self._handle else self._input.pool.template_id,
            gates=[g.model_copy() for g in self._gates],
            running_seconds=self._usage.seconds("running", now),
            paused_seconds=self._usage.seconds("paused", now),
            error=self._error,
            runner_pid=self._runner_pid,
            segments=[s.model_copy() for s in self._usage.segments],
            cost_owed=self._owed,
            alive_at=self._last_alive() if self._handle else None,
            end_reason=self._end_reason,
            rollovers=self._rollovers,
            run_ends_at=self._run_ends_at,
        )

    # ---------------------------------------------------------------- helpers

    def _parse(self, model: type[Any], payloads: tuple[Any, ...], name: str) -> Any:
        """Validate a signal's one JSON object; anything else is logged and ignored, never fatal.

        Handlers take `*payloads` so that a signal sent with no argument, or with several,
        still reaches this check instead of failing the workflow task (and undecodable ones
        arrive as `UndecodablePayload`, see `common.codec`).
        """
        if len(payloads) != 1 or not isinstance(payloads[0], dict):
            problem = getattr(payloads[0], "problem", None) if len(payloads) == 1 else None
            self._ignore(
                f"{name} signal ignored: {problem or 'the payload must be one JSON object'}"
            )
            return None
        try:
            return model.model_validate(payloads[0])
        except ValidationError as err:
            self._ignore(f"{name} signal ignored: {validation_message(err)}")
            return None

    def _ignore(self, message: str) -> None:
        """Log an ignored signal, boundedly: a flood of them must not flood the log."""
        self._ignored += 1
        if self._ignored <= _IGNORED_LOGGED:
            workflow.logger.warning("%s", message[:1000])
        elif self._ignored % 100 == 0:
            workflow.logger.warning(
                "%s (%d signals ignored in this run)", message[:1000], self._ignored
            )

    def _gate_request_problem(self, request: GateRequest) -> str | None:
        if self._state in ENDED_STATES or self._state == "terminating" or self._finish:
            return f"session is {self._ending()}; no gate can be requested"
        if any(g.gate == request.gate for g in self._gates):
            return f"gate {request.gate!r} was already requested"
        if len(self._gates) >= 1000:
            return "too many gates on one session"
        return _gates.request_budget_problem(self._gates, request, workflow.now())

    def _add_gate(self, request: GateRequest) -> Gate:
        gate = _gates.new_gate(request, workflow.now())
        self._gates.append(gate)
        by = f" by {gate.requested_by}" if gate.requested_by else ""
        workflow.logger.info("gate %s requested%s", gate.gate, by)
        self._publish()
        return gate

    def _find_gate(self, name: str) -> Gate | None:
        return next((g for g in self._gates if g.gate == name), None)

    def _check_decision(self, decision: GateDecision, verb: str) -> None:
        """Refuse a decision on an unknown or decided gate, or from someone the gate does not
        let decide (its approvers; its requester, for an approval)."""
        gate = self._find_gate(decision.gate)
        if gate is None:
            known = ", ".join(g.gate for g in self._gates) or "none"
            raise ValueError(f"unknown gate {decision.gate!r} (gates: {known})")
        if gate.state != "waiting":
            raise ValueError(
                f"gate {gate.gate!r} is already {gate.state.replace('_', ' ')}"
                + (f" by {gate.decided_by}" if gate.decided_by else "")
            )
        refused = gate.may_decide(decision.by, verb)
        if refused:
            raise ValueError(refused)

    def _decide(self, decision: GateDecision, state: str) -> Gate:
        self._check_decision(decision, "approve" if state == "approved" else "reject")
        gate = self._find_gate(decision.gate)
        assert gate is not None
        gate.state = state  # type: ignore[assignment]
        gate.decided_at = workflow.now()
        gate.decided_by = decision.by
        gate.comment = decision.comment
        _record_gate_wait(gate)
        workflow.logger.info("gate %s %s by %s", gate.gate, state, decision.by)
        self._publish()
        self._announce(gate, "approved" if state == "approved" else "rejected")
        return gate.model_copy()

    def _decide_signal(self, payloads: tuple[Any, ...], state: str, name: str) -> None:
        decision = self._parse(GateDecision, payloads, name)
        if decision is None:
            return
        try:
            self._decide(decision, state)
        except ValueError as err:
            self._ignore(f"{name} signal ignored: {err}")

    def _check_exec(self) -> None:
        if self._state == "paused":
            gate = self._next_gate()
            raise ApplicationError(
                "session is paused"
                + (f" at gate {gate.gate!r}" if gate else "")
                + "; exec runs only while the sandbox is running",
                type="SessionPaused",
                non_retryable=True,
            )
        if self._state != "running" or self._finish:
            raise ApplicationError(
                f"session is {self._ending()}; exec runs only while the sandbox is running",
                type="SessionNotRunning",
                non_retryable=True,
            )

    def _ending(self) -> str:
        """The state, said right for a session told to finish that has not begun to end yet."""
        if self._finish and self._state not in (*ENDED_STATES, "terminating"):
            return "ending (finish requested)"
        return self._state

    def _ref(self) -> SandboxRef:
        assert self._handle is not None
        return SandboxRef(
            org_id=self._input.org_id,
            sandbox_id=self._handle.sandbox_id,
            session_id=self._input.session_id,
            owner=self._handle.owner,
        )

    def _keep_alive_seconds(self) -> float:
        return self._input.keep_alive_interval_seconds or self._input.pool.timeout_seconds / 3

    def _should_continue_as_new(self) -> bool:
        if self._next_gate() is not None or self._finish:
            return False
        return self._history_too_long()

    def _history_too_long(self) -> bool:
        info = workflow.info()
        limit = self._input.continue_as_new_after_events
        return (
            info.is_continue_as_new_suggested()
            or (limit is not None and info.get_current_history_length() >= limit)
            or info.get_current_history_size() >= _HISTORY_BYTES_LIMIT
        )

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._drain_notices(_NOTIFY_BOUND)  # a new run announces what did not go
        workflow.continue_as_new(self._carry_input())

    async def _drain_handlers(self) -> None:
        """Let in-flight updates (an exec the termination cut short) answer their callers."""
        try:
            await workflow.wait_condition(workflow.all_handlers_finished, timeout=_DRAIN)
        except TimeoutError:
            workflow.logger.warning("ending with updates still running")

    def _carry_input(self) -> SessionInput:
        carry = SessionCarry(
            state=self._state,
            handle=self._handle,
            gates=_gates.carried(self._gates),
            segments=self._usage.segments,
            finish_requested=self._finish,
            runner_pid=self._runner_pid,
            alive_at=self._alive_at,
            rollovers=self._rollovers,
            run_ends_at=self._run_ends_at,
        )
        return self._input.model_copy(update={"carry": carry})

    async def _shielded(
        self, method: Any, arg: Any, config: workflow.ActivityConfig, *, on_result: Any
    ) -> Any:
        """Run a sandbox-changing activity to its end even if the session is cancelled meanwhile.

        Cancelling a pause or a provision half-way would leave the sandbox in a state the
        workflow does not know, and the compensation must know what it is terminating.
        """
        handle = workflow.start_activity_method(method, arg, **config)
        try:
            result = await asyncio.shield(handle)
        except asyncio.CancelledError:
            try:
                on_result(await handle)
            except ActivityError as err:
                workflow.logger.warning(
                    "interrupted step failed: %s", describe_failure(err, limit=500)
                )
            raise
        on_result(result)
        return result


def _sandbox_gone(err: BaseException) -> bool:
    """The activity failed because the provider no longer knows the sandbox."""
    return _failure_type(err) == "SandboxGone"


def _failure_type(err: BaseException) -> str | None:
    """The application error type under an activity failure."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError):
        cause = cause.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _record_gate_wait(gate: Gate) -> None:
    """A gate left `waiting`: its wait, by outcome, on the SDK's replay-safe meter (nothing is
    recorded while the workflow replays history, so each decision counts once)."""
    waited = gate.waited_seconds
    if waited is None:
        return
    histogram = workflow.metric_meter().create_histogram_float(
        GATE_WAIT, "From an approval gate's request to its decision or timeout", "s"
    )
    histogram.record(waited, {GATE_OUTCOME: gate.state})


def _read_input(input: Any, extra: tuple[Any, ...]) -> tuple[SessionInput | None, str | None]:
    """The session input, or what is wrong with it, in words that never quote its values.

    The workflow takes `*extra` so that the SDK, finding a non-positional parameter, decodes
    every argument as plain JSON (`common.payloads` turns an undecodable one into a stand-in)
    and never calls the workflow with more arguments than it takes: either would fail every
    workflow task, forever. The input is validated here instead.
    """
    if extra:
        return None, f"the workflow takes one argument (the session input), not {1 + len(extra)}"
    session = read_payload(input, SessionInput)
    if isinstance(session, str):
        return None, session
    problem = _origin_problem(session)
    return (None, problem) if problem else (session, None)


def _origin_problem(input: SessionInput) -> str | None:
    """A valid input that this run must still refuse: it names another session than the
    workflow id does (and would reach that session's sandbox), or it carries a state that only
    this session's own continue-as-new may hand over."""
    info = workflow.info()
    expected = workflow_id_for(input.session_id)
    if info.workflow_id != expected:
        return (
            f"session_id {input.session_id!r} does not match the workflow id "
            f"{info.workflow_id[:140]!r}: a session runs as workflow {expected!r}"
        )
    if info.cron_schedule:  # a cron run is started with `continued_run_id` set, like ours
        return "a session does not run on a cron schedule"
    if input.carry is not None and info.continued_run_id is None:
        return "carry is set only by the session's own continue-as-new, never by a client"
    return None


def _placeholder_input() -> SessionInput:
    """Enough of an input for `status` to answer on a session whose real input was invalid."""
    session_id = session_id_of(workflow.info().workflow_id) or workflow.info().workflow_id
    pool = PoolConfig.model_validate({})
    return SessionInput.model_construct(session_id=session_id, org_id="", pool=pool)
