"""The campaign: session workflows started the way a hostile platform would (a raw Temporal
client, payloads built byte by byte), each driven through random and targeted messages, worker
processes SIGKILLed in the middle, every session ended (finish, cancel, terminate, or races of
them), then the invariants checked (`tests/fuzz/invariants.py`).

A stray-reconciler pass runs every few seconds meanwhile (the Schedule, compressed) and once
more at the end, before the checks. Hostile text copied raw into a worker log and the
emulator's own errors are reported as notes, not violations.

Everything random comes from the seed; interleavings depend on timing, so a campaign is
reproducible in what it sends, not in the exact order things happen. Each violation names the
session and the message that triggered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from activities.reconcile import ReconcileInput
from tests.fuzz.drive import SessionDriver
from tests.fuzz.generator import EITHER_STARTS, FORGED_STARTS, INVALID_STARTS
from tests.fuzz.invariants import Checks, Violation
from tests.fuzz.payloads import SECRET_PREFIX, error_text, visible
from tests.fuzz.stack import FuzzStack, fuzz_stack
from workflows import RECONCILER_WORKFLOW_TYPE


@dataclass
class CampaignConfig:
    sessions: int = 60
    """Session ids to start (an invalid-start plan uses up to three)."""
    seed: int = 7
    kills: int = 2
    concurrency: int = 8
    workers: int = 2
    messages: tuple[int, int] = (15, 45)
    """Random messages per running session (gate cycles and exec checks included)."""
    huge_rate: float = 0.02
    """Share of hostile strings that are 1 MiB long."""
    restart_rate: float = 0.2
    """Share of ended sessions started again under the same id."""
    signal_timeout: float = 10.0
    update_timeout: float = 20.0
    state_timeout: float = 30.0
    """A state change (running, paused) may wait out a killed worker's activity (~20 s)."""
    close_timeout: float = 75.0
    verdict_timeout: float = 45.0
    """How long a start may take to be refused or to provision."""
    billing_tolerance: float = 2.0
    reconcile_every: float = 10.0
    """Seconds between two stray-reconciler passes during the campaign (one more at the end)."""


@dataclass
class Report:
    seed: int
    sessions: int = 0
    messages: int = 0
    kills: int = 0
    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Worth a look, not an invariant broken: hostile text copied raw into a log, the
    emulator's own errors."""

    def summary(self) -> str:
        return (
            f"fuzz: {self.sessions} sessions, {self.messages} messages, {self.kills} worker kills, "
            f"{len(self.violations)} violations (seed {self.seed})"
        )

    def figures_line(self) -> str:
        return "fuzz figures: " + ", ".join(f"{k}={v}" for k, v in self.figures.items())


@dataclass
class Plan:
    index: int
    kind: str
    """`valid`, `invalid` (a batch of starts that must be refused), `either`, `forged`."""
    cases: list[str]
    sids: list[str]


