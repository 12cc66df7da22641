"""Log records that name their session, workflow and sandbox; JSON lines with `LOG_FORMAT=json`.

Temporal's workflow and activity loggers put their info in the record's `extra`
(`temporal_workflow`, `temporal_activity`); `LogContextInterceptor` adds the session and sandbox
of the running activity; the current span adds the trace id, so a log line leads to its trace.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from common.ids import session_id_of
from telemetry import log_context

CONTEXT_FIELDS = (
    "session_id",
    "workflow_id",
    "run_id",
    "workflow_type",
    "activity_type",
    "sandbox_id",
    "trace_id",
    "span_id",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"


class ContextFilter(logging.Filter):
    """Adds CONTEXT_FIELDS (None when unknown) and a short `context` suffix for text logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        info: dict[str, Any] = {}
        for key in ("temporal_workflow", "temporal_activity"):
            details = getattr(record, key, None)
            if isinstance(details, dict):
                info.update(details)
        fields: dict[str, Any] = {
            "workflow_id": info.get("workflow_id"),
            "run_id": info.get("run_id") or info.get("workflow_run_id"),
            "workflow_type": info.get("workflow_type"),
            "activity_type": info.get("activity_type"),
            "session_id": log_context.session_id.get() or session_id_of(info.get("workflow_id")),
            "sandbox_id": log_context.sandbox_id.get() or _workflow_sandbox(),
            "trace_id": None,
            "span_id": None,
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            fields["trace_id"] = format(span.trace_id, "032x")
            fields["span_id"] = format(span.span_id, "016x")
        for name, value in fields.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        parts = [
            f"{label}={getattr(record, name)}"
            for label, name in (("session", "session_id"), ("sandbox", "sandbox_id"))
            if getattr(record, name, None)
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return True


def _workflow_sandbox() -> str | None:
    """In workflow code: the running workflow's `sandbox_id`, when it has one."""
    from temporalio import workflow

    try:
        value = getattr(workflow.instance(), "sandbox_id", None) if workflow.in_workflow() else None
    except Exception:  # a log record must never fail for want of context
        return None
    return value if isinstance(value, str) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the context fields present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> logging.Handler:
    """The root handler on stderr: `level` (`LOG_LEVEL`), `text` or `json` (`LOG_FORMAT`)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        # The same details are fields of their own: don't repeat them in every message.
        from temporalio import activity, workflow

        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
