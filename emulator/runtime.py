"""Where a sandbox's processes live: Linux namespaces when permitted, plain processes otherwise.

Namespace mode (root): each sandbox has a long-lived init process made by
`unshare --mount --pid --fork --mount-proc --kill-child`, with the sandbox's own directories
bind-mounted over /home/user, /tmp and /root, and its own /etc/passwd and /etc/group (the
host's entries with E2B's `user`, uid 1000, in place of whatever uid 1000 is on the host).
Commands join its namespaces with `nsenter` and drop to their user with `setpriv`, so a
sandbox sees only its own files there and only its own processes, and runs as `user` as on
E2B. Killing init ends the whole pid namespace. Every helper carries a parent-death signal,
so a SIGKILLed emulator leaves nothing behind.

Process mode (no privileges): commands are plain process groups of the emulator's own user
whose cwd and HOME point into the sandbox's directory; /tmp is the host's. Nothing is
isolated beyond that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("emulator")

SANDBOX_HOME = "/home/user"
SANDBOX_UID = 1000
"""E2B's `user` (uid and gid 1000), the default user of every command and file operation."""

_PROFILE = """\
# ~/.profile, as in a Debian image: tools in ~/.local/bin are on PATH.
if [ -d "$HOME/bin" ] ; then PATH="$HOME/bin:$PATH"; fi
if [ -d "$HOME/.local/bin" ] ; then PATH="$HOME/.local/bin:$PATH"; fi
"""

# /tmp last: the sources may live under the host's /tmp (the default data dir does).
_INIT = (
    'mount --bind "$1" /home/user && mount --bind "$3" /root && mount --bind "$4" /etc/passwd '
    '&& mount --bind "$5" /etc/group && mount --bind "$2" /tmp || exit 1; '
    "echo ready; exec >/dev/null 2>&1 </dev/null; "
    "while :; do sleep 3600 & wait $!; done"
)


class RuntimeError_(Exception):
    """A sandbox could not be started or a process could not be spawned in it."""


@dataclass(frozen=True)
class Credentials:
    """Who a process runs as (namespace mode); process mode runs everything as itself."""

    uid: int = SANDBOX_UID
    gid: int = SANDBOX_UID


@dataclass
class Spawned:
    proc: asyncio.subprocess.Process
    pid: int
    """The pid the sandbox itself sees (namespace pid in namespace mode)."""
    host_pid: int
    """Leader of the process group to signal (0: unknown because it already ended)."""


def _pdeathsig_prefix() -> list[str]:
    return ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []


def namespaces_available() -> bool:
    """True when unshare of mount+pid namespaces works here (root on Linux)."""
    if os.geteuid() != 0 or not all(
        shutil.which(t) for t in ("unshare", "nsenter", "setsid", "setpriv")
    ):
        return False
    try:
        result = subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def _ensure_mount_point() -> None:
    os.makedirs(SANDBOX_HOME, exist_ok=True)


def _without_uid(path: str, ident: int, name: str) -> list[str]:
    """The host's passwd/group lines, minus `name` and whatever has id `ident` (E2B's user's)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        lines = []
    kept = []
    for line in lines:
        fields = line.split(":")
        if len(fields) > 2 and (fields[0] == name or fields[2] == str(ident)):
            continue
        kept.append(line)
    return kept


def sandbox_passwd() -> str:
    """/etc/passwd of a sandbox: the host's entries with `user` (1000:1000) as on E2B."""
    lines = _without_uid("/etc/passwd", SANDBOX_UID, "user")
    lines.append(f"user:x:{SANDBOX_UID}:{SANDBOX_UID}::{SANDBOX_HOME}:/bin/bash")
    return "\n".join(lines) + "\n"


def sandbox_group() -> str:
    lines = _without_uid("/etc/group", SANDBOX_UID, "user")
    lines.append(f"user:x:{SANDBOX_UID}:")
    return "\n".join(lines) + "\n"


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give the home (and the template files put there) to E2B's user, links untouched."""
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


