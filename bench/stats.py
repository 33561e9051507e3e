"""The statistics every benchmark script here reports, computed one way."""

from __future__ import annotations

import statistics


def median_ms(samples: list[float]) -> float:
    """The median of durations in seconds, in milliseconds."""
    return statistics.median(samples) * 1e3
