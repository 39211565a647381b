"""[3.3] v2.0 → v2.2 migration drill on a fresh database next to a ci-scale run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.migration import EXPERIMENT, STEPS
from experiments.runner import run_experiment


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_migration_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    metrics = json.loads((out / "metrics.json").read_text())
    verdicts = {c["name"]: c for c in metrics["criteria"]}
    for name in (
        *STEPS,
        "pattern_execution_on_migrated_data",
        "existing_rows_served",
        "backup_size",
    ):
        assert verdicts[name]["passed"], verdicts[name]
    facts = metrics["metrics"]["facts"]
    assert facts["v2_2"]["applied"] == [2]
    assert list((out / "migration-backups").glob("*.dump"))
    assert code == 0
