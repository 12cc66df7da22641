"""The sandbox watch: notices, within seconds, a sandbox that died behind its session's back.

E2B ends a sandbox on its own at its lifetime limit, in an incident, or when someone kills it
from the dashboard; the session would only learn at its next keep-alive (a third of the
sandbox's timeout). Polling each sandbox from its workflow would cost a timer and an activity
per session every few seconds, in history and in Temporal actions. Instead each worker lists
the team's managed sandboxes (one paginated call per org key, whatever the number of sessions)
and, when one that was listed is gone, signals its session `check_sandbox`. The signal is only
a hint: the session asks the provider itself (`check_sandbox` activity) before it believes it,
so a forged or stale hint costs one provider call and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from common.ids import CHECK_SANDBOX_SIGNAL, MANAGED_BY, MANAGED_BY_KEY, workflow_id_for
from provider.base import SandboxProvider
from provider.errors import ProviderError

__all__ = ["CHECK_SANDBOX_SIGNAL", "SandboxWatch", "WatchPass"]

log = logging.getLogger("session_worker.watch")

_WARN_EVERY = 60
"""A provider that keeps failing is logged once, then once in this many passes."""


@dataclass(frozen=True)
class WatchPass:
    """What one pass saw: how many sandboxes were listed and which sessions were told."""

    listed: int
    hinted: tuple[str, ...]
    failed_orgs: tuple[str, ...] = ()


class SandboxWatch:
    """Lists the managed sandboxes every `interval` seconds and hints the sessions whose
    sandbox vanished since the last pass. One per worker; several workers watching the same
    team only repeat a hint, which the session coalesces."""

    def __init__(
        self,
        provider: SandboxProvider,
        client: Client,
        *,
        org_ids: list[str],
        interval: float,
    ) -> None:
        self._provider = provider
        self._client = client
        self._org_ids = list(dict.fromkeys(org_ids)) or ["*"]
        self._interval = interval
        self._known: dict[str, str] | None = None
        """Sandbox id -> session id, as the last successful pass listed them."""
        self._expected: dict[str, str] = {}
        """Sandboxes this worker made or resumed since the last pass: one that dies before any
        listing showed it is still missed by the next."""
        self._failures = 0

    def expect(self, sandbox_id: str, session_id: str | None) -> None:
        """A sandbox this worker just provisioned or resumed: watch it from the next pass."""
        if session_id:
            self._expected[sandbox_id] = session_id

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until `stop` is set; a failing pass never ends the watch."""
        log.info("sandbox watch: every %ss, orgs %s", self._interval, ", ".join(self._org_ids))
        while not stop.is_set():
            try:
                await self.poll()
            except Exception as err:  # noqa: BLE001 - the watch must outlive any one pass
                log.warning("sandbox watch pass failed: %s: %s", type(err).__name__, err)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            except TimeoutError:
                pass

    async def poll(self) -> WatchPass:
        """One pass: list, compare with the last listing, hint the sessions of vanished ones."""
        expected, self._expected = self._expected, {}
        now: dict[str, str] = {}
        failed: list[str] = []
        for org in self._org_ids:
            try:
                sandboxes = await self._provider.list_sandboxes(
                    org, metadata={MANAGED_BY_KEY: MANAGED_BY}
                )
            except ProviderError as err:
                failed.append(org)
                self._warn(f"cannot list the sandboxes of org {org!r}: {err.type}: {err}")
                continue
            now.update(
                (s.sandbox_id, s.metadata["session_id"])
                for s in sandboxes
                if s.metadata.get("session_id")
            )
        if failed:
            # Keep what was known: a failed listing must not look like every sandbox died.
            self._expected.update(expected)
            return WatchPass(listed=len(now), hinted=(), failed_orgs=tuple(failed))
        self._failures = 0
        before = {**(self._known or {}), **expected}
        gone = {sid: sess for sid, sess in before.items() if sid not in now}
        self._known = now
        listed = len(now)
        hinted = [s for s in dict.fromkeys(gone.values()) if await self._hint(s)]
        if hinted:  # a sandbox gone with its session closed was that session's own terminate
            log.info(
                "sandbox watch: %d sandbox(es) gone since the last pass; sessions told: %s",
                len(gone),
                ", ".join(hinted),
            )
        return WatchPass(listed=listed, hinted=tuple(hinted), failed_orgs=tuple(failed))

    async def _hint(self, session_id: str) -> bool:
        """Signal the session; False when it is closed or unknown (it ended on its own)."""
        handle = self._client.get_workflow_handle(workflow_id_for(session_id))
        try:
            await handle.signal(CHECK_SANDBOX_SIGNAL, {})
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            log.warning("sandbox watch: cannot signal session %s: %s", session_id, err.message)
            return False
        return True

    def _warn(self, message: str) -> None:
        if self._failures % _WARN_EVERY == 0:
            log.warning("sandbox watch: %s", message)
        self._failures += 1
