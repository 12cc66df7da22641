"""The one shape of every activity's retry policy: exponential backoff (doubling from
`initial` to `maximum` seconds) that never retries the error types no retry can fix."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio.common import RetryPolicy


def backoff(
    *,
    initial: float = 1.0,
    maximum: float = 30.0,
    attempts: int = 0,
    non_retryable: Sequence[str] = (),
) -> RetryPolicy:
    """`attempts` 0: until the activity's schedule-to-close timeout (or forever without one)."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=maximum),
        maximum_attempts=attempts,
        non_retryable_error_types=list(non_retryable),
    )
