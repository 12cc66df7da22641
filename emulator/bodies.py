"""The control plane's request bodies, read strictly: a field E2B's spec does not have, a value
of the wrong type, or a feature the emulator cannot honour is a 400 naming the field — never
silently ignored, so a test cannot pass against the emulator while meaning something else.

E2B itself decodes bodies leniently (unknown fields are dropped); the emulator is the stricter
one there. Messages start like E2B's parse errors: `Error when parsing request: ...`.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from .errors import EmulatorError

M = TypeVar("M", bound=BaseModel)

UNSUPPORTED = "is not supported by the emulator"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AutoResume(_Body):
    enabled: StrictBool


class VolumeMount(_Body):
    name: StrictStr
    path: StrictStr


class Iam(_Body):
    tokens: dict[str, Any] | None = None


class NetworkConfig(_Body):
    allow_public_traffic: StrictBool | None = Field(default=None, alias="allowPublicTraffic")
    allow_out: list[StrictStr] | None = Field(default=None, alias="allowOut")
    deny_out: list[StrictStr] | None = Field(default=None, alias="denyOut")
    dns_servers: list[StrictStr] | None = Field(default=None, alias="dnsServers")
    egress_proxy: dict[str, Any] | None = Field(default=None, alias="egressProxy")
    mask_request_host: StrictStr | None = Field(default=None, alias="maskRequestHost")
    https_ports: list[StrictInt] | None = Field(default=None, alias="httpsPorts")
    rules: dict[str, Any] | None = None


class NewSandboxV2(_Body):
    """`POST /v2/sandboxes` (the SDK's `NewSandboxV2`)."""

    template_id: StrictStr = Field(alias="templateID", min_length=1)
    timeout: StrictInt | None = None
    auto_pause: StrictBool | None = Field(default=None, alias="autoPause")
    auto_pause_memory: StrictBool | None = Field(default=None, alias="autoPauseMemory")
    auto_resume: AutoResume | None = Field(default=None, alias="autoResume")
    allow_internet_access: StrictBool | None = None
    network: NetworkConfig | None = None
    metadata: dict[str, StrictStr] | None = None
    env_vars: dict[str, StrictStr] | None = Field(default=None, alias="envVars")
    mcp: dict[str, Any] | None = None
    iam: Iam | None = None
    volume_mounts: list[VolumeMount] | None = Field(default=None, alias="volumeMounts")

    def check_supported(self) -> None:
        """Refuse what E2B would honour but the emulator cannot: 400 naming the field."""
        if self.auto_pause_memory is not None and not self.auto_pause:
            raise bad("autoPauseMemory is only allowed when autoPause is true")
        if self.auto_resume is not None and self.auto_resume.enabled and not self.auto_pause:
            raise bad("autoResume can only be enabled when autoPause is true")
        if self.auto_pause_memory is False:
            if self.auto_resume is not None and self.auto_resume.enabled:
                raise bad("autoResume cannot be enabled with autoPauseMemory false")
            raise bad(
                f"autoPauseMemory false (a filesystem-only snapshot) {UNSUPPORTED}: its pause "
                "always keeps memory"
            )
        if self.auto_resume is not None and self.auto_resume.enabled:
            raise bad(f"autoResume {UNSUPPORTED}: traffic never resumes a paused sandbox here")
        if self.allow_internet_access is False:
            raise bad(f"allow_internet_access false {UNSUPPORTED}: it cannot cut sandbox egress")
        if self.network is not None:
            for name, value in self.network.model_dump(by_alias=True).items():
                if name != "allowPublicTraffic" and value not in (None, [], {}):
                    raise bad(f"network.{name} {UNSUPPORTED}: it neither filters nor proxies")
        if self.mcp is not None:
            raise bad(f"mcp {UNSUPPORTED}")
        if self.iam is not None and self.iam.tokens:
            raise bad(f"iam (workload identity tokens) {UNSUPPORTED}")
        if self.volume_mounts:
            # E2B's InvalidVolumeMountsError wording; the emulator has no volumes at all.
            lines = [
                f"\t- volume mount #{i}: volume '{m.name}' not found"
                for i, m in enumerate(self.volume_mounts)
            ]
            raise EmulatorError(400, "invalid mounts:\n" + "\n".join(lines))


class NewSandbox(NewSandboxV2):
    """`POST /sandboxes` (v1): the same, plus the deprecated `secure` (accepted and ignored, as
    E2B does now: envd access is always secured)."""

    secure: StrictBool | None = None


class TimeoutBody(_Body):
    timeout: StrictInt


class ConnectBody(_Body):
    timeout: StrictInt | None = None
    memory: StrictBool | None = None


class ResumeBody(ConnectBody):
    auto_pause: StrictBool | None = Field(default=None, alias="autoPause")


class RefreshBody(_Body):
    duration: StrictInt | None = None


class PauseBody(_Body):
    memory: StrictBool | None = None
    require_healthy_guest: StrictBool | None = Field(default=None, alias="requireHealthyGuest")


def bad(problem: str) -> EmulatorError:
    return EmulatorError(400, f"Error when parsing request: {problem}")


def refuse_filesystem_only(memory: bool | None) -> None:
    """`memory: false` (pause filesystem-only, or resume cold) cannot be emulated: SIGSTOP keeps
    memory, and E2B refuses it where the capability is not enabled."""
    if memory is False:
        raise bad(f"memory false {UNSUPPORTED}: a pause here always keeps memory")


def _problem(error: ErrorDetails) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        return f'unknown field "{where}"'
    if error["type"] == "missing":
        return f'field "{where}" is required'
    return f'field "{where}": {error["msg"]}'


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The JSON object body as `model`; an empty body is `model()` when `optional`."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return model()
        raise bad("request body is required")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise bad(f"malformed JSON: {e}") from e
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = sorted(e.errors(include_url=False), key=lambda p: p["type"] != "extra_forbidden")
        raise bad(_problem(problems[0])) from e  # an unknown field is named first


def fingerprint(body: BaseModel) -> str:
    """The request as sent (fields given, canonical order): what an idempotent replay must match."""
    return json.dumps(body.model_dump(by_alias=True, exclude_unset=True), sort_keys=True)
