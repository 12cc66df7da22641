"""Temporal activities: the sandbox's (provider injected) and the billing ledger's."""

from activities._options import ActivityOptions
from activities.ledger import LedgerActivities
from activities.sandbox import (
    CAPABILITIES_OPTIONS,
    EXEC_OPTIONS,
    KEEP_ALIVE_OPTIONS,
    NON_RETRYABLE_ERROR_TYPES,
    PAUSE_OPTIONS,
    PROVISION_OPTIONS,
    RESUME_OPTIONS,
    TERMINATE_OPTIONS,
    SandboxActivities,
    to_application_error,
)

__all__ = [
    "CAPABILITIES_OPTIONS",
    "EXEC_OPTIONS",
    "KEEP_ALIVE_OPTIONS",
    "NON_RETRYABLE_ERROR_TYPES",
    "PAUSE_OPTIONS",
    "PROVISION_OPTIONS",
    "RESUME_OPTIONS",
    "TERMINATE_OPTIONS",
    "ActivityOptions",
    "LedgerActivities",
    "SandboxActivities",
    "to_application_error",
]
