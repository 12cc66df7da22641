"""The layers point one way: sessions → worker.py → workflows → activities → telemetry →
provider | ledger → common. import-linter holds the packages to it (the contract in
pyproject.toml, run by the README's test command); a module is no package to import-linter, so
`worker.py` is checked here, with what the workflow sandbox must never load."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = {"common", "provider", "ledger", "telemetry", "activities", "workflows", "sessions"}
BELOW_THE_WORKER = {"common", "provider", "ledger", "telemetry", "activities", "workflows"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_worker_py_imports_only_the_layers_below_it() -> None:
    imported = _imported_roots(ROOT / "worker.py") & (PRODUCT | {"emulator", "bench"})
    assert imported <= BELOW_THE_WORKER, f"worker.py imports {sorted(imported - BELOW_THE_WORKER)}"
    assert {"workflows", "activities"} <= imported  # it does register them


def test_no_layer_below_the_worker_imports_it() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in BELOW_THE_WORKER
        for path in (ROOT / package).rglob("*.py")
        if "worker" in _imported_roots(path)
    ]
    assert offenders == []


def test_importing_the_workflows_loads_neither_e2b_nor_sqlalchemy() -> None:
    """Workflow code runs in Temporal's sandbox: it sees models and method names, never the E2B
    SDK (a network stack) or the SQL backend, in a fresh interpreter as in the sandbox."""
    probe = (
        "import json, sys; import workflows, workflows.session, workflows.reconciler; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert not loaded & {"e2b", "sqlalchemy", "aiosqlite", "asyncpg", "httpx"}, sorted(loaded)
    assert {"workflows", "activities", "ledger", "provider", "common"} <= loaded
