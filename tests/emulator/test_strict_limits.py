"""Tiers and their limits: concurrency, create rate, the per-route rate limit, E2B's headers;
the settings (argument > environment > tier), the admin API and the test handle."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from e2b import AsyncSandbox
from e2b.exceptions import RateLimitException

from emulator.config import EmulatorConfig
from emulator.limits import TIERS
from emulator.server import config_from_options
from emulator.testing import EmulatorProcess
from tests.emulator.strict import call, private

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = "you have reached the maximum number of concurrent E2B sandboxes (2)"


async def test_concurrency_is_a_429_without_retry_after_and_counts_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with private(monkeypatch, max_running=2) as emu:
        one, two = await AsyncSandbox.create(), await AsyncSandbox.create()
        r = await call(emu, "POST", "/v2/sandboxes", json={"templateID": "base"})
        assert r.status_code == 429 and "Retry-After" not in r.headers
        assert r.json()["message"].startswith(CONCURRENCY)
        with pytest.raises(RateLimitException, match="concurrent E2B sandboxes"):
            await AsyncSandbox.create()  # after the SDK's own retries
        assert emu.core.governor.refused["running"] >= 2
        assert await one.pause() is True  # a paused sandbox does not count ...
        three = await AsyncSandbox.create()
        r = await call(emu, "POST", f"/v2/sandboxes/{one.sandbox_id}/connect", json={})
        assert r.status_code == 429  # ... a resume does
        assert r.json()["message"].startswith(CONCURRENCY)
        await three.kill()
        await AsyncSandbox.connect(one.sandbox_id)
        for sbx in (one, two):
            await sbx.kill()


async def test_the_create_rate_answers_e2b_s_rate_limit_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with private(monkeypatch, create_rate=1) as emu:
        first = await call(emu, "POST", "/v2/sandboxes", json={"templateID": "base"})
        assert first.status_code == 201
        assert first.headers["RateLimit-Limit"] == "1"
        assert first.headers["RateLimit-Remaining"] == "0"
        refused = await call(emu, "POST", "/sandboxes", json={"templateID": "base"})
        assert refused.status_code == 429
        assert refused.json() == {"code": 429, "message": "Rate limit exceeded"}
        assert refused.headers["Retry-After"] == "1" and refused.headers["RateLimit-Reset"] == "1"
        await asyncio.sleep(1.0)
        assert (await AsyncSandbox.create()).sandbox_id  # one a second goes through
        assert emu.core.governor.refused["create"] == 1


async def test_each_api_route_has_its_own_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    async with private(monkeypatch, api_rate=3, api_rate_period=60) as emu:
        remaining = []
        for _ in range(3):
            r = await call(emu, "GET", "/v2/sandboxes")
            assert r.status_code == 200 and r.headers["RateLimit-Limit"] == "3"
            remaining.append(r.headers["RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        r = await call(emu, "GET", "/v2/sandboxes")
        assert (r.status_code, r.json()["message"]) == (429, "Rate limit exceeded")
        assert int(r.headers["Retry-After"]) in (19, 20)  # 60 s / 3 for the next token
        other = await call(emu, "GET", "/sandboxes/inope")  # another route, its own bucket
        assert (other.status_code, other.headers["RateLimit-Remaining"]) == (404, "2")
        assert (await call(emu, "GET", "/_emulator/info")).status_code == 200  # admin: never


async def test_tiers_and_the_limits_admin_api(monkeypatch: pytest.MonkeyPatch) -> None:
    async with private(monkeypatch, tier="hobby", resume_seconds=0.2) as emu:
        info = (await call(emu, "GET", "/_emulator/info")).json()
        assert info["tier"] == "hobby" and info["limits"]["max_running"] == 20
        limits = await emu.limits_http()
        assert limits == TIERS["hobby"].model_copy(update={"resume_seconds": 0.2})
        assert limits.pause_seconds == 2.0 and limits.max_lifetime == 3600
        assert (await emu.set_limits_http(tier="pro")).max_running == 100
        changed = emu.set_limits(max_running=0, pause_seconds=0.5, create_rate=None)
        assert (changed.max_running, changed.create_rate) == (None, None)
        assert changed.pause_seconds == 0.5
        r = await call(emu, "PUT", "/_emulator/limits", json={"max_runing": 3})
        assert r.status_code == 400 and "max_runing" in r.json()["message"]
        # E2B's limits are limits, not faults: the faults API names the field it refuses.
        r = await call(emu, "PUT", "/_emulator/faults", json={"max_running": 1})
        assert r.status_code == 400 and "max_running" in r.json()["message"]
        await emu.reset()  # start-up figures again
        assert emu.limits() == TIERS["hobby"].model_copy(update={"resume_seconds": 0.2})


def test_settings_resolve_argument_then_environment_then_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("EMULATOR_"):
            monkeypatch.delenv(name)
    assert EmulatorConfig(api_key="k").limits == TIERS["dev"]
    monkeypatch.setenv("EMULATOR_TIER", "pro")
    monkeypatch.setenv("EMULATOR_MAX_RUNNING", "7")
    monkeypatch.setenv("EMULATOR_PAUSE_SECONDS_PER_GIB", "2")
    limits = config_from_options({"max_running": 9, "create_rate": 0}).limits
    assert (limits.tier, limits.max_running, limits.create_rate) == ("pro", 9, None)
    assert (limits.pause_seconds_per_gib, limits.max_lifetime) == (2.0, 86400)
    limits = config_from_options({"tier": "hobby"}).limits
    assert (limits.tier, limits.max_running, limits.max_lifetime) == ("hobby", 7, 3600)
    assert EmulatorConfig(api_key="k", max_lifetime_seconds=6).limits.max_lifetime == 6  # old name


def test_the_command_line_takes_the_tier_and_its_figures() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "E2B_"))}
    run = [sys.executable, "-m", "emulator"]
    shown = subprocess.run([*run, "--help"], cwd=ROOT, env=env, capture_output=True, text=True)
    for option in ("--tier", "--max-lifetime", "--create-rate", "--max-running", "--api-rate"):
        assert option in shown.stdout
    assert "--pause-seconds-per-gib" in shown.stdout and "--resume-seconds" in shown.stdout
    bad = subprocess.run(
        [*run, "--quiet", "--max-lifetime", "0"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: invalid --max-lifetime (env EMULATOR_MAX_LIFETIME)")
    with EmulatorProcess("--tier", "pro", "--isolation", "process", env=env) as emu:
        assert emu.start_line.endswith("(plain processes, tier pro)")
