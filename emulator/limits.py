"""E2B's account limits, by tier: lifetime, create rate, concurrency, API rate, pause/resume time.

`dev` is generous and fast (no rate limits, pause/resume take ~0.05 s so the transitional
states exist but cost nothing); `hobby` and `pro` are E2B's published figures
(e2b.dev/docs/sandbox/rate-limits, the SDK's `create` docstring). Every figure can be overridden
at start (`emulator.config`) and changed at run time (`PUT /_emulator/limits`).

How E2B answers, reproduced here (e2b-dev/infra, packages/api/internal/middleware/ratelimit):
a limited route answers `RateLimit-Limit` (the burst), `RateLimit-Remaining` and
`RateLimit-Reset` (seconds until the bucket is full) on every call, and a refused call 429
`{"code": 429, "message": "Rate limit exceeded"}` with `Retry-After` (at least 1 s). The
concurrency limit (orchestrator's create path) is a 429 WITHOUT `Retry-After`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import EmulatorError

Tier = Literal["dev", "hobby", "pro"]
TIER_NAMES: tuple[Tier, ...] = ("dev", "hobby", "pro")

MEMORY_MB = 512
"""What every emulated sandbox reports as its memory (`memoryMB`); pause time scales with it."""

RATE_LIMITED = "Rate limit exceeded"


class Limits(BaseModel):
    """The figures one tier (or an override of it) stands for. None: no limit."""

    model_config = ConfigDict(extra="forbid")

    tier: Tier = "dev"
    """The tier these figures started from (informational once a figure is overridden)."""
    max_lifetime: int = Field(default=24 * 3600, gt=0)
    """Seconds one run of a sandbox (from create, or from its latest resume) may last."""
    create_rate: float | None = Field(default=None, gt=0)
    """Sandbox creates per second (a bucket of one second's worth)."""
    max_running: int | None = Field(default=None, ge=1)
    """Sandboxes running at once (pausing and resuming ones count; paused ones do not)."""
    api_rate: int | None = Field(default=None, ge=1)
    """Calls per `api_rate_period` per API route (E2B: 20,000 per 30 s)."""
    api_rate_period: float = Field(default=30.0, gt=0)
    pause_seconds_per_gib: float = Field(default=0.1, ge=0)
    """How long a pause takes per GiB of sandbox memory (E2B: about 4 s)."""
    resume_seconds: float = Field(default=0.05, ge=0)
    """How long a resume takes (E2B: about 1 s)."""

    @property
    def pause_seconds(self) -> float:
        return self.pause_seconds_per_gib * MEMORY_MB / 1024

    def shown(self) -> dict[str, object]:
        """As the admin API answers it: the figures plus the derived pause time."""
        return {**self.model_dump(mode="json"), "pause_seconds": self.pause_seconds}


TIERS: dict[Tier, Limits] = {
    "dev": Limits(tier="dev"),
    "hobby": Limits(
        tier="hobby",
        max_lifetime=3600,
        create_rate=1.0,
        max_running=20,
        api_rate=20_000,
        pause_seconds_per_gib=4.0,
        resume_seconds=1.0,
    ),  # fmt: skip
    "pro": Limits(
        tier="pro",
        max_lifetime=24 * 3600,
        create_rate=5.0,
        max_running=100,
        api_rate=20_000,
        pause_seconds_per_gib=4.0,
        resume_seconds=1.0,
    ),  # fmt: skip
}


class LimitFigures(BaseModel):
    """The figures a tier sets, each one a setting of its own (start-up options, run-time
    changes); None: the tier's."""

    max_lifetime: int | None = Field(default=None, gt=0)
    """Seconds one run of a sandbox may last (hobby 3600, pro 86400)."""
    create_rate: float | None = Field(default=None, ge=0)
    """Sandbox creates per second (hobby 1, pro 5; 0: no limit)."""
    max_running: int | None = Field(default=None, ge=0)
    """Sandboxes running at once (hobby 20, pro 100; 0: no limit)."""
    api_rate: int | None = Field(default=None, ge=0)
    """Calls per `api_rate_period` seconds per API route (hobby/pro 20000 per 30 s; 0: none)."""
    api_rate_period: float | None = Field(default=None, gt=0)
    pause_seconds_per_gib: float | None = Field(default=None, ge=0)
    """A pause's duration per GiB of memory (E2B about 4; sandboxes have 512 MiB)."""
    resume_seconds: float | None = Field(default=None, ge=0)
    """A resume's duration (E2B about 1)."""

    def given_figures(self) -> dict[str, object]:
        """The figures set (not None), by name."""
        return {
            name: getattr(self, name)
            for name in LimitFigures.model_fields
            if getattr(self, name) is not None
        }


class LimitsUpdate(LimitFigures):
    """A change of the limits (`PUT /_emulator/limits`, `EmulatorHandle.set_limits`): the fields
    given replace the current ones (`tier` first resets every figure to that tier's); `null`
    (or 0 for a rate or count) turns a limit off. `pause_seconds` sets the pause time directly."""

    model_config = ConfigDict(extra="forbid")

    tier: Tier | None = None
    pause_seconds: float | None = Field(default=None, ge=0)

    def apply(self, current: Limits) -> Limits:
        base = TIERS[self.tier] if self.tier is not None else current
        given = self.model_dump(exclude_unset=True, exclude={"tier", "pause_seconds"})
        for name in ("create_rate", "max_running", "api_rate"):
            if name in given and not given[name]:
                given[name] = None  # 0 and null both mean "no limit"
        if "pause_seconds" in self.model_fields_set and self.pause_seconds is not None:
            given["pause_seconds_per_gib"] = self.pause_seconds * 1024 / MEMORY_MB
        return Limits.model_validate({**base.model_dump(), **given})


@dataclass
class Bucket:
    """A token bucket like redis_rate's GCRA: `burst` tokens, refilled at `rate` per `period`."""

    rate: float
    burst: int
    period: float
    tokens: float = -1.0
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.burst)

    @property
    def per_second(self) -> float:
        return self.rate / self.period

    def take(self) -> tuple[bool, dict[str, str]]:
        """Take one token: (allowed, the RateLimit-* headers, plus Retry-After when refused)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        allowed = self.tokens >= 1.0
        if allowed:
            self.tokens -= 1.0
        headers = {
            "RateLimit-Limit": str(self.burst),
            "RateLimit-Remaining": str(math.floor(self.tokens)),
            "RateLimit-Reset": str(math.ceil((self.burst - self.tokens) / self.per_second)),
        }
        if not allowed:
            headers["Retry-After"] = str(max(int((1.0 - self.tokens) / self.per_second), 1))
        return allowed, headers


class Governor:
    """The limits in force, their buckets, and the refusals they caused."""

    def __init__(self, limits: Limits):
        self._startup = limits.model_copy()
        self.reset()

    def reset(self) -> None:
        self.current = self._startup.model_copy()
        self._buckets: dict[str, Bucket] = {}
        self.refused: Counter[str] = Counter()
        """429s answered by the limits, by `route`, `create` and `running`."""

    def update(self, change: LimitsUpdate) -> Limits:
        self.current = change.apply(self.current)
        self._buckets.clear()
        return self.current

    def _bucket(self, key: str, rate: float, burst: int, period: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None or (bucket.rate, bucket.burst, bucket.period) != (rate, burst, period):
            bucket = self._buckets[key] = Bucket(rate, burst, period)
        return bucket

    def check_route(self, route: str) -> dict[str, str]:
        """E2B's per-route limit; returns the headers for the answer, raises a 429 past it."""
        limits = self.current
        if limits.api_rate is None:
            return {}
        bucket = self._bucket(
            "route " + route, limits.api_rate, limits.api_rate, limits.api_rate_period
        )
        allowed, headers = bucket.take()
        if not allowed:
            self.refused["route"] += 1
            raise EmulatorError(429, RATE_LIMITED, headers=headers)
        return headers

    def check_create_rate(self) -> dict[str, str]:
        """The team's sandbox creation rate (every create call counts, replays included)."""
        rate = self.current.create_rate
        if rate is None:
            return {}
        allowed, headers = self._bucket("create", rate, max(1, math.ceil(rate)), 1.0).take()
        if not allowed:
            self.refused["create"] += 1
            raise EmulatorError(429, RATE_LIMITED, headers=headers)
        return headers

    def check_running(self, live: int) -> None:
        """E2B's concurrency limit, for a create or a resume: 429 without Retry-After."""
        limit = self.current.max_running
        if limit is None or live < limit:
            return
        self.refused["running"] += 1
        raise EmulatorError(
            429,
            f"you have reached the maximum number of concurrent E2B sandboxes ({limit}). "
            "If you need more, please visit 'https://e2b.dev/docs/billing'",
        )


def hours_or_seconds(seconds: int) -> str:
    """`1 hours` (E2B's wording, whole hours) or `90 seconds` for a shortened test limit."""
    return f"{seconds // 3600} hours" if seconds % 3600 == 0 else f"{seconds} seconds"
