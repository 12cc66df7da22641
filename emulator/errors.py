"""Errors in E2B's JSON shape (`{"code": int, "message": str}`), so the SDK raises its own types."""

from __future__ import annotations

from starlette.responses import JSONResponse


class EmulatorError(Exception):
    """Root of the emulator's errors; carries the HTTP status the API answers with."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, headers=self.headers)


class SandboxNotFound(EmulatorError):
    def __init__(self, sandbox_id: str):
        super().__init__(404, f"sandbox {sandbox_id!r} not found")


class SandboxConflict(EmulatorError):
    def __init__(self, message: str):
        super().__init__(409, message)


def error_response(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)
