"""Quantities as people write them: durations (`90s`, `1h30m`) and E2B's prices.

Plain Python, so the `sessions` CLI can parse its flags and show its help without loading the
settings machinery.
"""

from __future__ import annotations

import math
import re

from common.errors import ConfigError

__all__ = ["DEFAULT_PRICE_PER_SECOND", "E2B_GIB_SECOND", "E2B_VCPU_SECOND", "parse_duration"]

E2B_VCPU_SECOND = 0.000014
"""E2B's published price per vCPU-second."""
E2B_GIB_SECOND = 0.0000045
"""E2B's published price per GiB-second of memory."""
DEFAULT_PRICE_PER_SECOND = E2B_VCPU_SECOND * 2 + E2B_GIB_SECOND * 0.5
"""$0.00003025 per running second: E2B's default sandbox (2 vCPU, 512 MiB); paused costs $0."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h`, `3d`, `1h30m`, or plain seconds: a number of seconds above zero."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or not raw:
            raise ConfigError(
                f"invalid duration {text!r}: use a number with s, m, h or d (90s, 15m, 2h, 3d)"
            ) from None
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(f"invalid duration {text!r}: it must be more than zero")
    return seconds
