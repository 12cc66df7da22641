"""`exec_command` against the emulator: the seed's contract, through `/bin/bash -l -c`."""

from __future__ import annotations

import time

import pytest

from provider import ExecTimeout, InvalidRequest, SandboxRef
from tests.fixtures.provider import Sandboxes, ref_of


@pytest.fixture
async def ref(sandboxes: Sandboxes) -> SandboxRef:
    return ref_of(await sandboxes.provision())


async def test_shell_syntax_env_and_cwd(sandboxes: Sandboxes, ref: SandboxRef) -> None:
    out = await sandboxes.exec(
        ref,
        'printf "b\\na\\n" | sort | tr a-z A-Z && echo "$GREETING from $(pwd)" && echo oops >&2',
        env={"GREETING": "hello world"},
        cwd="/tmp",
    )
    assert out.exit_code == 0
    assert out.stdout == "A\nB\nhello world from /tmp\n"
    assert out.stderr == "oops\n"
    # Per command: the next one does not see it.
    again = await sandboxes.exec(ref, 'echo "[${GREETING:-}]"')
    assert again.stdout == "[]\n"


async def test_nonzero_exit_is_a_result(sandboxes: Sandboxes, ref: SandboxRef) -> None:
    out = await sandboxes.exec(ref, "echo partial; echo broken >&2; exit 3")
    assert (out.exit_code, out.stdout, out.stderr) == (3, "partial\n", "broken\n")
    failed_and = await sandboxes.exec(ref, "false && echo never")
    assert failed_and.exit_code == 1 and failed_and.stdout == ""


async def test_timeout_raises_and_kills_the_command(sandboxes: Sandboxes, ref: SandboxRef) -> None:
    started = time.monotonic()
    with pytest.raises(ExecTimeout) as info:
        await sandboxes.exec(ref, "echo begun; sleep 47.5", timeout_seconds=1)
    assert 1 <= time.monotonic() - started < 5
    assert not info.value.retryable and "1s" in str(info.value)
    alive = await sandboxes.exec(ref, "ps -eo args | grep -c '[s]leep 47.5'")
    assert alive.stdout.strip() == "0"


async def test_a_detached_command_outlives_the_call(sandboxes: Sandboxes, ref: SandboxRef) -> None:
    """`nohup ... &` works as authored (the seed's promise): the call returns, the process runs."""
    out = await sandboxes.exec(
        ref, "nohup sleep 300 > /dev/null 2>&1 & echo $! > /tmp/bg.pid; echo started"
    )
    assert out.exit_code == 0 and out.stdout == "started\n"
    check = await sandboxes.exec(ref, "sleep 0.3; kill -0 $(cat /tmp/bg.pid) && echo alive")
    assert check.stdout == "alive\n"


async def test_missing_cwd_is_an_invalid_request(sandboxes: Sandboxes, ref: SandboxRef) -> None:
    with pytest.raises(InvalidRequest, match="does not exist"):
        await sandboxes.exec(ref, "pwd", cwd="/no/such/dir")
