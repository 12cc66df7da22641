"""`sessions dev` as a person runs it: start, use, Ctrl-C, start again and find the session,
its sandbox gone with the previous run and said so: `lost`, billed up to that run's end."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.fixtures.cli import Cli, clean_env

BANNER_END = "sandbox was live then ends `lost`, billed up to the moment this one stopped."
"""The banner's last line: what a restart keeps, and what it does not."""


def _free_port(*, pair: bool = False) -> int:
    """A free port (and, with `pair`, the next one free too: the emulator's envd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no free port")


def _processes_using(path: Path) -> list[str]:
    """Processes whose command line or working directory mention `path` (orphans)."""
    found = []
    needle = str(path)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if needle in cmdline or cwd.startswith(needle):
            found.append(f"{pid}: {cmdline[:200]}")
    return found


class Dev:
    def __init__(self, home: Path, env: dict[str, str], ports: list[str]) -> None:
        self.home, self.env, self.ports = home, env, ports
        self.proc: asyncio.subprocess.Process | None = None
        self.banner: list[str] = []

    async def start(self) -> list[str]:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sessions",
            "dev",
            *self.ports,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.home,
        )
        assert self.proc.stdout is not None
        lines: list[str] = []
        while not any(line == BANNER_END for line in lines):
            raw = await asyncio.wait_for(self.proc.stdout.readline(), 60)
            if not raw:
                err = await self.proc.stderr.read()  # type: ignore[union-attr]
                raise AssertionError(f"sessions dev ended early: {lines} {err.decode()}")
            lines.append(raw.decode().rstrip())
        self.banner = lines
        return lines

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: SIGINT, as a terminal sends it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(self.proc.communicate(), 60)
        assert self.proc.returncode is not None
        return self.proc.returncode, err.decode()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


async def _log_in_to_the_inbox(port: int, name: str, token: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        page = await http.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]*)"', page.text)
        assert page.status_code == 200 and csrf, page.text
        done = await http.post("/login", data={"csrf": csrf[1], "name": name, "token": token})
        assert done.status_code == 303, done.text
        inbox = await http.get("/inbox")
        assert inbox.status_code == 200 and f'id="whoami">{name}<' in inbox.text


async def test_dev_runs_the_stack_stops_on_ctrl_c_and_keeps_sessions(tmp_path: Path) -> None:
    """A restart keeps Temporal's state and the ledger, not the sandboxes: the session that was
    running finds out at once (`sessions dev` asks it to check), ends `lost`, and its cost row
    bills it up to the moment the first `sessions dev` stopped, not a second more or less."""
    data = tmp_path / "data"
    port, ui_port, emu_port = _free_port(), _free_port(), _free_port(pair=True)
    web_port = _free_port()
    env = clean_env(SESSIONS_DATA_DIR=str(data), USER="dana")
    ports = ["--port", str(port), "--ui-port", str(ui_port), "--emulator-port", str(emu_port)]
    ports += ["--web-port", str(web_port)]
    cli = Cli(env=env, cwd=tmp_path)  # no TEMPORAL_ADDRESS: it must find dev.env
    dev = Dev(tmp_path, env, ports)
    try:
        banner = await dev.start()
        text = "\n".join(banner)
        assert f"http://127.0.0.1:{ui_port}" in text
        assert "sessions start --org demo --template demo-runner" in text
        assert (data / "dev.env").exists()
        async with httpx.AsyncClient() as http:  # the Web UI answers
            assert (await http.get(f"http://127.0.0.1:{ui_port}/")).status_code == 200
        # the approvals inbox: a local user, its token kept (never printed) in the data dir
        token_file = data / "web-token"
        inbox = f"inbox        http://127.0.0.1:{web_port}  (log in as dana: the token is in "
        assert inbox in text, text
        name, token = token_file.read_text().split()
        assert name == "dana" and token not in text
        for private in (token_file, data / "web-secret", data / "web-users"):
            assert private.stat().st_mode & 0o077 == 0, private
        await _log_in_to_the_inbox(web_port, name, token)

        sid = (await cli("start", "--org", "demo", "--template", "demo-runner")).ok().out.strip()
        for _ in range(100):
            status = json.loads((await cli("status", sid, "--json")).ok().out)
            if status["state"] == "running":
                break
            await asyncio.sleep(0.2)
        assert status["state"] == "running" and status["template_id"] == "demo-runner"
        slow = (await cli("exec", sid, "--timeout", "1", "--", "sleep", "5")).one_error_line()
        assert slow.startswith("error: ExecTimeout: ") and "ran past 1s" in slow, slow
        ran = (await cli("exec", sid, "--", "cat /home/user/runner.log | head -1")).ok()
        assert ran.out.strip(), "the demo runner writes its progress log"
        assert "Ctrl-C stops everything" in text and "not the sandboxes" in text
        assert not any(line.startswith("sessions dev: asked") for line in banner)  # none open

        await asyncio.sleep(2)  # left idle: its last sign of life is 2 s before the stop
        stopping = datetime.now(UTC)
        code, err = await dev.interrupt()
        stopped = datetime.now(UTC)
        assert code == 0 and "Traceback" not in err, err
        # the worker's warning about the failed exec: one line on the terminal, with its cause
        [warned] = [line for line in err.splitlines() if "ExecTimeout: " in line]
        assert warned.startswith("WARNING ") and "ran past 1s" in warned, err
        assert not (data / "dev.env").exists()
        assert _processes_using(data) == [] and _processes_using(tmp_path) == []
        down = await cli("status", sid, "--address", f"127.0.0.1:{port}")
        assert "cannot reach Temporal" in down.one_error_line()

        again = await dev.start()  # the same data directory: the session is still there
        restarted = asyncio.get_running_loop().time()
        # the same user and token: made once, kept across restarts
        assert token_file.read_text().split() == [name, token]
        await _log_in_to_the_inbox(web_port, name, token)
        assert "sessions dev: asked 1 open session to check its sandbox" in again, again
        listed = json.loads((await cli("list", "--json")).ok().out)
        assert sid in [row["session_id"] for row in listed]
        # ... but its sandbox died with the first run: the session says so within seconds
        # (about 1 s; left alone, it would find out at its next keep-alive, minutes later)
        while asyncio.get_running_loop().time() < restarted + 15:
            status = json.loads((await cli("status", sid, "--json")).ok().out)
            if status["state"] not in ("running", "provisioning"):
                break
            await asyncio.sleep(0.2)
        assert status["state"] == "lost", status
        assert "was lost" in status["error"], status
        plain = (await cli("status", sid)).ok().out
        assert "state     lost" in plain and "was lost" in plain, plain
        [event] = [e for e in json.loads((await cli("costs", "--json")).ok().out)]
        assert (event["session_id"], event["outcome"]) == (sid, "lost"), event
        ended = datetime.fromisoformat(event["ended_at"])
        # the emulator's state file knows when the first run killed it: during the stop
        slack = timedelta(milliseconds=50)
        assert stopping - slack <= ended <= stopped + slack, (event, stopping, stopped)
        assert event["running_seconds"] > 0
        code, err = await dev.interrupt()
        assert code == 0 and "Traceback" not in err, err
        assert _processes_using(tmp_path) == []
    finally:
        dev.kill()


async def test_dev_says_in_one_line_that_a_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        env = clean_env(SESSIONS_DATA_DIR=str(tmp_path / "data"))
        result = await Cli(env=env, cwd=tmp_path)(
            "dev",
            "--port",
            str(taken),
            "--ui-port",
            str(_free_port()),
            "--emulator-port",
            str(_free_port(pair=True)),
        )
    line = result.one_error_line()
    assert f"port {taken} (Temporal frontend, --port) is already in use" in line


async def test_emulator_command_serves_the_demo_templates_until_sigterm(tmp_path: Path) -> None:
    env = clean_env(SESSIONS_DATA_DIR=str(tmp_path / "data"))
    proc = await Cli(env=env, cwd=tmp_path).spawn(
        "emulator", "--port", "0", "--envd-port", "0", "--api-key", "e2b_cli_test"
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()  # type: ignore[union-attr]
        assert line.startswith("E2B emulator: API http://127.0.0.1:"), line
        api = line.split()[3]
        async with httpx.AsyncClient(headers={"X-API-Key": "e2b_cli_test"}) as http:
            created = await http.post(f"{api}/sandboxes", json={"templateID": "demo-runner"})
            assert created.status_code == 201, created.text
            assert created.json()["templateID"] == "demo-runner"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    bad = await Cli(env=env, cwd=tmp_path)("emulator", "--port", "many")
    assert "'many' is not a valid integer" in bad.one_error_line()
