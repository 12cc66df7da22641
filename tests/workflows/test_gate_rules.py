"""The gate rules in `workflows.gates`, as plain functions: the limits that keep a session inside
Temporal's (one search attribute value, the carried state), what is carried, who may decide,
the paused seconds a gate held, and what the memo says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import Segment, Usage
from workflows.gates import (
    GATES_BYTES,
    audit_rows,
    carried,
    gate_limit,
    new_gate,
    published_attributes,
    published_memo,
    request_budget_problem,
)
from workflows.models import Gate, GateRequest, SessionInput

pytestmark = pytest.mark.fast

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SESSION = SessionInput(session_id="s1", org_id="acme", issue_id="ISS-1")


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_waiting_names_must_fit_one_search_attribute_value() -> None:
    gates = [new_gate(GateRequest(gate=f"{n:02d}" + "g" * 126), T0) for n in range(13)]
    assert request_budget_problem(gates[:12], GateRequest(gate="x" * 128), T0) is None
    problem = request_budget_problem(gates, GateRequest(gate="x" * 128), T0)
    assert problem is not None and problem.startswith("too many gates wait at once (13)")
    # Decided gates no longer count: their names left the search attribute.
    for gate in gates:
        gate.state = "approved"
    assert request_budget_problem(gates, GateRequest(gate="x" * 128), T0) is None


def test_all_gates_fit_one_mib_and_a_decided_gates_details_do_not_count() -> None:
    big = "d" * (16 * 1024)
    gates = [new_gate(GateRequest(gate=f"g{n}", details=big), T0) for n in range(10)]
    for gate in gates:
        gate.state = "approved"
    many = [new_gate(GateRequest(gate=f"h{n}", summary="s" * 500), T0) for n in range(900)]
    for gate in many:
        gate.state = "rejected"
    assert request_budget_problem(gates + many, GateRequest(gate="one", details=big), T0) is None
    heavy = [
        new_gate(
            GateRequest(gate=f"a{n}", approvers=[f"{n}-{i}" + "x" * 190 for i in range(50)]), T0
        )
        for n in range(120)
    ]
    for gate in heavy:
        gate.state = "approved"
    problem = request_budget_problem(heavy, GateRequest(gate="one"), T0)
    assert problem == "this session's gates hold 1 MiB already; no more gate can be requested"
    assert sum(len(g.model_dump_json()) for g in heavy) > GATES_BYTES


def test_a_continued_run_carries_the_waiting_gates_details_and_only_the_digest_of_decided() -> None:
    waiting = new_gate(GateRequest(gate="w", summary="s", details="keep me"), T0)
    decided = new_gate(GateRequest(gate="d", summary="s", details="drop me"), T0)
    decided.state = "approved"
    kept = carried([waiting, decided])
    assert kept[0].details == "keep me" and kept[1].details is None
    assert kept[1].digest == decided.digest and kept[1].summary == "s"
    assert decided.details == "drop me"  # the live run keeps them: only the carry drops them


def test_may_decide_table() -> None:
    gate = new_gate(GateRequest(gate="deploy", requested_by="Bot", approvers=["ana", "bot"]), T0)
    table = {
        ("ana", "approve"): None,
        ("ANA", "reject"): None,
        ("bot", "approve"): "bot requested gate 'deploy' and may not approve it",
        ("bot", "reject"): None,
        ("eve", "approve"): "eve may not approve gate 'deploy': its approvers are ana, bot",
        ("eve", "reject"): "eve may not reject gate 'deploy': its approvers are ana, bot",
    }
    for (who, verb), expected in table.items():
        said = gate.may_decide(who, verb)
        if expected is None:
            assert said is None, (who, verb, said)
        else:
            assert said is not None and said.startswith(expected), (who, verb, said)
    anyone = new_gate(GateRequest(gate="g", requested_by="bot", allow_self_approval=True), T0)
    assert anyone.may_decide("bot", "approve") is None
    assert anyone.may_decide("someone", "approve") is None


def test_gate_limit_is_its_timeout_under_the_ceiling_else_the_ceiling_which_terminates() -> None:
    ceiling = SESSION.gate_ceiling_seconds
    gate = Gate(gate="g", requested_at=T0, timeout_seconds=60, on_timeout="reject")
    assert gate_limit(gate, ceiling) == (60, "reject")
    gate.timeout_seconds = ceiling * 2
    assert gate_limit(gate, ceiling) == (ceiling, "terminate")
    gate.timeout_seconds = None
    assert gate_limit(gate, ceiling) == (ceiling, "terminate")


def test_audit_rows_count_the_paused_seconds_the_gate_held() -> None:
    usage = Usage(
        [
            Segment(state="running", start=_at(0), end=_at(10)),
            Segment(state="paused", start=_at(10), end=_at(70)),
            Segment(state="running", start=_at(70), end=None),
        ]
    )
    gate = new_gate(GateRequest(gate="g", summary="s", requested_by="bot"), _at(5))
    gate.state, gate.decided_at, gate.decided_by = "approved", _at(40), "ana"
    requested, approved = audit_rows([gate], session=SESSION, usage=usage)
    assert (requested.event, requested.at, requested.by) == ("requested", _at(5), "bot")
    assert (approved.event, approved.at, approved.by) == ("approved", _at(40), "ana")
    assert approved.waited_seconds == 35 and approved.paused_seconds == 30
    assert requested.digest == approved.digest == gate.digest


def test_what_the_session_publishes() -> None:
    usage = Usage([Segment(state="running", start=_at(0), end=_at(10))])
    usage.segments.append(Segment(state="paused", start=_at(10)))
    gate = new_gate(GateRequest(gate="g", summary="deploy", approvers=["ana"]), _at(8))
    gate.waiting_since = _at(10)
    attrs = {k.name: v for k, v in published_attributes("paused", SESSION, [gate]).items()}
    assert attrs == {
        "SessionState": "paused",
        "SessionOrg": "acme",
        "SessionIssue": "ISS-1",
        "SessionWaitingGates": ["g"],
    }
    memo = published_memo("paused", [gate], usage)
    assert memo["usage"] == {
        "running_seconds": 10.0,
        "paused_seconds": 0.0,
        "as_of": _at(10).isoformat().replace("+00:00", "Z"),
        "state": "paused",
    }
    (waiting,) = memo["waiting_gates"]
    assert (waiting["gate"], waiting["summary"], waiting["approvers"]) == ("g", "deploy", ["ana"])
    assert "details" not in waiting  # up to 16 KiB each: in `status`, not in every listing
    ended = {k.name: v for k, v in published_attributes("finished", SESSION, [gate]).items()}
    assert ended["SessionWaitingGates"] is None  # an ended session waits on nobody
    assert published_memo("finished", [gate], usage)["waiting_gates"] is None  # key removed
