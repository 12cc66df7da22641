"""`sessions web`: serve the approvals inbox; `sessions web add-user` and friends manage its
users."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from common.cli import CONTEXT_SETTINGS
from common.errors import SessionsError
from common.text import escape
from sessions.web.users import UsersError, UsersFile, check_name, check_secret, new_token


@click.group(
    "web", invoke_without_command=True, context_settings=CONTEXT_SETTINGS, no_args_is_help=False
)
@click.option("--host", help="Listen address (env SESSIONS_WEB_HOST; 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (env SESSIONS_WEB_PORT; 8088).")
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> int | None:
    """Serve the approvals inbox: the gates waiting across the fleet, each session's history and
    cost, and approve or reject as the logged-in user.

    \b
    Log-in: users with hashed tokens (`sessions web add-user NAME`, SESSIONS_WEB_USERS), or a
    trusted proxy's header (SESSIONS_WEB_AUTH=proxy). Needs SESSIONS_WEB_SECRET, the key the
    workers also sign their notices' one-click links with.
    """
    if ctx.invoked_subcommand is not None:
        return None
    from sessions.web.server import serve

    return serve(host=host, port=port)


# ---------------------------------------------------------------- users
# (add-user, remove-user, users: see sessions/web/users.py)

_USERS_OPTION = click.option(
    "--users",
    "users_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The users file (env SESSIONS_WEB_USERS; `web-users` in the data directory).",
)


def _users_file(path: Path | None) -> UsersFile:
    """`--users` > SESSIONS_WEB_USERS > `web-users` in the data directory."""
    from common.settings import WebSettings

    return UsersFile(WebSettings.load(web_users=path).users_file)


def _read_password() -> str:
    """Typed twice, hidden, at a terminal; else the first line of stdin (a script, a pipe)."""
    stdin = sys.stdin
    if stdin is None:
        raise UsersError("no password: stdin is closed")
    if stdin.isatty():
        value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
        return value
    line = stdin.readline()
    if not line:
        raise UsersError("no password on stdin: give it as one line")
    return line.removesuffix("\n").removesuffix("\r")


@web.command("add-user", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option(
    "--password",
    is_flag=True,
    help="Set a password (typed twice, or one line on stdin) instead of a generated token.",
)
@click.option("--replace", is_flag=True, help="Give an existing user a new secret; the old stops.")
@_USERS_OPTION
def add_user(name: str, password: bool, replace: bool, users_path: Path | None) -> int:
    """Let NAME log in to the inbox: prints a new token once (only its hash is stored), or sets
    the password given with --password. At least 12 characters either way."""
    name = check_name(name)
    users = _users_file(users_path)
    existing = users.get(name)  # asked first: no password typed for nothing
    if existing is not None and not replace:
        raise users.taken(existing)
    secret = _read_password() if password else new_token()
    check_secret(secret, what="password" if password else "token")
    users.add(name, secret, replace=replace)
    click.echo(
        f"user {escape(name)} {'replaced in' if existing is not None else 'added to'} {users.path}"
    )
    if not password:
        click.echo(f"token (shown once, keep it): {secret}")
    return 0


@web.command("remove-user", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@_USERS_OPTION
def remove_user(name: str, users_path: Path | None) -> int:
    """Stop NAME logging in; their log-in cookies stop working too."""
    users = _users_file(users_path)
    if not users.remove(name):
        raise SessionsError(f"no user {escape(name.strip())} in {users.path}")
    click.echo(f"user {escape(name.strip())} removed from {users.path}")
    return 0


@web.command("users", context_settings=CONTEXT_SETTINGS)
@_USERS_OPTION
def list_users(users_path: Path | None) -> int:
    """The inbox's users, one name a line."""
    users = _users_file(users_path)
    names = users.names()
    for name in names:
        click.echo(escape(name))
    if not names:
        click.echo(f"no users in {users.path} (sessions web add-user NAME)", err=True)
    return 0
