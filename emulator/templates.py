"""Sandbox templates: `base` built in, more from a YAML or JSON file.

File format (YAML or JSON), either under a top-level `templates:` key or directly::

    demo-runner:
      start_cmd: "~/.local/bin/demo_runner.sh"   # run in the background at boot
      envs: {RUNNER_LOG: /home/user/runner.log}  # added to every command's environment
      files:                                     # sandbox path -> file (relative to this file)
        /home/user/.local/bin/demo_runner.sh: demo_runner.sh
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from .errors import EmulatorError

PRIVATE_ROOTS = ("/home/user", "/tmp")


class Template(BaseModel):
    """What a sandbox of this template starts with."""

    template_id: str
    start_cmd: str | None = None
    envs: dict[str, str] = Field(default_factory=dict)
    files: dict[str, Path] = Field(default_factory=dict)
    """Sandbox path (under /home/user or /tmp) -> host source file, installed executable."""

    @field_validator("files")
    @classmethod
    def _private_destinations(cls, files: dict[str, Path]) -> dict[str, Path]:
        for dest in files:
            path = PurePosixPath(dest)
            if not any(path.is_relative_to(root) for root in PRIVATE_ROOTS) or ".." in path.parts:
                raise ValueError(f"template file {dest!r} must be under /home/user or /tmp")
        return files


BASE = Template(template_id="base")


class TemplateError(EmulatorError):
    def __init__(self, message: str):
        super().__init__(400, message)


def load_templates(path: Path | None) -> dict[str, Template]:
    """The built-in `base` plus the templates in `path`; a bad file is one clear error."""
    templates = {"base": BASE}
    if path is None:
        return templates
    path = Path(path)
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise TemplateError(f"cannot read templates file {path}: {_one_line(e)}") from e
    if isinstance(raw, dict) and isinstance(raw.get("templates"), dict):
        raw = raw["templates"]
    if not isinstance(raw, dict):
        raise TemplateError(f"templates file {path} must map template ids to settings")
    for template_id, spec in raw.items():
        if not isinstance(spec, dict | None):
            raise TemplateError(f"template {template_id!r} in {path} must be a mapping")
        spec = dict(spec or {})
        files = {
            dest: (path.parent / src).resolve()
            for dest, src in (spec.pop("files", {}) or {}).items()
        }
        try:
            template = Template(template_id=str(template_id), files=files, **spec)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise TemplateError(
                f"template {template_id!r} in {path}: {where}: {first['msg']}"
            ) from e
        for src in template.files.values():
            if not src.is_file():
                raise TemplateError(f"template {template_id!r}: file {src} does not exist")
        templates[template.template_id] = template
    return templates


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]
