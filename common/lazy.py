"""Names a package exports but loads on first use (PEP 562), for heavy parts behind light ones.

The provider's E2B SDK, the ledger's SQLAlchemy and the CLI's Temporal client stay unloaded until
something asks for them: workflow code imports the provider's and the ledger's models, and
`sessions --help` answers at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `name` from the module `where[name]` when first used."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
