"""Build and publish the `donmai-worker` E2B template with E2B's template SDK (build system v2).

    E2B_API_KEY=e2b_... python deploy/e2b/template.py --donmai-sha256 <sha256>
    python deploy/e2b/template.py --donmai-sha256 <sha256> --dry-run   # print it, build nothing

The template is `e2b.Dockerfile` next to this file, read by the SDK's own Dockerfile parser
(`Template().from_dockerfile`, as `e2b template create` does) with its `ARG` defaults replaced
by the options below: the build arguments the CLI's `template create` cannot take. It has no
start command: E2B runs a start command once, at build time, so it could never see a session's
env (see README.md); sessions launch the runner after create instead (`launchRunnerInline`).

Needs the `e2b` package (a dependency of session-worker) and the team's API key in
`E2B_API_KEY` (`Template.build` authenticates with the API key, like the SDK's sandboxes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DOCKERFILE = HERE / "e2b.Dockerfile"
DEFAULT_NAME = "donmai-worker"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9_-]+(:[A-Za-z0-9._-]+)?")
"""E2B's template name rule (lowercase letters, digits, dashes, underscores), optional `:tag`."""


class TemplateError(Exception):
    """A bad option or Dockerfile: one line for the user, no traceback."""


def dockerfile_args(text: str) -> dict[str, str]:
    """The `ARG NAME=default` declarations of a Dockerfile, in order."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*", line)
        if match:
            found[match.group(1)] = match.group(2) or ""
    return found


def with_build_args(text: str, args: dict[str, str]) -> str:
    """The Dockerfile with these `ARG` defaults replaced, as `docker build --build-arg` would."""
    declared = dockerfile_args(text)
    unknown = sorted(set(args) - set(declared))
    if unknown:
        raise TemplateError(f"e2b.Dockerfile declares no ARG {', '.join(unknown)}")
    for name, value in args.items():
        if not value or any(c.isspace() or c in "\"'$\\" for c in value):
            raise TemplateError(f"{name} must be one word without quotes or $, got {value!r}")
        text = re.sub(
            rf"(?m)^(\s*ARG\s+{name})(=\S*)?\s*$",
            lambda m, value=value: f"{m.group(1)}={value}",
            text,
        )
    return text


def build_args(
    donmai_sha256: str, donmai_version: str | None = None, donmai_asset: str | None = None
) -> dict[str, str]:
    sha = donmai_sha256.strip().lower()
    if not _SHA256.fullmatch(sha):
        raise TemplateError(
            "--donmai-sha256 must be the 64-hex sha256 of the donmai release asset "
            f"(from the release's checksums), got {donmai_sha256!r}"
        )
    args = {"DONMAI_SHA256": sha}
    if donmai_version:
        args["DONMAI_VERSION"] = donmai_version
    if donmai_asset:
        args["DONMAI_ASSET"] = donmai_asset
    return args


def definition(args: dict[str, str], dockerfile: Path = DOCKERFILE) -> Any:
    """The template, as the SDK will send it: nothing is contacted."""
    from e2b import Template

    text = with_build_args(dockerfile.read_text(), args)
    # The SDK's parser prints its notes ("Unsupported instruction: SHELL": E2B runs each RUN
    # with bash, which the step needs no more than its `-o pipefail`) on stdout: keep stdout
    # for the template itself.
    with contextlib.redirect_stdout(sys.stderr):
        return Template(file_context_path=dockerfile.parent).from_dockerfile(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python deploy/e2b/template.py",
        description="Build and publish the donmai-worker E2B template (E2B build system v2).",
    )
    parser.add_argument(
        "--donmai-sha256",
        required=True,
        help="sha256 of the donmai release asset, from the release's checksums (required)",
    )
    parser.add_argument("--donmai-version", help="donmai release tag [default: the Dockerfile's]")
    parser.add_argument("--donmai-asset", help="release asset name [default: the Dockerfile's]")
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help=f"template name[:tag] [default: {DEFAULT_NAME}]"
    )
    parser.add_argument("--cpu-count", type=int, help="vCPUs of each sandbox [default: E2B's]")
    parser.add_argument(
        "--memory-mb", type=int, help="memory (MiB, even) of each sandbox [default: E2B's]"
    )
    parser.add_argument("--skip-cache", action="store_true", help="rebuild every layer")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the template's JSON and build nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    opts = _parser().parse_args(argv)
    try:
        if not _NAME.fullmatch(opts.name):
            raise TemplateError(
                f"--name {opts.name!r}: lowercase letters, digits, dashes and underscores only"
            )
        if opts.memory_mb is not None and (opts.memory_mb <= 0 or opts.memory_mb % 2):
            raise TemplateError(f"--memory-mb must be a positive even number, got {opts.memory_mb}")
        if opts.cpu_count is not None and opts.cpu_count <= 0:
            raise TemplateError(f"--cpu-count must be positive, got {opts.cpu_count}")
        args = build_args(opts.donmai_sha256, opts.donmai_version, opts.donmai_asset)
        template = definition(args)
    except (TemplateError, OSError, ValueError) as err:
        print(f"template: {err}", file=sys.stderr)
        return 2

    from e2b import Template, default_build_logger

    if opts.dry_run:
        print(Template.to_json(template))
        return 0
    if not os.environ.get("E2B_API_KEY"):
        print("template: set E2B_API_KEY to the team's API key to build", file=sys.stderr)
        return 2
    try:
        info = Template.build(
            template,
            opts.name,
            cpu_count=opts.cpu_count,
            memory_mb=opts.memory_mb,
            skip_cache=opts.skip_cache,
            on_build_logs=default_build_logger(),
        )
    except Exception as err:  # the SDK's errors: one line, never a traceback or a key
        print(f"template: build failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"template {opts.name}: id {info.template_id}, build {info.build_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
