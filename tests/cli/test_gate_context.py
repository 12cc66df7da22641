"""`sessions gate` with what the agent asks to do and who may decide, shown back by `status`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.fixtures.cli import Cli, CliStack, Result
from tests.fixtures.stack import state_is

DIFF = "\n".join(f"+ line {i}" for i in range(1, 31))
"""30 lines of details: `status` shows the first 12 and says how many more."""


async def with_stdin(cli: Cli, data: bytes, *args: str) -> Result:
    """`sessions ARGS` with `data` on its standard input (`--details-file -`)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sessions",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli.env,
        cwd=cli.cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(data), 60)
    assert proc.returncode is not None
    return Result(args, proc.returncode, out.decode(), err.decode())


async def test_a_gate_with_its_context_end_to_end(cli_stack: CliStack, tmp_path: Path) -> None:
    cli = cli_stack.cli
    sid = (await cli("start", "--org", "ctx", "--issue", "ISS-3")).ok().out.strip()
    await cli_stack.wait_for(sid, state_is("running"), what="running")
    details = tmp_path / "plan.diff"
    details.write_text(DIFF)
    (
        await cli(
            "gate",
            sid,
            "deploy",
            "--title",
            "Deploy",
            "--summary",
            "Apply the plan to staging",
            "--details-file",
            str(details),
            "--requested-by",
            "runner-7",
            "--approver",
            "ana",
            "--approver",
            "bo",
            "--timeout",
            "1h",
            "--remind-at",
            "0.25",
        )
    ).ok()
    await cli_stack.wait_for(sid, state_is("paused"), what="paused at deploy")

    status = json.loads((await cli("status", sid, "--json")).ok().out)
    [gate] = status["gates"]
    assert gate["summary"] == "Apply the plan to staging" and gate["details"] == DIFF
    assert gate["requested_by"] == "runner-7" and gate["approvers"] == ["ana", "bo"]
    assert gate["allow_self_approval"] is False and gate["remind_at"] == 0.25

    shown = (await cli("status", sid)).ok().out
    assert "gate deploy\n  summary       Apply the plan to staging\n" in shown, shown
    assert "  requested by  runner-7\n  approvers     ana, bo\n" in shown, shown
    assert "  details\n    + line 1\n" in shown and "    + line 12\n" in shown, shown
    assert "+ line 13" not in shown
    assert "    … 18 more lines (sessions status --json for all)" in shown, shown

    # only an approver decides, in the workflow's own words, on one line
    refused = (await cli("approve", sid, "deploy", "--by", "eve")).one_error_line()
    assert refused == "error: eve may not approve gate 'deploy': its approvers are ana, bo"
    (await cli("approve", sid, "deploy", "--by", "Ana")).ok()  # names compare without case
    await cli_stack.wait_for(sid, state_is("running"), what="running again")

    # details from standard input; the requester may not approve their own gate
    piped = await with_stdin(
        cli, b"kubectl apply -f prod.yaml\n", "gate", sid, "prod", "--details-file", "-",
        "--requested-by", "ana", "--summary", "Go live",
    )  # fmt: skip
    piped.ok()
    await cli_stack.wait_for(sid, state_is("paused"), what="paused at prod")
    prod = json.loads((await cli("status", sid, "--json")).ok().out)["gates"][1]
    assert prod["details"] == "kubectl apply -f prod.yaml\n" and prod["approvers"] == []
    own = (await cli("approve", sid, "prod", "--by", "ana")).one_error_line()
    assert own == (
        "error: ana requested gate 'prod' and may not approve it "
        "(the gate does not allow self-approval)"
    )
    (await cli("reject", sid, "prod", "--by", "ana", "--comment", "not today")).ok()
    listed = (await cli("list", "--org", "ctx")).ok().out
    assert sid in listed
    (await cli("finish", sid, "--wait")).ok()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--details", "x" * (16 * 1024 + 1)),
            "error: invalid GateRequest: details: details is 16385 bytes; at most 16384 (16 KiB)",
        ),
        (
            ("--approver", "ana", "--approver", "\x1b[31mbo"),
            "error: invalid GateRequest: approvers: each approver contains control characters "
            "(0x1b)",
        ),
        (
            ("--details", "a", "--details-file", "-"),
            "error: give --details or --details-file, not both",
        ),
        (
            ("--details-file", "/nonexistent/plan.diff"),
            "error: cannot read --details-file /nonexistent/plan.diff: No such file or directory",
        ),
        (
            ("--remind-at", "1.5"),
            "error: invalid GateRequest: remind_at: Input should be less than 1",
        ),
        (
            ("--summary", "two\nlines"),
            "error: invalid GateRequest: summary: summary contains control characters (0xa)",
        ),
    ],
)
async def test_bad_gate_context_is_one_clear_line(
    cli: Cli, args: tuple[str, ...], line: str
) -> None:
    result = await cli("gate", "s", "deploy", *args)
    assert result.one_error_line() == line, result
    assert result.code == 2 and result.out == ""


async def test_a_details_file_too_big_or_not_text(cli: Cli, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (16 * 1024 + 10))
    too_big = (await cli("gate", "s", "g", "--details-file", str(big))).one_error_line()
    assert too_big == (
        f"error: --details-file {big}: details is over 16384 bytes; at most 16384 (16 KiB)"
    )
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    not_text = (await cli("gate", "s", "g", "--details-file", str(binary))).one_error_line()
    assert not_text == f"error: --details-file {binary} is not UTF-8 text"
