"""When a session rolls its sandbox over before E2B's maximum lifetime (pure rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflows.lifetime import rollover_due

pytestmark = pytest.mark.fast

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_the_rollover_comes_its_margin_before_the_run_ends() -> None:
    assert rollover_due(START + HOUR, 900, START) == START + HOUR - timedelta(seconds=900)


def test_a_margin_longer_than_the_run_never_rolls_over_in_its_first_half() -> None:
    """A margin of a day on Hobby's hour would pause and resume at every keep-alive."""
    assert rollover_due(START + HOUR, 86_400, START) == START + HOUR / 2


def test_no_rollover_without_a_known_end_or_with_rollover_off() -> None:
    assert rollover_due(None, 900, START) is None
    assert rollover_due(START + HOUR, None, START) is None


def test_an_end_already_past_rolls_over_at_once() -> None:
    """The keep-alive that learns the end may come late: the due time is then in the past."""
    now = START + HOUR
    due = rollover_due(START + HOUR - timedelta(seconds=10), 900, START)
    assert due is not None and due < now
