"""Quantities as people write them: durations (`90s`, `1h30m`) and E2B's prices.

Plain Python, so the `sessions` CLI can parse its flags and show its help without loading the
settings machinery.
"""

from __future__ import annotations

import math
import re

from common.errors import ConfigError

__all__ = [
    "DEFAULT_PRICE_PER_SECOND",
    "E2B_GIB_SECOND",
    "E2B_VCPU_SECOND",
    "MAX_DURATION_SECONDS",
    "format_bound",
    "format_span",
    "parse_duration",
]

E2B_VCPU_SECOND = 0.000014
"""E2B's published price per vCPU-second."""
E2B_GIB_SECOND = 0.0000045
"""E2B's published price per GiB-second of memory."""
DEFAULT_PRICE_PER_SECOND = E2B_VCPU_SECOND * 2 + E2B_GIB_SECOND * 0.5
"""$0.00003025 per running second: E2B's default sandbox (2 vCPU, 512 MiB); paused costs $0."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_USE = "use a number with s, m, h or d (90s, 15m, 2h, 3d)"

MAX_DURATION_SECONDS = 365 * 86400.0
"""The longest duration `parse_duration` takes unless told otherwise: a year (a gate's longest
timeout). Anything past it, `inf` and `1e300` included, is refused rather than overflowing a
`timedelta` somewhere downstream."""


def parse_duration(text: str, *, maximum: float = MAX_DURATION_SECONDS) -> float:
    """`90s`, `15m`, `2h`, `3d`, `1h30m`, or plain seconds: a number of seconds above zero and at
    most `maximum`. Empty, `nan`, `inf`, negative and out-of-range values are refused
    (`ConfigError`, naming the bound)."""
    raw = text.strip().lower()
    if not raw:
        raise ConfigError(f"invalid duration {text!r}: it is empty; {_USE}")
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(raw):
            raise ConfigError(f"invalid duration {text!r}: {_USE}") from None
    if math.isnan(seconds):
        raise ConfigError(f"invalid duration {text!r}: {_USE}")
    if not seconds > 0:
        raise ConfigError(f"invalid duration {text!r}: it must be more than zero")
    if seconds > maximum:
        raise ConfigError(f"invalid duration {text!r}: it must be at most {format_bound(maximum)}")
    return seconds


def format_bound(seconds: float) -> str:
    """A bound as it would be typed: `365d`, `24h`, `90s` (the largest unit that divides it)."""
    for unit in ("d", "h", "m"):
        count, rest = divmod(seconds, _UNIT_SECONDS[unit])
        if count and not rest:
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


def format_span(seconds: float) -> str:
    """A span for people, in its two largest units: `42s`, `4m 05s`, `1h 02m`, `3d 04h`."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600:02d}h"
