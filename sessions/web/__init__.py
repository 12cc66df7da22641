"""The approvals inbox (`sessions web`): a server-rendered Starlette app where people see the gates
waiting across the fleet and decide them as themselves.

Loaded on first use, so `sessions --help` does not pay for Starlette and Jinja.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from sessions.web.app import build_app
    from sessions.web.auth import Viewer
    from sessions.web.server import inbox_key, run_inbox, serve
    from sessions.web.users import User, UsersError, UsersFile

__getattr__ = lazy_exports(
    __name__,
    {
        "build_app": "sessions.web.app",
        "Viewer": "sessions.web.auth",
        "inbox_key": "sessions.web.server",
        "run_inbox": "sessions.web.server",
        "serve": "sessions.web.server",
        "User": "sessions.web.users",
        "UsersError": "sessions.web.users",
        "UsersFile": "sessions.web.users",
    },
)

__all__ = [
    "User",
    "UsersError",
    "UsersFile",
    "Viewer",
    "build_app",
    "inbox_key",
    "run_inbox",
    "serve",
]
