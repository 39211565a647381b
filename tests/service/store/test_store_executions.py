"""ExecutionLog: pattern_executions rows in, per-pattern statistics out."""

from __future__ import annotations

import asyncio

import pytest

from service.store.db import Database
from service.store.executions import ExecutionLog, ExecutionWriter


def _row(pattern: str, latency: float, success: bool = True, **extra: object) -> dict:
    return {
        "agent_id": "agent-x", "instance_id": "tmws-1", "namespace": extra.pop("namespace", "ns-x"),
        "pattern_name": pattern, "pattern_type": "memory", "execution_mode": "balanced",
        "success": success, "latency_ms": latency, **extra,
    }  # fmt: skip


async def test_record_and_stats(db: Database) -> None:
    log = ExecutionLog(db)
    for i in range(1, 21):
        await log.record(
            **_row("recall", float(i), success=i % 10 != 0, tokens_used=10, tokens_baseline=40)
        )
    await log.record(**_row("health", 2.0, cache_hit=True, cache_tier="l1", namespace="ns-y"))

    stats = {s["pattern_name"]: s for s in await log.stats()}
    recall = stats["recall"]
    assert recall["count"] == 20
    assert recall["success_rate"] == pytest.approx(0.9)
    assert recall["avg_latency_ms"] == pytest.approx(10.5)
    assert recall["p95_latency_ms"] == pytest.approx(19.05)
    assert recall["avg_tokens_used"] == 10 and recall["avg_tokens_baseline"] == 40
    assert stats["health"]["cache_hit_rate"] == 1.0

    only_y = await log.stats(namespace="ns-y")
    assert [s["pattern_name"] for s in only_y] == ["health"]


async def test_record_rejects_unknown_or_missing_columns(db: Database) -> None:
    log = ExecutionLog(db)
    with pytest.raises(ValueError, match="unknown"):
        await log.record(**_row("recall", 1.0), bogus=1)
    row = _row("recall", 1.0)
    del row["success"]
    with pytest.raises(ValueError, match="missing"):
        await log.record(**row)


async def test_group_commit_writes_every_row_in_fewer_batches(db: Database) -> None:
    writer = ExecutionWriter(db)
    rows = [_row("grouped", float(i), namespace="ns-group") for i in range(200)]
    await asyncio.gather(*(writer.record(**row) for row in rows))
    assert await writer.close() == 0  # whatever the callers did not wait for is flushed now
    stats = {s["pattern_name"]: s for s in await ExecutionLog(db).stats(namespace="ns-group")}
    assert stats["grouped"]["count"] == 200
    assert writer.rows == 200 and writer.batches < 200
    with pytest.raises(ValueError, match="unknown pattern_executions columns: bogus"):
        await writer.record(**_row("grouped", 1.0), bogus=1)
