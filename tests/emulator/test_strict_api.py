"""The control plane refuses what E2B refuses (and what the emulator cannot honour), through the
SDK: timeouts, create fields, unimplemented routes, idempotency replays, listing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from e2b import AsyncSandbox, SandboxQuery
from e2b.exceptions import SandboxException, SandboxNotFoundException

from emulator.testing import EmulatorHandle
from tests.emulator.strict import call, private, wait_until


async def test_a_timeout_must_be_positive(
    emulator_env: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    for timeout in (0, -5):
        with pytest.raises(SandboxException, match="Timeout must be greater than 0") as exc:
            await AsyncSandbox.create(timeout=timeout)
        assert exc.value.status_code == 400
    sbx = await AsyncSandbox.create(timeout=60)
    try:
        with pytest.raises(SandboxException, match="Timeout must be greater than 0"):
            await AsyncSandbox.connect(sbx.sandbox_id, timeout=0)
        with pytest.raises(SandboxException, match='"timeout": must be at least 0') as exc:
            await sbx.set_timeout(-1)  # E2B's spec: minimum 0
        assert exc.value.status_code == 400
        # set_timeout 0 is E2B's "end now": the on-timeout action applies at once.
        await sbx.set_timeout(0)
        await wait_until(lambda: emulator_env.record(sbx.sandbox_id).state == "killed")
        assert emulator_env.record(sbx.sandbox_id).transitions[-1].reason == "timeout"
    finally:
        await AsyncSandbox.kill(sbx.sandbox_id)


REFUSED_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"templateID": "base", "colour": "red"}, 'unknown field "colour"'),
    ({"templateID": "base", "timeout": "60"}, 'field "timeout"'),
    ({"templateID": "base", "autoPause": "yes"}, 'field "autoPause"'),
    ({"templateID": "base", "metadata": {"n": 1}}, 'field "metadata.n"'),
    ({"templateID": "base", "envVars": ["A=1"]}, 'field "envVars"'),
    ({"templateID": 7}, 'field "templateID"'),
    ({"timeout": 60}, 'field "templateID" is required'),
    ({"templateID": "base", "autoPauseMemory": True}, "only allowed when autoPause is true"),
    ({"templateID": "base", "autoResume": {"enabled": True}}, "only be enabled when autoPause"),
    ({"templateID": "base", "autoPause": True, "autoPauseMemory": False}, "autoPauseMemory false"),
    ({"templateID": "base", "autoPause": True, "autoResume": {"enabled": True}}, "autoResume is"),
    ({"templateID": "base", "autoResume": {"on": True}}, 'unknown field "autoResume.on"'),
    ({"templateID": "base", "allow_internet_access": False}, "allow_internet_access false"),
    ({"templateID": "base", "network": {"denyOut": ["0.0.0.0/0"]}}, "network.denyOut is not"),
    ({"templateID": "base", "network": {"sideways": 1}}, 'unknown field "network.sideways"'),
    ({"templateID": "base", "mcp": {"github": {}}}, "mcp is not supported by the emulator"),
    ({"templateID": "base", "iam": {"tokens": {"aws": {}}}}, "iam (workload identity"),
    (
        {"templateID": "base", "volumeMounts": [{"name": "data", "path": "/data"}]},
        "volume mount #0: volume 'data' not found",
    ),
    ({"templateID": "base", "secure": True}, 'unknown field "secure"'),  # not in NewSandboxV2
]


@pytest.mark.parametrize(("body", "named"), REFUSED_BODIES)
async def test_create_refuses_unknown_inconsistent_or_unsupported_fields(
    emulator_env: EmulatorHandle, body: dict[str, Any], named: str
) -> None:
    # The emulator is shared: sessions of other modules may live on it meanwhile.
    before = set(emulator_env.live_sandboxes())
    r = await call(emulator_env, "POST", "/v2/sandboxes", json=body)
    assert (r.status_code, r.json()["code"]) == (400, 400), r.text
    assert named in r.json()["message"]
    assert set(emulator_env.live_sandboxes()) == before  # refused: no sandbox made


async def test_create_through_the_sdk_accepts_what_e2b_accepts_and_refuses_the_rest(
    emulator_env: EmulatorHandle,
) -> None:
    refused: list[tuple[dict[str, Any], str]] = [
        ({"mcp": {"github": {}}}, "mcp is not supported"),
        ({"volume_mounts": {"/data": "data"}}, "volume 'data' not found"),
        ({"lifecycle": {"on_timeout": "pause", "auto_resume": True}}, "autoResume is not"),
        ({"allow_internet_access": False}, "allow_internet_access false"),
        ({"network": {"deny_out": ["10.0.0.0/8"]}}, "network.denyOut"),
    ]
    for kwargs, named in refused:
        with pytest.raises(SandboxException, match=named) as exc:
            await AsyncSandbox.create(**kwargs)
        assert exc.value.status_code == 400
    accepted = [
        {"lifecycle": {"on_timeout": "pause", "auto_resume": False}},  # the provider's
        {"allow_internet_access": True, "network": {"allow_public_traffic": False}},
        {"metadata": {"a": "1"}, "envs": {"B": "2"}, "timeout": 30},
    ]
    for kwargs in accepted:
        sbx = await AsyncSandbox.create(**kwargs)
        await sbx.kill()
    # v1 still takes the deprecated `secure` (E2B ignores it now).
    r = await call(emulator_env, "POST", "/sandboxes", json={"templateID": "base", "secure": True})
    assert r.status_code == 201
    await emulator_env.kill(r.json()["sandboxID"])


async def test_routes_the_emulator_lacks_answer_501_and_wrong_methods_405(
    emulator_env: EmulatorHandle,
) -> None:
    sbx = await AsyncSandbox.create()
    try:
        with pytest.raises(SandboxException, match="501") as exc:
            await sbx.get_metrics()  # never a 404 read as "sandbox not found"
        assert not isinstance(exc.value, SandboxNotFoundException)
        sid = sbx.sandbox_id
        cases = [
            ("GET", f"/sandboxes/{sid}/metrics", "GET /sandboxes/{sandboxID}/metrics"),
            ("GET", f"/v2/sandboxes/{sid}/logs", "GET /v2/sandboxes/{sandboxID}/logs"),
            ("POST", f"/sandboxes/{sid}/fork", "POST /sandboxes/{sandboxID}/fork"),
            ("POST", f"/sandboxes/{sid}/snapshots", "POST /sandboxes/{sandboxID}/snapshots"),
            ("PATCH", f"/sandboxes/{sid}/metadata", "PATCH /sandboxes/{sandboxID}/metadata"),
            ("PUT", f"/sandboxes/{sid}/network", "PUT /sandboxes/{sandboxID}/network"),
            ("GET", "/templates", "GET /templates"),
            ("POST", "/templates/tags", "POST /templates/tags"),
            ("DELETE", "/templates/base", "DELETE /templates/{templateID}"),
            ("GET", "/volumes", "GET /volumes"),
            ("GET", "/snapshots", "GET /snapshots"),
            ("GET", "/no/such/thing", "GET /no/such/thing"),
        ]
        for method, path, named in cases:
            r = await call(emulator_env, method, path, json={})
            assert r.status_code == 501, (method, path, r.text)
            assert r.json() == {"code": 501, "message": f"the emulator does not implement {named}"}
        r = await call(emulator_env, "GET", f"/sandboxes/{sid}/pause")
        assert (r.status_code, r.headers["Allow"]) == (405, "POST")
        r = await call(emulator_env, "DELETE", "/v2/sandboxes")
        assert (r.status_code, r.headers["Allow"]) == (405, "GET, HEAD, POST")
        async with emulator_env.admin() as c:
            assert (await c.get("/no/such/thing", headers={"X-API-Key": ""})).status_code == 401
    finally:
        await sbx.kill()


async def test_idempotency_replays(emulator_env: EmulatorHandle) -> None:
    before = set(emulator_env.live_sandboxes())  # the shared emulator's, from other modules
    key = f"strict-{uuid.uuid4().hex}"
    first = await AsyncSandbox.create(idempotency_key=key, metadata={"n": "1"})
    try:
        again = await AsyncSandbox.create(idempotency_key=key, metadata={"n": "1"})
        assert again.sandbox_id == first.sandbox_id  # same body while it lives: the same one
        with pytest.raises(SandboxException) as exc:
            await AsyncSandbox.create(idempotency_key=key, metadata={"n": "2"})
        assert exc.value.status_code == 422
        r = await call(
            emulator_env,
            "POST",
            "/v2/sandboxes",
            json={"templateID": "base", "metadata": {"n": "2"}},
            headers={"Idempotency-Key": key},
        )
        assert r.json()["error_code"] == "idempotency_request_mismatch"
        assert await first.pause() is True
        paused = await AsyncSandbox.create(idempotency_key=key, metadata={"n": "1"})
        assert paused.sandbox_id == first.sandbox_id  # paused still lives
    finally:
        await first.kill()
    with pytest.raises(SandboxException, match="no longer exists") as exc:
        await AsyncSandbox.create(idempotency_key=key, metadata={"n": "1"})
    assert exc.value.status_code == 409  # not the dead sandbox
    assert set(emulator_env.live_sandboxes()) == before  # none made, none left


async def test_listing_is_newest_first_and_checks_its_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with private(monkeypatch) as emu:
        made = [(await AsyncSandbox.create()).sandbox_id for _ in range(3)]
        listed = [s.sandbox_id for s in await AsyncSandbox.list().next_items()]
        assert listed == made[::-1]
        r = await call(emu, "GET", "/v2/sandboxes", params={"order": "asc"})
        assert [s["sandboxID"] for s in r.json()] == made
        assert r.headers["X-Total-Running"] == "3"
        pages = AsyncSandbox.list(query=SandboxQuery(), limit=2)
        first, second = await pages.next_items(), await pages.next_items()
        assert [s.sandbox_id for s in first + second] == made[::-1] and not pages.has_next
        r = await call(emu, "GET", "/v2/sandboxes", params={"limit": 500})
        assert r.status_code == 200 and len(r.json()) == 3  # clamped to 100, as E2B
        for params, named in [
            ({"order": "sideways"}, 'Invalid order parameter: unknown order "sideways"'),
            ({"limit": 0}, "must be at least 1"),
            ({"limit": "many"}, "not an integer"),
            ({"nextToken": "%%%"}, "Invalid next token"),
            ({"colour": "red"}, "unknown query parameter 'colour'"),
        ]:
            r = await call(emu, "GET", "/v2/sandboxes", params=params)
            assert (r.status_code, named in r.json()["message"]) == (400, True), r.text
