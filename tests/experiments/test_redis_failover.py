"""Plan 4.2 at ci scale: Redis really stopped mid-load and restarted (private servers)."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.redis_failover import EXPERIMENT


@pytest.mark.slow
def test_redis_failover_ci(private_infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, private_infra)
    run.passed(
        "redis_stopped",
        "rows_during_outage",
        "success_without_redis",
        "degraded_marked",
        "local_cache_fallback",
        "automatic_reconnection",
        "recovery_not_degraded",
        "l2_hits_after_reconnect",
    )
    print(
        "outage",
        {k: run.metrics[k] for k in ("outage_s", "reconnect_s", "timeouts_by_second")},
    )
    assert run.code == 0
