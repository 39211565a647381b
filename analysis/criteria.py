"""Composable plan criteria over a history table; each experiment picks the ones its section lists.

Percent thresholds are given in percent (95 means 95%), as the plan writes them. Each builder
states the evidence it needs: a rate over too few requests, or a percentile over too few samples,
fails as "insufficient evidence" instead of passing on nothing.
"""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc

from analysis import metrics
from analysis.checks import Criterion, Evidence, at_least, at_most, equals

#: Requests a rate criterion needs by default: one failure in 20 is already 5 %.
MIN_REQUESTS = 20


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def percentile_samples(percentile: float) -> int:
    """Samples a percentile needs to be an observed value rather than the maximum: p95 → 20."""
    return math.ceil(100.0 / (100.0 - percentile)) if percentile < 100 else 1


def success_rate_criterion(
    table: pa.Table,
    min_pct: float = 95.0,
    *,
    section: str = "",
    critical: bool = True,
    min_requests: int = MIN_REQUESTS,
) -> Criterion:
    """Success rate ≥ min_pct (plan 1.1: 95, 1.3/3.1: 96, 2.3: 80) over ≥ min_requests."""
    return at_least(
        "success_rate",
        _pct(metrics.success_rate(table)),
        min_pct,
        evidence=Evidence("requests", table.num_rows, min_requests),
        description="requests that succeeded",
        unit="%",
        section=section,
        critical=critical,
        metric="success_rate",
    )


def avg_latency_criterion(
    table: pa.Table,
    max_ms: float,
    *,
    section: str = "",
    critical: bool = True,
    min_samples: int = 10,
) -> Criterion:
    """Mean latency of successful requests < max_ms."""
    stats = metrics.latency_exact(table)
    return at_most(
        "avg_latency",
        stats["mean"],
        max_ms,
        evidence=Evidence("successful requests timed", stats["count"], min_samples),
        description="mean end-to-end latency of successful requests",
        unit="ms",
        section=section,
        critical=critical,
        metric="latency_avg_ms",
        strict=True,
    )


def percentile_latency_criterion(
    table: pa.Table, percentile: int, max_ms: float, *, section: str = "", critical: bool = True
) -> Criterion:
    """P<percentile> latency of successful requests < max_ms (percentile in 50/90/95/99)."""
    stats = metrics.latency_exact(table)
    return at_most(
        f"p{percentile}_latency",
        stats[f"p{percentile}"],
        max_ms,
        evidence=Evidence(
            "successful requests timed", stats["count"], percentile_samples(percentile)
        ),
        description=f"{percentile}th percentile end-to-end latency (exact, nearest rank)",
        unit="ms",
        section=section,
        critical=critical,
        metric=f"latency_p{percentile}_ms",
        strict=True,
    )


def hit_rate_criterion(
    table: pa.Table,
    min_pct: float = 70.0,
    *,
    warmup_phases: tuple[str, ...] = metrics.WARMUP_PHASES,
    warmup_s: float | None = None,
    section: str = "",
    critical: bool = True,
    min_requests: int = MIN_REQUESTS,
) -> Criterion:
    """Cache hit rate after warm-up > min_pct, over ≥ min_requests cache lookups."""
    rows = metrics.after_warmup(table, warmup_phases=warmup_phases, warmup_s=warmup_s)
    lookups = metrics.successful(rows).filter(
        pc.is_valid(metrics.successful(rows).column("cache_hit"))
    )
    return at_least(
        "cache_hit_rate",
        _pct(metrics.cache_hit_rate(rows)),
        min_pct,
        evidence=Evidence("cache lookups after warm-up", lookups.num_rows, min_requests),
        description="cache hits among successful requests after warm-up",
        unit="%",
        section=section,
        critical=critical,
        metric="cache_hit_rate",
        strict=True,
    )


def token_reduction_criterion(
    table: pa.Table,
    min_pct: float = 40.0,
    *,
    section: str = "5.3",
    critical: bool = True,
    min_requests: int = MIN_REQUESTS,
) -> Criterion:
    """Total token reduction vs the LLM baseline ≥ min_pct."""
    counted = metrics.token_rows(table).num_rows
    return at_least(
        "token_reduction",
        _pct(metrics.token_reduction(table)),
        min_pct,
        evidence=Evidence("requests with token counts", counted, min_requests),
        description="1 − Σ tokens_used / Σ tokens_baseline",
        unit="%",
        section=section,
        critical=critical,
        metric="token_reduction",
    )


def token_target_criteria(
    table: pa.Table,
    targets: dict[str, float],
    *,
    tolerance: float = 0.10,
    section: str = "5.3",
    min_requests: int = 5,
) -> list[Criterion]:
    """Mean pattern tokens per route within ±tolerance of the plan's targets (30/80/150)."""
    stats = metrics.token_stats_by(table, "route")
    out = []
    for route, target in targets.items():
        mean = stats.get(route, {}).get("mean_tokens")
        deviation = None if mean is None else 100.0 * abs(mean - target) / target
        out.append(
            at_most(
                f"tokens_{route}",
                deviation,
                100.0 * tolerance,
                evidence=Evidence(
                    f"{route} requests with token counts",
                    stats.get(route, {}).get("count", 0),
                    min_requests,
                ),
                description=f"|mean tokens − {target:g}| / {target:g} for route {route}",
                unit="%",
                section=section,
                critical=False,
            )
        )
    return out


def rps_criterion(
    table: pa.Table,
    min_rps: float,
    *,
    section: str = "5.2",
    critical: bool = True,
    min_requests: int = MIN_REQUESTS,
) -> Criterion:
    """Achieved throughput (successful completions / run window) ≥ min_rps."""
    return at_least(
        "throughput",
        metrics.throughput_rps(table),
        min_rps,
        evidence=Evidence("successful requests", metrics.successful(table).num_rows, min_requests),
        description="successful requests per second over the run",
        unit=" rps",
        section=section,
        critical=critical,
        metric="rps",
    )


def duration_criterion(
    table: pa.Table, max_s: float, *, section: str = "", critical: bool = True
) -> Criterion:
    """Total execution time (first send to last receive) < max_s."""
    return at_most(
        "total_duration",
        metrics.duration_s(table) if table.num_rows else None,
        max_s,
        evidence=Evidence("requests", table.num_rows, 1),
        description="first send to last receive",
        unit="s",
        section=section,
        critical=critical,
        strict=True,
    )


def error_count_criterion(
    table: pa.Table,
    name: str,
    *,
    codes: set[int] | None = None,
    reason_contains: str | None = None,
    max_count: int = 0,
    section: str = "",
    critical: bool = True,
    min_requests: int = 1,
) -> Criterion:
    """At most max_count failed requests with one of `codes` / a reason containing a word,
    among at least `min_requests` requests (no errors in no requests proves nothing)."""
    failed = table.filter(pc.equal(table.column("success"), False))
    if codes is not None:
        failed = failed.filter(pc.is_in(failed.column("error_code"), pa.array(sorted(codes))))
    if reason_contains is not None:
        reasons = pc.fill_null(failed.column("error_reason"), "")
        failed = failed.filter(pc.match_substring(reasons, reason_contains, ignore_case=True))
    build = equals if max_count == 0 else at_most
    return build(
        name,
        float(failed.num_rows),
        max_count,
        evidence=Evidence("requests", table.num_rows, min_requests),
        description=f"failed requests matching codes={sorted(codes or [])} reason~{reason_contains}",
        section=section,
        critical=critical,
    )
