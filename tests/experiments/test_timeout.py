"""[6.2] The 8 s test pattern against its 5 s budget at ci scale: -32001, no leaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.runner import run_experiment
from experiments.timeout import EXPERIMENT


@pytest.mark.slow
def test_timeout_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    metrics = json.loads((out / "metrics.json").read_text())
    verdicts = {c["name"]: c for c in metrics["criteria"]}
    for name in (
        "timeout_detected_and_enforced",
        "client_receives_timeout_error",
        "no_resource_leaks",
        "other_requests_unaffected",
    ):
        assert verdicts[name]["passed"], verdicts[name]
    assert verdicts["timeout_latency_max"]["measured"] is not None  # reported, gating off ci
    assert code == 0
