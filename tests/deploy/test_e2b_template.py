"""The `donmai-worker` E2B template, offline: its download step really refuses a missing or wrong
checksum (run with a stand-in `curl`, as Docker and as E2B's builder run it), and
deploy/e2b/template.py builds the definition E2B's SDK would send, with the checksum in it and no
start command, without contacting E2B."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
E2B_DIR = ROOT / "deploy" / "e2b"
DOCKERFILE = E2B_DIR / "e2b.Dockerfile"
SHA = "ab" * 32


@pytest.fixture(scope="module")
def template() -> ModuleType:
    return load_script(E2B_DIR / "template.py")


@pytest.fixture(scope="module")
def check_deploy() -> ModuleType:
    return load_script(ROOT / "deploy" / "check_deploy.py")


# --- the download step -------------------------------------------------------------------------

FAKE_DONMAI = b"#!/bin/sh\necho 'donmai 0.11.0'\n"
FAKE_CURL = """#!/bin/sh
# Stands in for curl: records the call, writes the fake donmai to the -o target.
echo "$@" >> "$CALLS"
while [ $# -gt 0 ]; do
  if [ "$1" = -o ]; then printf '%s' "$FAKE" > "$2"; fi
  shift
done
"""


def _download_step(check_deploy: ModuleType, target: Path) -> str:
    steps = check_deploy._dockerfile_steps(DOCKERFILE.read_text())
    (fetch,) = [args for op, args in steps if op == "RUN"]
    return fetch.replace("/usr/local/bin/donmai", str(target))


@pytest.fixture
def run_download(tmp_path: Path, check_deploy: ModuleType):
    bindir, calls, target = tmp_path / "bin", tmp_path / "curl-calls", tmp_path / "donmai"
    bindir.mkdir()
    (bindir / "curl").write_text(FAKE_CURL)
    (bindir / "curl").chmod(0o755)
    script = _download_step(check_deploy, target)

    def run(shell: list[str], sha: str) -> tuple[subprocess.CompletedProcess, bool]:
        env = {
            "PATH": f"{bindir}:{tmp_path}:/usr/bin:/bin",
            "CALLS": str(calls),
            "FAKE": FAKE_DONMAI.decode(),
            # The ARGs, as Docker (build args) and E2B's builder (envs) give them to RUN.
            "DONMAI_VERSION": "v0.11.0",
            "DONMAI_ASSET": "donmai_linux_amd64",
            "DONMAI_SHA256": sha,
        }
        result = subprocess.run([*shell, script], env=env, capture_output=True, text=True)
        return result, calls.exists()

    return run


SHELLS = {
    "docker": ["bash", "-o", "pipefail", "-c"],  # the Dockerfile's SHELL
    "e2b": ["bash", "-c"],  # E2B's builder ignores SHELL and runs /bin/bash -l -c
}


@pytest.mark.parametrize("shell", SHELLS.values(), ids=SHELLS.keys())
@pytest.mark.parametrize("sha", ["", "not-a-sha", SHA[:-1]], ids=["empty", "word", "short"])
def test_a_missing_or_malformed_checksum_fails_before_downloading(run_download, shell, sha):
    result, downloaded = run_download(shell, sha)
    assert result.returncode != 0
    assert "DONMAI_SHA256 must be the 64-hex sha256 of donmai_linux_amd64 v0.11.0" in result.stderr
    assert not downloaded


@pytest.mark.parametrize("shell", SHELLS.values(), ids=SHELLS.keys())
def test_a_wrong_checksum_fails_the_build_and_the_right_one_installs_donmai(run_download, shell):
    wrong, downloaded = run_download(shell, SHA)
    assert wrong.returncode != 0 and downloaded
    assert "FAILED" in wrong.stdout + wrong.stderr  # sha256sum -c's verdict

    right, _ = run_download(shell, hashlib.sha256(FAKE_DONMAI).hexdigest())
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip().endswith("donmai 0.11.0")  # `donmai --version` ran


# --- template.py -------------------------------------------------------------------------------


def _definition(template: ModuleType, **args: str) -> dict:
    built = template.definition(template.build_args(SHA, **args))
    from e2b import Template

    return json.loads(Template.to_json(built))


def test_the_definition_carries_the_checksum_the_pinned_base_and_no_start_command(template):
    spec = _definition(template)
    from_line = next(line for line in DOCKERFILE.read_text().splitlines() if line[:5] == "FROM ")
    assert spec["fromImage"] == from_line.split()[1] and "@sha256:" in spec["fromImage"]
    envs = {s["args"][0]: s["args"][1] for s in spec["steps"] if s["type"] == "ENV"}
    assert envs == {
        "DONMAI_VERSION": "v0.11.0",
        "DONMAI_ASSET": "donmai_linux_amd64",
        "DONMAI_SHA256": SHA,
    }
    [run] = [s["args"][0] for s in spec["steps"] if s["type"] == "RUN"]
    assert "sha256sum -c" in run and "donmai --version" in run
    # No start or ready command: E2B would run it at build time, never with a session's env.
    assert "startCmd" not in spec and "readyCmd" not in spec
    # The build steps run as root; sandboxes then run as E2B's `user`.
    users = [s["args"][0] for s in spec["steps"] if s["type"] == "USER"]
    assert users == ["root", "user"]


def test_build_arguments_replace_the_dockerfiles_defaults(template):
    spec = _definition(template, donmai_version="v0.12.0", donmai_asset="donmai_linux_arm64")
    envs = {s["args"][0]: s["args"][1] for s in spec["steps"] if s["type"] == "ENV"}
    assert envs["DONMAI_VERSION"] == "v0.12.0" and envs["DONMAI_ASSET"] == "donmai_linux_arm64"
    with pytest.raises(template.TemplateError, match="declares no ARG DONMAI_CHANNEL"):
        template.with_build_args(DOCKERFILE.read_text(), {"DONMAI_CHANNEL": "beta"})
    with pytest.raises(template.TemplateError, match="one word"):
        template.with_build_args(DOCKERFILE.read_text(), {"DONMAI_VERSION": "v1; rm -rf /"})


@pytest.mark.parametrize("sha", ["", "abc", "g" * 64, SHA + "0"])
def test_a_bad_checksum_is_refused_before_anything_is_built(template, sha):
    with pytest.raises(template.TemplateError, match="--donmai-sha256 must be the 64-hex"):
        template.build_args(sha)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    return subprocess.run(
        [sys.executable, str(E2B_DIR / "template.py"), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=ROOT,
        timeout=60,
    )


def test_the_script_prints_the_definition_on_a_dry_run_and_says_what_is_missing():
    dry = _cli("--donmai-sha256", SHA.upper(), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    spec = json.loads(dry.stdout)  # stdout is the definition alone
    assert {"DONMAI_SHA256", SHA} <= {a for s in spec["steps"] for a in s["args"]}

    no_sha = _cli("--dry-run")
    assert no_sha.returncode == 2 and "--donmai-sha256" in no_sha.stderr

    bad = _cli("--donmai-sha256", "", "--dry-run")
    assert bad.returncode == 2 and "must be the 64-hex sha256" in bad.stderr
    assert "Traceback" not in bad.stderr

    no_key = _cli("--donmai-sha256", SHA)
    assert no_key.returncode == 2 and "set E2B_API_KEY" in no_key.stderr

    odd = _cli("--donmai-sha256", SHA, "--memory-mb", "511", "--dry-run")
    assert odd.returncode == 2 and "--memory-mb must be a positive even number" in odd.stderr
