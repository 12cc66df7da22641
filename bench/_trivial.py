"""Trivial workflows for `bench.dispatch_probe` (workflows cannot live in `__main__`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def noop(value: int) -> int:
    return value


@workflow.defn(name="BenchTrivial")
class Trivial:
    """Five rounds of: wait for a signal, run one no-op activity."""

    def __init__(self) -> None:
        self._signals = 0

    @workflow.signal(name="step")
    def step(self) -> None:
        self._signals += 1

    def _received(self, n: int) -> Callable[[], bool]:
        return lambda: self._signals > n

    @workflow.run
    async def run(self, rounds: int) -> int:
        for i in range(rounds):
            await workflow.wait_condition(self._received(i))
            await workflow.execute_activity(noop, i, start_to_close_timeout=timedelta(seconds=10))
        return rounds


@workflow.defn(name="BenchOnce")
class Once:
    """One no-op activity, then done: a whole trivial workflow, timed from the client."""

    @workflow.run
    async def run(self, value: int) -> int:
        return await workflow.execute_activity(
            noop, value, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn(name="BenchSleeper")
class Sleeper:
    """`rounds` timers of `millis` ms each: how late a timer fires (TimerStarted -> Fired)."""

    @workflow.run
    async def run(self, rounds: int, millis: int) -> int:
        for _ in range(rounds):
            await workflow.sleep(timedelta(milliseconds=millis))
        return rounds
