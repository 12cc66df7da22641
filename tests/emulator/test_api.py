"""Faults, bad input and the admin API; the emulator as a separate process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from e2b import AsyncSandbox
from e2b.exceptions import (
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    ServiceBusyException,
)

from emulator import DEMO_TEMPLATES, FaultSettings
from emulator.testing import EmulatorHandle, EmulatorProcess
from tests.emulator.strict import private


async def test_random_rate_limit_raises_the_sdk_exception(emulator_env: EmulatorHandle) -> None:
    emulator_env.set_faults(rate_limit_rate=1.0, retry_after=0)
    with pytest.raises(RateLimitException):
        await AsyncSandbox.create()  # after the SDK's own 3 retries
    async with emulator_env.admin() as admin:
        r = await admin.post("/v2/sandboxes", json={"templateID": "base"})
        assert r.status_code == 429 and r.headers["Retry-After"] == "0"
        assert r.json()["code"] == 429
    emulator_env.set_faults(error_rate=1.0, error_status=502, operations=["list"])
    with pytest.raises(SandboxException, match="502"):
        await AsyncSandbox.list().next_items()
    sbx = await AsyncSandbox.create()  # faults limited to `list`
    await sbx.kill()


async def test_scripted_faults_fail_exactly_the_next_calls(emulator_env: EmulatorHandle) -> None:
    sbx = await AsyncSandbox.create()
    try:
        emulator_env.fail_next("pause", count=2, status=500)
        for _ in range(2):
            with pytest.raises(SandboxException) as exc:
                await sbx.pause()
            assert exc.value.status_code == 500
        assert await sbx.pause() is True
        # The same, set through the admin API by an out-of-process user.
        async with emulator_env.admin() as admin:
            r = await admin.post(
                "/_emulator/faults/scripted",
                json={"operation": "connect", "count": 1, "status": 503, "should_retry": False},
            )
            assert r.status_code == 200
        with pytest.raises(ServiceBusyException):
            await AsyncSandbox.connect(sbx.sandbox_id)
        # Without Should-Retry, the SDK retries a 503 by itself: one failure goes unnoticed.
        await sbx.pause()
        emulator_env.fail_next("connect", count=1, status=503)
        emulator_env.core.chaos.faults.retry_after = 0
        await AsyncSandbox.connect(sbx.sandbox_id)
        assert emulator_env.core.chaos.faults.scripted == []
    finally:
        await sbx.kill()


async def test_latency_is_injected_per_operation(emulator_env: EmulatorHandle) -> None:
    emulator_env.set_latency(create=0.3)
    started = time.monotonic()
    sbx = await AsyncSandbox.create()
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await sbx.kill()
    assert time.monotonic() - started < 0.3


async def test_bad_input_gets_e2b_error_shape(emulator_env: EmulatorHandle) -> None:
    emulator_env.set_limits(create_rate=0)  # a dozen creates in a second: not the rate's test
    key = {"X-API-Key": emulator_env.api_key}
    async with httpx.AsyncClient(base_url=emulator_env.api_url, timeout=10) as c:
        cases = [
            (c.post("/v2/sandboxes", content=b"{not json", headers=key), 400),
            (c.post("/v2/sandboxes", json=["a"], headers=key), 400),
            (c.post("/v2/sandboxes", json={"timeout": 5}, headers=key), 400),
            (c.post("/v2/sandboxes", json={"templateID": "base", "timeout": -1}, headers=key), 400),
            (
                c.post(
                    "/v2/sandboxes",
                    json={"templateID": "base"},
                    headers={**key, "Idempotency-Key": "Not Valid!"},
                ),
                400,
            ),  # fmt: skip
            (c.post("/v2/sandboxes", json={"templateID": "nope"}, headers=key), 404),
            (c.post("/v2/sandboxes", json={"templateID": "base"}), 401),
            (c.get("/sandboxes/doesnotexist", headers=key), 404),
            (c.post("/sandboxes/doesnotexist/pause", headers=key), 404),
            (c.post("/sandboxes/doesnotexist/timeout", content=b"x", headers=key), 400),
            (c.get("/v2/sandboxes?state=sleeping", headers=key), 400),
            (c.get("/v2/sandboxes?nextToken=%%%", headers=key), 400),
            (c.get("/no/such/route", headers=key), 501),  # not E2B's: never a 404
            (c.get("/_emulator/sandboxes"), 401),
            (c.put("/_emulator/faults", json={"rate_limit_rate": 7}, headers=key), 400),
        ]
        for request, status in cases:
            r = await request
            assert r.status_code == status, (r.request.url, r.text)
            body = r.json()
            assert body["code"] == status and isinstance(body["message"], str)
    with pytest.raises(SandboxNotFoundException):
        await AsyncSandbox.connect("doesnotexist")

    sbx = await AsyncSandbox.create()
    try:
        async with httpx.AsyncClient(base_url=emulator_env.sandbox_url, timeout=10) as c:
            assert (await c.get("/health")).status_code == 400  # no sandbox header
            h = {"E2b-Sandbox-Id": sbx.sandbox_id}
            assert (await c.get("/health", headers=h)).status_code == 204
            r = await c.get("/files", params={"path": "/etc/hostname"}, headers=h)
            assert r.status_code == 401  # no access token
            r = await c.get("/files", headers={**h, "X-Access-Token": "wrong"})
            assert r.status_code == 401
            r = await c.get("/health", headers={"E2b-Sandbox-Id": "unknown"})
            assert r.status_code == 502 and "was not found" in r.json()["message"]
        assert (await sbx.commands.run("echo still fine")).stdout == "still fine\n"
    finally:
        await sbx.kill()


async def test_admin_reset_and_records_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    # An emulator of its own: a reset ends every sandbox on it, and the shared one may hold
    # other modules' live sessions.
    async with private(monkeypatch, templates_file=DEMO_TEMPLATES) as emu:
        await emu.set_faults_http(FaultSettings(rate_limit_rate=1.0, retry_after=0))
        with pytest.raises(RateLimitException):
            await AsyncSandbox.create()
        async with emu.admin() as admin:
            assert (await admin.get("/_emulator/faults")).json()["rate_limit_rate"] == 1.0
            info = (await admin.get("/_emulator/info")).json()
            assert "demo-runner" in info["templates"] and "donmai-worker" in info["templates"]
        emu.reset_chaos()
        sbx = await AsyncSandbox.create()
        await emu.reset_http()
        assert emu.live_sandboxes() == []
        assert await emu.records_http() == []
        assert await sbx.is_running() is False


def _alive(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def _sandbox_with_marker(emu: EmulatorProcess, marker: str) -> str:
    sbx = await AsyncSandbox.create(**_opts(emu))
    await sbx.commands.run(f"sleep {marker} & sleep {marker}", background=True, timeout=0)
    for _ in range(50):
        if len(_alive(f"sleep {marker}")) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(_alive(f"sleep {marker}")) >= 2
    return sbx.sandbox_id


def _opts(emu: EmulatorProcess) -> dict[str, str]:
    return {"api_key": emu.api_key, "api_url": emu.api_url, "sandbox_url": emu.sandbox_url}


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_stopping_the_emulator_leaves_no_process(how: str, tmp_path: Path) -> None:
    marker = (
        f"{os.getpid() % 1000}{int(time.time() * 1000) % 100000}.{7 if how == 'sigkill' else 3}"
    )
    emu = EmulatorProcess("--templates", str(DEMO_TEMPLATES), "--data-dir", str(tmp_path))
    await asyncio.to_thread(emu.start)
    try:
        await _sandbox_with_marker(emu, marker)
        assert emu.proc is not None
        if how == "sigkill":
            emu.proc.send_signal(signal.SIGKILL)
        else:
            emu.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(emu.proc.wait, 10)
        assert code == (-9 if how == "sigkill" else 0)
        for _ in range(60):
            if not _alive(f"sleep {marker}"):
                break
            await asyncio.sleep(0.05)
        assert _alive(f"sleep {marker}") == []
        if how == "sigterm":  # a clean stop also removes every sandbox's files
            assert list(tmp_path.iterdir()) == []
    finally:
        emu.stop()
