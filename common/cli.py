"""How every entry point runs: a click command, each failure one line on stderr, then exit.

`sessions`, `python worker.py`, `python -m emulator`, the codec server and the bench all go
through `main()`, so a bad argument, a bad setting or an unreachable service reads the same
everywhere: `error: <cause>`, exit 2 for what the person must fix, 1 otherwise, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from common.errors import SessionsError, validation_message

__all__ = ["exit_process", "main", "one_line", "run"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
"""For every command: `-h` as well as `--help`, help text 100 columns wide."""


def main(
    command: click.Command,
    argv: Sequence[str] | None = None,
    *,
    prog_name: str,
    known: tuple[type[BaseException], ...] = (),
) -> int:
    """Run `command`; as the program (`argv` None), end the process once output is flushed.

    Ending it ourselves matters: the Temporal client's Rust threads can abort a normal
    interpreter shutdown with "Fatal Python error: PyGILState_Release"
    (temporalio/sdk-python#300), which would turn a good run into a crash and lose its code.
    """
    code = run(command, list(sys.argv[1:] if argv is None else argv), prog_name, known=known)
    if argv is not None:
        return code
    exit_process(code)


def run(
    command: click.Command,
    args: list[str],
    prog_name: str,
    *,
    known: tuple[type[BaseException], ...] = (),
) -> int:
    """The command's exit code; `known` errors (besides `SessionsError`) print their message."""
    try:
        rv = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        _err("error: aborted")
        return 130
    except click.ClickException as e:
        hint = ""
        ctx = getattr(e, "ctx", None)
        if isinstance(e, click.UsageError) and ctx is not None:
            hint = f" (see `{ctx.command_path} --help`)"
        _err(f"error: {one_line(e.format_message())}{hint}")
        return e.exit_code
    except SessionsError as e:
        _err(f"error: {one_line(str(e))}")
        return e.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return 141
    except known as e:
        _err(f"error: {one_line(str(e))}")
        return int(getattr(e, "exit_code", 1))
    except Exception as e:
        # Imported here: an argument that broke a model's rule is the only way pydantic gets in,
        # and `--help` need not load it.
        from pydantic import ValidationError

        if isinstance(e, ValidationError):
            _err(f"error: invalid {e.title}: {validation_message(e, whole=None)}")
            return 2
        _err(f"error: {type(e).__name__}: {one_line(str(e))}")  # the last net: still one line
        return 1
    return rv if isinstance(rv, int) else 0


def exit_process(code: int) -> NoReturn:
    """Flush, then leave without interpreter finalization (see `main`)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")
