"""Plan 3.1 at ci scale: 50 concurrent cache-off vector searches, index use verified from EXPLAIN."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.pgvector_load import EXPERIMENT
from experiments.runner import run_experiment


def _criteria(out: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((out / "metrics.json").read_text())
    return {c["name"]: c for c in data["criteria"]}


@pytest.mark.slow
def test_pgvector_load_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    found = _criteria(out)
    print({k: (v["measured"], v["passed"]) for k, v in found.items()})
    assert code == 0
    for name in ("success_rate", "all_cache_disabled_memory_searches", "vector_index_usable"):
        assert found[name]["passed"], found[name]
    assert found["success_rate"]["measured"] >= 96.0
