"""The labelled routing sets and the figures computed on them (pure: no model, no embedder)."""

from __future__ import annotations

from collections import Counter

import pytest

from service.config import DEFAULT_PATTERNS_PATH
from service.patterns import route_eval
from service.patterns.registry import PatternRegistry
from service.patterns.route_model import ROUTES, RouteModel


def test_design_set_is_large_varied_and_grouped_in_families() -> None:
    rows = route_eval.design_rows()
    routes = Counter(r["route"] for r in rows)
    families = Counter(r["family"] for r in rows)
    assert len(rows) >= 1000, len(rows)
    assert all(routes[r] >= 200 for r in ROUTES), routes
    assert len(families) >= 25 and max(families.values()) <= 150, families
    lengths = sorted(len(r["query"].split()) for r in rows)
    assert lengths[0] <= 2 and lengths[-1] >= 18  # one-word commands to long requests


def test_heldout_families_are_disjoint_from_training() -> None:
    design = route_eval.design_rows()
    heldout = route_eval.heldout_rows()
    assert len(heldout) >= 200
    assert all(sum(1 for r in heldout if r["route"] == x) >= 50 for x in ROUTES)
    assert {r["family"] for r in heldout}.isdisjoint({r["family"] for r in design})
    registry = PatternRegistry.load(DEFAULT_PATTERNS_PATH)
    seen = {r["query"].casefold() for r in route_eval.training_rows(registry)}
    leaked = [r["query"] for r in heldout if r["query"].casefold() in seen]
    assert leaked == []
    assert len({r["query"].casefold() for r in heldout}) == len(heldout)


def test_committed_model_was_trained_on_the_current_data() -> None:
    """Editing the design set, exemplars or triggers without retraining fails here."""
    registry = PatternRegistry.load(DEFAULT_PATTERNS_PATH)
    digest = route_eval.data_digest(route_eval.training_rows(registry), registry)
    assert RouteModel.load().meta["data_digest"] == digest, (
        "the router model is stale: run python scripts/train_router.py"
    )


def test_evaluate_counts_precision_recall_and_confusion() -> None:
    expected = ["memory", "memory", "hybrid", "llm", "infrastructure"]
    predicted = ["memory", "hybrid", "hybrid", "llm", None]
    report = route_eval.evaluate(expected, predicted, ["a", "a", "b", "b", "b"])
    assert report["accuracy"] == 0.6
    assert report["per_route"]["memory"] == {
        "n": 2,
        "correct": 1,
        "recall": 0.5,
        "precision": 1.0,
    }
    assert report["per_route"]["hybrid"]["precision"] == 0.5
    assert report["confusion"]["infrastructure"]["other"] == 1  # unanswered counts as wrong
    assert report["per_family"]["a"]["accuracy"] == 0.5
    text = route_eval.format_report(report, "t")
    assert "confusion" in text and "60.0%" in text


def test_target_needs_every_route() -> None:
    good = route_eval.evaluate(["memory"] * 10 + ["llm"] * 10, ["memory"] * 10 + ["llm"] * 10)
    assert route_eval.meets_target(good)
    # Negative control: 95 % overall with one route at 50 % misses the bar.
    expected = ["memory"] * 36 + ["llm"] * 4
    predicted = ["memory"] * 36 + ["llm"] * 2 + ["memory"] * 2
    lopsided = route_eval.evaluate(expected, predicted)
    assert lopsided["accuracy"] == 0.95
    assert route_eval.worst_route(lopsided) == ("llm", 0.5)
    assert not route_eval.meets_target(lopsided)


def test_score_heldout_counts_missing_answers_as_wrong() -> None:
    rows = route_eval.heldout_rows()
    all_right = route_eval.score_heldout([r["query"] for r in rows], [r["route"] for r in rows])
    assert all_right["accuracy"] == 1.0 and all_right["answered"] == len(rows)
    half = rows[: len(rows) // 2]
    partial = route_eval.score_heldout([r["query"] for r in half], [r["route"] for r in half])
    assert partial["answered"] == len(half)
    assert partial["accuracy"] == pytest.approx(len(half) / len(rows), abs=0.01)
    assert not route_eval.meets_target(partial)
