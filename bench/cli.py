"""`python -m bench [all|lifecycle|parked|idle|replay]`: run, print a table, write the JSON."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shlex
import signal
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from bench.floor import run_floor
from bench.lifecycle import lifecycle_both
from bench.parked import parked_both, run_parked
from bench.replay import run_replay
from bench.report import check_targets, plot, render_markdown, render_table
from bench.stack import ROOT, BenchError, Stack, machine_info, running_stack
from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from common.errors import ConfigError

DEFAULT_OUT = ROOT / "bench" / "out" / "latest.json"
SAVED = ROOT / "bench" / "results" / "latest.json"
DEFAULT_PLOT = ROOT / "bench" / "out" / "latencies.png"
SCENARIOS = ("all", "floor", "lifecycle", "parked", "idle", "replay")


class _Command(click.Command):
    """Remembers the arguments as given: the JSON's `command` repeats them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["bench.argv"] = list(args)
        return super().parse_args(ctx, args)


class _Failed(click.ClickException):
    """A benchmark that could not run (`BenchError`): one line, exit 2 as always."""

    exit_code = 2


@click.command(cls=_Command, context_settings=CONTEXT_SETTINGS)
@click.argument(
    "scenario", required=False, default="all", type=click.Choice(SCENARIOS), metavar="[SCENARIO]"
)
@click.option(
    "--loads",
    default="1,6,12",
    help="floor: sessions at once, comma-separated (1,6,12)",
)
@click.option("--rounds", type=int, default=3, help="floor: alternating batches per load (3)")
@click.option(
    "--batch", type=int, default=4, help="floor: sessions per batch, per session at once (4)"
)
@click.option(
    "--profile",
    is_flag=True,
    help="floor: sample both workers with py-spy at the highest load; CPU split by part",
)
@click.option("-n", "--sessions", type=int, default=100, help="lifecycle sessions (100)")
@click.option("-c", "--concurrency", type=int, default=20, help="lifecycle concurrency (20)")
@click.option(
    "--sequential",
    type=int,
    default=20,
    help="sessions of the one-at-a-time overhead run (20; 0 skips it)",
)
@click.option("-k", "--parked", type=int, default=200, help="sessions parked at once (200)")
@click.option("--park-concurrency", type=int, default=50, help="starts/approvals in flight (50)")
@click.option("--small-cache", type=int, default=50, help="small worker cache size (50)")
@click.option("--hold", type=float, default=3.0, help="seconds parked before approval (3)")
@click.option(
    "--approve-rate",
    type=float,
    default=0.0,
    help="parked: approve the first --steady sessions at this rate per second (0: all at once)",
)
@click.option(
    "--steady", type=int, default=100, help="parked: how many are approved at --approve-rate (100)"
)
@click.option("--replay-rounds", type=int, default=5, help="passes over the histories (5)")
@click.option("--isolation", default="process", type=click.Choice(["process", "namespace", "auto"]))
@click.option(
    "--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, help="JSON output path"
)
@click.option(
    "--save",
    is_flag=True,
    help=f"also write {SAVED.relative_to(ROOT)} and the same figures as .md",
)
@click.option(
    "--plot",
    is_flag=False,
    flag_value=str(DEFAULT_PLOT),
    type=click.Path(path_type=Path),
    default=None,
    metavar="[PNG]",
    help=f"write latency plots (default {DEFAULT_PLOT.name})",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="ledger and worker logs (default: a temporary directory)",
)
@click.pass_context
def command(ctx: click.Context, **options: Any) -> int:
    """Durable sessions against the raw e2b SDK, on the local emulator.

    SCENARIO: all (the default), floor (ours beside the same session written by hand),
    lifecycle, parked, idle or replay.
    """
    names = ("scenario", "loads", "rounds", "batch", "profile", "sessions", "concurrency",
             "sequential", "parked", "park_concurrency", "small_cache", "hold", "approve_rate",
             "steady", "replay_rounds",
             "isolation", "out", "save", "plot", "workdir")  # fmt: skip
    args = SimpleNamespace(**{name: options[name] for name in names})  # in the usual order
    _validate(args)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stop = Ctrl-C: everything cleaned up
    try:
        doc = asyncio.run(run(args))
        doc["command"] = "python -m bench " + shlex.join(ctx.meta["bench.argv"])
        write(doc, args.out)
        if args.save:
            write(doc, SAVED, with_samples=False)
            SAVED.with_suffix(".md").write_text(render_markdown(doc))
        if args.plot is not None:
            plot(doc, args.plot)
    except BenchError as err:
        raise _Failed(str(err)) from None
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(render_table(doc))
    saved = f" and {SAVED} (+ .md)" if args.save else ""
    print(f"\nJSON: {args.out}{saved}")
    if args.plot is not None:
        print(f"plot: {args.plot}")
    return 0


