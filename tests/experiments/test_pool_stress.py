"""Plan 1.3 at ci scale: 50 concurrent DB-bound requests at one pool of 10 + 20, leak check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.pool_stress import EXPERIMENT
from experiments.runner import run_experiment


@pytest.mark.slow
def test_pool_stress_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    data = json.loads((out / "metrics.json").read_text())
    found = {c["name"]: c for c in data["criteria"]}
    m = data["metrics"]
    print({k: (v["measured"], v["passed"]) for k, v in found.items()}, m["pool_target_after"])
    assert code == 0
    for name in ("database_exceptions", "graceful_queuing", "success_rate", "no_connection_leak"):
        assert found[name]["passed"], found[name]
    # The instances really ran with the plan's pool: 30 connections at most.
    assert m["pool_target_after"]["max"] == 30
    assert m["pool_target_after"]["in_use"] == 0
