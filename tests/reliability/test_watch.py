"""The sandbox watch: what one pass tells, and what it must never tell.

A hint only makes a session check its sandbox, but a watch that hinted every session on a
failed listing would cost a provider call per session at each E2B hiccup; one that died on a
closed session would stop watching the others.
"""

from __future__ import annotations

import asyncio
from typing import Any

from activities.watch import SandboxWatch
from emulator.testing import EmulatorHandle
from provider import E2BSandboxProvider, StaticCredentialSource
from tests.fixtures.stack import Stack, state_is, wait_for
from workflows import SandboxSession


def _watch(stack: Stack, emulator: EmulatorHandle) -> SandboxWatch:
    provider = E2BSandboxProvider(
        credentials=StaticCredentialSource(emulator.api_key),
        api_url=emulator.api_url,
        sandbox_url=emulator.sandbox_url,
    )
    return SandboxWatch(provider, stack.client, org_ids=["*", "*"], interval=60)


async def _running(stack: Stack) -> tuple[Any, str]:
    handle = await stack.start(keep_alive_interval_seconds=600)
    status = await wait_for(handle, state_is("running"), what="running")
    return handle, status.sandbox_id or ""


async def test_a_vanished_sandbox_is_told_to_its_session_once(
    stack: Stack, emulator: EmulatorHandle
) -> None:
    watch = _watch(stack, emulator)
    handle, sandbox_id = await _running(stack)
    first = await watch.poll()
    assert first.hinted == () and first.listed >= 1
    await emulator.kill(sandbox_id)

    told = await watch.poll()
    again = await watch.poll()

    assert told.hinted == (handle.id.removeprefix("session-"),)
    assert again.hinted == (), "a sandbox is reported gone once, not at every pass"
    await wait_for(handle, state_is("lost"), what="lost")


async def test_a_failed_listing_tells_no_session_and_forgets_nothing(
    stack: Stack, emulator: EmulatorHandle
) -> None:
    watch = _watch(stack, emulator)
    handle, sandbox_id = await _running(stack)
    await watch.poll()
    emulator.fail_next("list", count=1, status=500, should_retry=False)

    failed = await watch.poll()

    assert failed.failed_orgs and failed.hinted == ()
    await emulator.kill(sandbox_id)
    later = await watch.poll()
    assert later.hinted == (handle.id.removeprefix("session-"),), "still watched after the failure"


async def test_a_sandbox_whose_session_already_ended_is_no_one_to_tell(
    stack: Stack, emulator: EmulatorHandle
) -> None:
    watch = _watch(stack, emulator)
    handle, _ = await _running(stack)
    await watch.poll()
    await handle.signal(SandboxSession.finish)
    await asyncio.wait_for(handle.result(), 30)

    after = await watch.poll()

    assert after.hinted == ()
