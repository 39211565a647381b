"""The hybrid router on real MiniLM embeddings: accuracy on the labelled set, modes, demotion."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.config import DEFAULT_PATTERNS_PATH
from service.embedding import Embedder
from service.patterns.registry import PatternRegistry
from service.patterns.router import HybridRouter
from service.patterns.stats import PatternStats

EVAL_PATH = Path(__file__).resolve().parents[3] / "configs" / "eval" / "routing_eval.jsonl"
ROUTES = ("infrastructure", "memory", "hybrid", "llm")


class CountingEmbedder:
    """The real embedder, counting calls (so a test can prove a mode never embeds)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.queries: list[str] = []

    async def embed(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return await self.inner.embed(text)

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        return await self.inner.embed_many(texts)


@pytest.fixture(scope="module")
def eval_rows() -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in EVAL_PATH.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


@pytest.fixture
async def router(embedder: Embedder) -> HybridRouter:
    registry = PatternRegistry.load(DEFAULT_PATTERNS_PATH)
    return await HybridRouter.build(registry, embedder, stats=PatternStats())


def test_eval_set_is_large_and_balanced(eval_rows: list[dict[str, Any]]) -> None:
    counts = {route: sum(1 for r in eval_rows if r["route"] == route) for route in ROUTES}
    assert len(eval_rows) >= 100
    assert all(n >= 25 for n in counts.values()), counts
    holdout = [r for r in eval_rows if r["split"] == "holdout"]
    assert 0.25 <= len(holdout) / len(eval_rows) <= 0.35
    assert len({r["query"].casefold() for r in eval_rows}) == len(eval_rows)


async def test_balanced_accuracy_above_80_percent(
    router: HybridRouter, eval_rows: list[dict[str, Any]]
) -> None:
    results: dict[str, list[bool]] = {"dev": [], "holdout": []}
    per_route: dict[str, list[bool]] = {route: [] for route in ROUTES}
    misses = []
    for row in eval_rows:
        decision = await router.route(row["query"], "balanced")
        ok = decision.route == row["route"]
        results[row["split"]].append(ok)
        per_route[row["route"]].append(ok)
        if not ok:
            misses.append((row["query"], row["route"], decision.route, decision.confidence))
    overall = sum(results["dev"] + results["holdout"]) / len(eval_rows)
    holdout = sum(results["holdout"]) / len(results["holdout"])
    print(
        f"\nrouting accuracy (balanced): all {overall:.3f}, dev {sum(results['dev']) / len(results['dev']):.3f}, "
        f"held-out {holdout:.3f}"
    )
    print({route: round(sum(v) / len(v), 3) for route, v in per_route.items()})
    for miss in misses:
        print("  miss:", miss)
    assert overall > 0.80
    assert holdout > 0.80
    assert all(sum(v) / len(v) > 0.6 for v in per_route.values())


async def test_fast_mode_never_embeds_and_only_routes_infrastructure(
    embedder: Embedder, eval_rows: list[dict[str, Any]]
) -> None:
    counting = CountingEmbedder(embedder)
    router = await HybridRouter.build(PatternRegistry.load(DEFAULT_PATTERNS_PATH), counting)
    routes = set()
    for row in eval_rows:
        decision = await router.route(row["query"], "fast")
        routes.add(decision.route)
        assert decision.matched_by in ("regex", "none")
    assert counting.queries == []
    assert routes <= {"infrastructure", "llm"}
    assert (await router.route("execute tool test", "fast")).pattern_name == "execute_tool"
    assert (await router.route("what do I know about kafka", "fast")).route == "llm"
    # Balanced mode on a query no trigger matches does embed.
    await router.route("are my background jobs finished yet", "balanced")
    assert counting.queries == ["are my background jobs finished yet"]


async def test_regex_captures_groups(router: HybridRouter) -> None:
    decision = await router.route("remember that the deploy key rotates monthly", "balanced")
    assert (decision.pattern_name, decision.matched_by) == ("remember_note", "regex")
    assert decision.groups["text"] == "the deploy key rotates monthly"
    tasks = await router.route("show my pending tasks", "balanced")
    assert tasks.pattern_name == "list_tasks" and tasks.groups == {"status": "pending"}


async def test_hybrid_trigger_outranks_single_cues(router: HybridRouter) -> None:
    decision = await router.route("combine my notes with my open tasks", "balanced")
    assert decision.route == "hybrid" and decision.pattern_name == "work_context"


async def test_thorough_lowers_the_threshold(embedder: Embedder) -> None:
    registry = PatternRegistry.load(DEFAULT_PATTERNS_PATH)
    router = await HybridRouter.build(registry, embedder, threshold=0.99, thorough_threshold=0.3)
    query = "can you check if my background services are alive"
    balanced = await router.route(query, "balanced")
    thorough = await router.route(query, "thorough")
    assert balanced.route == "llm" and balanced.candidate is not None
    assert thorough.route != "llm" and thorough.confidence >= 0.3


async def test_failing_pattern_is_demoted_to_llm(embedder: Embedder) -> None:
    stats = PatternStats(min_runs=5, probe_after_s=3600)
    router = await HybridRouter.build(
        PatternRegistry.load(DEFAULT_PATTERNS_PATH), embedder, stats=stats
    )
    assert (await router.route("system status", "balanced")).route == "infrastructure"
    for _ in range(4):
        stats.record("system_status", success=False, latency_ms=1.0, error="tool_failed: boom")
    assert (
        await router.route("system status", "balanced")
    ).route == "infrastructure"  # 4 < min_runs
    stats.record("system_status", success=False, latency_ms=1.0, error="tool_failed: boom")
    demoted = await router.route("system status", "balanced")
    assert demoted.route == "llm" and demoted.demoted and demoted.candidate == "system_status"
    semantic = await router.route("is everything running fine on this node", "balanced")
    assert semantic.pattern_name != "system_status"
    assert stats.snapshot("system_status")["system_status"]["demoted"] is True


def test_demoted_pattern_gets_a_probe_after_quiet_spell() -> None:
    now = [0.0]
    stats = PatternStats(min_runs=5, probe_after_s=30, clock=lambda: now[0])
    for _ in range(5):
        stats.record("p", success=False, latency_ms=1.0)
    assert stats.confidence_factor("p") < 0.5
    now[0] = 31.0
    assert stats.confidence_factor("p") == 1.0  # the one probe
    assert stats.confidence_factor("p") < 0.5  # and only one
    for _ in range(20):
        stats.record("p", success=True, latency_ms=1.0)
    assert stats.confidence_factor("p") == 1.0 and not stats.is_demoted("p")
