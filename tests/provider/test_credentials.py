"""An org's key: its own variable, then the credentials file, then `E2B_API_KEY`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provider import (
    CredentialsMissing,
    EnvCredentialSource,
    FileCredentialSource,
    default_credentials,
    org_key_var,
)

pytestmark = pytest.mark.fast  # pure: the credential chain on files and variables


def test_org_variable_name() -> None:
    assert org_key_var("acme") == "E2B_API_KEY__ACME"
    assert org_key_var("acme-corp.eu") == "E2B_API_KEY__ACME_CORP_EU"
    assert org_key_var("Zürich 2") == "E2B_API_KEY__Z_RICH_2"


def test_lookup_order(tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"acme": "key-from-file", "globex": "globex-file"}))
    env = {
        "E2B_API_KEY__ACME": "acme-own",
        "E2B_API_KEY": "shared",
        "SESSIONS_CREDENTIALS_FILE": str(creds),
    }
    source = default_credentials(env)
    assert source.api_key("acme") == "acme-own"  # the org's variable first
    assert source.api_key("globex") == "globex-file"  # then the file
    assert source.api_key("initech") == "shared"  # then E2B_API_KEY
    assert source.describe("acme") == "E2B_API_KEY__ACME"
    assert source.describe("globex") == f"{creds} (entry 'globex')"
    assert source.describe("initech") == "E2B_API_KEY"


def test_missing_key_names_what_to_set_and_no_key(tmp_path: Path) -> None:
    with pytest.raises(CredentialsMissing) as info:
        default_credentials({"E2B_API_KEY__OTHER": "other-secret"}).api_key("acme")
    assert str(info.value) == "no E2B API key for org 'acme': set E2B_API_KEY__ACME or E2B_API_KEY"
    assert not info.value.retryable

    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"globex": "globex-secret"}))
    env = {"SESSIONS_CREDENTIALS_FILE": str(creds)}
    with pytest.raises(CredentialsMissing) as info:
        default_credentials(env).api_key("acme")
    message = str(info.value)
    assert message == (
        "no E2B API key for org 'acme': set E2B_API_KEY__ACME or an entry 'acme' in "
        f"{creds} or E2B_API_KEY"
    )
    assert "secret" not in message


def test_file_is_reread_when_changed(tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"acme": "first"}))
    source = FileCredentialSource(creds)
    assert source.api_key("acme") == "first"
    creds.write_text(json.dumps({"acme": "rotated-key"}))
    stat = creds.stat()
    os.utime(creds, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert source.api_key("acme") == "rotated-key"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"acme": "sk-partial', "is not valid JSON (line 1 column 10)"),
        ('["sk-in-a-list"]', "must hold a JSON object"),
        ('{"acme": 12345}', "the key of 'acme' must be a non-empty string"),
    ],
)
def test_broken_file_is_named_never_quoted(tmp_path: Path, content: str, expected: str) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(content)
    with pytest.raises(CredentialsMissing) as info:
        FileCredentialSource(creds).api_key("acme")
    assert expected in str(info.value) and str(creds) in str(info.value)
    assert "sk-" not in str(info.value) and "12345" not in str(info.value)
    # In the chain it is reported too, while the other places still work.
    env = {"SESSIONS_CREDENTIALS_FILE": str(creds)}
    with pytest.raises(CredentialsMissing, match=expected.replace("(", r"\(").replace(")", r"\)")):
        default_credentials(env).api_key("acme")
    assert default_credentials({**env, "E2B_API_KEY": "shared"}).api_key("acme") == "shared"


def test_missing_file_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "nope.json"
    with pytest.raises(CredentialsMissing, match=f"credentials file {gone} cannot be read"):
        FileCredentialSource(gone).api_key("acme")


def test_reads_the_process_environment_at_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    source = default_credentials()
    monkeypatch.delenv("E2B_API_KEY__ACME", raising=False)
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    monkeypatch.delenv("SESSIONS_CREDENTIALS_FILE", raising=False)
    with pytest.raises(CredentialsMissing):
        source.api_key("acme")
    monkeypatch.setenv("E2B_API_KEY__ACME", "late")
    assert source.api_key("acme") == "late"
    assert EnvCredentialSource().api_key("acme") == "late"
