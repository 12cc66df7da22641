"""`sessions web add-user`, `remove-user` and `users`, as an operator runs them."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessions.cli import main
from sessions.web.users import UsersFile
from tests.fixtures.cli import clean_env

pytestmark = pytest.mark.fast

PASSWORD = "a long enough password"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment whose data directory is a temp dir: the default users file is in it."""
    for name in list(os.environ):
        if name.startswith(("SESSIONS_", "TEMPORAL_", "LEDGER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SESSIONS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(
    capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None
) -> tuple[int, str, str]:
    if stdin is not None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "stdin", io.StringIO(stdin))
            code = main(["web", *args])
    else:
        code = main(["web", *args])
    out, err = capsys.readouterr()
    return code, out, err


async def test_add_user_prints_a_token_once_that_logs_in(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "add-user", "ana")
    assert (code, err) == (0, "")
    users_file = data_dir / "web-users"
    first, second = out.splitlines()
    assert first == f"user ana added to {users_file}"
    assert second.startswith("token (shown once, keep it): ")
    token = second.removeprefix("token (shown once, keep it): ")
    assert len(token) == 32
    user = await UsersFile(users_file).authenticate("ANA", token)
    assert user is not None
    assert user.hash not in out and token not in users_file.read_text()


def test_the_users_flag_beats_the_env_which_beats_the_data_dir(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from_env, from_flag = tmp_path / "env-users", tmp_path / "flag" / "users"
    monkeypatch.setenv("SESSIONS_WEB_USERS", str(from_env))
    assert run(capsys, "add-user", "ana")[0] == 0
    assert run(capsys, "add-user", "bob", "--users", str(from_flag))[0] == 0
    assert UsersFile(from_env).names() == ["ana"]
    assert UsersFile(from_flag).names() == ["bob"]
    assert not (data_dir / "web-users").exists()


async def test_an_existing_name_is_refused_then_replace_revokes_the_old_token(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users_file = data_dir / "web-users"
    old = run(capsys, "add-user", "ana")[1].splitlines()[1].rsplit(" ", 1)[1]
    code, out, err = run(capsys, "add-user", "ANA")
    assert (code, out) == (2, "")
    assert err == f"error: user ana is already in {users_file} (--replace gives them a new one)\n"
    code, out, err = run(capsys, "add-user", "ANA", "--replace")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"user ANA replaced in {users_file}"
    new = out.splitlines()[1].rsplit(" ", 1)[1]
    assert await UsersFile(users_file).authenticate("ana", old) is None
    assert await UsersFile(users_file).authenticate("ana", new) is not None


async def test_password_from_stdin_prints_only_the_first_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "add-user", "ana", "--password", stdin=PASSWORD + "\nignored\n")
    assert (code, err) == (0, "")
    assert out == f"user ana added to {data_dir / 'web-users'}\n"
    users = UsersFile(data_dir / "web-users")
    assert await users.authenticate("ana", PASSWORD) is not None
    assert await users.authenticate("ana", PASSWORD + "\n") is None


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("short\n", "error: the password must be at least 12 characters\n"),
        ("elevenchars\n", "error: the password must be at least 12 characters\n"),
        ("", "error: no password on stdin: give it as one line\n"),
        ("x" * 1025 + "\n", "error: the password may be at most 1024 characters\n"),
    ],
)
def test_a_bad_password_is_refused_and_nothing_written(
    stdin: str, message: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "add-user", "ana", "--password", stdin=stdin)
    assert (code, out, err) == (2, "", message)
    assert not (data_dir / "web-users").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a:b", "error: user name may not contain ':'\n"),
        ("  ", "error: user name may not be empty\n"),
        ("ana\x1b[2J", "error: user name may not contain a control character (0x1b)\n"),
    ],
)
def test_a_bad_name_is_one_error_line(
    name: str, message: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "add-user", name) == (2, "", message)
    assert not (data_dir / "web-users").exists()


def test_users_lists_one_name_per_line(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "users")
    assert (code, out) == (0, "")
    assert err == f"no users in {data_dir / 'web-users'} (sessions web add-user NAME)\n"
    for name in ("carol", "Ana López", "bob"):
        assert run(capsys, "add-user", name)[0] == 0
    assert run(capsys, "users") == (0, "Ana López\nbob\ncarol\n", "")


