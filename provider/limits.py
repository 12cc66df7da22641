"""E2B's account limits on new sandboxes, respected before asking instead of after a 429.

E2B limits each team (API key) to a create rate and a number of sandboxes running at once:
Hobby 1 create/s and 20 running, Pro 5/s and 100; and each run of a sandbox to a maximum
lifetime (1 h, 24 h), which the session works around by a pause and resume (`TierLimits`).
`CreateLimiter` paces this process's creates per key (evenly spaced, so no burst can trip
E2B's own bucket) and refuses a create while the team already runs its maximum (`AtCapacity`,
retried by Temporal a few seconds later, no activity slot held meanwhile), asking E2B how many
run rather than trusting a local count (sandboxes end on other workers, by timeout, or by
hand). For the fleet, the worker also asks the server to pace the creates queue
(`worker.SessionWorker`): every replica's creates together stay within the rate. E2B's 429 stays
the backstop: a retryable `RateLimited`, retried after `Retry-After`.

Configuration (`common.settings.ProviderSettings`): `E2B_TIER` (`hobby` | `pro`; unset: no
pacing, only the 429 backstop), `E2B_CREATE_RATE` (creates per second) and `E2B_MAX_CONCURRENT`
(running sandboxes), each overriding the tier's figure; `0` turns that limit off.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from common.settings import ProviderSettings
from provider.errors import AtCapacity

FLEET_HEADROOM = 0.8
"""The fleet's create rate as a share of E2B's (`TierLimits.fleet_create_rate`)."""
CAPACITY_RETRY_SECONDS = 3.0
"""How soon a create refused for capacity is tried again (its activity is retried by Temporal,
so nothing waits in a worker meanwhile)."""

__all__ = ["CAPACITY_RETRY_SECONDS", "FLEET_HEADROOM", "TIERS", "CreateLimiter", "TierLimits"]


@dataclass(frozen=True)
class TierLimits:
    """Creates per second and sandboxes running at once; None: not limited here."""

    create_rate: float | None = None
    max_concurrent: int | None = None
    max_lifetime_seconds: int | None = None
    """How long one run of a sandbox may last (a resume starts a new run); None: unknown."""

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> TierLimits:
        """The tier's figures, each overridden by its own setting (`0` turns it off)."""
        base = TIERS[settings.e2b_tier] if settings.e2b_tier else cls()
        rate, concurrent = settings.e2b_create_rate, settings.e2b_max_concurrent
        lifetime = settings.e2b_max_lifetime
        return cls(
            create_rate=base.create_rate if rate is None else (rate or None),
            max_concurrent=base.max_concurrent if concurrent is None else (concurrent or None),
            max_lifetime_seconds=(
                base.max_lifetime_seconds if lifetime is None else (lifetime or None)
            ),
        )

    @property
    def fleet_create_rate(self) -> float | None:
        """The creates per second the whole fleet asks of the server: `FLEET_HEADROOM` of
        E2B's, and no more than E2B's burst (ceil of its rate) less one.

        After a quiet spell the server hands out its burst (ceil of its rate) and one more (the
        queue's bucket starts full when it loads; measured on the dev server, 1.32: two tasks
        at once at 1/s), each reaching E2B when its worker gets to it. At 80 % alone, E2B at
        2/s, that is three creates against E2B's two: one 429 in twelve, in CI. Capped, the
        first burst fits E2B's full bucket, and each later create has 1/fleet - 1/E2B seconds
        of lag to spare (0.5 s at E2B 2/s, 0.05 s at Pro's 5/s, which keeps 4/s). Hobby (1/s)
        has no room below its burst of one and keeps 0.8/s: two sessions after a quiet spell
        on two workers may meet one 429, retried after E2B's Retry-After."""
        if not self.create_rate:
            return None
        paced = self.create_rate * FLEET_HEADROOM
        e2b_burst = math.ceil(self.create_rate)
        return min(paced, e2b_burst - 1) if e2b_burst > 1 else paced

    @property
    def enabled(self) -> bool:
        return self.create_rate is not None or self.max_concurrent is not None


TIERS: dict[str, TierLimits] = {
    "hobby": TierLimits(create_rate=1.0, max_concurrent=20, max_lifetime_seconds=3600),
    "pro": TierLimits(create_rate=5.0, max_concurrent=100, max_lifetime_seconds=86_400),
}
"""E2B's published limits per plan."""


@dataclass
class _KeyState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_create: float = 0.0
    creating: int = 0


class CreateLimiter:
    """Per-process pacing of creates, one bucket per API key (one E2B team)."""

    def __init__(self, limits: TierLimits, *, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}

    @contextlib.asynccontextmanager
    async def create_slot(
        self, key: str, running: Callable[[], Awaitable[int]]
    ) -> AsyncIterator[None]:
        """Hold the body (one create) until the team has a free slot and its turn has come.

        `running` counts the team's running sandboxes (asked only when a concurrency limit
        is set). Creates in flight here count too: E2B lists them only once they return.
        """
        state = self._keys.setdefault(key, _KeyState())
        await self._wait_for_slot(state, running)
        try:
            await self._wait_for_turn(state)
            yield
        finally:
            state.creating -= 1

    async def _wait_for_slot(self, state: _KeyState, running: Callable[[], Awaitable[int]]) -> None:
        """Take a slot, or raise `AtCapacity`: a create never waits for a sandbox to end
        inside its activity (that would hold a worker's slot, and one per waiting create)."""
        limit = self.limits.max_concurrent
        async with state.lock:
            # Read before asking: a create finishing during the listing is then counted
            # twice (harmless), never not at all.
            in_flight = state.creating
            now = 0 if limit is None else await running()
            if limit is None or now + in_flight < limit:
                state.creating += 1
                return
        raise AtCapacity(
            f"E2B's limit of {limit} sandboxes running at once is reached ({now} running, "
            f"{in_flight} being created here): the create is tried again in "
            f"{CAPACITY_RETRY_SECONDS:g}s",
            retry_after=CAPACITY_RETRY_SECONDS,
        )

    async def _wait_for_turn(self, state: _KeyState) -> None:
        """Space creates 1/rate apart (a reserved turn, so waiters don't hold the lock)."""
        rate = self.limits.create_rate
        if rate is None:
            return
        async with state.lock:
            now = self._clock()
            turn = max(now, state.next_create)
            state.next_create = turn + 1.0 / rate
        if turn > now:
            await asyncio.sleep(turn - now)