class Campaign:
    def __init__(self, cfg: CampaignConfig, stack: FuzzStack) -> None:
        self.cfg = cfg
        self.stack = stack
        self.rng = random.Random(cfg.seed)
        self.tag = uuid.uuid4().hex[:4]
        self.secret = f"{SECRET_PREFIX}{uuid.uuid4().hex}"
        tail = self.secret.removeprefix(SECRET_PREFIX)
        self._fragments = [tail[i : i + 12] for i in range(len(tail) - 11)]
        """Any 12 characters of the secret's random part count as a leak: an error message
        that shortens what it echoes (pydantic's `input_value='{"...ET-3f2a..."}'`) still
        shows part of a real secret."""
        self.notes: list[str] = []
        """What is not an invariant broken but worth a look (log injection, emulator errors)."""
        self.messages = 0
        self.kills = 0
        self.sends: dict[str, list[tuple[float, str, str, str]]] = {}
        """Per session: (when, the message in short, the answer, the message in full)."""
        self.answers: list[tuple[str, str, str]] = []
        """(session, what was sent, the error or text the caller got back)."""
        self.observed: set[tuple[str, str]] = set()
        """(session, sandbox) pairs the `status` query showed."""
        self.victims: dict[str, str] = {}
        """Running (valid) sessions' sandboxes, for the forged starts to reach for."""
        self.valid: set[str] = set()
        self.started: set[str] = set()
        self._victim_rng = random.Random(f"{cfg.seed}:victims")
        self._kill_rng = random.Random(f"{cfg.seed}:kills")
        self.figures: dict[str, int] = {}
        self.cross: dict[tuple[str, str], dict[str, set[str]]] = {}
        """(session, the session a sandbox it reached was created for) -> sandboxes, and how."""
        self._violations: dict[tuple[int, str, str], Violation] = {}
        self._passes = 0
        self.emulator_errors: dict[str, int] = {}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def leak_at(self, text: str) -> int:
        """Where a piece of the secret starts in `text`; -1 when there is none."""
        found = [at for f in self._fragments if (at := text.find(f)) >= 0]
        return min(found) if found else -1

    def around_leak(self, text: str, width: int = 90) -> str:
        at = self.leak_at(text)
        return visible(text[max(0, at - width) : at + 60], 2 * width + 40)

    def violation(self, invariant: int, session: str, what: str, repro: str = "") -> None:
        key = (invariant, session, re.sub(r"\d+(\.\d+)?", "#", what)[:120])
        self._violations.setdefault(key, Violation(invariant, session, what, repro))

    def observe(self, sid: str, status: dict[str, Any]) -> None:
        sandbox = status.get("sandbox_id")
        if sandbox:
            self.observed.add((sid, sandbox))
            own = status.get("session_id") == sid and sandbox not in self.victims.values()
            if status.get("state") == "running" and own and sid in self.valid:
                self.victims.setdefault(sid, sandbox)

    def reached(self, sid: str, owner: str, sandbox: str, how: str) -> None:
        """Evidence that session `sid` reached a sandbox created for `owner`."""
        entry = self.cross.setdefault((sid, owner), {"sandboxes": set(), "how": set()})
        if sandbox != "?":
            entry["sandboxes"].add(sandbox)
        entry["how"].add(how)

    # ------------------------------------------------------------ plans

    def plans(self) -> list[Plan]:
        """Valid sessions, batches of invalid starts, `either` starts and forged starts, in a
        fixed rotation so that even a small campaign covers each kind; cases in seeded order."""
        rotation = ["valid", "forged", "invalid", "valid", "either", "invalid"]
        rotation += ["valid", "forged", "either", "invalid", "valid", "valid"]
        decks = {
            "invalid": _deck(self.rng, INVALID_STARTS),
            "either": _deck(self.rng, EITHER_STARTS),
            "forged": _deck(self.rng, FORGED_STARTS),
        }
        plans: list[Plan] = []
        used = 0
        while used < self.cfg.sessions:
            kind = rotation[len(plans) % len(rotation)]
            count = min(3, self.cfg.sessions - used) if kind == "invalid" else 1
            cases = [next(decks[kind]) for _ in range(count)] if kind != "valid" else ["valid"]
            sids = [f"fz{self.cfg.seed}-{self.tag}-{used + i:03d}" for i in range(count)]
            plans.append(Plan(len(plans), kind, cases, sids))
            used += count
        return plans

    async def drive(self, plan: Plan) -> None:
        for case, sid in zip(plan.cases, plan.sids, strict=True):
            rng = random.Random(f"{self.cfg.seed}:{plan.index}:{case}")
            driver = SessionDriver(self, sid, rng)
            try:
                if plan.kind == "valid":
                    self.valid.add(sid)
                    await driver.run_valid(driver.gen.start(sid, "valid"))
                elif plan.kind == "forged":
                    victim = await self.victim(sid)
                    await driver.run_checked_start(driver.gen.start(sid, case, victim), "refuse")
                else:
                    expect = "refuse" if plan.kind == "invalid" else "either"
                    await driver.run_checked_start(driver.gen.start(sid, case), expect)
            except Exception:  # a bug in the fuzz suite itself: say so, loudly
                self.violation(0, sid, "driver error: " + traceback.format_exc(limit=3))

    async def victim(self, sid: str) -> tuple[str, str] | None:
        deadline = time.monotonic() + self.cfg.state_timeout
        while not self.victims and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if not self.victims:
            return None
        victim = self._victim_rng.choice(sorted(self.victims))
        return victim, self.victims[victim]

    async def kill_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        live = self.stack.live_workers()
        if not live:
            return
        victim = self._kill_rng.choice(live)
        victim.kill()
        self.kills += 1
        await self.stack.start_worker()

    async def run(self) -> Report:
        plans = self.plans()
        gate = asyncio.Semaphore(self.cfg.concurrency)
        kill_at = {
            round((k + 1) * len(plans) / (self.cfg.kills + 1)): k for k in range(self.cfg.kills)
        }
        tasks: list[asyncio.Task[None]] = []
        killers: list[asyncio.Task[None]] = []

        async def one(plan: Plan) -> None:
            try:
                await self.drive(plan)
            finally:
                gate.release()

        stop_passes = asyncio.Event()
        passes = asyncio.create_task(self.reconcile_every(self.cfg.reconcile_every, stop_passes))
        for plan in plans:
            await gate.acquire()
            if plan.index in kill_at:
                delay = self._kill_rng.uniform(0.5, 3.0)
                killers.append(asyncio.create_task(self.kill_later(delay)))
            tasks.append(asyncio.create_task(one(plan)))
        await asyncio.gather(*tasks)
        await asyncio.gather(*killers)
        # A pass under way runs to its end: cancelled while waiting for its result, it would
        # leave its reconciler run going behind the checks.
        stop_passes.set()
        await passes
        self.figures["live_sandboxes_at_the_end"] = len(self.stack.emu.live_sandboxes())
        await self.reconcile()
        await Checks(self).run()
        for text, count in self.emulator_errors.items():
            self.note(f"the emulator logged ×{count}: {visible(text, 240)}")
        report = Report(
            seed=self.cfg.seed,
            sessions=sum(len(p.sids) for p in plans),
            messages=self.messages,
            kills=self.kills,
            violations=sorted(self._violations.values(), key=lambda v: (v.invariant, v.session)),
            figures=self.figures,
            notes=self.notes,
        )
        self.write_sends()
        return report

    async def reconcile_every(self, seconds: float, stop: asyncio.Event) -> None:
        """The reconciler's Schedule, compressed: a pass every few seconds while sessions run
        (shorter than any fuzz sandbox's timeout, as a deployment's interval must be), until
        `stop` is set."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            if stop.is_set():
                return
            await self.reconcile()

    async def reconcile(self) -> None:
        """One stray-reconciler pass with every sandbox judged (grace 0)."""
        client = self.stack.client
        self._passes += 1
        try:
            handle = await client.start_workflow(
                RECONCILER_WORKFLOW_TYPE,
                ReconcileInput(org_ids=["*"], grace_seconds=0),
                id=f"fuzz-reconcile-{self.tag}-{self._passes}",
                task_queue=self.stack.queue,
            )
            result = await asyncio.wait_for(handle.result(), 180)
        except Exception as err:  # noqa: BLE001
            self.violation(2, "reconciler", f"a reconciler pass failed: {error_text(err)}")
            return
        self.figures["reconciler_passes"] = self._passes
        for key in ("strays", "killed", "billed"):
            name = f"reconciler_{key}"
            self.figures[name] = self.figures.get(name, 0) + int(result.get(key, 0))

    def write_sends(self) -> None:
        """Every session's messages and answers, for reproducing a violation by hand."""
        path = self.stack.workdir / "fuzz-sessions.json"
        out = {
            sid: [
                {
                    "at": datetime.fromtimestamp(t, UTC).isoformat(),
                    "sent": detail or label,
                    "answer": answer,
                }
                for t, label, answer, detail in sends
            ]
            for sid, sends in self.sends.items()
        }
        path.write_text(json.dumps(out, indent=1, ensure_ascii=False))

    def repro_at(self, sid: str | None, at: float) -> str:
        """The message sent to `sid` last before `at` (what a failure at `at` followed), after
        the start's case when the start was a hostile one."""
        sends = [
            label
            for t, label, *_ in self.sends.get(sid or "", [])
            if t <= at + 0.05 and not label.startswith(("query", "ending", "verdict"))
        ]
        if not sends:
            return ""
        start = self.start_case(sid or "")
        if start and not sends[-1].startswith("start"):
            return f"{sends[-1]} (after a start [{start}])"
        return sends[-1]

    def start_case(self, sid: str) -> str | None:
        """The case of the session's first start when it was not a valid one."""
        start = self.start_of(sid)
        case = start.rsplit("[", 1)[-1].rstrip("]")
        return None if not start or case == "valid" else case

    def start_of(self, sid: str) -> str:
        """The session's first start, in short ('' when it has none)."""
        starts = [label for _, label, *_ in self.sends.get(sid, []) if label.startswith("start")]
        return starts[0] if starts else ""


def _deck(rng: random.Random, cases: list[str]) -> Iterator[str]:
    """The cases in a seeded order, over and over."""
    order = list(cases)
    rng.shuffle(order)
    while True:
        yield from order


class _EmulatorErrors(logging.Handler):
    """The in-process emulator's own warnings and errors, kept as notes instead of printed."""

    def __init__(self, seen: dict[str, int]) -> None:
        super().__init__(logging.WARNING)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.seen[text] = self.seen.get(text, 0) + 1


async def run_campaign(cfg: CampaignConfig, workdir: Path, *, address: str | None = None) -> Report:
    """Start a stack (a dev server of its own unless `address`), run the campaign, check."""
    logger = logging.getLogger("emulator")
    seen: dict[str, int] = {}
    handler = _EmulatorErrors(seen)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        async with fuzz_stack(workdir, address=address, workers=cfg.workers) as stack:
            campaign = Campaign(cfg, stack)
            campaign.emulator_errors = seen
            return await campaign.run()
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