class _Base:
    """Directories shared by both modes: `<root>/home` (/home/user) and `<root>/tmp` (/tmp)."""

    def __init__(self, root: Path, sandbox_id: str):
        self.root = root
        self.sandbox_id = sandbox_id
        self.home = root / "home"
        self.tmp = root / "tmp"
        self._spawned: list[Spawned] = []

    def prepare(self) -> None:
        for d in (self.home, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.tmp.chmod(0o1777)
        profile = self.home / ".profile"
        if not profile.exists():
            profile.write_text(_PROFILE)

    def private_path(self, path: str) -> Path | None:
        """Host path of a sandbox path under /home/user or /tmp (None elsewhere)."""
        p = os.path.normpath("/" + path.lstrip("/"))
        for prefix, base in ((SANDBOX_HOME, self.home), ("/tmp", self.tmp)):
            if p == prefix or p.startswith(prefix + "/"):
                return base / p[len(prefix) :].lstrip("/")
        return None

    def _cleanup_dirs(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _signal_groups(self, sig: int) -> None:
        for s in self._spawned:
            if s.proc.returncode is None and s.host_pid > 0:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(s.host_pid, sig)


class NamespaceRuntime(_Base):
    """Mount + pid namespaces around a per-sandbox init."""

    isolated = True

    def __init__(self, root: Path, sandbox_id: str):
        super().__init__(root, sandbox_id)
        self._unshare: asyncio.subprocess.Process | None = None
        self.init_pid: int | None = None
        self._ns: str | None = None

    async def start(self) -> None:
        self.prepare()
        _ensure_mount_point()
        etc, root_home = self.root / "etc", self.root / "root"
        etc.mkdir(exist_ok=True)
        root_home.mkdir(mode=0o700, exist_ok=True)
        (etc / "passwd").write_text(sandbox_passwd())
        (etc / "group").write_text(sandbox_group())
        for f in ("passwd", "group"):
            (etc / f).chmod(0o644)
        await asyncio.to_thread(_chown_tree, self.home, SANDBOX_UID, SANDBOX_UID)
        self._unshare = await asyncio.create_subprocess_exec(
            *_pdeathsig_prefix(),
            "unshare", "--mount", "--propagation", "private", "--pid", "--fork",
            "--mount-proc", "--kill-child", "--",
            "/bin/bash", "--noprofile", "--norc", "-c", _INIT,
            "init", str(self.home), str(self.tmp), str(root_home),
            str(etc / "passwd"), str(etc / "group"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        assert self._unshare.stdout is not None
        try:
            line = await asyncio.wait_for(self._unshare.stdout.readline(), 10)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            err = b""
            with contextlib.suppress(Exception):
                self._unshare.kill()
                err = await asyncio.wait_for(self._unshare.stderr.read(), 2)  # type: ignore[union-attr]
            raise RuntimeError_(f"sandbox init failed: {err.decode(errors='replace').strip()}")
        pid = self._unshare.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        self.init_pid = int(children[0])
        self._ns = os.readlink(f"/proc/{self.init_pid}/ns/pid")

    def host_path(self, path: str) -> Path:
        """The host path through which this sandbox's view of `path` is reached."""
        p = os.path.normpath("/" + path.lstrip("/"))
        return Path(f"/proc/{self.init_pid}/root") / p.lstrip("/")

    async def spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        stdin: bool,
        user: Credentials | None = None,
    ) -> Spawned:
        """Start `argv` in the sandbox as `user` (default E2B's `user`) in `cwd`."""
        user = user or Credentials()
        r, w = os.pipe()
        wrapper = (
            f'[ -d "$1" ] || {{ echo cwd >&{w}; exit 1; }}; '
            f'cd -- "$1" 2>/dev/null || {{ echo chdir >&{w}; exit 1; }}; shift; '
            f'echo "$$" >&{w}; exec {w}>&-; exec "$@"'
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *_pdeathsig_prefix(),
                "nsenter", "-t", str(self.init_pid), "-m", "-p", "--",
                "setsid", "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
                "--init-groups",
                "/bin/bash", "--noprofile", "--norc", "-c", wrapper, "wrap", cwd, *argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                pass_fds=(w,),
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(w)
        loop = asyncio.get_running_loop()
        try:
            raw = await loop.run_in_executor(None, _read_line, r)
        finally:
            os.close(r)
        text = raw.decode().strip()
        if not text.isdigit():
            with contextlib.suppress(Exception):
                await proc.wait()
            if text == "cwd":
                raise RuntimeError_(f"cwd '{cwd}' does not exist")
            if text == "chdir":
                raise RuntimeError_(f"error starting process: chdir {cwd}: permission denied")
            raise RuntimeError_("the process could not be started in the sandbox")
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:  # already finished (and nsenter reaped): nothing left to signal
            children = []
        host_pid = int(children[0]) if children else 0
        spawned = Spawned(proc=proc, pid=int(text), host_pid=host_pid)
        self._spawned = [s for s in self._spawned if s.proc.returncode is None] + [spawned]
        return spawned

    def _namespace_pids(self) -> set[int]:
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") == self._ns:
                        pids.add(int(entry))
        return pids

    def freeze(self) -> None:
        """SIGSTOP every process of the namespace, re-scanning until nothing new appeared."""
        stopped: set[int] = set()
        for _ in range(10):
            pids = self._namespace_pids() - stopped
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= pids

    def thaw(self) -> None:
        # nsenter (outside the namespace) stops itself when its child stops: wake it too.
        waiters = {s.proc.pid for s in self._spawned if s.proc.returncode is None}
        for pid in self._namespace_pids() | waiters:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def processes_alive(self) -> int:
        return len(self._namespace_pids())

    async def destroy(self) -> None:
        """Kill init (the kernel then kills the whole namespace) and remove the files."""
        # Only init: unshare, its parent, reaps it and exits (killing unshare first would
        # leave init a zombie of whatever reaps orphans here).
        if self.init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        # The nsenter waiters must reap their (now killed) children, or the namespace cannot
        # finish dying: wake them in case a pause stopped them.
        for s in self._spawned:
            if s.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s.proc.pid, signal.SIGCONT)
        if self._unshare is not None:
            try:
                await asyncio.wait_for(self._unshare.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._unshare.kill()
                await self._unshare.wait()
        for s in self._spawned:
            try:
                await asyncio.wait_for(s.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    s.proc.kill()
        await asyncio.to_thread(self._cleanup_dirs)


class ProcessRuntime(_Base):
    """Fallback without privileges: process groups, cwd and HOME inside the sandbox dir."""

    isolated = False

    async def start(self) -> None:
        self.prepare()

    def host_path(self, path: str) -> Path:
        private = self.private_path(path)
        return private if private is not None else Path(os.path.normpath("/" + path.lstrip("/")))

    async def spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        stdin: bool,
        user: Credentials | None = None,
    ) -> Spawned:
        """Start `argv` as the emulator's own user (`user` cannot be switched to without root)."""
        host_cwd = self.host_path(cwd)
        if not host_cwd.is_dir():
            raise RuntimeError_(f"cwd '{cwd}' does not exist")
        env = {**env, "HOME": str(self.home), "TMPDIR": str(self.tmp)}
        proc = await asyncio.create_subprocess_exec(
            *_pdeathsig_prefix(),
            *argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(host_cwd),
            start_new_session=True,
        )
        spawned = Spawned(proc=proc, pid=proc.pid, host_pid=proc.pid)
        self._spawned = [s for s in self._spawned if s.proc.returncode is None] + [spawned]
        return spawned

    def freeze(self) -> None:
        self._signal_groups(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_groups(signal.SIGCONT)

    def processes_alive(self) -> int:
        return sum(1 for s in self._spawned if s.proc.returncode is None)

    async def destroy(self) -> None:
        self._signal_groups(signal.SIGKILL)
        for s in self._spawned:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.proc.wait(), 5)
        await asyncio.to_thread(self._cleanup_dirs)


def _read_line(fd: int) -> bytes:
    """One line from the wrapper (nsenter keeps the pipe open, so never wait for EOF)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data


Runtime = NamespaceRuntime | ProcessRuntime
