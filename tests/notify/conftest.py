"""The receivers (tests/fixtures/receiver.py) for the notification tests, and an environment
without notify variables (the per-org ones are read at load: one left over would route here)."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.receiver import receiver, slack_receiver

__all__ = ["receiver", "slack_receiver"]


@pytest.fixture(autouse=True)
def no_notify_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("SESSIONS_NOTIFY_", "SESSIONS_WEB_"))]:
        monkeypatch.delenv(name)
