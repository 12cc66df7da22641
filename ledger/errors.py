"""The ledger layer's exceptions: one root, so callers can catch every ledger failure at once."""

from __future__ import annotations

from common.errors import ConfigError


class LedgerError(Exception):
    """Root of every failure the billing ledger reports."""


class LedgerConfigError(LedgerError, ConfigError):
    """`LEDGER_URL` (or the URL given) cannot be used: a person must fix the setting."""


class LedgerUnavailable(LedgerError):
    """The database could not be reached or refused the statement; a retry may help."""
