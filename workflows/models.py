"""The session workflow's messages: its input, status, gates, and one model per signal and update.

Payloads are plain JSON objects (see CONTRACT.md), so any Temporal client can send them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import validation_message
from common.ids import DEFAULT_TASK_QUEUE, SESSION_WORKFLOW_TYPE, workflow_id_for
from common.payloads import UndecodablePayload
from common.text import first_unsafe
from ledger.billing import Segment
from ledger.models import CostEvent, Outcome
from provider.models import (
    EXEC_DEFAULT_TIMEOUT_SECONDS,
    ExecResult,
    PoolConfig,
    SandboxHandle,
    validate_env,
)

WORKFLOW_TYPE = SESSION_WORKFLOW_TYPE
DEFAULT_GATE_CEILING_SECONDS = 14 * 24 * 3600.0
"""An abandoned approval must not keep a paused sandbox forever (E2B keeps paused ones ~30 days)."""
DEFAULT_ROLLOVER_SECONDS = 900.0
"""How long before E2B's maximum lifetime ends a sandbox's run the session pauses and resumes
it: more than an exec's default ceiling (600 s), since a rollover waits for a running command."""

SessionState = Literal[
    "provisioning", "running", "paused", "terminating", "finished", "failed", "cancelled", "lost"
]
GateState = Literal["waiting", "approved", "rejected", "timed_out"]
ENDED_STATES: tuple[SessionState, ...] = get_args(Outcome)
"""The states a session ends in: its outcomes (the cost row's `outcome` too)."""
OnTimeout = Literal["reject", "terminate"]

_B = TypeVar("_B", bound=BaseModel)
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


MAX_SECONDS = 365 * 24 * 3600.0
"""The longest any duration in a message may be: a year (a timer past it means a mistake)."""


def _text(value: str, what: str, *, lines: bool = False) -> str:
    """Text is data (`common.text`): no control, bidi or line-separator character (a newline and
    a tab only where `lines`), so nothing logged or printed from it can forge a line or drive a
    terminal."""
    found = first_unsafe(value, lines=lines)
    if found is not None:
        raise ValueError(f"{what} contains control characters ({ord(found):#x})")
    return value


def _printable(value: str, what: str) -> str:
    _text(value, what)
    if value != value.strip() or not value:
        raise ValueError(f"{what} must be non-empty without surrounding spaces")
    return value


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_DETAILS = 16 * 1024
"""A gate's details (a command, a diff, a URL): at most 16 KiB of text, counted in UTF-8 bytes."""
MAX_APPROVERS = 50


