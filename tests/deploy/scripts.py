"""The deploy scripts (`deploy/*.py`, `deploy/e2b/template.py`) as modules, for the tests that
call their functions: they are programs, not packages, so they are loaded from their path."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@functools.cache
def load_script(path: Path) -> ModuleType:
    """The script at `path`, run once as a module named after its file."""
    spec = importlib.util.spec_from_file_location(f"deploy_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dockerfile_steps(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs as check_deploy.py reads them."""
    steps: list[tuple[str, str]] = load_script(DEPLOY / "check_deploy.py")._dockerfile_steps(
        dockerfile.read_text()
    )
    return steps
