"""Plan 1.3 at ci scale: 50 concurrent DB-bound requests at one pool of 10 + 20, leak check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.pool_stress import EXPERIMENT
from experiments.runner import run_experiment


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_pool_stress_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    data = json.loads((out / "metrics.json").read_text())
    found = {c["name"]: c for c in data["criteria"]}
    m = data["metrics"]
    print({k: (v["measured"], v["passed"]) for k, v in found.items()}, m["pool_target_after"])
    assert code == 0
    assert m["pool_queued_borrows"] >= 1  # something really waited for a connection
    for name in ("database_exceptions", "graceful_queuing", "success_rate", "no_connection_leak"):
        assert found[name]["passed"], found[name]
    # The instances really ran with the plan's pool: 30 connections at most.
    assert m["pool_target_after"]["max"] == 30
    assert m["pool_target_after"]["in_use"] == 0


def _pool_facts(queued_before: int | None, queued_after: int | None, exhausted: int = 0) -> dict:
    def pool(queued: int | None, exhausted_total: int) -> dict:
        out = {"in_use": 0, "max": 30, "size": 30, "in_use_peak": 30, "exhausted_total": 0}
        out["exhausted_total"] = exhausted_total
        if queued is not None:
            out["queued_total"] = queued
        return out

    return {
        "target_instance": "i0",
        "pool_before": {"i0": pool(queued_before, 0)},
        "pool_after": {"i0": pool(queued_after, exhausted)},
        "pg_connections_before": 5,
        "pg_connections_after": 5,
    }


def _burst(rows: Any, n: int = 50) -> Any:
    r = rows()
    for i in range(n):
        r.add(op="read", method="execute_pattern", phase="load", route="memory", send=i, recv=i + 9)
    return r.table()


@pytest.mark.parametrize(
    ("before", "after", "exhausted", "verdict"),
    [
        (4, 4, 0, "insufficient"),  # nothing queued: queuing was never tested
        (None, None, 0, "insufficient"),  # a server that does not count queued borrows
        (4, 9, 0, "pass"),  # 5 borrows waited for a full pool, none timed out
        (4, 9, 2, "fail"),  # some waited too long: not graceful
    ],
)
def test_graceful_queuing_needs_a_request_that_queued(
    rows: Any, before: int | None, after: int | None, exhausted: int, verdict: str
) -> None:
    from tests.experiments.offline import judge

    found, _ = judge(EXPERIMENT, _burst(rows), _pool_facts(before, after, exhausted))
    crit = found["graceful_queuing"]
    assert {"insufficient": crit.insufficient, "pass": crit.passed, "fail": crit.failed}[verdict]
    if verdict == "insufficient":
        assert crit.failed
