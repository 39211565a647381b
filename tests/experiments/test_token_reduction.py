"""Plan 5.3 at ci scale: token reduction, per-type budgets and router accuracy, from rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.runner import run_experiment
from experiments.token_reduction import EXPERIMENT


@pytest.mark.slow
def test_token_reduction_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    data = json.loads((out / "metrics.json").read_text())
    found = {c["name"]: c for c in data["criteria"]}
    print({k: (v["measured"], v["passed"]) for k, v in found.items()})
    print(data["metrics"]["per_type_text"])
    assert code == 0
    for name in (
        "success_rate",
        "token_reduction",
        "tokens_infrastructure",
        "tokens_memory",
        "tokens_hybrid",
        "router_accuracy",
    ):
        assert found[name]["passed"], found[name]
    assert found["token_reduction"]["measured"] >= 40.0
    assert found["router_accuracy"]["measured"] > 80.0
    # All 143 labelled queries were executed by the servers.
    assert data["metrics"]["facts"]["eval_queries"] == sum(
        sum(row.values()) for row in data["metrics"]["router_confusion"].values()
    )
