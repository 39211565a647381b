"""Resource samples taken while a run lasts (`resources.parquet`) and the plan's section 9 checks.

One row per sample of one source: a service instance (its id), "postgres" or "redis". Columns a
source cannot report are null. `cpu_percent` is percent of the whole machine (psutil's per-process
value divided by the core count), so 100 means every core busy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import checks
from analysis.checks import Criterion, Evidence
from analysis.schema import ColumnBuffer

RESOURCE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("t_ns", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("node_id", pa.string()),
        pa.field("cpu_percent", pa.float64()),
        pa.field("rss_bytes", pa.int64()),
        pa.field("db_connections", pa.int64()),  # pg_stat_activity rows of our database
        pa.field("pool_in_use", pa.int64()),
        pa.field("pool_wait_ms", pa.float64()),
        pa.field("redis_used_memory", pa.int64()),
    ]
)
MB = 1024 * 1024
GB = 1024 * MB


class ResourceBuffer(ColumnBuffer):
    """Resource samples of a run: one row per source per sampling tick."""

    schema = RESOURCE_SCHEMA
    kind = "resource"


def _values(
    table: pa.Table, column: str, source: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(t seconds from the first sample, values) of non-null samples, optionally of one source."""
    if table.num_rows == 0:
        return np.array([]), np.array([])
    start = pc.min(table.column("t_ns")).as_py()
    rows = table if source is None else table.filter(pc.equal(table.column("source"), source))
    rows = rows.filter(pc.is_valid(rows.column(column)))
    t = (rows.column("t_ns").to_numpy().astype(np.int64) - start) / 1e9
    return t, rows.column(column).to_numpy(zero_copy_only=False).astype(float)


def sources(table: pa.Table) -> list[str]:
    """Distinct sample sources, sorted."""
    return sorted(pc.unique(table.column("source")).to_pylist()) if table.num_rows else []


def series(table: pa.Table, column: str) -> dict[str, list[tuple[float, float]]]:
    """Per source, (t seconds, value) points of one column (for plots)."""
    out = {}
    for source in sources(table):
        t, v = _values(table, column, source)
        if v.size:
            out[source] = list(zip(t.tolist(), v.tolist(), strict=True))
    return out


def slope_per_min(
    t_s: np.ndarray, values: np.ndarray, *, skip_fraction: float = 0.2
) -> float | None:
    """Least-squares slope (units per minute) after dropping the first `skip_fraction` of the run."""
    if values.size < 2:
        return None
    keep = t_s >= t_s.min() + skip_fraction * (t_s.max() - t_s.min())
    t, v = t_s[keep], values[keep]
    if v.size < 2 or np.ptp(t) == 0:
        return None
    return float(np.polyfit(t, v, 1)[0]) * 60.0


def level(value: float | None, normal: float, warning: float) -> str:
    """Plan section 9 band: normal below `normal`, warning up to `warning`, critical above."""
    if value is None:
        return "n/a"
    return "normal" if value < normal else ("warning" if value <= warning else "critical")


def _worst(table: pa.Table, column: str, stat: str) -> float | None:
    found = []
    for source in sources(table):
        _, v = _values(table, column, source)
        if v.size:
            found.append(float(np.percentile(v, 95) if stat == "p95" else v.max()))
    return max(found, default=None)


def resource_summary(table: pa.Table) -> dict[str, Any]:
    """Worst values across sources, their section 9 bands, and per-source growth slopes."""
    cpu, rss = _worst(table, "cpu_percent", "p95"), _worst(table, "rss_bytes", "max")
    conns, redis_mem = (
        _worst(table, "db_connections", "max"),
        _worst(table, "redis_used_memory", "max"),
    )
    growth = {}
    for source in sources(table):
        growth[source] = {
            "rss_mb_per_min": _slope(table, "rss_bytes", source, scale=MB),
            "db_connections_per_min": _slope(table, "db_connections", source),
        }
    return {
        "samples": table.num_rows,
        "cpu_p95_percent": cpu,
        "cpu_level": level(cpu, 60, 80),
        "rss_max_bytes": rss,
        "memory_level": level(None if rss is None else rss / GB, 1, 2),
        "db_connections_max": conns,
        "db_connections_level": level(conns, 20, 25),
        "pool_wait_max_ms": _worst(table, "pool_wait_ms", "max"),
        "redis_used_memory_max": redis_mem,
        "redis_memory_level": level(None if redis_mem is None else redis_mem / MB, 500, 1024),
        "growth": growth,
    }


