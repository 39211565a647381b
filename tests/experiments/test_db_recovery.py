"""[6.1] PostgreSQL stopped and restarted under load at ci scale (private servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.db_recovery import EXPERIMENT
from experiments.runner import run_experiment


@pytest.mark.slow
def test_db_recovery_ci(private_infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=private_infra
    )
    metrics = json.loads((out / "metrics.json").read_text())
    verdicts = {c["name"]: c for c in metrics["criteria"]}
    for name in (
        "no_service_crash_ping",
        "no_service_crash_health",
        "instances_not_restarted",
        "error_indicates_db_unavailable",
        "no_internal_errors",
        "automatic_recovery",
        "success_after_recovery",
    ):
        assert verdicts[name]["passed"], verdicts[name]
    assert verdicts["circuit_breaker_activation"]["passed"], verdicts["circuit_breaker_activation"]
    assert code == 0
