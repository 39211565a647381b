"""Metrics computed from a history table alone: success, latency, throughput, cache, tokens, errors.

Rates are fractions in 0..1 (criteria turn them into percent). Times are the clients' clocks
(`t_send_ns`, `t_recv_ns`); run start is the first send, run end the last receive.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import hdr

PERCENTILES = (50, 90, 95, 99)
WARMUP_PHASES = ("warmup",)


def _np(table: pa.Table, name: str, fill: Any = None) -> np.ndarray:
    column = table.column(name)
    if fill is not None:
        column = pc.fill_null(column, fill)
    return column.to_numpy(zero_copy_only=False)


def successful(table: pa.Table) -> pa.Table:
    """Only the rows whose request succeeded."""
    return table.filter(pc.equal(table.column("success"), True))


def success_rate(table: pa.Table) -> float | None:
    """Fraction of requests that succeeded; None for an empty table."""
    if table.num_rows == 0:
        return None
    return float(np.mean(_np(table, "success")))


def run_window_ns(table: pa.Table) -> tuple[int, int]:
    """(first send, last receive) in ns; (0, 0) for an empty table."""
    if table.num_rows == 0:
        return 0, 0
    return int(pc.min(table.column("t_send_ns")).as_py()), int(
        pc.max(table.column("t_recv_ns")).as_py()
    )


def duration_s(table: pa.Table) -> float:
    """Wall time from the first send to the last receive."""
    start, end = run_window_ns(table)
    return (end - start) / 1e9


def latency_exact(table: pa.Table, *, successful_only: bool = True) -> dict[str, float | None]:
    """Exact latency statistics (ms) from the column: count, mean, min, p50/90/95/99, max."""
    rows = successful(table) if successful_only else table
    values = _np(rows, "latency_ms").astype(float)
    if values.size == 0:
        return {"count": 0, "mean": None, "min": None, "max": None} | {
            f"p{p}": None for p in PERCENTILES
        }
    stats: dict[str, float | None] = {
        "count": int(values.size),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }
    # inverted_cdf = nearest rank: a percentile is always a latency that was actually observed.
    for p in PERCENTILES:
        stats[f"p{p}"] = float(np.percentile(values, p, method="inverted_cdf"))
    return stats


def latency_histogram(table: pa.Table, *, successful_only: bool = True) -> hdr.HdrHistogram:
    """HDR histogram of latencies (mergeable with histograms from other runs or swarms)."""
    rows = successful(table) if successful_only else table
    return hdr.from_ms(_np(rows, "latency_ms").astype(float))


def throughput_rps(table: pa.Table, *, successful_only: bool = True) -> float | None:
    """Completed (successful) requests per second over the run window."""
    seconds = duration_s(table)
    if seconds <= 0:
        return None
    rows = successful(table) if successful_only else table
    return rows.num_rows / seconds


def rps_series(
    table: pa.Table, *, bucket_s: float = 1.0, start_ns: int | None = None
) -> list[tuple[float, float]]:
    """(bucket start s, completions per second) by receive time, zero-filled.

    Time 0 is `start_ns` (default: the table's first send) so several series can share an axis.
    """
    if table.num_rows == 0:
        return []
    start = run_window_ns(table)[0] if start_ns is None else start_ns
    rel = (_np(table, "t_recv_ns").astype(np.int64) - start) / 1e9
    counts = np.bincount(np.floor(rel / bucket_s).astype(np.int64))
    return [(i * bucket_s, c / bucket_s) for i, c in enumerate(counts.tolist())]


def after_warmup(
    table: pa.Table,
    *,
    warmup_phases: tuple[str, ...] = WARMUP_PHASES,
    warmup_s: float | None = None,
) -> pa.Table:
    """Rows past warm-up: phase not in `warmup_phases`, and (if given) sent ≥ warmup_s after start."""
    mask = pc.invert(
        pc.is_in(
            pc.fill_null(table.column("phase"), ""), pa.array(list(warmup_phases), type=pa.string())
        )
    )
    if warmup_s is not None and table.num_rows:
        start, _ = run_window_ns(table)
        cut = start + int(warmup_s * 1e9)
        mask = pc.and_(mask, pc.greater_equal(table.column("t_send_ns"), cut))
    return table.filter(mask)


def _cache_rows(table: pa.Table) -> pa.Table:
    rows = successful(table)
    return rows.filter(pc.is_valid(rows.column("cache_hit")))


def cache_hit_rate(table: pa.Table) -> float | None:
    """Hits over successful requests that report a cache outcome; None when none do."""
    rows = _cache_rows(table)
    if rows.num_rows == 0:
        return None
    return float(np.mean(_np(rows, "cache_hit")))


def hit_rate_series(table: pa.Table, *, bucket_s: float = 1.0) -> list[tuple[float, float]]:
    """(bucket start s, hit rate) over time by send time; empty buckets are left out."""
    rows = _cache_rows(table)
    if rows.num_rows == 0:
        return []
    start, _ = run_window_ns(table)
    rel = (_np(rows, "t_send_ns").astype(np.int64) - start) / 1e9
    idx = np.floor(rel / bucket_s).astype(np.int64)
    hits = np.bincount(idx, weights=_np(rows, "cache_hit").astype(float))
    totals = np.bincount(idx)
    return [(i * bucket_s, h / n) for i, (h, n) in enumerate(zip(hits, totals, strict=True)) if n]


def token_rows(table: pa.Table) -> pa.Table:
    """Successful rows that report both tokens used and the baseline."""
    rows = successful(table)
    both = pc.and_(
        pc.is_valid(rows.column("tokens_used")), pc.is_valid(rows.column("tokens_baseline"))
    )
    return rows.filter(both)


def token_reduction(table: pa.Table) -> float | None:
    """1 − Σ tokens_used / Σ tokens_baseline over successful rows that report both."""
    rows = token_rows(table)
    baseline = float(np.sum(_np(rows, "tokens_baseline"))) if rows.num_rows else 0.0
    if baseline <= 0:
        return None
    return 1.0 - float(np.sum(_np(rows, "tokens_used"))) / baseline


def token_stats_by(table: pa.Table, column: str = "route") -> dict[str, dict[str, float]]:
    """Per value of `column`: count, mean tokens used, mean baseline, reduction."""
    rows = token_rows(table)
    out: dict[str, dict[str, float]] = {}
    keys = _np(rows, column, fill="?")
    used, base = _np(rows, "tokens_used"), _np(rows, "tokens_baseline")
    for key in sorted(set(keys.tolist())):
        sel = keys == key
        total_base = float(base[sel].sum())
        out[str(key)] = {
            "count": int(sel.sum()),
            "mean_tokens": float(used[sel].mean()),
            "mean_baseline": float(base[sel].mean()),
            "reduction": 1.0 - float(used[sel].sum()) / total_base if total_base else 0.0,
        }
    return out


def error_frequency(table: pa.Table) -> dict[str, int]:
    """Failed requests counted by `code: reason` (code 'none' when the client saw no code)."""
    failed = table.filter(pc.equal(table.column("success"), False))
    codes = failed.column("error_code").to_pylist()
    reasons = failed.column("error_reason").to_pylist()
    labels = [
        f"{c if c is not None else 'none'}: {r or ''}".rstrip(": ")
        for c, r in zip(codes, reasons, strict=True)
    ]
    return dict(Counter(labels).most_common())


def distinct(table: pa.Table, column: str) -> int:
    """Number of distinct non-null values of a column."""
    return len(pc.unique(table.column(column).drop_null()))


def summarize(
    table: pa.Table,
    *,
    warmup_phases: tuple[str, ...] = WARMUP_PHASES,
    warmup_s: float | None = None,
    bucket_s: float = 1.0,
) -> dict[str, Any]:
    """Every standard metric as one JSON-ready dict (the body of metrics.json)."""
    exact = latency_exact(table)
    degraded = pc.sum(pc.fill_null(table.column("degraded"), False)).as_py() or 0
    return {
        "requests": table.num_rows,
        "successes": successful(table).num_rows,
        "failures": table.num_rows - successful(table).num_rows,
        "success_rate": success_rate(table),
        "duration_s": duration_s(table),
        "rps": throughput_rps(table),
        "latency_avg_ms": exact["mean"],
        "latency_p50_ms": exact["p50"],
        "latency_p95_ms": exact["p95"],
        "latency_p99_ms": exact["p99"],
        "latency_ms": exact,
        "latency_hdr_ms": hdr.summary_ms(latency_histogram(table)),
        "cache_hit_rate": cache_hit_rate(
            after_warmup(table, warmup_phases=warmup_phases, warmup_s=warmup_s)
        ),
        "cache_hit_rate_overall": cache_hit_rate(table),
        "token_reduction": token_reduction(table),
        "tokens_by_route": token_stats_by(table, "route"),
        "errors": error_frequency(table),
        "degraded_responses": int(degraded),
        "instances": distinct(table, "instance_id"),
        "agents": distinct(table, "agent_id"),
        "sessions": distinct(table, "session_id"),
        "rps_series": rps_series(table, bucket_s=bucket_s),
        "hit_rate_series": hit_rate_series(table, bucket_s=bucket_s),
    }