def _span_s(table: pa.Table) -> float:
    if table.num_rows == 0:
        return 0.0
    t_ns = table.column("t_ns")
    return (pc.max(t_ns).as_py() - pc.min(t_ns).as_py()) / 1e9


def _slope(table: pa.Table, column: str, source: str, *, scale: float = 1.0) -> float | None:
    t, v = _values(table, column, source)
    slope = slope_per_min(t, v / scale)
    return slope


def resource_criteria(
    table: pa.Table, *, instances: int = 1, section: str = "9"
) -> list[Criterion]:
    """Section 9 resource table at its critical thresholds (warning bands noted, not failed).

    The plan's table is for one TMWS server; PostgreSQL connections are counted for all
    `instances` together, so their limit scales with the number of instances.
    """
    s = resource_summary(table)
    per_instance = None
    if s["db_connections_max"] is not None:
        per_instance = s["db_connections_max"] / max(1, instances)
    rss_gb = None if s["rss_max_bytes"] is None else s["rss_max_bytes"] / GB
    redis_mb = None if s["redis_used_memory_max"] is None else s["redis_used_memory_max"] / MB
    specs = [
        (
            "cpu_usage",
            s["cpu_p95_percent"],
            80,
            "%",
            "p95 CPU of the busiest source",
            s["cpu_level"],
        ),
        ("memory", rss_gb, 2, " GB", "peak RSS of any source", s["memory_level"]),
        (
            "db_connections",
            per_instance,
            25,
            "",
            f"peak PostgreSQL connections per instance ({instances} instance(s) share the count)",
            level(per_instance, 20, 25),
        ),
        ("redis_memory", redis_mb, 1024, " MB", "peak Redis used_memory", s["redis_memory_level"]),
    ]
    samples = table.num_rows
    return [
        checks.at_most(
            name,
            value,
            limit,
            evidence=Evidence("resource samples", samples, 1),
            unit=unit,
            section=section,
            description=f"{text} (band: {band})",
        )
        for name, value, limit, unit, text, band in specs
    ]


def leak_criteria(
    table: pa.Table,
    *,
    max_rss_mb_per_min: float = 5.0,
    max_connections_per_min: float = 0.5,
    min_samples: int = 10,
    min_span_s: float = 180.0,
    section: str = "1.1",
) -> list[Criterion]:
    """Soak check: memory and connections must not keep growing (linear-fit slope per source).

    A run shorter than `min_span_s` is all bring-up and warm-up, whose growth says nothing
    about leaks: its checks are skipped (use an experiment's `--duration` for a soak).
    """
    out = []
    span_s = _span_s(table)
    if span_s < min_span_s:
        return [
            checks.skipped(
                "leak_check",
                f"samples span {span_s:.0f}s (< {min_span_s:.0f}s): too short to tell a leak "
                "from warm-up; run with --duration",
                evidence=Evidence("seconds of resource samples", span_s, min_span_s),
                section=section,
                critical=False,
            )
        ]
    for source in sources(table):
        for column, limit, scale, unit in (
            ("rss_bytes", max_rss_mb_per_min, MB, " MB/min"),
            ("db_connections", max_connections_per_min, 1.0, "/min"),
        ):
            t, v = _values(table, column, source)
            if v.size == 0:
                continue
            name = f"leak_{column}_{source}"
            out.append(
                checks.at_most(
                    name,
                    slope_per_min(t, v / scale),
                    limit,
                    evidence=Evidence(f"samples of {column}", v.size, min_samples),
                    unit=unit,
                    section=section,
                    description=f"growth of {column} of {source} after warm-up (linear fit)",
                )
            )
    return out
