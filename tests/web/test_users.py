"""The inbox's users file: what a person logging in, or an operator, would notice."""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sessions.web import users as users_mod
from sessions.web.users import (
    User,
    UsersError,
    UsersFile,
    check_name,
    check_secret,
    hash_secret,
    new_token,
    verify_secret,
)

pytestmark = pytest.mark.fast

TOKEN = "correct horse battery staple"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stored(n: Any = 16384, r: Any = 8, p: Any = 1, salt: str = "", digest: str = "") -> str:
    return f"scrypt${n}${r}${p}${salt or _b64(b's' * 16)}${digest or _b64(b'h' * 32)}"


def _spy_scrypt(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """hashlib.scrypt replaced by a recorder: what it holds is every hash that would have run."""
    calls: list[dict[str, Any]] = []

    def scrypt(*args: Any, **kwargs: Any) -> bytes:
        calls.append(kwargs)
        return b""

    monkeypatch.setattr(users_mod.hashlib, "scrypt", scrypt)
    return calls


# ---------------------------------------------------------------- hashes


def test_hash_verifies_only_its_own_secret() -> None:
    stored = hash_secret(TOKEN)
    assert verify_secret(stored, TOKEN)
    assert not verify_secret(stored, TOKEN + " ")
    assert not verify_secret(stored, TOKEN.upper())
    assert not verify_secret(stored, "")


def test_hash_is_salted_scrypt_in_the_documented_form() -> None:
    first, second = hash_secret(TOKEN), hash_secret(TOKEN)
    assert first != second  # a fresh salt each time
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 32
    assert TOKEN not in first


def test_a_secret_that_is_not_utf8_still_hashes() -> None:
    odd = "abc\udcff" * 4  # what Python makes of argv bytes that are not UTF-8
    assert verify_secret(hash_secret(odd), odd)
    assert not verify_secret(hash_secret(odd), "abc" * 4)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain text",
        "scrypt$16384$8$1$c2FsdA==",
        _stored().replace("scrypt", "bcrypt"),
        _stored(salt="not base64!"),
        _stored(digest="***"),
        _stored(salt=_b64(b"s")),  # a 1-byte salt
        _stored(digest=_b64(b"h" * 4)),  # a 4-byte hash
        _stored(n=1000),  # not a power of two
        _stored(n=" 16384"),
        _stored(n="016384"),
        _stored(n="1_6384"),
        _stored(n="\u0661\u0666\u0663\u0668\u0664"),  # Arabic-Indic digits int() would accept
        _stored(r=0),
        _stored(p=-1),
        _stored() + "$extra",
        "$" * 10_000,
    ],
)
def test_a_malformed_stored_hash_verifies_nothing_and_raises_nothing(stored: str) -> None:
    assert verify_secret(stored, TOKEN) is False


@pytest.mark.parametrize(
    "stored",
    [
        _stored(n=2**30),  # would need 1 TiB
        _stored(n=2**20),  # 1 GiB at r=8
        _stored(n=2**14, r=10**6),
        _stored(n=2**14, p=10**6),  # minutes of work
        _stored(n=10**200),
    ],
)
def test_a_hostile_stored_hash_is_refused_without_being_run(
    stored: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy_scrypt(monkeypatch)
    started = time.monotonic()
    assert verify_secret(stored, TOKEN) is False
    assert time.monotonic() - started < 0.5
    assert calls == []


def test_new_tokens_are_long_random_and_url_safe() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert len(token) == 32
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# ---------------------------------------------------------------- names and secrets


def test_a_name_is_stripped_and_keeps_inner_spaces_and_unicode() -> None:
    assert check_name("  Ana López \n") == "Ana López"
    assert check_name("ana@example.com") == "ana@example.com"
    assert check_name("x" * 200) == "x" * 200


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "user name may not be empty"),
        ("   ", "user name may not be empty"),
        ("x" * 201, "user name may be at most 200 characters, not 201"),
        ("ana:admin", "user name may not contain ':'"),
        ("ana\nroot:scrypt", "user name may not contain a control character (0xa)"),
        ("ana\x1b[31m", "user name may not contain a control character (0x1b)"),
        ("ana\u202eevil", "user name may not contain a control character (0x202e)"),
    ],
)
def test_a_bad_name_is_refused_saying_why(name: str, message: str) -> None:
    with pytest.raises(UsersError) as err:
        check_name(name)
    assert str(err.value) == message
    assert err.value.exit_code == 2


