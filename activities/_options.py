"""Activity options as one value the workflow splats into `execute_activity_method(...)`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

__all__ = ["ActivityOptions"]


@dataclass(frozen=True)
class ActivityOptions:
    """Timeouts and retry policy of one activity, kept next to the activity they govern."""

    start_to_close_timeout: timedelta
    retry_policy: RetryPolicy
    heartbeat_timeout: timedelta | None = None
    schedule_to_close_timeout: timedelta | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `workflow.execute_activity_method` (unset ones left out)."""
        options: dict[str, Any] = {
            "start_to_close_timeout": self.start_to_close_timeout,
            "retry_policy": self.retry_policy,
        }
        if self.heartbeat_timeout is not None:
            options["heartbeat_timeout"] = self.heartbeat_timeout
        if self.schedule_to_close_timeout is not None:
            options["schedule_to_close_timeout"] = self.schedule_to_close_timeout
        return options

    def with_start_to_close(self, timeout: timedelta) -> ActivityOptions:
        return replace(self, start_to_close_timeout=timeout)
