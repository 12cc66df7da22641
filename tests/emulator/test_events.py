"""E2B's lifecycle events API on the emulator: shape, order, paging, filters, errors, scope."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from e2b import AsyncSandbox

from emulator import DEMO_TEMPLATES, SandboxRecord, Transition
from emulator.testing import EmulatorHandle, running_emulator

KINDS = ("created", "updated", "paused", "resumed", "killed")


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("sandbox.lifecycle.") for e in events]


async def _killed(emu: EmulatorHandle, sandbox_id: str, timeout: float = 5.0) -> SandboxRecord:
    deadline = time.monotonic() + timeout
    while (record := emu.record(sandbox_id)).state != "killed":
        assert time.monotonic() < deadline, "the sandbox was not killed in time"
        await asyncio.sleep(0.05)
    return record


@pytest.fixture
async def own_emulator() -> AsyncIterator[EmulatorHandle]:
    """A fresh emulator of its own: the team's events are exactly this test's."""
    async with running_emulator(templates_file=DEMO_TEMPLATES, api_key="e2b_events_team") as emu:
        yield emu
        assert emu.live_sandboxes() == []


def _opts(emu: EmulatorHandle) -> dict[str, Any]:
    return {"api_key": emu.api_key, "api_url": emu.api_url, "sandbox_url": emu.sandbox_url}


async def test_a_sandbox_s_events_are_its_record_to_the_microsecond(
    emulator_env: EmulatorHandle,
) -> None:
    sbx = await AsyncSandbox.create(timeout=60)
    await sbx.set_timeout(120)
    await sbx.pause()
    await AsyncSandbox.connect(sbx.sandbox_id, timeout=60)
    await sbx.kill()
    record = emulator_env.record(sbx.sandbox_id)

    r = await emulator_env.events_http(sbx.sandbox_id, limit=100)
    assert r.status_code == 200
    events = r.json()
    assert _kinds(events) == ["killed", "resumed", "paused", "updated", "created"]  # newest first
    marks = sorted([t.at for t in record.transitions] + [u.at for u in record.updates])
    assert [_at(e) for e in events] == marks[::-1]  # the records' own times, not rounded
    assert _at(events[0]) == record.killed_at
    for event in events:
        assert event["version"] == "v1" and event["sandboxId"] == sbx.sandbox_id
        assert event["sandboxTemplateId"] == "base"
        assert event["timestamp"].endswith("Z") and "." in event["timestamp"]
        uuid.UUID(event["id"])
    assert len({e["id"] for e in events}) == 5
    assert len({(e["sandboxTeamId"], e["sandboxBuildId"]) for e in events}) == 1
    updated = events[3]
    set_to = datetime.fromisoformat(updated["eventData"]["set_timeout"])
    assert set_to == record.updates[0].set_timeout
    assert abs((set_to - _at(updated)).total_seconds() - 120) < 0.01  # set_timeout(120)
    assert all(e["eventData"] is None for e in events if e is not updated)
    # A resume starts a new execution, as on E2B.
    before = {e["sandboxExecutionId"] for e in events[2:]}
    after = {e["sandboxExecutionId"] for e in events[:2]}
    assert len(before) == len(after) == 1 and before != after

    oldest_first = await emulator_env.events_http(sbx.sandbox_id, limit=100, orderAsc="true")
    assert oldest_first.json() == events[::-1]
    # E2B accepts `<sandbox id>-<client id>` and answers for the sandbox.
    suffixed = await emulator_env.events_http(f"{sbx.sandbox_id}-emulator", limit=100)
    assert suffixed.json() == events


async def test_paging_default_limit_and_type_filter(emulator_env: EmulatorHandle) -> None:
    sbx = await AsyncSandbox.create(timeout=60)
    for seconds in range(61, 73):  # 12 timeout updates: 14 events with create and kill
        await sbx.set_timeout(seconds)
    await sbx.kill()
    every = (await emulator_env.events_http(sbx.sandbox_id, limit=100)).json()
    assert len(every) == 14 and _kinds(every)[0] == "killed" and _kinds(every)[-1] == "created"

    default = (await emulator_env.events_http(sbx.sandbox_id)).json()
    assert default == every[:10]  # E2B's default limit, newest first
    pages = [
        (await emulator_env.events_http(sbx.sandbox_id, limit=4, offset=offset)).json()
        for offset in (0, 4, 8, 12, 16)
    ]
    assert [len(p) for p in pages] == [4, 4, 4, 2, 0]
    assert sum(pages, []) == every

    wanted = ["sandbox.lifecycle.created", "sandbox.lifecycle.killed"]
    filtered = (await emulator_env.events_http(sbx.sandbox_id, types=wanted)).json()
    assert filtered == [every[0], every[-1]]
    updates = (
        await emulator_env.events_http(sbx.sandbox_id, types="sandbox.lifecycle.updated", limit=3)
    ).json()
    assert [e["eventData"]["set_timeout"] for e in updates] == [
        e["eventData"]["set_timeout"] for e in every[1:4]
    ]


async def test_a_sandbox_killed_by_its_timeout_has_its_killed_event(
    emulator_env: EmulatorHandle,
) -> None:
    sbx = await AsyncSandbox.create(timeout=60)
    await sbx.set_timeout(1)
    record = await _killed(emulator_env, sbx.sandbox_id)
    assert record.transitions[-1].reason == "timeout"
    r = await emulator_env.events_http(sbx.sandbox_id, types="sandbox.lifecycle.killed")
    (killed,) = r.json()
    assert _at(killed) == record.killed_at


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "1.5"}, "offset"),
        ({"orderAsc": "maybe"}, "orderAsc"),
        ({"types": "sandbox.lifecycle.exploded"}, "types"),
        ({"types": ["sandbox.lifecycle.killed", "killed"]}, "types"),
    ],
)
async def test_a_bad_query_is_a_400_in_e2b_s_shape(
    emulator_env: EmulatorHandle, params: dict[str, Any], named: str
) -> None:
    for sandbox_id in (None, "inosuchsandbox0000000"):
        r = await emulator_env.events_http(sandbox_id, **params)
        assert r.status_code == 400
        body = r.json()
        assert set(body) == {"code", "message"} and body["code"] == 400
        assert named in body["message"]


async def test_an_unknown_sandbox_is_a_404(emulator_env: EmulatorHandle) -> None:
    r = await emulator_env.events_http("inosuchsandbox0000000")
    assert r.status_code == 404
    assert r.json()["code"] == 404 and "inosuchsandbox0000000" in r.json()["message"]


async def test_the_team_s_events_and_only_for_its_key(own_emulator: EmulatorHandle) -> None:
    opts = _opts(own_emulator)
    a = await AsyncSandbox.create(**opts)
    b = await AsyncSandbox.create(**opts)
    await AsyncSandbox.pause(a.sandbox_id, **opts)
    await AsyncSandbox.kill(b.sandbox_id, **opts)
    await AsyncSandbox.kill(a.sandbox_id, **opts)

    events = (await own_emulator.events_http(limit=100)).json()
    assert [(e["sandboxId"], k) for e, k in zip(events, _kinds(events), strict=True)] == [
        (a.sandbox_id, "killed"),
        (b.sandbox_id, "killed"),
        (a.sandbox_id, "paused"),
        (b.sandbox_id, "created"),
        (a.sandbox_id, "created"),
    ]
    assert len({e["sandboxTeamId"] for e in events}) == 1
    killed = (await own_emulator.events_http(types="sandbox.lifecycle.killed")).json()
    assert [e["sandboxId"] for e in killed] == [a.sandbox_id, b.sandbox_id]
    assert [_at(e) for e in killed] == [
        own_emulator.record(a.sandbox_id).killed_at,
        own_emulator.record(b.sandbox_id).killed_at,
    ]
    assert (await own_emulator.events_http(limit=2, offset=1)).json() == events[1:3]

    # Another key sees nothing of this team's sandboxes, nor does a call without one.
    async with httpx.AsyncClient(base_url=own_emulator.api_url) as c:
        for headers in ({"X-API-Key": "e2b_another_team"}, {}):
            for path in ("/events/sandboxes", f"/events/sandboxes/{a.sandbox_id}"):
                r = await c.get(path, headers=headers)
                assert r.status_code == 401 and r.json()["code"] == 401
                assert a.sandbox_id not in r.text


async def test_events_past_the_7_day_retention_are_not_answered(
    own_emulator: EmulatorHandle,
) -> None:
    now = datetime.now(UTC)
    old = SandboxRecord(
        sandbox_id="iold0000000000000000",
        template_id="base",
        state="killed",
        created_at=now - timedelta(days=8),
        end_at=now - timedelta(days=6),
        transitions=[
            Transition(event="created", at=now - timedelta(days=8)),
            Transition(event="killed", at=now - timedelta(days=6), reason="timeout"),
        ],
    )
    own_emulator.core.manager.restore({old.sandbox_id: old})
    events = (await own_emulator.events_http(old.sandbox_id)).json()
    assert _kinds(events) == ["killed"] and _at(events[0]) == now - timedelta(days=6)
    team = (await own_emulator.events_http(types="sandbox.lifecycle.created")).json()
    assert old.sandbox_id not in {e["sandboxId"] for e in team}


async def test_the_events_routes_take_injected_faults(emulator_env: EmulatorHandle) -> None:
    emulator_env.fail_next("events", count=1, status=404)
    r = await emulator_env.events_http()
    assert r.status_code == 404 and r.json()["code"] == 404
    assert (await emulator_env.events_http()).status_code == 200
