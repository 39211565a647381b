"""Small row filters and criteria shared by the protocol, database and recovery experiments.

Everything here reads only a history table (schema `analysis.schema`), so a run can be re-checked
from its Parquet file.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from analysis import checks
from analysis.checks import Criterion


def where(table: pa.Table, **equal: Any) -> pa.Table:
    """Rows whose columns equal the given values (None matches null)."""
    for column, value in equal.items():
        col = table.column(column)
        mask = pc.is_null(col) if value is None else pc.fill_null(pc.equal(col, value), False)
        table = table.filter(mask)
    return table


def where_in(table: pa.Table, column: str, values: list[Any]) -> pa.Table:
    """Rows whose `column` is one of `values`."""
    return table.filter(pc.fill_null(pc.is_in(table.column(column), pa.array(values)), False))


def between(table: pa.Table, start_ns: int | None, end_ns: int | None) -> pa.Table:
    """Rows sent in [start_ns, end_ns) (open ends when None)."""
    sent = table.column("t_send_ns")
    if start_ns is not None:
        table = table.filter(pc.greater_equal(sent, start_ns))
        sent = table.column("t_send_ns")
    if end_ns is not None:
        table = table.filter(pc.less(sent, end_ns))
    return table


def failures(table: pa.Table) -> pa.Table:
    return table.filter(pc.invert(table.column("success")))


def successes(table: pa.Table) -> pa.Table:
    return table.filter(table.column("success"))


def reasons_containing(table: pa.Table, text: str) -> pa.Table:
    """Rows whose error_reason contains `text`."""
    reasons = pc.fill_null(table.column("error_reason"), "")
    return table.filter(pc.match_substring(reasons, text))


def rate_pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100.0 * part / whole


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
    if n < minimum:
        return checks.holds(
            name,
            False,
            measured=f"only {n} rows (need {minimum})",
            expectation=f"≥ {minimum} requests, all succeeded",
            description=description,
            section=section,
        )
    return checks.holds(
        name,
        ok == n,
        measured=f"{ok}/{n} succeeded" + (f" ({first_problems(table)})" if ok < n else ""),
        expectation="all succeeded",
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
        bool(rows) and len(good) == len(rows),
        measured=f"{len(good)}/{len(rows)} as expected; seen: {', '.join(seen) or 'none'}",
        expectation=expectation,
        description=description,
        section=section,
    )
