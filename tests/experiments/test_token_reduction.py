"""Plan 5.3 at ci scale: token reduction, per-type prompt sizes and router accuracy, from rows.

Tokens are measured: the per-type criteria are judged on the untrimmed prompts (what the
templates make of the real results), whatever the verdict; the test checks that they were
judged on that evidence, that the total counts every request (LLM-routed ones included), and
that the exit code follows the criteria.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.runner import run_experiment
from experiments.token_reduction import EXPERIMENT, TOKEN_TARGETS, router_heldout_criteria
from service.patterns import route_eval

TARGET_CRITERIA = tuple(f"tokens_{kind}" for kind in TOKEN_TARGETS)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_token_reduction_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    data = json.loads((out / "metrics.json").read_text())
    found = {c["name"]: c for c in data["criteria"]}
    print({k: (v["measured"], v["passed"]) for k, v in found.items()})
    print(data["metrics"]["per_type_text"])
    for name in ("success_rate", "token_reduction", "llm_requests_counted", "router_accuracy"):
        assert found[name]["passed"], found[name]
    assert found["token_reduction"]["measured"] >= 40.0
    assert found["router_accuracy"]["measured"] > 80.0
    assert found["router_accuracy_heldout_families"]["passed"], found
    assert found["router_worst_route_heldout_families"]["passed"], found
    tokens = data["metrics"]["tokens"]
    # Every successful load request is in the total, the LLM-answered ones included.
    assert tokens["by_type"]["llm"]["requests"] >= 1
    assert 0.0 <= data["metrics"]["truncation_rate"] <= 1.0
    for row in data["metrics"]["per_type"]:
        judged = found[f"tokens_{row['type']}"]
        assert not judged["skipped"] and "untrimmed" in judged["measured"], judged
        # The prompt sent never exceeds the budget (the catalogue's budgets are the targets).
        assert row["sent_tokens"] <= row["target_tokens"], row
        assert row["untrimmed_tokens"] >= row["sent_tokens"], row
    failing = {c["name"] for c in data["criteria"] if c["critical"] and not c["passed"]}
    assert failing <= set(TARGET_CRITERIA), failing
    assert code == (1 if failing & set(TARGET_CRITERIA) else 0)
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
