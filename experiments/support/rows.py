"""Row selections and small criteria: they live in `analysis.rows` (checkers use them too)."""

from analysis.rows import (
    all_succeeded,
    between,
    error_code_criterion,
    error_codes,
    failures,
    first_problems,
    latency_breakdown,
    latency_by,
    qps,
    rate_pct,
    reasons_all_contain,
    reasons_containing,
    success_pct,
    successes,
    where,
    where_in,
)

__all__ = [
    "all_succeeded",
    "between",
    "error_code_criterion",
    "error_codes",
    "failures",
    "first_problems",
    "latency_breakdown",
    "latency_by",
    "qps",
    "rate_pct",
    "reasons_all_contain",
    "reasons_containing",
    "success_pct",
    "successes",
    "where",
    "where_in",
]
