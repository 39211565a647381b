"""Plan 4.3 at ci scale: three instances, ≥ 100 agents in team namespaces; strict mode is
coherent, and the deliberately broken cache makes the checker report stale reads."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq
import pytest

from analysis.schema import COLUMNS
from experiments.coherency import EXPERIMENT


@pytest.mark.slow
def test_coherency_strict_ci(infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, infra)
    for name in ("history.parquet", "junit.xml", "metrics.json", "summary.md", "index.html"):
        assert (run.out / name).is_file(), name
    history = pq.read_table(run.out / "history.parquet")
    assert set(COLUMNS) <= set(history.column_names)
    assert len(set(history.column("instance_id").drop_null().to_pylist())) == 3
    assert len(set(history.column("agent_id").to_pylist())) >= 100
    assert any(ns.startswith("team:") for ns in history.column("namespace").to_pylist())
    run.passed(
        "success_rate",
        "instances_with_rows",
        "distinct_agents",
        "nothing_lost",
        "cross_instance_pairs",
        "updates_visible_across_instances",
        "consistent_invalidation",
        "no_stale_reads",
        "read_your_writes",
        "monotonic_reads",
        "no_duplicate_keys",
    )
    assert run.metrics["stale_reads"] == 0
    print("propagation", run.metrics["propagation_ms"], "hit rate", run.metrics["cache_hit_rate"])
    assert run.code == 0


@pytest.mark.slow
def test_broken_cache_is_caught(infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, infra, "--broken-cache")
    assert run.code == 1
    assert run.metrics["stale_reads"] > 0
    assert not run.criteria["no_stale_reads"]["passed"]
    # The broken flag's stale answers come from L1 entries nobody told to drop.
    assert run.metrics["stale_reads_by_tier"].get("l1", 0) > 0
