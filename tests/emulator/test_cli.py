"""`python -m emulator` and `sessions emulator` as a person runs them: one line per failure.

Both run the emulator's click command through `common.cli.main`: a bad argument or setting is
one `error: ...` line naming the option and the rule (exit 2), a failure at run time one line
(exit 1), never a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.server import config_from_options

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    """This environment without the variables that would configure the emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "E2B_"))}
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    shown = f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.returncode != 0, shown
    assert "Traceback" not in result.stderr, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    return lines[0]


def test_help_lists_every_option() -> None:
    result = _run("-m", "emulator", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: python -m emulator")
    for option in ("--port", "--envd-port", "--latency", "--fault-rate", "--isolation", "-h"):
        assert option in result.stdout


def test_a_bad_argument_is_one_line_exit_2() -> None:
    result = _run("-m", "emulator", "--port", "many")
    line = _one_error_line(result)
    assert result.returncode == 2
    assert "'--port'" in line and "'many' is not a valid integer" in line


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "70000"], {}, "invalid --port (env EMULATOR_PORT): Input should be less"),
        (["--fault-rate", "2"], {}, "invalid --fault-rate (env EMULATOR_FAULT_RATE): Input"),
        (["--latency", "bad"], {}, "invalid --latency (env EMULATOR_LATENCY): latency must look"),
        (["--error-status", "404"], {}, "invalid --error-status: Input should be greater"),
        (["--log-level", "loud"], {}, "invalid --log-level: 'loud' is not a level"),
        ([], {"EMULATOR_PORT": "abc"}, "invalid --port (env EMULATOR_PORT): Input should be"),
    ],
)
def test_a_bad_setting_names_its_option_and_the_rule(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = _run("-m", "emulator", "--quiet", *args, env=_env(**env))
    assert _one_error_line(result).startswith(f"error: {expected}")
    assert result.returncode == 2


def test_a_port_in_use_is_one_line_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(
            "-m", "emulator", "--port", str(port), "--envd-port", "0", "--isolation", "process"
        )
    line = _one_error_line(result)
    assert result.returncode == 1
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}")


def test_latency_is_repeatable_and_comma_separated() -> None:
    config = config_from_options({"latency": ("create=0.1", "pause=2,resume=1")})
    assert config.latency == {"create": 0.1, "pause": 2.0, "resume": 1.0}
    assert config_from_options({"latency": ("realistic",)}).latency["connect"] == 1.0


def test_sessions_emulator_passes_further_options_to_the_emulator() -> None:
    result = _run("-m", "sessions", "emulator", "--quiet", "--latency", "bad")
    assert _one_error_line(result).startswith("error: invalid --latency")
    assert result.returncode == 2


def test_sessions_help_does_not_load_the_emulator() -> None:
    code = (
        "import sys\n"
        "from sessions.cli import main\n"
        "assert main(['--help']) == 0\n"
        "print('loaded' if 'emulator' in sys.modules else 'not loaded')\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("not loaded")


@pytest.mark.parametrize("missing", ["emulator", "yaml"])
def test_sessions_emulator_without_the_local_extra_says_what_to_install(missing: str) -> None:
    # The worker image installs neither the `local` extra (pyyaml) nor, maybe, the emulator.
    code = (
        "import sys\n"
        f"sys.modules[{missing!r}] = None\n"
        "from sessions.cli import main\n"
        "sys.exit(main(['emulator', '--port', '0']))\n"
    )
    result = _run("-c", code)
    line = _one_error_line(result)
    assert "pip install 'session-worker[local]'" in line
    assert f"no module named {missing!r}" in line
