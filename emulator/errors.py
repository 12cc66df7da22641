"""Errors in E2B's JSON shape (`{"code": int, "message": str}`), so the SDK raises its own types."""

from __future__ import annotations

from starlette.responses import JSONResponse


class EmulatorError(Exception):
    """Root of the emulator's errors; carries the HTTP status the API answers with.

    `error_code` is E2B's machine-readable `error_code` field (the SDK's `Error` model names
    e.g. `idempotency_request_mismatch`); left out of the body when None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        error_code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.error_code = error_code

    def response(self) -> JSONResponse:
        return error_response(
            self.status, self.message, headers=self.headers, error_code=self.error_code
        )


def not_found_message(sandbox_id: str) -> str:
    """E2B's words for a sandbox that is not (or no longer) there (utils.SandboxNotFoundMsg)."""
    return f"Sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it"


class SandboxNotFound(EmulatorError):
    def __init__(self, sandbox_id: str):
        super().__init__(404, not_found_message(sandbox_id))


class SandboxConflict(EmulatorError):
    def __init__(self, message: str):
        super().__init__(409, message)


def error_response(
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    error_code: str | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"code": status, "message": message}
    if error_code is not None:
        body["error_code"] = error_code
    return JSONResponse(body, status_code=status, headers=headers)
