"""The inline runner: started detached through the exec path, at most once per sandbox."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

RUNNER_LOG = "/tmp/donmai-runner.log"
RUNNER_PID_FILE = "/tmp/donmai-runner.pid"
LAUNCH_TIMEOUT_SECONDS = 60.0


def launch_script(command: str) -> str:
    """A bash script that starts `command` detached and prints `started <pid>`, or prints
    `running <pid>` when the pid file names a live process (a retried provision).

    `nohup` + `setsid` take the runner out of the launching command's process group and
    session, so it survives the command's end, the stream's close and the client going away.
    A background job of a non-interactive shell is no group leader, so `setsid` runs in the
    same process and `$!` is the runner's pid.
    """
    quoted = shlex.quote(command)
    return f"""\
set -e
pidfile={RUNNER_PID_FILE}
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "running $(cat "$pidfile")"; exit 0
fi
: >> "$pidfile"  # fail before launching when the pid file cannot be written
detach=""; command -v setsid >/dev/null 2>&1 && detach=setsid
nohup $detach /bin/bash -c {quoted} > {RUNNER_LOG} 2>&1 < /dev/null &
echo $! > "$pidfile"
echo "started $!"
"""


def launch_env(session_env: Mapping[str, str] | None) -> dict[str, str] | None:
    """The environment the launch (and so the runner) gets on top of the sandbox's: the
    session's env vars, always given explicitly.

    E2B's envd applies the envs given at create to every command started later, yet that is not
    enough: a snapshot pool's sandbox was created for another session (its create-time envs are
    that session's), and a template's start command ran when the template was built, before any
    session existed. Per-command envs override the sandbox's, as in envd.
    """
    return dict(session_env) if session_env else None


def parse_launch(stdout: str) -> tuple[bool, int | None]:
    """(started now, pid) from the script's last line."""
    for line in reversed(stdout.strip().splitlines()):
        word, _, pid = line.strip().partition(" ")
        if word in ("started", "running"):
            return word == "started", int(pid) if pid.isdigit() else None
    return False, None
