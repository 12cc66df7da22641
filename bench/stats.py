"""Percentiles and summaries: every figure in the report is built from these."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(samples: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None without samples."""
    ordered = sorted(samples)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(samples_seconds: Iterable[float]) -> dict[str, float | int | None]:
    """n, mean, p50, p95, p99 and max of durations given in seconds, in milliseconds."""
    values = [s * 1000 for s in samples_seconds]
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "mean": _round(sum(values) / len(values)),
        "p50": _round(percentile(values, 50)),
        "p95": _round(percentile(values, 95)),
        "p99": _round(percentile(values, 99)),
        "max": _round(max(values)),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 4)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
