"""Plan 1.2 at ci scale: 20 agents, the same pattern at once, concurrent updates."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.cache_coherency import EXPERIMENT


@pytest.mark.slow
def test_cache_coherency_ci(infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, infra)
    assert 20 <= run.metrics["agents"] <= 21  # 20 rounded up to whole swarms
    run.passed(
        "success_rate",
        "coherent_results",
        "cache_hit_rate",
        "concurrent_updates",
        "no_stale_data",
        "read_your_writes",
        "monotonic_reads",
        "no_duplicate_keys",
    )
    assert run.criteria["cache_hit_rate"]["measured"] > 70.0
    assert run.code == 0
