"""Metrics, HDR histograms and criteria builders on small exact tables."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import checks, criteria, hdr, metrics


def _mixed(rows):
    r = rows()
    # 10 requests over exactly 2 s: 8 ok, 2 failed; latencies 10..100 ms.
    for i in range(10):
        ok = i not in (3, 7)
        phase = "warmup" if i < 2 else "main"
        r.add(
            op="read",
            send=i * 200.0,
            recv=i * 200.0 + 10 * (i + 1),
            success=ok,
            error_code=None if ok else -32001,
            error_reason=None if ok else "database unavailable",
            cache_hit=(i % 2 == 0) if ok else None,
            tokens_used=30 if i % 2 else 150,
            tokens_baseline=400,
            route="infrastructure" if i % 2 else "hybrid",
            phase=phase,
        )
    return r.table()


def test_success_latency_and_errors(rows):
    table = _mixed(rows)
    assert metrics.success_rate(table) == pytest.approx(0.8)
    exact = metrics.latency_exact(table)
    ok_lat = [10.0 * (i + 1) for i in range(10) if i not in (3, 7)]
    assert exact["count"] == 8
    assert exact["mean"] == pytest.approx(np.mean(ok_lat))
    assert exact["p50"] == 50.0  # nearest rank of 8 values: the 4th
    assert exact["p95"] == 100.0 and exact["max"] == 100.0
    assert metrics.error_frequency(table) == {"-32001: database unavailable": 2}
    assert metrics.duration_s(table) == pytest.approx(1.9)


def test_hit_rate_after_warmup_and_tokens(rows):
    table = _mixed(rows)
    # successful rows with a cache outcome: i in 0,1,2,4,5,6,8,9 → hits at 0,2,4,6,8
    assert metrics.cache_hit_rate(table) == pytest.approx(5 / 8)
    after = metrics.after_warmup(table)  # drops i=0,1 → hits 2,4,6,8 of 2,4,5,6,8,9
    assert metrics.cache_hit_rate(after) == pytest.approx(4 / 6)
    by_time = metrics.after_warmup(table, warmup_phases=(), warmup_s=1.0)  # i >= 5
    assert metrics.cache_hit_rate(by_time) == pytest.approx(2 / 4)
    # successful: hybrid (even i) 0,2,4,6,8 = 5×150; infra 1,5,9 = 3×30
    assert metrics.token_reduction(table) == pytest.approx(1 - (5 * 150 + 3 * 30) / (8 * 400))
    by_route = metrics.token_stats_by(table)
    assert by_route["infrastructure"]["mean_tokens"] == 30
    assert by_route["hybrid"]["reduction"] == pytest.approx(1 - 150 / 400)


def test_rps_series_and_throughput(rows):
    r = rows()
    for i in range(30):
        r.add(op="read", send=i * 100.0, recv=i * 100.0 + 5)
    table = r.table()
    series = metrics.rps_series(table, bucket_s=1.0)
    assert [s for _, s in series] == [10.0, 10.0, 10.0]
    assert metrics.throughput_rps(table) == pytest.approx(30 / 2.905)
    summary = metrics.summarize(table)
    assert summary["requests"] == 30 and summary["instances"] == 1
    assert summary["cache_hit_rate"] is None  # nothing reported a cache outcome


def test_empty_table_gives_none(rows):
    table = rows().table()
    assert metrics.success_rate(table) is None
    assert metrics.latency_exact(table)["p95"] is None
    empty = criteria.success_rate_criterion(table)
    assert empty.failed and empty.insufficient and not empty.skipped  # nothing judged ≠ a pass
    assert "insufficient evidence: 0 requests (need ≥ 20)" in empty.message()
    assert metrics.summarize(table)["requests"] == 0


def test_hdr_merge_is_exact_and_close_to_exact_percentiles():
    rng = np.random.default_rng(7)
    values = rng.lognormal(3, 0.6, 5000)
    parts = [hdr.from_ms(chunk) for chunk in np.array_split(values, 4)]
    wire = [hdr.encode(p) for p in parts]
    merged = hdr.merge(wire)
    whole = hdr.from_ms(values)
    assert merged.get_total_count() == 5000
    for p in (50, 95, 99):
        assert hdr.percentile_ms(merged, p) == hdr.percentile_ms(whole, p)
        exact = float(np.percentile(values, p, method="inverted_cdf"))
        assert hdr.percentile_ms(merged, p) == pytest.approx(exact, rel=2e-3)
    assert hdr.summary_ms(hdr.new_histogram())["p95"] is None


def test_criterion_builders_and_tally(rows):
    table = _mixed(rows)
    built = [
        criteria.success_rate_criterion(table, 95, section="1.1", min_requests=10),
        criteria.avg_latency_criterion(table, 300, section="1.1"),
        criteria.percentile_latency_criterion(table, 95, 50, critical=False),
        criteria.hit_rate_criterion(table, 60, min_requests=5),
        criteria.token_reduction_criterion(table, 40, min_requests=5),
        criteria.error_count_criterion(table, "no_db_errors", reason_contains="database"),
        criteria.duration_criterion(table, 60),
        *criteria.token_target_criteria(
            table, {"infrastructure": 30, "hybrid": 150, "memory": 80}, min_requests=3
        ),
    ]
    by = {c.name: c for c in built}
    assert by["success_rate"].failed and by["success_rate"].measured == pytest.approx(80.0)
    assert "expected ≥ 95%, measured 80%" in by["success_rate"].message()
    assert by["avg_latency"].failed and by["avg_latency"].insufficient  # 8 of the 10 timings
    # p95 of 8 samples is just the maximum: it needs 20, so it fails for want of evidence.
    assert by["p95_latency"].insufficient and not by["p95_latency"].critical
    assert by["cache_hit_rate"].passed
    assert by["token_reduction"].passed
    assert by["no_db_errors"].failed and by["no_db_errors"].measured == 2
    assert by["total_duration"].passed
    assert by["tokens_infrastructure"].passed
    assert by["tokens_memory"].failed and by["tokens_memory"].insufficient
    assert not any(c.skipped for c in built)
    t = checks.tally(built)
    assert (t.passed, t.failed, t.skipped, t.critical_failed, t.insufficient) == (5, 5, 0, 3, 3)
    assert not t.ok


def test_boundaries_of_at_least_and_at_most():
    enough = checks.Evidence("samples", 1, 1)
    assert checks.at_least("x", 95.0, 95, evidence=enough).passed
    assert not checks.at_least("x", 95.0, 95, strict=True, evidence=enough).passed
    assert not checks.at_most("x", 250.0, 250, strict=True, evidence=enough).passed
    nan = checks.at_most("x", float("nan"), 1, evidence=enough)
    assert nan.failed and nan.measured is None  # nothing measured fails, never skips
    assert checks.tally([checks.at_most("x", 2.0, 1, critical=False, evidence=enough)]).ok
