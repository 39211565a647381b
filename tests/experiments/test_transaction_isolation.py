"""[3.2] Concurrent writes to shared tasks at ci scale: serializable outcome, no dirty reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.runner import run_experiment
from experiments.transaction_isolation import EXPERIMENT


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_transaction_isolation_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    metrics = json.loads((out / "metrics.json").read_text())
    verdicts = {c["name"]: c for c in metrics["criteria"]}
    for name in (
        "no_dirty_reads",
        "dirty_probe_reads",
        "read_after_write_violations",
        "internal_errors",
        "serializable_isolation",
        "deadlocks_handled_gracefully",
        "rollback_handling",
        "zero_data_corruption",
    ):
        assert verdicts[name]["passed"], verdicts[name]
    facts = metrics["metrics"]["facts"]
    assert facts["queued_behind_lock"] >= 1  # the rollback really had waiters
    assert facts["deadlock"]["deadlocks_detected"] >= 1  # a real deadlock happened
    assert not facts["deadlock"]["driver_victim"]
    assert code == 0
