"""`describe_failure`: the cause inside Temporal's wrapper, its type said once."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from common.failures import describe_failure

pytestmark = pytest.mark.fast


def _wrapped(cause: BaseException) -> ActivityError:
    err = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="w",
        activity_type="resume_sandbox",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    err.__cause__ = cause
    return err


def test_the_cause_is_named_not_the_layer() -> None:
    cause = ApplicationError("cwd '/nope' does not exist", type="InvalidRequest")
    assert describe_failure(_wrapped(cause)) == "InvalidRequest: cwd '/nope' does not exist"


def test_a_message_that_already_names_its_type_is_not_prefixed_twice() -> None:
    cause = ApplicationError("SandboxGone: resume sandbox s1: not found", type="SandboxGone")
    assert describe_failure(_wrapped(cause)) == "SandboxGone: resume sandbox s1: not found"


def test_one_line_and_bounded() -> None:
    cause = ApplicationError("line one\nline two " + "x" * 2000, type="ExecTimeout")
    text = describe_failure(_wrapped(cause), limit=50)
    assert "\n" not in text and text.startswith("ExecTimeout: line one line two")
    assert len(text) <= len("ExecTimeout: ") + 50
