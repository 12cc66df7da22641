"""`NotifySettings`: which sinks an org gets, and a broken notify variable stopping the worker
at start with one line naming it (never its value: URLs carry tokens)."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.settings import WorkerSettings, org_var
from tests.fixtures.receiver import notify_settings as load

pytestmark = pytest.mark.fast

SECRET = "whsec-Sup3rSecret-9c1e"
TOKEN_URL = "https://hooks.example.com/in/T0KEN-abc123"


def error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(monkeypatch, **env)
    message = str(info.value)
    assert "\n" not in message and SECRET not in message and "T0KEN" not in message
    return message


def test_nothing_configured_means_no_sink() -> None:
    sinks = WorkerSettings.load().sinks("acme")
    assert (sinks.webhook_url, sinks.webhook_secret, sinks.slack_url) == (None, None, None)


def test_an_org_of_its_own_replaces_the_shared_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch,
        SESSIONS_NOTIFY_URL="https://shared.example.com/hook",
        SESSIONS_NOTIFY_SECRET="shared-secret",
        SESSIONS_NOTIFY_SLACK_URL="https://hooks.slack.com/services/T/B/shared",
        SESSIONS_NOTIFY_URL__ACME_CORP="https://acme.example.com/hook",
        SESSIONS_NOTIFY_SECRET__ACME_CORP=SECRET,
        SESSIONS_NOTIFY_SLACK_URL__BETA="off",
    )
    acme = settings.sinks("acme-corp")  # the E2B keys' normalisation: ACME_CORP
    assert org_var("SESSIONS_NOTIFY_URL", "acme-corp") == "SESSIONS_NOTIFY_URL__ACME_CORP"
    assert (
        acme.webhook_url and acme.webhook_url.get_secret_value() == "https://acme.example.com/hook"
    )
    assert acme.webhook_secret and acme.webhook_secret.get_secret_value() == SECRET
    assert acme.slack_url and "shared" in acme.slack_url.get_secret_value()
    beta = settings.sinks("beta")
    assert beta.slack_url is None  # `off` for beta alone
    assert beta.webhook_secret and beta.webhook_secret.get_secret_value() == "shared-secret"
    assert SECRET not in repr(settings) and "acme.example.com" not in repr(acme)


def test_an_org_may_turn_the_shared_webhook_off(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch,
        SESSIONS_NOTIFY_URL=TOKEN_URL,
        SESSIONS_NOTIFY_SECRET=SECRET,
        SESSIONS_NOTIFY_URL__ACME="off",
    )
    assert settings.sinks("acme").webhook_url is None
    assert settings.sinks("acme").webhook_secret is None
    assert settings.sinks("other").webhook_url is not None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {
                "SESSIONS_NOTIFY_URL": "ftp://hooks.example.com/T0KEN",
                "SESSIONS_NOTIFY_SECRET": SECRET,
            },
            "SESSIONS_NOTIFY_URL must be an http:// or https:// URL with a host "
            "(e.g. https://hooks.example.com/sessions): its scheme is not http or https",
        ),
        (
            {"SESSIONS_NOTIFY_URL": "https:///T0KEN", "SESSIONS_NOTIFY_SECRET": SECRET},
            "SESSIONS_NOTIFY_URL must be an http:// or https:// URL with a host "
            "(e.g. https://hooks.example.com/sessions): it has no host",
        ),
        (
            {"SESSIONS_NOTIFY_SLACK_URL": "hooks.slack.com/services/T0KEN"},
            "SESSIONS_NOTIFY_SLACK_URL must be an http:// or https:// URL with a host "
            "(e.g. https://hooks.example.com/sessions): its scheme is not http or https",
        ),
        (
            {"SESSIONS_WEB_URL": "inbox.example.com"},
            "SESSIONS_WEB_URL must be an http:// or https:// URL with a host "
            "(e.g. https://hooks.example.com/sessions): its scheme is not http or https",
        ),
        (
            {"SESSIONS_NOTIFY_URL": TOKEN_URL},
            "SESSIONS_NOTIFY_URL is set but SESSIONS_NOTIFY_SECRET is not (or is empty): "
            "a webhook must be signed",
        ),
        (
            {"SESSIONS_NOTIFY_URL": TOKEN_URL, "SESSIONS_NOTIFY_SECRET": ""},
            "SESSIONS_NOTIFY_URL is set but SESSIONS_NOTIFY_SECRET is not (or is empty): "
            "a webhook must be signed",
        ),
        (
            {"SESSIONS_NOTIFY_URL": TOKEN_URL, "SESSIONS_NOTIFY_SECRET": "   "},
            "SESSIONS_NOTIFY_SECRET must not be blank",
        ),
        (
            {"SESSIONS_NOTIFY_SECRET": SECRET},
            "SESSIONS_NOTIFY_SECRET is set but SESSIONS_NOTIFY_URL is not: it would sign nothing",
        ),
        (
            {"SESSIONS_NOTIFY_URL__ACME": "gopher://acme.example.com/T0KEN"},
            "SESSIONS_NOTIFY_URL__ACME must be an http:// or https:// URL with a host "
            "(e.g. https://hooks.example.com/sessions): its scheme is not http or https",
        ),
        (
            {"SESSIONS_NOTIFY_URL__ACME": TOKEN_URL},
            "SESSIONS_NOTIFY_URL__ACME is set but SESSIONS_NOTIFY_SECRET__ACME is not "
            "(or is empty): a webhook must be signed",
        ),
        (
            {"SESSIONS_NOTIFY_URL__ACME": TOKEN_URL, "SESSIONS_NOTIFY_SECRET__ACME": " "},
            "SESSIONS_NOTIFY_SECRET__ACME must not be blank",
        ),
        (
            {"SESSIONS_NOTIFY_SLACK_URL__": TOKEN_URL},
            "SESSIONS_NOTIFY_SLACK_URL__ names no org: use SESSIONS_NOTIFY_SLACK_URL__<ORG>",
        ),
    ],
)
def test_a_broken_variable_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    assert error(monkeypatch, **env) == expected


def test_the_worker_refuses_to_start_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_NOTIFY_SLACK_URL", "not a url")
    with pytest.raises(ConfigError, match="^SESSIONS_NOTIFY_SLACK_URL must be an http"):
        WorkerSettings.load()


def test_the_worker_says_where_notices_go_without_a_path_token_or_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from activities.notify import describe_sinks

    assert describe_sinks(load(monkeypatch)) == ("off (no SESSIONS_NOTIFY_URL or _SLACK_URL)")
    settings = load(
        monkeypatch,
        SESSIONS_NOTIFY_URL="https://hooks.example.com/in/tok-123",
        SESSIONS_NOTIFY_SECRET="whsec-abc",
        SESSIONS_NOTIFY_SLACK_URL="https://hooks.slack.com/services/T0/B0/secretpart",
        SESSIONS_NOTIFY_URL__ACME="off",
    )
    said = describe_sinks(settings)
    assert said == (
        "webhook to hooks.example.com, slack webhook to hooks.slack.com; orgs with their own: ACME"
        "; one-click links: off (needs SESSIONS_WEB_URL and SESSIONS_WEB_SECRET)"
    )
    assert not any(part in said for part in ("tok-123", "whsec", "secretpart", "/services"))

    web_secret = "web-secret-" + "k" * 32
    settings = load(
        monkeypatch, SESSIONS_WEB_URL="https://inbox.example.com", SESSIONS_WEB_SECRET=web_secret
    )
    said = describe_sinks(settings)
    assert said.endswith("; orgs with their own: ACME; one-click links: on")
    assert web_secret not in said and "k" * 32 not in said
