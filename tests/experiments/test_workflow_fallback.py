"""[6.3] Failing pattern inside workflows at ci scale: fallback, failed step, learning record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.runner import run_experiment
from experiments.workflow_fallback import EXPERIMENT


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_workflow_fallback_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    metrics = json.loads((out / "metrics.json").read_text())
    verdicts = {c["name"]: c for c in metrics["criteria"]}
    for name in (
        "workflow_continues_after_pattern_failure",
        "workflow_error_handling_activated",
        "llm_fallback_triggered",
        "failure_recorded_in_learning_system",
        "learning_demotes_failing_pattern",
    ):
        assert verdicts[name]["passed"], verdicts[name]
    assert metrics["metrics"]["facts"]["learning_failures_recorded"] >= 12  # 4 per instance
    assert code == 0
