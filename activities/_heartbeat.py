"""Heartbeating while an activity awaits something slow: a worker that dies is noticed within
the activity's heartbeat timeout (not its start-to-close one), and a cancel reaches the call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

_DEFAULT_INTERVAL = 5.0


def heartbeat_interval() -> float:
    """A third of the activity's heartbeat timeout (at most 5 s, at least 0.2 s)."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return _DEFAULT_INTERVAL
    return max(0.2, min(_DEFAULT_INTERVAL, timeout.total_seconds() / 3))


async def heartbeating(call: Awaitable[T], *details: Any) -> T:
    """`call`'s result, awaited as a task while the activity heartbeats; a cancel of the
    activity cancels the call."""
    if details:
        # Said at once, not after the first interval: an attempt lost in its first seconds
        # (a worker stopped mid-command) must leave them for the next one to read.
        activity.heartbeat(*details)
    task = asyncio.ensure_future(call)
    interval = heartbeat_interval()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            activity.heartbeat(*details)
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise
