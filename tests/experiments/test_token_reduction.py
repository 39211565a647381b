"""Plan 5.3 at ci scale: token reduction, per-type budgets and router accuracy, from rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.runner import run_experiment
from experiments.token_reduction import EXPERIMENT, router_heldout_criteria
from service.patterns import route_eval


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
    assert found["router_accuracy_heldout_families"]["passed"], found
    assert found["router_worst_route_heldout_families"]["passed"], found
    # Every labelled query (the first set and the held-out families) was executed.
    assert data["metrics"]["facts"]["eval_queries"] == sum(
        sum(row.values()) for row in data["metrics"]["router_confusion"].values()
    )


def test_router_heldout_criteria_fail_on_wrong_or_missing_answers() -> None:
    rows = route_eval.heldout_rows()
    queries = [r["query"] for r in rows]
    right = router_heldout_criteria(route_eval.score_heldout(queries, [r["route"] for r in rows]))
    assert all(c.passed for c in right)
    # Negative controls: everything sent to the LLM; half the answers lost.
    to_llm = router_heldout_criteria(route_eval.score_heldout(queries, ["llm"] * len(rows)))
    assert all(c.failed for c in to_llm)
    half = rows[: len(rows) // 2]
    lost = route_eval.score_heldout([r["query"] for r in half], [r["route"] for r in half])
    assert all(c.failed for c in router_heldout_criteria(lost))