def test_a_secret_must_be_12_to_1024_characters() -> None:
    assert check_secret("x" * 12) == "x" * 12
    with pytest.raises(UsersError, match="the password must be at least 12 characters"):
        check_secret("x" * 11, what="password")
    with pytest.raises(UsersError, match="at most 1024"):
        check_secret("x" * 1025)


def test_a_user_never_shows_its_hash() -> None:
    user = User("ana", hash_secret(TOKEN))
    assert user.hash not in repr(user)
    assert user.fingerprint_source == user.hash


# ---------------------------------------------------------------- the file


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "conf" / "web-users"


async def test_a_missing_file_means_no_users(path: Path) -> None:
    users = UsersFile(path)
    assert users.get("ana") is None
    assert users.names() == []
    assert await users.authenticate("ana", TOKEN) is None
    assert not users.remove("ana")
    assert not path.exists()


async def test_the_right_token_logs_in_and_a_wrong_one_does_not(path: Path) -> None:
    users = UsersFile(path)
    added = users.add("Ana", TOKEN)
    assert added.name == "Ana"
    assert await users.authenticate("Ana", TOKEN) == added
    assert await users.authenticate("Ana", TOKEN[:-1]) is None
    assert await users.authenticate("Ana", "") is None
    assert await users.authenticate("Bob", TOKEN) is None


async def test_names_are_case_insensitive(path: Path) -> None:
    users = UsersFile(path)
    users.add("Ana", TOKEN)
    assert users.get("ANA") == users.get("ana") == users.get(" ana ")
    assert (await users.authenticate("aNa", TOKEN)) is not None
    with pytest.raises(UsersError, match="user Ana is already in"):
        users.add("ANA", "another secret 123")
    assert users.names() == ["Ana"]


async def test_replace_revokes_the_old_token(path: Path) -> None:
    users = UsersFile(path)
    old = users.add("ana", TOKEN)
    new = users.add("ANA", "the new token 12345", replace=True)
    assert await users.authenticate("ana", TOKEN) is None
    assert await users.authenticate("ana", "the new token 12345") == new
    assert new.fingerprint_source != old.fingerprint_source  # old cookies stop too
    assert users.names() == ["ANA"]
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert [line.split(":")[0] for line in lines] == ["ANA"]


async def test_replace_of_a_new_name_adds_it(path: Path) -> None:
    users = UsersFile(path)
    users.add("ana", TOKEN, replace=True)
    assert await users.authenticate("ana", TOKEN) is not None


