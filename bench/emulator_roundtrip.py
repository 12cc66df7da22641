"""Round trips through the real e2b SDK against the local emulator (no injected latency).

    python -m bench.emulator_roundtrip [-n 20] [--isolation auto|namespace|process]

Prints the median (and p90) of create -> run -> kill and of pause -> connect.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

import click

from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from emulator.errors import EmulatorError
from emulator.testing import running_emulator


def _summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"{name:<28} median {statistics.median(ordered) * 1000:7.1f} ms   "
        f"p90 {p90 * 1000:7.1f} ms   (n={len(ordered)})"
    )


async def run(n: int, isolation: str) -> None:
    async with running_emulator(isolation=isolation) as emu:
        os.environ.update(emu.env())
        os.environ.pop("E2B_DEBUG", None)
        from e2b import AsyncSandbox

        roundtrip, create, command, kill, pause, connect = [], [], [], [], [], []
        warm = await AsyncSandbox.create()  # warm up connection pools
        await warm.kill()
        for _ in range(n):
            t0 = time.perf_counter()
            sbx = await AsyncSandbox.create(timeout=60)
            t1 = time.perf_counter()
            result = await sbx.commands.run("echo ok")
            assert result.stdout == "ok\n"
            t2 = time.perf_counter()
            await sbx.kill()
            t3 = time.perf_counter()
            roundtrip.append(t3 - t0)
            create.append(t1 - t0)
            command.append(t2 - t1)
            kill.append(t3 - t2)

        sbx = await AsyncSandbox.create(timeout=120)
        await sbx.commands.run("sleep 600", background=True, timeout=0)
        for _ in range(n):
            t0 = time.perf_counter()
            assert await sbx.pause() is True
            t1 = time.perf_counter()
            sbx = await AsyncSandbox.connect(sbx.sandbox_id)
            t2 = time.perf_counter()
            pause.append(t1 - t0)
            connect.append(t2 - t1)
        await sbx.kill()
        both = [a + b for a, b in zip(pause, connect, strict=True)]
        mode = "namespaces" if emu.core.isolated else "plain processes"
        print(f"emulator round trips ({mode}, e2b SDK over HTTP, no injected latency)")
        print(_summary("create -> run -> kill", roundtrip))
        print(_summary("  create", create))
        print(_summary("  commands.run('echo ok')", command))
        print(_summary("  kill", kill))
        print(_summary("pause -> connect", both))
        print(_summary("  pause", pause))
        print(_summary("  connect (resume)", connect))
        leaked = emu.live_sandboxes()
        if leaked:
            print(f"leaked sandboxes: {leaked}", file=sys.stderr)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("-n", "n", type=int, default=20, metavar="N", help="iterations (default 20)")
@click.option("--isolation", default="auto", type=click.Choice(["auto", "namespace", "process"]))
def command(n: int, isolation: str) -> int:
    """Round trips through the real e2b SDK against the local emulator (no injected latency)."""
    if n < 1:
        raise click.UsageError("-n must be at least 1")
    asyncio.run(run(n, isolation))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The exit code (`argv` given), else it ends the process itself (`common.cli.main`)."""
    return run_command(
        command, argv, prog_name="python -m bench.emulator_roundtrip", known=(EmulatorError,)
    )


if __name__ == "__main__":
    main()
