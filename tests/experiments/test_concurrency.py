"""Plan 1.1 at ci scale: 50 agents × 3–7 mixed pattern requests, no deadlocks or races."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.concurrency import EXPERIMENT


@pytest.mark.slow
def test_concurrency_ci(infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, infra)
    assert run.metrics["agents"] >= 50
    assert set(run.metrics["routes"]) >= {"infrastructure", "memory", "hybrid"}
    assert 3.0 <= run.metrics["requests_per_agent_mean"] <= 7.0
    run.passed(
        "success_rate",
        "cache_hit_rate",
        "no_deadlocks",
        "no_pool_or_database_errors",
        "no_race_conditions_internal",
        "monotonic_reads",
        "no_duplicate_keys",
    )
    print("avg latency (reported, not asserted):", run.criteria["avg_latency"]["measured"])
    assert run.code == 0
