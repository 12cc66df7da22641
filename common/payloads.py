"""Decoding that never raises for a message a client sends.

A workflow input, signal or update argument that fails to decode inside the SDK fails the
workflow task (forever, for a start input), or is logged with pydantic's `input_value=...`,
which quotes the payload and so any secret in it. `TolerantPayloadConverter` gives such a payload
a stand-in describing the problem without its values instead.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from typing import Any, cast

from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter

from common.errors import validation_message

__all__ = ["TolerantPayloadConverter", "UndecodablePayload"]

_KNOWN = frozenset({"binary/null", "binary/plain", "json/protobuf", "binary/protobuf"})


class UndecodablePayload:
    """What a payload that cannot be decoded (not JSON, truncated, nested too deep, an unknown
    encoding) becomes when its type hint is `Any`: a value a handler can refuse in words."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def __repr__(self) -> str:
        return f"UndecodablePayload({self.problem!r})"


class TolerantPayloadConverter(PydanticPayloadConverter):
    """The pydantic converter, except for the hints that accept a stand-in.

    A type hint that offers `for_undecodable_payload(problem)` (the workflows' `Invalid*`
    stand-ins), or no hint at all (`Any`, as the signals take), gets a stand-in; every other hint
    (activity inputs and results, which this product writes itself) raises as before.
    """

    def from_payloads(
        self, payloads: Sequence[Payload], type_hints: list[type] | None = None
    ) -> list[Any]:
        hints: list[type | None] = list(type_hints or [])
        hints += [None] * (len(payloads) - len(hints))
        values = []
        for payload, hint in zip(payloads, hints, strict=False):
            try:
                values.extend(super().from_payloads([payload], [hint] if hint else None))
            except Exception as err:
                make = _stand_in(hint)
                if make is None:
                    raise
                values.append(make(_decode_problem(payload, err)))
        return values


def _stand_in(type_hint: Any) -> Callable[[str], Any] | None:
    if type_hint is None or type_hint is Any:
        return UndecodablePayload
    for member in typing.get_args(type_hint) or (type_hint,):
        make = getattr(member, "for_undecodable_payload", None)
        if callable(make):
            return cast(Callable[[str], Any], make)
    return None


def _decode_problem(payload: Payload, err: Exception) -> str:
    """Why a payload did not decode, in words that never quote it."""
    encoding = payload.metadata.get("encoding", b"").decode("ascii", errors="replace")
    if isinstance(err, ValidationError):
        problems = err.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            if any("recursion" in p["msg"] for p in problems):
                return "the payload's JSON is nested too deeply"
            return "the payload is not valid JSON (malformed or truncated)"
        return validation_message(err)
    if encoding in _KNOWN:  # an unknown encoding is not named: anyone may have written it
        return f"the payload could not be decoded as {encoding} ({type(err).__name__})"
    if encoding != "json/plain":
        return "the payload's encoding is not JSON"
    return f"the payload could not be decoded ({type(err).__name__})"
