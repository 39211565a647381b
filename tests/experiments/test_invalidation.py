"""Plan 4.1 at ci scale: miss → hit → invalidate → miss on every team key, across instances."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.invalidation import EXPERIMENT


@pytest.mark.slow
def test_invalidation_ci(infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, infra)
    run.passed(
        "success_rate",
        "first_execution_miss",
        "repeat_execution_hit",
        "invalidations_acknowledged",
        "miss_after_invalidation",
        "no_stale_after_invalidation",
        "updates_visible_across_instances",
        "no_stale_reads",
    )
    # Every instance heard the others' invalidations (publish → arrival measured on arrival).
    delays = run.metrics["instance_propagation_ms"]
    assert len(delays) == 3 and all(d["count"] > 0 for d in delays.values())
    print("propagation per instance", delays)
    assert run.code == 0
