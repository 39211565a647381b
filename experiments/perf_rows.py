"""Row selections and breakdowns the performance experiments share (history table in, numbers out)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import metrics


def phase_rows(table: pa.Table, *phases: str) -> pa.Table:
    """Only the rows of the given phases."""
    wanted = pa.array(list(phases), type=pa.string())
    return table.filter(pc.is_in(pc.fill_null(table.column("phase"), ""), wanted))


def where(table: pa.Table, column: str, values: Iterable[Any]) -> pa.Table:
    """Rows whose `column` is one of `values`."""
    return table.filter(pc.is_in(table.column(column), pa.array(list(values))))


def qps(table: pa.Table) -> float | None:
    """Successful requests per second over the rows' own window (first send to last receive)."""
    return metrics.throughput_rps(table) if table.num_rows else None


def _stats(values: np.ndarray) -> dict[str, float | int | None]:
    if values.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    out: dict[str, float | int | None] = {"count": int(values.size), "mean": float(values.mean())}
    for p in (50, 95, 99):
        out[f"p{p}"] = float(np.percentile(values, p, method="inverted_cdf"))
    out["max"] = float(values.max())
    return out


def latency_breakdown(table: pa.Table) -> dict[str, Any]:
    """Client latency, server execution time and their difference (transport + queueing), ms.

    `server_time_ms` is what `execute_pattern` measured inside the server (route, cache,
    executor, DB); the rest of `latency_ms` is WebSocket framing, JSON, the event loops and
    waiting to be scheduled on either side.
    """
    rows = metrics.successful(table)
    rows = rows.filter(pc.is_valid(rows.column("server_time_ms")))
    client = rows.column("latency_ms").to_numpy(zero_copy_only=False).astype(float)
    server = rows.column("server_time_ms").to_numpy(zero_copy_only=False).astype(float)
    return {
        "client_ms": _stats(client),
        "server_ms": _stats(server),
        "overhead_ms": _stats(np.clip(client - server, 0.0, None)),
    }


def latency_by(table: pa.Table, column: str) -> dict[str, dict[str, float | int | None]]:
    """Latency statistics of successful rows per value of `column` (null as "?")."""
    rows = metrics.successful(table)
    keys = pc.fill_null(rows.column(column).cast(pa.string()), "?").to_numpy(zero_copy_only=False)
    lat = rows.column("latency_ms").to_numpy(zero_copy_only=False).astype(float)
    return {str(k): _stats(lat[keys == k]) for k in sorted(set(keys.tolist()))}


def error_codes(table: pa.Table) -> dict[str, int]:
    """Failed rows counted by error code."""
    failed = table.filter(pc.equal(table.column("success"), False))
    counts: dict[str, int] = {}
    for code in failed.column("error_code").to_pylist():
        counts[str(code)] = counts.get(str(code), 0) + 1
    return counts
