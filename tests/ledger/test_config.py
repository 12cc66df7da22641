"""Where the ledger lives: argument > LEDGER_URL > SQLite in SESSIONS_DATA_DIR; bad URLs are one
clear error that never shows the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import LedgerConfigError, LedgerError, LedgerUnavailable, open_ledger
from tests.fixtures.ledger_events import cost_event


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LEDGER_URL", raising=False)
    monkeypatch.delenv("SESSIONS_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


async def test_default_is_a_sqlite_file_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "deep" / "data"
    monkeypatch.setenv("SESSIONS_DATA_DIR", str(data_dir))
    ledger = await open_ledger()
    try:
        assert (await ledger.record(cost_event())).inserted
    finally:
        await ledger.close()
    assert (data_dir / "ledger.db").is_file()
    assert ledger.url == f"sqlite+aiosqlite:///{data_dir / 'ledger.db'}"


async def test_default_data_dir_is_dot_sessions(tmp_path: Path) -> None:
    ledger = await open_ledger()
    await ledger.close()
    assert (tmp_path / ".sessions" / "ledger.db").is_file()


async def test_env_then_argument(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEDGER_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    monkeypatch.setenv("SESSIONS_DATA_DIR", str(tmp_path / "unused"))
    ledger = await open_ledger()
    await ledger.close()
    assert (tmp_path / "from-env.db").is_file()

    ledger = await open_ledger(f"sqlite+aiosqlite:///{tmp_path / 'from-arg.db'}")
    await ledger.close()
    assert (tmp_path / "from-arg.db").is_file()
    assert not (tmp_path / "unused").exists()


async def test_relative_sqlite_path(tmp_path: Path) -> None:
    ledger = await open_ledger("sqlite:///rel/ledger.db")
    await ledger.close()
    assert (tmp_path / "rel" / "ledger.db").is_file()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
async def test_plain_postgres_forms_use_asyncpg(
    scheme: str, postgres_ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_ledger_url.replace("postgresql://", f"{scheme}://", 1)
    monkeypatch.setenv("LEDGER_URL", url)
    ledger = await open_ledger()
    try:
        assert ledger.backend == "postgresql"
        assert ledger.url.startswith("postgresql+asyncpg://")
        assert (await ledger.record(cost_event())).inserted
    finally:
        await ledger.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://bob:hunter2@db/ledger", "is not supported"),
        ("postgresql+psycopg2://bob:hunter2@db/ledger", "is not supported"),
        ("://bob:hunter2@db", "is not a database URL"),
        ("just some words", "is not a database URL"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("postgresql://bob:hunter2@db/ledger?options=search_path", "not understood"),
    ],
)
async def test_bad_urls_are_one_clear_error_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(LedgerConfigError) as err:
        await open_ledger(url)
    message = str(err.value)
    assert expected in message
    assert "hunter2" not in message
    assert "\n" not in message


async def test_unreachable_postgres_is_unavailable_without_the_password() -> None:
    # Port 1 refuses at once: a real connection failure, no mock.
    with pytest.raises(LedgerUnavailable) as err:
        await open_ledger("postgresql://bob:hunter2@127.0.0.1:1/ledger")
    assert isinstance(err.value, LedgerError)
    assert "hunter2" not in str(err.value)
    assert "postgresql+asyncpg://bob:***@127.0.0.1:1/ledger" in str(err.value)


async def test_missing_postgres_schema_is_a_clear_error(postgres_url: str) -> None:
    with pytest.raises(LedgerUnavailable) as err:
        await open_ledger(f"{postgres_url}?options=-csearch_path%3Dno_such_schema_here")
    assert "schema" in str(err.value)
