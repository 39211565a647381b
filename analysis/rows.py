"""Row selections, breakdowns and small criteria the experiments and checkers share (history table in).

Everything here reads only a history table (schema `analysis.schema`), so a run can be re-checked
from its Parquet file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import checks, metrics
from analysis.checks import Criterion, Evidence


def where(table: pa.Table, **equal: Any) -> pa.Table:
    """Rows whose columns equal the given values (None matches null)."""
    for column, value in equal.items():
        col = table.column(column)
        mask = pc.is_null(col) if value is None else pc.fill_null(pc.equal(col, value), False)
        table = table.filter(mask)
    return table


def where_in(table: pa.Table, column: str, values: Iterable[Any]) -> pa.Table:
    """Rows whose `column` is one of `values` (a null never is)."""
    wanted = pa.array(list(values), type=table.schema.field(column).type)
    return table.filter(pc.fill_null(pc.is_in(table.column(column), wanted), False))


def between(
    table: pa.Table, start_ns: int | None, end_ns: int | None, *, column: str = "t_send_ns"
) -> pa.Table:
    """Rows whose `column` (default: send time) is in [start_ns, end_ns); None leaves an end open."""
    if start_ns is not None:
        table = table.filter(pc.greater_equal(table.column(column), start_ns))
    if end_ns is not None:
        table = table.filter(pc.less(table.column(column), end_ns))
    return table


def failures(table: pa.Table) -> pa.Table:
    """Rows whose request failed."""
    return table.filter(pc.invert(table.column("success")))


def successes(table: pa.Table) -> pa.Table:
    """Rows whose request succeeded."""
    return table.filter(table.column("success"))


def reasons_containing(table: pa.Table, text: str) -> pa.Table:
    """Rows whose error_reason contains `text`."""
    reasons = pc.fill_null(table.column("error_reason"), "")
    return table.filter(pc.match_substring(reasons, text))


def rate_pct(part: int, whole: int) -> float | None:
    """`part` of `whole` in percent; None when there is nothing to count."""
    return None if whole == 0 else 100.0 * part / whole


def success_pct(table: pa.Table) -> float | None:
    """Succeeded rows in percent of all rows; None for no rows."""
    return rate_pct(successes(table).num_rows, table.num_rows)


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
    counts: dict[str, int] = {}
    for code in failures(table).column("error_code").to_pylist():
        counts[str(code)] = counts.get(str(code), 0) + 1
    return counts


def first_problems(table: pa.Table, n: int = 3) -> str:
    """A few `method key: code reason` strings of failed rows, for a criterion's evidence."""
    bad = failures(table).slice(0, n).to_pylist()
    return "; ".join(
        f"{r['method']} {r['key'] or ''}: {r['error_code']} {r['error_reason']}".strip()
        for r in bad
    )


def all_succeeded(
    name: str, table: pa.Table, *, section: str, description: str, minimum: int = 1
) -> Criterion:
    """Every row of `table` succeeded, and there were at least `minimum` of them."""
    n, ok = table.num_rows, successes(table).num_rows
    return checks.holds(
        name,
        ok == n,
        measured=f"{ok}/{n} succeeded" + (f" ({first_problems(table)})" if ok < n else ""),
        expectation="all succeeded",
        evidence=Evidence("requests", n, minimum),
        description=description,
        section=section,
    )


def error_code_criterion(
    name: str,
    table: pa.Table,
    code: int,
    *,
    section: str,
    description: str,
    reason_contains: str | None = None,
) -> Criterion:
    """Every row of `table` failed with `code` (and a reason containing `reason_contains`)."""
    rows = table.to_pylist()
    good = [
        r
        for r in rows
        if not r["success"]
        and r["error_code"] == code
        and (reason_contains is None or reason_contains in (r["error_reason"] or ""))
    ]
    seen = sorted({f"{r['error_code']} {r['error_reason'] or ''}".strip() for r in rows})
    expectation = f"every reply is error {code}" + (
        f" naming '{reason_contains}'" if reason_contains else ""
    )
    return checks.holds(
        name,
        len(good) == len(rows),
        measured=f"{len(good)}/{len(rows)} as expected; seen: {', '.join(seen) or 'none'}",
        expectation=expectation,
        evidence=Evidence(f"requests expected to fail with {code}", len(rows), 1),
        description=description,
        section=section,
    )


def reasons_all_contain(
    name: str, table: pa.Table, text: str, *, section: str, expectation: str
) -> Criterion:
    """At least one row, and every row's error_reason contains `text` (the reasons as evidence)."""
    return checks.holds(
        name,
        reasons_containing(table, text).num_rows == table.num_rows,
        measured=", ".join(sorted({str(r) for r in table.column("error_reason").to_pylist()}))
        or "none",
        expectation=expectation,
        evidence=Evidence("failed requests", table.num_rows, 1),
        section=section,
    )