def _validate(args: SimpleNamespace) -> None:
    try:
        args.loads = tuple(int(x) for x in str(args.loads).split(","))
    except ValueError:
        raise click.UsageError("--loads must be whole numbers separated by commas") from None
    if not args.loads or min(args.loads) < 1:
        raise click.UsageError("--loads must be at least 1 each")
    for name in ("rounds", "batch", "sessions", "concurrency", "parked", "park_concurrency",
                 "small_cache", "replay_rounds"):  # fmt: skip
        if getattr(args, name) < 1:
            raise click.UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.sequential < 0:
        raise click.UsageError("--sequential must not be negative")
    if args.hold < 0:
        raise click.UsageError("--hold must not be negative")
    if args.approve_rate < 0 or args.steady < 0:
        raise click.UsageError("--approve-rate and --steady must not be negative")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib: pip install -e '.[bench]'")


async def run(args: SimpleNamespace) -> dict[str, Any]:
    """Every scenario asked for against one dev server and one emulator."""
    scenario = args.scenario
    doc: dict[str, Any] = {
        "schema": 1,
        "scenario": scenario,
        "started_at": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("out", "plot", "save", "workdir")
        },
    }
    samples: dict[str, Any] = {}
    t0 = time.perf_counter()
    if scenario != "replay":
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            workdir = args.workdir or Path(tmp)
            async with running_stack(workdir, isolation=args.isolation) as stack:
                await _against_stack(stack, args, doc, samples)
    if scenario in ("all", "replay"):
        doc["replay"] = await run_replay(args.replay_rounds)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    doc["targets"] = check_targets(doc)
    doc["samples"] = samples
    return doc


async def _against_stack(
    stack: Stack, args: SimpleNamespace, doc: dict[str, Any], samples: dict[str, Any]
) -> None:
    scenario = args.scenario
    if scenario in ("all", "floor"):
        doc["floor"] = await run_floor(
            stack,
            loads=args.loads,
            rounds=args.rounds,
            per_batch=args.batch,
            parked=args.parked,
            hold=args.hold,
            profile=args.profile,
        )
    if scenario in ("all", "lifecycle"):
        life = await lifecycle_both(
            stack, n=args.sessions, concurrency=args.concurrency, sequential=args.sequential
        )
        samples["lifecycle"] = {k: v.pop("samples") for k, v in life.items()}
        doc["lifecycle"] = life
    if scenario in ("all", "parked", "idle"):
        k, concurrency, hold = args.parked, args.park_concurrency, args.hold
        if scenario == "idle":
            parked = {
                "default_cache": await run_parked(
                    stack,
                    k=k,
                    concurrency=concurrency,
                    hold=hold,
                    max_cached=None,
                    approve_rate=args.approve_rate,
                    steady=args.steady,
                )
            }
        else:
            parked = await parked_both(
                stack, k=k, concurrency=concurrency, hold=hold, small_cache=args.small_cache
            )
        samples["parked"] = {
            k: v.pop("samples")["resume_after_approval_ms"] for k, v in parked.items()
        }
        doc["parked"] = parked
        doc["idle_cost"] = _idle_cost(parked)


def _idle_cost(parked: dict[str, Any]) -> dict[str, Any]:
    """Parked sessions' billing, from every parked run together."""
    bills = [r["billing"] for r in parked.values()]
    billed = sum(b["billed_running_seconds"] for b in bills)
    naive = sum(b["naive_running_seconds"] for b in bills)
    first = parked.get("default_cache") or next(iter(parked.values()))
    return {
        "sessions": sum(b["sessions"] for b in bills),
        "hold_seconds": first["hold_seconds"],
        "billed_running_seconds": round(billed, 3),
        "naive_running_seconds": round(naive, 3),
        "billed_to_naive_ratio": round(billed / naive, 4) if naive else None,
        "observed_running_seconds": round(sum(b["observed_running_seconds"] for b in bills), 3),
        "observed_paused_seconds": round(sum(b["observed_paused_seconds"] for b in bills), 3),
        "parked_seconds_billed_worst_session": max(
            b["parked_seconds_billed_worst_session"] for b in bills
        ),
        "parked_share_billed": _share(bills),
        "max_abs_error_seconds": max(b["max_abs_error_seconds"] for b in bills),
        "error_per_session_ms": first["billing"]["error_per_session_ms"],
        "missing_cost_events": sum(b["missing_cost_events"] for b in bills),
    }


def _share(bills: list[dict[str, Any]]) -> float | None:
    """Billed running time beyond the observed, as a share of the observed parked time."""
    paused = sum(b["observed_paused_seconds"] for b in bills)
    extra = sum(b["billed_running_seconds"] - b["observed_running_seconds"] for b in bills)
    return round(max(0.0, extra) / paused, 5) if paused else None


def write(doc: dict[str, Any], path: Path, *, with_samples: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = doc if with_samples else {k: v for k, v in doc.items() if k != "samples"}
    path.write_text(json.dumps(body, indent=1) + "\n")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench`: the exit code (`argv` given), else it ends the process itself.

    Every failure is one line on stderr (`common.cli.main`): exit 2 for a bad argument or a
    benchmark that could not run, 130 when stopped (Ctrl-C or SIGTERM, everything cleaned up).
    """
    return run_command(command, argv, prog_name="python -m bench")
