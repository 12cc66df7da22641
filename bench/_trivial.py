"""A trivial workflow for `bench.dispatch_probe` (workflows cannot live in `__main__`)."""

from __future__ import annotations

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

    @workflow.run
    async def run(self, rounds: int) -> int:
        for i in range(rounds):
            await workflow.wait_condition(lambda i=i: self._signals > i)
            await workflow.execute_activity(noop, i, start_to_close_timeout=timedelta(seconds=10))
        return rounds