def test_remove_user(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users_file = data_dir / "web-users"
    run(capsys, "add-user", "ana")
    run(capsys, "add-user", "bob")
    assert run(capsys, "remove-user", "ANA") == (0, f"user ANA removed from {users_file}\n", "")
    assert run(capsys, "users") == (0, "bob\n", "")


def test_remove_user_of_an_absent_name_exits_1(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users_file = data_dir / "web-users"
    assert run(capsys, "remove-user", "zed") == (1, "", f"error: no user zed in {users_file}\n")
    run(capsys, "add-user", "ana")
    assert run(capsys, "remove-user", "zed") == (1, "", f"error: no user zed in {users_file}\n")


def test_a_malformed_file_is_one_line_naming_the_line_not_the_hash(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users_file = data_dir / "web-users"
    users_file.parent.mkdir(parents=True)
    users_file.write_text("ana:scrypt$16384$8$1$c2VjcmV0LXNhbHQ=$secret-hash-bits\n")
    for args in (("users",), ("add-user", "bob"), ("remove-user", "ana")):
        code, out, err = run(capsys, *args)
        assert (code, out) == (2, "")
        assert err == (
            f"error: {users_file} line 1: the hash of user ana is not one `sessions web "
            "add-user` writes\n"
        )


def test_a_bad_setting_is_reported_before_anything_happens(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SESSIONS_WEB_AUTH", "nobody")
    code, out, err = run(capsys, "add-user", "ana")
    assert (code, out) == (2, "")
    assert err.startswith("error: SESSIONS_WEB_AUTH must be") and err.count("\n") == 1
    assert not (data_dir / "web-users").exists()


# ---------------------------------------------------------------- as a process


def _sessions(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessions", "web", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(SESSIONS_DATA_DIR=str(tmp_path / "data")),
        timeout=60,
        check=False,
    )


def test_the_command_with_a_piped_password(tmp_path: Path) -> None:
    users_file = tmp_path / "data" / "web-users"
    done = _sessions(tmp_path, "add-user", "ana", "--password", stdin=PASSWORD + "\n")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"user ana added to {users_file}\n",
        "",
    )
    short = _sessions(tmp_path, "add-user", "bob", "--password", stdin="too short\n")
    assert (short.returncode, short.stdout) == (2, "")
    assert short.stderr == "error: the password must be at least 12 characters\n"
    listed = _sessions(tmp_path, "users")
    assert (listed.returncode, listed.stdout) == (0, "ana\n")
    gone = _sessions(tmp_path, "remove-user", "nobody")
    assert (gone.returncode, gone.stderr) == (1, f"error: no user nobody in {users_file}\n")


def _read_until(fd: int, wanted: bytes, seen: bytearray, deadline: float) -> None:
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"waited for {wanted!r}, saw {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"closed before {wanted!r}, saw {bytes(seen)!r}"
            seen += chunk


async def test_at_a_terminal_the_password_is_asked_twice_and_not_echoed(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessions", "web", "add-user", "ana", "--password"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(SESSIONS_DATA_DIR=str(tmp_path / "data")),
        start_new_session=True,  # no controlling terminal: it must not find the one running us
    )
    os.close(follower)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        prompts, deadline = bytearray(), time.monotonic() + 30
        _read_until(proc.stderr.fileno(), b"Password: ", prompts, deadline)
        os.write(leader, PASSWORD.encode() + b"\n")
        _read_until(proc.stderr.fileno(), b"Repeat for confirmation: ", prompts, deadline)
        os.write(leader, PASSWORD.encode() + b"\n")
        assert proc.wait(30) == 0
        out = proc.stdout.read().decode()
        err = prompts + proc.stderr.read()
        echoed = bytearray()
        while select.select([leader], [], [], 0)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            echoed += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(leader)
    assert out == f"user ana added to {tmp_path / 'data' / 'web-users'}\n"
    assert PASSWORD.encode() not in err and PASSWORD.encode() not in echoed
    assert await UsersFile(tmp_path / "data" / "web-users").authenticate("ana", PASSWORD)