def test_the_file_is_mode_0600_its_directory_made_and_no_temp_file_left(path: Path) -> None:
    UsersFile(path).add("ana", TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["web-users"]
    path.chmod(0o644)
    UsersFile(path).add("bob", TOKEN)  # a rewrite makes it private again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_file_holds_only_hashes_and_keeps_comments(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("# operators\n\n")
    users = UsersFile(path)
    users.add("ana", TOKEN)
    users.add("bob", "bob's secret 12345")
    users.remove("ana")
    text = path.read_text()
    assert text.startswith("# operators\n\n")
    assert TOKEN not in text and "bob's secret" not in text
    assert [line.split(":")[0] for line in text.splitlines()[2:]] == ["bob"]


def test_a_running_reader_sees_adds_replaces_and_removes(path: Path) -> None:
    server = UsersFile(path)
    assert server.get("ana") is None
    UsersFile(path).add("ana", TOKEN)  # `sessions web add-user` in another process
    first = server.get("ana")
    assert first is not None
    UsersFile(path).add("ana", TOKEN, replace=True)  # same size, maybe the same mtime
    second = server.get("ana")
    assert second is not None and second.hash != first.hash
    UsersFile(path).remove("ANA")
    assert server.get("ana") is None
    path.unlink()
    assert server.names() == []


def test_remove_says_whether_there_was_such_a_user(path: Path) -> None:
    users = UsersFile(path)
    users.add("ana", TOKEN)
    assert not users.remove("zed")
    assert not users.remove("a:b")
    assert users.remove("ANA")
    assert users.names() == []


def test_names_are_sorted_regardless_of_case(path: Path) -> None:
    users = UsersFile(path)
    for name in ("carol", "Bob", "ana"):
        users.add(name, TOKEN)
    assert users.names() == ["ana", "Bob", "carol"]


def test_concurrent_adds_from_threads_keep_every_user(path: Path) -> None:
    names = [f"user{i}" for i in range(16)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def add(name: str) -> None:
        try:
            start.wait()
            UsersFile(path).add(name, TOKEN)
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=add, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert UsersFile(path).names() == sorted(names)
    assert os.listdir(path.parent) == ["web-users"]


def test_a_failed_write_leaves_the_old_file_whole(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = UsersFile(path)
    users.add("ana", TOKEN)
    before = path.read_text()

    def broken(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(users_mod.os, "replace", broken)
    with pytest.raises(UsersError, match="cannot write the users file .*: No space left"):
        users.add("bob", TOKEN)
    monkeypatch.undo()
    assert path.read_text() == before
    assert os.listdir(path.parent) == ["web-users"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_malformed_line_is_named_by_number_never_quoting_the_hash(path: Path) -> None:
    good = hash_secret(TOKEN)
    broken = "scrypt$16384$8$1$" + "A" * 24 + "$!!notbase64-hash-material!!"
    _write(path, f"# users\nana:{good}\nbob:{broken}\n")
    with pytest.raises(UsersError) as err:
        UsersFile(path).get("ana")
    message = str(err.value)
    assert message == (
        f"{path} line 3: the hash of user bob is not one `sessions web add-user` writes"
    )
    assert "notbase64" not in message and good not in message


def test_a_line_without_a_name_does_not_echo_what_was_pasted(path: Path) -> None:
    _write(path, f"ana:{hash_secret(TOKEN)}\n{TOKEN}\n")
    with pytest.raises(UsersError) as err:
        UsersFile(path).names()
    assert "line 2: expected `name:scrypt$...`" in str(err.value)
    assert TOKEN not in str(err.value)


def test_a_bad_name_in_the_file_is_named_by_line(path: Path) -> None:
    _write(path, f"\n\n:{hash_secret(TOKEN)}\n")
    with pytest.raises(UsersError, match=r"line 3: user name may not be empty"):
        UsersFile(path).get("ana")


def test_a_hostile_hash_in_the_file_is_refused_not_run(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(path, f"mallory:{_stored(n=2**30)}\n")
    calls = _spy_scrypt(monkeypatch)
    with pytest.raises(UsersError, match="line 1: the hash of user mallory is not one"):
        UsersFile(path).get("mallory")
    assert calls == []


def test_a_name_twice_in_the_file_is_refused(path: Path) -> None:
    _write(path, f"ana:{hash_secret(TOKEN)}\n#\nANA:{hash_secret(TOKEN)}\n")
    with pytest.raises(UsersError, match="line 3: user ANA is already on line 1"):
        UsersFile(path).get("someone")


def test_a_file_that_cannot_be_read_is_one_clear_error(path: Path) -> None:
    path.mkdir(parents=True)
    with pytest.raises(UsersError, match="cannot read the users file"):
        UsersFile(path).get("ana")
    path.rmdir()
    path.write_bytes(b"ana:\xff\xfe\n")
    with pytest.raises(UsersError, match="is not UTF-8 text"):
        UsersFile(path).get("ana")
    with pytest.raises(UsersError, match="is not UTF-8 text"):
        UsersFile(path).add("bob", TOKEN)  # a broken file is never overwritten
    assert path.read_bytes() == b"ana:\xff\xfe\n"


def test_a_short_secret_is_not_stored(path: Path) -> None:
    with pytest.raises(UsersError, match="at least 12"):
        UsersFile(path).add("ana", "short")
    assert not path.exists()


class _Spy:
    """Stands in for verify_secret: records which stored hash each log-in was checked against."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.real = verify_secret

    def __call__(self, stored: str, secret: str) -> bool:
        self.stored.append(stored)
        return self.real(stored, secret)


async def test_an_unknown_name_still_costs_a_hash(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = UsersFile(path)
    ana = users.add("ana", TOKEN)
    spy = _Spy()
    monkeypatch.setattr(users_mod, "verify_secret", spy)
    assert await users.authenticate("nobody", TOKEN) is None
    assert await users.authenticate("bad:name", TOKEN) is None
    assert await users.authenticate("ana", TOKEN) == ana
    dummy = users_mod._DUMMY_HASH
    assert spy.stored == [dummy, dummy, ana.hash]
    n, r, p = (int(x) for x in dummy.split("$")[1:4])
    assert (n, r, p) == tuple(int(x) for x in ana.hash.split("$")[1:4])  # the same cost
    assert verify_secret(dummy, "") is False  # and a real hash, not a shortcut


async def test_a_huge_secret_is_refused_without_hashing(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = UsersFile(path)
    users.add("ana", TOKEN)
    spy = _Spy()
    monkeypatch.setattr(users_mod, "verify_secret", spy)
    assert await users.authenticate("ana", "x" * 1025) is None
    assert await users.authenticate("nobody", "x" * 10_000_000) is None
    assert spy.stored == []
