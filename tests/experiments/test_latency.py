"""Plan 5.1 at ci scale: 100 sequential requests through the whole pipeline (timing reported only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.latency import EXPERIMENT
from experiments.runner import run_experiment


@pytest.mark.slow
def test_latency_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    data = json.loads((out / "metrics.json").read_text())
    found = {c["name"]: c for c in data["criteria"]}
    m = data["metrics"]
    print({k: (v["measured"], v["passed"]) for k, v in found.items()}, m["breakdown"])
    assert code == 0
    assert found["success_rate"]["passed"] and found["success_rate"]["measured"] >= 95.0
    # Every pattern type of the cycle was exercised, and the cache answered the repeats.
    assert {"infrastructure", "memory", "hybrid"} <= set(m["latency_by_route"])
    assert m["breakdown"]["client_ms"]["count"] == 100
    assert m["load_cache_hit_rate"] >= 0.8
