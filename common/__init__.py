"""What every layer shares: its errors, the names that tie the layers together, the settings,
and the Temporal connection.

Nothing here imports another part of this product: `provider`, `ledger`, `telemetry`,
`activities`, `workflows`, `worker.py` and `sessions` all build on it (the import-linter
contracts in `pyproject.toml`).
"""

from common.errors import ConfigError, SessionsError, TemporalUnreachable
from common.ids import (
    DEFAULT_TASK_QUEUE,
    MANAGED_BY,
    MANAGED_BY_KEY,
    SESSION_WORKFLOW_PREFIX,
    session_id_of,
    workflow_id_for,
)

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "MANAGED_BY",
    "MANAGED_BY_KEY",
    "SESSION_WORKFLOW_PREFIX",
    "ConfigError",
    "SessionsError",
    "TemporalUnreachable",
    "session_id_of",
    "workflow_id_for",
]