class GateRequest(_Message):
    """Payload of the `request_approval` signal and the `request_gate` update."""

    gate: str = Field(max_length=128)
    title: str | None = Field(None, max_length=500)
    summary: str | None = Field(None, max_length=500)
    """One line: what the agent asks to do."""
    details: str | None = None
    """Text up to 16 KiB: the command, the diff, the URL a person decides on."""
    requested_by: str | None = Field(None, max_length=200)
    """Who asks: the runner, the platform."""
    approvers: list[str] = Field(default_factory=list, max_length=MAX_APPROVERS)
    """The identities allowed to decide (compared without regard to case); empty: anyone."""
    allow_self_approval: bool = False
    """Whether `requested_by` may approve its own gate (never by default)."""
    timeout_seconds: float | None = Field(None, gt=0, le=MAX_SECONDS)
    on_timeout: OnTimeout = "reject"
    remind_at: float | None = Field(0.5, gt=0, lt=1)
    """The share of the gate's time after which a reminder is sent; null for none."""

    @field_validator("gate")
    @classmethod
    def _gate(cls, value: str) -> str:
        return _printable(value, "gate")

    @field_validator("title", "summary")
    @classmethod
    def _title(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else _text(value, info.field_name)

    @field_validator("details")
    @classmethod
    def _details(cls, value: str | None) -> str | None:
        if value is None:
            return None
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_DETAILS:
            raise ValueError(f"details is {size} bytes; at most {MAX_DETAILS} (16 KiB)")
        return _text(value, "details", lines=True)

    @field_validator("requested_by")
    @classmethod
    def _requested_by(cls, value: str | None) -> str | None:
        return None if value is None else _printable(value, "requested_by")

    @field_validator("approvers")
    @classmethod
    def _approvers(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for name in value:
            if len(name) > 200:
                raise ValueError("an approver's name is at most 200 characters")
            _printable(name, "each approver")
            seen.setdefault(name.casefold(), name)
        return list(seen.values())


class GateDecision(_Message):
    """Payload of the `approve`/`reject` signals and the `approve_gate`/`reject_gate` updates."""

    gate: str = Field(max_length=128)
    by: str = Field(max_length=200)
    comment: str | None = Field(None, max_length=4000)

    @field_validator("gate", "by")
    @classmethod
    def _names(cls, value: str) -> str:
        return _printable(value, "gate and by")

    @field_validator("comment")
    @classmethod
    def _comment(cls, value: str | None) -> str | None:
        return None if value is None else _text(value, "comment", lines=True)


class FinishRequest(_Message):
    """Payload of the `finish` signal: nothing yet, kept as an object so fields can follow."""


class CheckRequest(_Message):
    """Payload of the `check_sandbox` signal: a hint that the sandbox may be gone (the worker's
    sandbox watch sends it). The session asks the provider before it believes it."""

    sandbox_id: str | None = Field(None, max_length=256)


class ExecRequest(_Message):
    """Payload of the `exec` update."""

    command: str = Field(min_length=1, max_length=128 * 1024)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(None, max_length=4096)
    timeout_seconds: float = Field(EXEC_DEFAULT_TIMEOUT_SECONDS, gt=0, le=24 * 3600)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_env(value)

    @field_validator("command", "cwd")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL byte (no process can take it)")
        return value


class Gate(BaseModel):
    gate: str
    title: str | None = None
    state: GateState = "waiting"
    requested_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    comment: str | None = None
    timeout_seconds: float | None = None
    on_timeout: OnTimeout = "reject"
    waiting_since: datetime | None = None
    """When the gate began to wait (its sandbox paused): its timeout counts from here, and a
    continued-as-new run goes on counting from here too."""
    summary: str | None = None
    details: str | None = None
    requested_by: str | None = None
    approvers: list[str] = Field(default_factory=list)
    allow_self_approval: bool = False
    remind_at: float | None = None
    notified_at: datetime | None = None
    """When the gate's waiting was announced to every configured sink (None: not yet, or none
    configured and nothing to announce)."""
    reminded_at: datetime | None = None
    notify_error: str | None = None
    """Why the last notification about this gate could not be delivered, after its retries."""
    digest: str | None = None
    """`ledger.gate_digest(summary, details)`, kept when a continued-as-new run drops the
    details of a decided gate (the audit trail keeps the digest, not the text)."""

    @property
    def waited_seconds(self) -> float | None:
        """From the request to the decision or timeout; None while the gate waits."""
        if self.decided_at is None:
            return None
        return max((self.decided_at - self.requested_at).total_seconds(), 0.0)

    def may_decide(self, who: str, verb: str) -> str | None:
        """Why `who` may not `verb` (approve/reject) this gate; None when they may."""
        folded = who.casefold()
        if self.approvers and folded not in {a.casefold() for a in self.approvers}:
            return f"{who} may not {verb} gate {self.gate!r}: its approvers are " + ", ".join(
                self.approvers
            )
        if (
            verb == "approve"
            and self.requested_by is not None
            and folded == self.requested_by.casefold()
            and not self.allow_self_approval
        ):
            return (
                f"{who} requested gate {self.gate!r} and may not approve it "
                "(the gate does not allow self-approval)"
            )
        return None


class WaitingGate(BaseModel):
    """A waiting gate as the session's memo shows it (`sessions list --waiting`): what a person
    needs to decide, without asking a worker. The details stay in `status` (up to 16 KiB)."""

    gate: str
    title: str | None = None
    summary: str | None = None
    requested_by: str | None = None
    approvers: list[str] = Field(default_factory=list)
    requested_at: datetime
    waiting_since: datetime | None = None
    timeout_seconds: float | None = None
    on_timeout: OnTimeout = "reject"


class UsageMemo(BaseModel):
    """The sandbox's seconds as of `as_of`, in the session's memo: a reader adds the time since
    `as_of` to the seconds of `state` (the sandbox's state then) for the figures now."""

    running_seconds: float
    paused_seconds: float
    as_of: datetime
    state: Literal["running", "paused"] | None = None
    """None when the sandbox is in neither state (not yet made, or gone)."""


class SessionCarry(BaseModel):
    """What a continued-as-new run takes over from the run before it."""

    state: SessionState
    handle: SandboxHandle | None
    gates: list[Gate]
    segments: list[Segment]
    finish_requested: bool = False
    runner_pid: int | None = None
    alive_at: datetime | None = None
    rollovers: int = 0
    run_ends_at: datetime | None = None


class SessionInput(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    session_id: str
    org_id: str = Field(min_length=1, max_length=200)
    issue_id: str | None = Field(None, min_length=1, max_length=200)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    env_vars: dict[str, str] = Field(default_factory=dict)
    keep_alive_interval_seconds: float | None = Field(None, ge=1, le=86_400)
    """How often a running sandbox's timeout is extended; default a third of the pool's timeout."""
    gate_ceiling_seconds: float = Field(DEFAULT_GATE_CEILING_SECONDS, ge=1, le=MAX_SECONDS)
    """The longest any gate may wait, whatever its own timeout; then the session is terminated."""
    continue_as_new_after_events: int | None = Field(None, ge=50, le=1_000_000)
    """Continue-as-new at this history length too, not only when Temporal suggests it."""
    lifetime_rollover_seconds: float | None = Field(DEFAULT_ROLLOVER_SECONDS, ge=1, le=86_400)
    """Pause and resume the sandbox this long before E2B's maximum lifetime would end its run
    (E2B restarts the run on resume), so a session outlives the cap; null: never (the sandbox
    then dies at the cap and the session ends `lost`)."""
    carry: SessionCarry | None = None
    """Internal: the state a continued-as-new run takes over. Accepted only on a run that
    Temporal started by this session's own continue-as-new, never from a client."""

    @field_validator("session_id")
    @classmethod
    def _session_id(cls, value: str) -> str:
        if not _SESSION_ID.match(value):
            raise ValueError(
                "session id must be 1-128 characters of letters, digits, '.', '_' or '-'"
            )
        return value

    @field_validator("org_id", "issue_id")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return None if value is None else _printable(value, "the id")

    @field_validator("env_vars")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_env(value)


class InvalidPayload(BaseModel):
    """Stands in for a message model whose payload does not validate.

    The updates are typed `Model | InvalidModel`, so a payload that is not a valid object
    reaches the workflow as this, described in words, instead of failing inside the SDK, whose
    message echoes the payload, which may hold a secret. (The workflow's input is decoded
    untyped and read by `read_payload`: see `workflows.session._read_input`.)
    """

    model_config = ConfigDict(frozen=True)
    model: ClassVar[type[BaseModel]]
    problem: str

    @model_validator(mode="wrap")
    @classmethod
    def _capture(cls, value: Any, handler: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            cls.model.model_validate(value)
        except ValidationError as err:
            return cls.model_construct(problem=validation_message(err))
        raise ValueError("the payload is valid")  # so the union takes the model itself

    @classmethod
    def for_undecodable_payload(cls, problem: str) -> InvalidPayload:
        """What `common.codec.TolerantPayloadConverter` gives for a payload it cannot decode."""
        return cls.model_construct(problem=problem)


class InvalidGateRequest(InvalidPayload):
    model = GateRequest


class InvalidGateDecision(InvalidPayload):
    model = GateDecision


class InvalidExecRequest(InvalidPayload):
    model = ExecRequest


GateRequestArg = GateRequest | InvalidGateRequest | None
GateDecisionArg = GateDecision | InvalidGateDecision | None
ExecRequestArg = ExecRequest | InvalidExecRequest | None
"""What the updates take: the model, or what stands in for a bad payload."""


def read_payload(payload: Any, model: type[_B]) -> _B | str:
    """A workflow or update argument as `model`, or what is wrong with it, in words that never
    quote it.

    A dict (decoded without a type hint: the workflow's input, or an update sent with extra
    arguments) is validated here, once; anything else (None for no argument, bytes sent as
    `binary/plain`, a value of another type) is refused before a handler can trip on it and fail
    the workflow task."""
    if isinstance(payload, InvalidPayload | UndecodablePayload):
        return payload.problem
    if isinstance(payload, model):
        return payload
    if isinstance(payload, dict):
        try:
            return model.model_validate(payload)
        except ValidationError as err:
            return validation_message(err)
    return "the payload must be one JSON object"


def valid_payload(payload: Any, model: type[_B], name: str) -> _B:
    """An update's model, or a clear refusal naming what is wrong (never the values)."""
    read = read_payload(payload, model)
    if isinstance(read, str):
        raise ValueError(f"invalid {name} request: {read}")
    return read


class SessionStatus(BaseModel):
    """The `status` query's answer and `sessions status --json`."""

    session_id: str
    org_id: str
    issue_id: str | None
    state: SessionState
    sandbox_id: str | None
    template_id: str
    gates: list[Gate]
    running_seconds: float
    paused_seconds: float
    error: str | None = None
    runner_pid: int | None = None
    segments: list[Segment] = Field(default_factory=list)
    """The sandbox's running and paused spans as the workflow knows them (provider-confirmed
    times); the last is open while the session lives. The reconciler bills a session that was
    terminated from these, so its paused time is never billed as running."""
    cost_owed: CostEvent | None = None
    """The cost computed once the sandbox was terminated, until the ledger has it: a session
    terminated (by hand, by Temporal) between the kill and the write still says what it owes,
    and the reconciler writes it."""
    alive_at: datetime | None = None
    """The last moment the sandbox was known alive (a provider call that reached it): a lost
    sandbox the provider keeps no record of is billed to here."""
    end_reason: str | None = None
    """Why the session ended when it was not a plain finish: a gate's timeout with policy
    `terminate`, or the sandbox lost."""
    rollovers: int = 0
    """How many times the session paused and resumed its sandbox to outlive E2B's maximum
    lifetime (each pause is billed as paused)."""
    run_ends_at: datetime | None = None
    """When E2B's maximum lifetime would end the sandbox's current run, when known; the
    session rolls it over `lifetime_rollover_seconds` before."""


class SessionResult(BaseModel):
    status: SessionStatus
    outcome: Outcome
    cost_recorded: bool
    """True when the ledger holds this session's own account of its sandbox; False when there
    was no sandbox to bill, or the ledger already held another account of it (`cost` shows it)."""
    cost: CostEvent | None = None
    """The ledger's row for this session's sandbox; None when no sandbox was made."""
    reason: str | None = None
    """Why the session ended, when it was not a plain finish (see `SessionStatus.end_reason`)."""


__all__ = [
    "DEFAULT_TASK_QUEUE",
    "ENDED_STATES",
    "WORKFLOW_TYPE",
    "CheckRequest",
    "ExecRequest",
    "ExecRequestArg",
    "ExecResult",
    "FinishRequest",
    "Gate",
    "GateDecision",
    "GateDecisionArg",
    "GateRequest",
    "GateRequestArg",
    "InvalidExecRequest",
    "InvalidGateDecision",
    "InvalidGateRequest",
    "InvalidPayload",
    "Outcome",
    "Segment",
    "SessionCarry",
    "SessionInput",
    "SessionResult",
    "SessionState",
    "SessionStatus",
    "UsageMemo",
    "WaitingGate",
    "read_payload",
    "valid_payload",
    "validation_message",
    "workflow_id_for",
]
