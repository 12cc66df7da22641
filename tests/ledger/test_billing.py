"""The billing arithmetic (`ledger.billing`): what a sandbox's stretches cost, to the millisecond.

Why in the fast tier: it is pure code, no I/O and no clock, and it decides every ledger row (the
session workflow and the stray reconciler both bill with it), so each rule is checked directly
here instead of only through a whole session.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ledger.billing import BilledState, Segment, Usage
from ledger.models import CostEvent

pytestmark = pytest.mark.fast

T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def bill(usage: Usage, ended_at: datetime, **overrides: Any) -> CostEvent:
    fields: dict[str, Any] = {
        "session_id": "s-1",
        "org_id": "acme",
        "issue_id": "ISS-1",
        "sandbox_id": "sbx-1",
        "template_id": "base",
        "ended_at": ended_at,
        "outcome": "finished",
    }
    fields.update(overrides)
    return usage.cost_event(**fields)


def spans(usage: Usage) -> list[tuple[str, float, float | None]]:
    """The stretches as (state, start, end) in seconds after T0."""
    return [
        (
            s.state,
            (s.start - T0).total_seconds(),
            None if s.end is None else (s.end - T0).total_seconds(),
        )
        for s in usage.segments
    ]


# ---------------------------------------------------------------- stretches


def test_enter_closes_the_open_stretch_and_opens_the_next() -> None:
    usage = Usage()
    assert usage.started_at is None
    usage.enter("running", at(0))
    usage.enter("paused", at(10))
    usage.enter("running", at(70))
    assert spans(usage) == [("running", 0, 10), ("paused", 10, 70), ("running", 70, None)]
    assert usage.started_at == at(0)
    usage.close(at(75))
    assert spans(usage)[-1] == ("running", 70, 75)


def test_a_repeated_pause_or_resume_changes_nothing() -> None:
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("running", at(5))  # a resume that found it running
    usage.enter("paused", at(10))
    usage.enter("paused", at(20))  # a retried pause: the first time stands
    assert spans(usage) == [("running", 0, 10), ("paused", 10, None)]


def test_close_never_ends_a_stretch_before_it_began() -> None:
    usage = Usage.running_since(at(100))
    usage.close(at(90))
    assert spans(usage) == [("running", 100, 100)]
    usage.close(at(200))  # already closed: stays as it was
    assert spans(usage) == [("running", 100, 100)]


def test_seconds_count_an_open_stretch_up_to_now() -> None:
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(10))
    assert usage.seconds("running", at(50)) == 10
    assert usage.seconds("paused", at(50)) == 40
    assert usage.seconds("paused", at(5)) == 0  # a `now` before the stretch: nothing, not less
    usage.enter("running", at(60))
    assert (usage.seconds("running", at(61)), usage.seconds("paused", at(61))) == (11, 50)


def test_seconds_are_rounded_to_the_millisecond() -> None:
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(1.0004))
    usage.enter("running", at(1.0011))
    assert usage.seconds("running", at(2.00159)) == 2.001  # 1.0004 + 1.00049
    assert usage.seconds("paused", at(2.00159)) == 0.001  # 0.0007


def test_segments_survive_a_round_trip_through_json() -> None:
    """The carry of continue-as-new: the stretches come back as they left."""
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(10.5))
    again = Usage(Segment.model_validate_json(s.model_dump_json()) for s in usage.segments)
    assert again.segments == usage.segments
    assert again.seconds("paused", at(20)) == usage.seconds("paused", at(20)) == 9.5


# ---------------------------------------------------------------- the cost event


def test_cost_event_bills_running_and_paused_apart() -> None:
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(125.5))
    usage.enter("running", at(3725.5))
    event = bill(usage, at(3726.5))
    assert (event.running_seconds, event.paused_seconds, event.wall_seconds) == (
        126.5,
        3600.0,
        3726.5,
    )
    assert (event.started_at, event.ended_at) == (at(0), at(3726.5))
    assert (event.session_id, event.sandbox_id, event.outcome) == ("s-1", "sbx-1", "finished")
    assert CostEvent.model_validate(event.model_dump()) == event  # a row the ledger accepts
    assert spans(usage)[-1] == ("running", 3725.5, 3726.5)  # billing closed the usage


def test_cost_event_while_paused_ends_the_paused_stretch() -> None:
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(30))
    event = bill(usage, at(90), outcome="cancelled")
    assert (event.running_seconds, event.paused_seconds, event.wall_seconds) == (30, 60, 90)
    assert event.outcome == "cancelled"


def test_ended_at_never_precedes_the_start() -> None:
    usage = Usage.running_since(at(100))
    event = bill(usage, at(40))  # a terminate clock behind the provider's
    assert event.ended_at == event.started_at == at(100)
    assert (event.running_seconds, event.paused_seconds, event.wall_seconds) == (0, 0, 0)
    CostEvent.model_validate(event.model_dump())


def test_a_stray_known_only_by_its_start_is_all_running() -> None:
    usage = Usage.running_since(at(0))
    assert spans(usage) == [("running", 0, None)]
    event = bill(usage, at(600.25), outcome="cancelled", issue_id=None)
    assert (event.running_seconds, event.paused_seconds, event.wall_seconds) == (600.25, 0, 600.25)
    assert event.issue_id is None


def test_a_usage_that_never_ran_has_no_event() -> None:
    with pytest.raises(ValueError, match="never ran"):
        bill(Usage(), at(10))


def test_times_in_another_zone_bill_the_same() -> None:
    paris = timezone(timedelta(hours=1))
    usage = Usage()
    usage.enter("running", at(0).astimezone(paris))
    usage.enter("paused", at(10))
    event = bill(usage, at(15))
    assert (event.running_seconds, event.paused_seconds, event.wall_seconds) == (10, 5, 15)
    assert event.started_at.tzinfo == UTC


# ---------------------------------------------------------------- clocks that disagree


def test_a_transition_stamped_before_the_last_one_is_never_billed_twice() -> None:
    """Pause and resume run on whichever worker is free: their clocks may disagree a little."""
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(10))
    usage.enter("running", at(9.98))  # resumed on a worker whose clock is 20 ms behind
    event = bill(usage, at(20))
    assert event.running_seconds + event.paused_seconds == pytest.approx(event.wall_seconds)
    assert event.running_seconds <= 20


def test_ended_at_never_precedes_the_last_transition() -> None:
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(10))
    usage.enter("running", at(40))
    event = bill(usage, at(39.5))  # terminated on a worker whose clock is behind
    assert event.running_seconds + event.paused_seconds == pytest.approx(event.wall_seconds)
    assert event.ended_at >= at(40)


# ---------------------------------------------------------------- property


def _random_life(rng: random.Random, skew: float) -> tuple[Usage, datetime, float]:
    """A sandbox's life: pauses and resumes (a third of them repeats) at random gaps from 0 to a
    day, each stamp off by up to `skew` seconds. Also the running seconds by the true times."""
    usage = Usage()
    now = rng.uniform(0, 1000)
    state: BilledState = "running"
    usage.enter(state, at(now))
    running, since = 0.0, now
    for _ in range(rng.randint(0, 12)):
        now += rng.choice([0.0, rng.uniform(0, 0.01), rng.uniform(0, 5), rng.uniform(0, 86400)])
        new: BilledState = rng.choice(["running", "paused", state])
        if new != state:
            running += now - since if state == "running" else 0.0
            state, since = new, now
        usage.enter(new, at(now + rng.uniform(-skew, skew)))
    now += rng.choice([0.0, rng.uniform(0, 3600)])
    running += now - since if state == "running" else 0.0
    return usage, at(now + rng.uniform(-skew, skew)), running


@pytest.mark.parametrize("skew", [0.0, 0.05])
def test_running_plus_paused_is_the_wall_time_for_any_life(skew: float) -> None:
    """Hundreds of deterministic random lives: the parts always add up to the whole, and with
    clocks that agree the running seconds are the true ones."""
    rng = random.Random(20261130)
    for case in range(400):
        usage, ended, running = _random_life(rng, skew)
        started = usage.started_at
        assert started is not None
        event = bill(usage, ended)
        parts = event.running_seconds + event.paused_seconds
        assert abs(parts - event.wall_seconds) <= 0.001, (case, spans(usage), event)
        if not skew:
            assert abs(event.running_seconds - running) <= 0.001, (case, spans(usage), event)
        assert event.started_at == started and event.ended_at >= started
        for segment in usage.segments:
            assert segment.end is not None and segment.end >= segment.start, (case, segment)
        CostEvent.model_validate(event.model_dump())


# ---------------------------------------------------------------- segments


IDS: dict[str, Any] = {
    "session_id": "s-1",
    "org_id": "acme",
    "issue_id": "ISS-1",
    "sandbox_id": "sbx-1",
    "template_id": "base",
}


def test_running_segments_are_the_closed_running_stretches() -> None:
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(10))
    usage.enter("running", at(70))
    # While the sandbox runs, its open stretch is not a segment yet.
    [first] = usage.running_segment_events(**IDS)
    assert (first.started_at, first.ended_at, first.seconds) == (at(0), at(10), 10)
    assert (first.session_id, first.sandbox_id, first.issue_id) == ("s-1", "sbx-1", "ISS-1")
    event = bill(usage, at(75.5))
    segments = usage.running_segment_events(**IDS)
    assert [(s.started_at, s.ended_at) for s in segments] == [(at(0), at(10)), (at(70), at(75.5))]
    assert sum(s.seconds for s in segments) == event.running_seconds == 15.5


def test_an_empty_running_stretch_is_no_segment() -> None:
    """A resume answered by a pause in the same microsecond bills nothing and would share its
    start (the segments' key) with the next stretch."""
    usage = Usage()
    usage.enter("running", at(0))
    usage.enter("paused", at(0))
    usage.enter("running", at(0))
    bill(usage, at(3))
    [only] = usage.running_segment_events(**IDS)
    assert (only.started_at, only.seconds) == (at(0), 3)


def test_a_lost_sandbox_is_billed_to_when_it_was_last_seen() -> None:
    usage = Usage.running_since(at(0))
    event = bill(usage, at(42), outcome="lost", end_confirmed=False)
    assert (event.outcome, event.end_confirmed, event.running_seconds) == ("lost", False, 42)
    assert bill(Usage.running_since(at(0)), at(1)).end_confirmed is True


def test_segments_add_up_to_the_event_for_any_life() -> None:
    """The ledger's invariant: a billed sandbox's segments sum to its running seconds, within a
    millisecond per segment (the event is rounded to the ms, segments keep the microsecond)."""
    rng = random.Random(20261201)
    for case in range(400):
        usage, ended, _ = _random_life(rng, 0.05)
        event = bill(usage, ended)
        segments = usage.running_segment_events(**IDS)
        total = sum(s.seconds for s in segments)
        assert abs(total - event.running_seconds) <= 0.001 * max(len(segments), 1), case
        assert len({s.started_at for s in segments}) == len(segments), case  # distinct keys
        assert all(s.seconds > 0 for s in segments), case


def test_daily_costs_split_at_each_utc_midnight() -> None:
    from ledger import daily_costs

    usage = Usage()
    midnight = datetime(2025, 3, 15, tzinfo=UTC)
    usage.enter("running", midnight - timedelta(seconds=30))
    usage.enter("paused", midnight + timedelta(seconds=15))
    usage.enter("running", midnight + timedelta(hours=1))
    bill(usage, midnight + timedelta(hours=1, seconds=5))
    days = daily_costs(usage.running_segment_events(**IDS))
    assert [(d.day.isoformat(), d.sandboxes, d.running_seconds) for d in days] == [
        ("2025-03-14", 1, 30.0),
        ("2025-03-15", 1, 20.0),
    ]
