"""Where a request's time went: the server's stage timings of each row, stacked against its latency.

The engine's stages nest (service/patterns/engine.py): `total` is the engine's own time, made of
route + cache + execute (or llm) + record and a little glue; `embed` is every encode wait, inside
route (routing) and inside execute (recall), so it cannot be stacked; `db` (pool wait + SQL) is
inside execute; `queue` (frame read -> engine start) comes before `total`. The stacked segments
are disjoint and add up to the row's latency:

    queue | route | cache | execute (db excluded) | db | llm | record | server other | unaccounted

`server other` is total minus its parts; `unaccounted` is latency minus queue and total: the
network, reply serialisation, both event loops' backlogs and, in open loop, the generator's lag
behind its schedule (latency counts from the intended send). A stage the server adds later is
listed per group but never stacked (it could be nested in another: stacking it could count time
twice); add it to `STACKED` or `NESTED` once its place is known.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

COLUMN = "server_timings"
TOTAL = "total"
#: Stages stacked as they are, in the order of a request's life.
STACKED = ("queue", "route", "cache", "execute", "db", "llm", "record")
#: A nested stage's time is taken out of its parent's segment.
NESTED = {"db": "execute"}
#: Stages that span several others: reported, never stacked.
OVERLAPPING = ("embed",)
SERVER_OTHER = "server other"
UNACCOUNTED = "unaccounted"
SEGMENTS = (*STACKED, SERVER_OTHER, UNACCOUNTED)
#: The part of the request the server's stages cover (everything but `unaccounted`).
SERVER_SEGMENTS = SEGMENTS[:-1]
#: The tail whose breakdown is shown: the slowest (100 − this) % of a group's requests.
TAIL_PERCENTILE = 95


def stage_arrays(table: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(ms per stage name, one value per row; rows that report it as well), a mask of the rows
    that carry timings at all. A stage a timed row did not reach is 0; untimed rows are 0 too."""
    n = table.num_rows
    timed = np.zeros(n, dtype=bool)
    out: dict[str, np.ndarray] = {}
    if n == 0 or COLUMN not in table.column_names:
        return out, timed
    column = table.column(COLUMN).combine_chunks()
    timed = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    offsets = np.asarray(column.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    # A sliced array's offsets index its parent's keys and items: cut them to this slice.
    start, length = int(offsets[0]), int(offsets[-1] - offsets[0])
    keys = column.keys.slice(start, length).dictionary_encode()
    codes = np.asarray(keys.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = column.items.slice(start, length).to_numpy(zero_copy_only=False).astype(float)
    values = np.nan_to_num(values)
    rows = np.repeat(np.arange(n), np.diff(offsets))
    for code, name in enumerate(keys.dictionary.to_pylist()):
        hit = codes == code
        out[str(name)] = np.bincount(rows[hit], weights=values[hit], minlength=n).astype(float)
    return out, timed


def segments(table: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The disjoint `SEGMENTS` of every row (ms) and the mask of rows with timings. An untimed
    row is all `unaccounted`: the server said nothing about where its time went."""
    stages, timed = stage_arrays(table)
    return _segments(table, stages), timed


def _segments(table: pa.Table, stages: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = table.num_rows
    zero = np.zeros(n, dtype=float)
    latency = table.column("latency_ms").to_numpy(zero_copy_only=False).astype(float) if n else zero
    out = {name: stages.get(name, zero).copy() for name in STACKED}
    for child, parent in NESTED.items():
        out[parent] = np.maximum(out[parent] - out[child], 0.0)
    parts = sum((stages.get(s, zero) for s in STACKED if s not in ("queue", *NESTED)), zero)
    total = stages.get(TOTAL, parts)
    out[SERVER_OTHER] = np.maximum(total - parts, 0.0)
    out[UNACCOUNTED] = np.maximum(latency - stages.get("queue", zero) - total, 0.0)
    return out


def _group(
    latency: np.ndarray,
    segs: dict[str, np.ndarray],
    timed: np.ndarray,
    extra: dict[str, np.ndarray],
) -> dict[str, Any]:
    p95 = float(np.percentile(latency, TAIL_PERCENTILE, method="inverted_cdf"))
    # The slowest 5 % by rank (at least one row): ties at a common latency do not swell it.
    size = max(1, math.ceil(latency.size * (100 - TAIL_PERCENTILE) / 100))
    tail = np.zeros(latency.size, dtype=bool)
    tail[np.argsort(latency, kind="stable")[-size:]] = True

    def means(mask: np.ndarray) -> dict[str, float]:
        return {name: float(v[mask].mean()) for name, v in segs.items()}

    tail_means = means(tail)
    tail_latency = float(latency[tail].mean())
    server = sum(tail_means[s] for s in SERVER_SEGMENTS)
    return {
        "requests": int(latency.size),
        "timed": int(timed.sum()),
        "latency_mean_ms": float(latency.mean()),
        "latency_p95_ms": p95,
        "mean": means(np.ones(latency.size, dtype=bool)),
        "tail_requests": int(tail.sum()),
        "tail_latency_mean_ms": tail_latency,
        "tail": tail_means,
        # Of the slowest 5 %: the share of their time the server's stages explain (None: the
        # server reported no timings for these requests, so it explains nothing either way).
        "tail_accounted_pct": 100.0 * server / tail_latency
        if tail_latency > 0 and timed.any()
        else None,
        "other_stages_mean_ms": {k: float(v[timed].mean()) for k, v in extra.items()}
        if timed.any()
        else {},
    }


def breakdown(table: pa.Table, by: str = "method") -> dict[str, dict[str, Any]]:
    """Per value of column `by` (successful requests): mean segments over all its rows and over
    its slowest 5 % (by rank: latencies ≥ its p95), and how much of that tail the stages explain."""
    return _Successful(table).by(by)


def summary(table: pa.Table) -> dict[str, Any]:
    """metrics.json's `latency_breakdown`: by method (every successful request), by instance and
    by phase (only the requests with server timings: a method that reports none would only
    dilute them)."""
    rows = _Successful(table)
    return {
        "by_method": rows.by("method"),
        "by_instance": rows.by("instance_id", timed_only=True),
        "by_phase": rows.by("phase", timed_only=True),
    }


class _Successful:
    """The successful rows' latencies and segments, computed once for every grouping."""

    def __init__(self, table: pa.Table) -> None:
        ok = table.filter(pc.equal(table.column("success"), True)) if table.num_rows else table
        self.table = ok
        stages, self.timed = stage_arrays(ok)
        self.segments = _segments(ok, stages)
        self.extra = {k: v for k, v in stages.items() if k not in (*STACKED, TOTAL)}
        self.latency = ok.column("latency_ms").to_numpy(zero_copy_only=False).astype(float)

    def by(self, column: str, *, timed_only: bool = False) -> dict[str, dict[str, Any]]:
        if self.table.num_rows == 0:
            return {}
        column_values = self.table.column(column).cast(pa.string()).combine_chunks()
        keys = pc.fill_null(column_values, "?").dictionary_encode()
        codes = np.asarray(keys.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        names = keys.dictionary.to_pylist()
        out = {}
        for code in sorted(range(len(names)), key=lambda c: str(names[c])):
            mask = codes == code
            if timed_only:
                mask &= self.timed
                if not mask.any():
                    continue
            out[str(names[code])] = _group(
                self.latency[mask],
                {k: v[mask] for k, v in self.segments.items()},
                self.timed[mask],
                {k: v[mask] for k, v in self.extra.items()},
            )
        return out


def markdown_table(latency_breakdown: dict[str, Any] | None) -> list[str]:
    """summary.md lines: per method and per phase, the slowest 5 %'s mean per segment and the
    share the server's stages account for (the rest is network, client and generator queueing)."""
    by_method = (latency_breakdown or {}).get("by_method") or {}
    if not by_method:
        return []
    return [
        "",
        "## Where the time goes (slowest 5 %, mean ms per stage)",
        "",
        "Stages are the server's own timings; *unaccounted* is the rest of the client's latency: "
        "network, serialisation, event-loop backlogs on both ends and (open loop) the load "
        "generator's lag behind its schedule.",
        *_table("Method", by_method),
        *_table("Phase (requests with timings)", (latency_breakdown or {}).get("by_phase") or {}),
    ]


def _table(label: str, groups: dict[str, dict[str, Any]]) -> list[str]:
    if not groups:
        return []
    used = [s for s in SEGMENTS if any(g["tail"][s] > 0.0005 for g in groups.values())]
    head = [label, "n (timed)", "p95 ms", "≥p95 mean ms", *used, "accounted"]
    lines = ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, g in groups.items():
        accounted = g["tail_accounted_pct"]
        cells = [
            method,
            f"{g['requests']} ({g['timed']})",
            f"{g['latency_p95_ms']:.1f}",
            f"{g['tail_latency_mean_ms']:.1f}",
            *(f"{g['tail'][s]:.1f}" for s in used),
            "no timings" if accounted is None else f"{accounted:.0f} %",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
