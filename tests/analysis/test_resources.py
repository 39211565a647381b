"""Resource samples: buffer, section 9 bands and the soak (leak) check."""

from __future__ import annotations

import pyarrow as pa
import pytest

from analysis import resources as res

S = 1_000_000_000
STEP_S = 5


def _samples(
    rss_growth_mb_per_min: float, *, n: int = 60, conns: int = 12, step_s: int = STEP_S
) -> res.ResourceBuffer:
    buf = res.ResourceBuffer()
    for i in range(n):  # one sample every `step_s` (default: 5 minutes of samples)
        t = i * step_s
        rss = 300 * res.MB + int(rss_growth_mb_per_min * res.MB * t / 60)
        buf.append(run_id="r", t_ns=t * S, source="inst-0", cpu_percent=40.0 + i % 3, rss_bytes=rss)
        buf.append(run_id="r", t_ns=t * S, source="postgres", db_connections=conns)
        buf.append(run_id="r", t_ns=t * S, source="redis", redis_used_memory=50 * res.MB)
    return buf


def test_buffer_rejects_unknown_and_missing_columns():
    buf = res.ResourceBuffer()
    with pytest.raises(KeyError):
        buf.append(run_id="r", t_ns=0, source="x", bogus=1)
    with pytest.raises(KeyError):
        buf.append(run_id="r", source="x")
    buf.append(run_id="r", t_ns=0, source="x")
    batch = buf.drain()
    assert batch.schema == res.RESOURCE_SCHEMA and batch.num_rows == 1 and len(buf) == 0


def test_flat_run_passes_section_9_and_leak_check():
    table = pa.Table.from_batches([_samples(0.0).drain()])
    summary = res.resource_summary(table)
    assert summary["db_connections_max"] == 12 and summary["db_connections_level"] == "normal"
    assert summary["cpu_level"] == "normal"
    assert summary["growth"]["inst-0"]["rss_mb_per_min"] == pytest.approx(0.0, abs=1e-6)
    crit = res.resource_criteria(table) + res.leak_criteria(table)
    assert all(c.passed for c in crit), [c.message() for c in crit]
    assert {c.name for c in crit} >= {"cpu_usage", "memory", "db_connections", "redis_memory"}


def test_growing_memory_and_too_many_connections_fail():
    table = pa.Table.from_batches([_samples(30.0, conns=30).drain()])
    summary = res.resource_summary(table)
    assert summary["growth"]["inst-0"]["rss_mb_per_min"] == pytest.approx(30.0, rel=0.02)
    by = {c.name: c for c in res.resource_criteria(table) + res.leak_criteria(table)}
    assert by["leak_rss_bytes_inst-0"].failed
    assert by["db_connections"].failed and "critical" in by["db_connections"].description


def test_too_few_samples_skip_the_leak_check():
    table = pa.Table.from_batches([_samples(30.0, n=4).drain()])
    crit = res.leak_criteria(table)
    assert crit and all(c.skipped for c in crit)


def test_short_run_skips_the_leak_check_as_warm_up():
    table = pa.Table.from_batches([_samples(30.0, step_s=1).drain()])  # one minute only
    crit = res.leak_criteria(table)
    assert [c.name for c in crit] == ["leak_check"] and crit[0].skipped
    assert "too short" in str(crit[0].measured)


def test_connections_limit_is_per_instance():
    table = pa.Table.from_batches([_samples(0.0, conns=60).drain()])
    by = {c.name: c for c in res.resource_criteria(table, instances=3)}
    assert by["db_connections"].passed and by["db_connections"].measured == 20
    assert res.resource_criteria(table)[2].failed


def test_levels():
    assert res.level(59, 60, 80) == "normal"
    assert res.level(70, 60, 80) == "warning"
    assert res.level(81, 60, 80) == "critical"
    assert res.level(None, 60, 80) == "n/a"
