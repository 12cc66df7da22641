"""Injected latency and failures, changeable at run time."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from .config import FaultSettings, ScriptedFault
from .errors import EmulatorError


class Chaos:
    """Decides, per operation, how long to wait and whether to fail."""

    def __init__(self, latency: dict[str, float], faults: FaultSettings):
        self._default_latency = dict(latency)
        self._default_faults = faults.model_copy(deep=True)
        self.reset()

    def reset(self) -> None:
        self.latency: dict[str, float] = dict(self._default_latency)
        self.set_faults(self._default_faults.model_copy(deep=True))

    def set_faults(self, faults: FaultSettings) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)
        self.injected: Counter[str] = Counter()
        """Failures injected so far, by `<operation>:<status>` (the limits' refusals are
        `Governor.refused`)."""

    def set_latency(self, latency: dict[str, float]) -> None:
        self.latency = dict(latency)

    def add_scripted(self, fault: ScriptedFault) -> None:
        self.faults.scripted.append(fault)

    async def delay(self, operation: str) -> None:
        seconds = self.latency.get(operation, 0.0)
        if seconds > 0:
            await asyncio.sleep(seconds)

    def check(self, operation: str) -> None:
        """Raise the injected failure for this call of `operation`, if any."""
        for fault in self.faults.scripted:
            if fault.operation == operation and fault.count > 0:
                fault.count -= 1
                self.faults.scripted = [f for f in self.faults.scripted if f.count > 0]
                self.injected[f"{operation}:{fault.status}"] += 1
                raise self._error(
                    fault.status,
                    fault.message or f"injected failure of {operation}",
                    fault.should_retry,
                )
        f = self.faults
        if f.operations is not None and operation not in f.operations:
            return
        roll = self._random.random()
        if roll < f.rate_limit_rate:
            self.injected[f"{operation}:429"] += 1
            raise self._error(429, "injected rate limit", f.should_retry)
        if roll < f.rate_limit_rate + f.error_rate:
            self.injected[f"{operation}:{f.error_status}"] += 1
            raise self._error(f.error_status, f"injected failure of {operation}", f.should_retry)

    def _error(self, status: int, message: str, should_retry: bool | None) -> EmulatorError:
        headers = {}
        if should_retry is not None:
            headers["Should-Retry"] = "true" if should_retry else "false"
        if status in (429, 503):
            headers["Retry-After"] = str(round(self.faults.retry_after))
        return EmulatorError(status, message, headers=headers)
