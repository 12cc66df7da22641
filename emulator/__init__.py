"""A local E2B-compatible service: the control plane REST API and envd, with real sandboxes.

Point the unmodified `e2b` SDK at it with `E2B_API_URL`, `E2B_SANDBOX_URL` and `E2B_API_KEY`.
"""

from pathlib import Path

from .config import EmulatorConfig, FaultSettings, ScriptedFault
from .errors import EmulatorError
from .limits import TIERS, Limits
from .records import SandboxRecord, Transition
from .server import EmulatorCore, main, serve

DEMO_TEMPLATES = Path(__file__).with_name("templates.demo.yaml")
"""Templates `demo-runner` and `donmai-worker`, for `--templates`."""

__all__ = [
    "DEMO_TEMPLATES",
    "EmulatorConfig",
    "EmulatorCore",
    "EmulatorError",
    "FaultSettings",
    "Limits",
    "SandboxRecord",
    "ScriptedFault",
    "TIERS",
    "Transition",
    "main",
    "serve",
]
