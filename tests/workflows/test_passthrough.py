"""The workflow modules are passed through the sandbox (`worker.PASSTHROUGH_MODULES`): every
run shares one copy of them. That is safe only while they keep no state between runs, so any
module-level value in `workflows` must be immutable; and the sandbox must still refuse what is
not deterministic at run time.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import types
import uuid
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import workflows
from worker import PASSTHROUGH_MODULES, workflow_runner

IMMUTABLE = (str, bytes, int, float, bool, type(None), timedelta, re.Pattern, frozenset, Enum)


def _immutable(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(v) for v in value)
    return isinstance(value, IMMUTABLE)


def _workflow_modules() -> list[types.ModuleType]:
    found = [workflows]
    for info in pkgutil.iter_modules(workflows.__path__, "workflows."):
        found.append(importlib.import_module(info.name))
    return found


def _assigned(module: types.ModuleType) -> set[str]:
    """The names a module's own top-level statements assign (not its imports, defs, classes)."""
    tree = ast.parse(Path(module.__file__ or "").read_text())
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _is_alias(value: object) -> bool:
    """A type alias or type variable (`Literal[...]`, `X | None`, `TypeVar`): a type, not state."""
    return type(value).__module__ in ("typing", "types") or isinstance(value, TypeVar)


def test_the_workflow_modules_are_passed_through_and_hold_no_state() -> None:
    assert "workflows" in PASSTHROUGH_MODULES
    shared = []
    for module in _workflow_modules():
        for name in sorted(_assigned(module) - {"__all__"}):
            value = getattr(module, name)
            if not (_immutable(value) or _is_alias(value)):
                shared.append(f"{module.__name__}.{name} = {type(value).__name__}")
    assert not shared, f"mutable module state shared by every run: {shared}"


@workflow.defn(name="PassthroughClock", sandboxed=True)
class _ReadsTheClock:
    @workflow.run
    async def run(self) -> str:
        import datetime

        return datetime.datetime.now().isoformat()  # not deterministic: the sandbox refuses


async def test_the_sandbox_still_refuses_a_non_deterministic_call(
    temporal_env: WorkflowEnvironment,
) -> None:
    queue = f"passthrough-{uuid.uuid4()}"
    async with Worker(
        temporal_env.client,
        task_queue=queue,
        workflows=[_ReadsTheClock],
        workflow_runner=workflow_runner(),
        workflow_failure_exception_types=[Exception],
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await temporal_env.client.execute_workflow(
                _ReadsTheClock.run, id=f"passthrough-{uuid.uuid4()}", task_queue=queue
            )
    assert "datetime.datetime.now" in str(failed.value.cause)
