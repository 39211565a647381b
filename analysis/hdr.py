"""Mergeable latency histograms (HDR) that swarms can ship as bytes and the driver merges exactly.

Values are recorded in microseconds (1 µs .. 10 min, 3 significant digits), so percentiles are
within 0.1% of the true value and merging two histograms is exact (counts add bucket by bucket) —
never average percentiles of parts.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes: anything slower is clamped, not dropped
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    """An empty latency histogram with the project-wide range and precision."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_ms(hist: HdrHistogram, latency_ms: float) -> None:
    """Record one latency given in milliseconds (clamped into the histogram's range)."""
    us = round(float(latency_ms) * 1000.0)
    hist.record_value(min(max(us, LOWEST_US), HIGHEST_US))


def from_ms(values: Iterable[float]) -> HdrHistogram:
    """A histogram of the given millisecond latencies."""
    hist = new_histogram()
    for value in values:
        record_ms(hist, value)
    return hist


def encode(hist: HdrHistogram) -> bytes:
    """Compressed, base64 wire form (what a swarm ships to the driver)."""
    return hist.encode()


def decode(data: bytes) -> HdrHistogram:
    """Inverse of `encode`."""
    return HdrHistogram.decode(data)


def merge(parts: Iterable[HdrHistogram | bytes]) -> HdrHistogram:
    """Exact merge of histograms or their encoded forms."""
    total = new_histogram()
    for part in parts:
        if isinstance(part, bytes):
            total.decode_and_add(part)
        else:
            total.add(part)
    return total


def percentile_ms(hist: HdrHistogram, percentile: float) -> float | None:
    """Value at a percentile (0..100) in milliseconds; None for an empty histogram."""
    if hist.get_total_count() == 0:
        return None
    return hist.get_value_at_percentile(percentile) / 1000.0


def summary_ms(hist: HdrHistogram) -> dict[str, float | int | None]:
    """count, mean, min, p50, p90, p95, p99, max in milliseconds."""
    count = hist.get_total_count()
    if count == 0:
        keys = ("mean", "min", "p50", "p90", "p95", "p99", "max")
        return {"count": 0, **dict.fromkeys(keys)}
    return {
        "count": count,
        "mean": hist.get_mean_value() / 1000.0,
        "min": hist.get_min_value() / 1000.0,
        "p50": percentile_ms(hist, 50),
        "p90": percentile_ms(hist, 90),
        "p95": percentile_ms(hist, 95),
        "p99": percentile_ms(hist, 99),
        "max": hist.get_max_value() / 1000.0,
    }
