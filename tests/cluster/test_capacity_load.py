"""Request classes of the capacity measurements, and the CPU accounting helpers (no servers)."""

from __future__ import annotations

import os

import pytest

from cluster import cpu_meter
from cluster.capacity_load import (
    CLOUD_METHODS,
    class_of,
    cloud_mix,
    eval_queries,
    execute_class,
    request_classes,
    row_class,
    workload_queries,
)


def test_execute_classes_name_type_routing_and_cache() -> None:
    assert execute_class("memory", "regex", True) == "execute_pattern/memory/regex/cached"
    assert execute_class("hybrid", "semantic", False) == "execute_pattern/hybrid/semantic/uncached"
    assert execute_class("hybrid", "none", False) == "execute_pattern/hybrid/semantic/uncached"
    assert execute_class("llm", "none", True) == "execute_pattern/llm"


def test_a_response_and_a_history_row_get_the_same_class() -> None:
    result = {
        "route": "pattern",
        "pattern_type": "memory",
        "matched_by": "semantic",
        "cache_hit": True,
    }
    assert class_of(result, "execute_pattern") == "execute_pattern/memory/semantic/cached"
    assert class_of({"route": "llm_fallback", "pattern_type": "hybrid"}, "execute_pattern") == (
        "execute_pattern/llm"
    )
    assert class_of({"ok": True}, "recall_memory") == "recall_memory"
    row = {
        "method": "execute_pattern",
        "pattern_name": "recall_topic",
        "cache_hit": True,
        "route": "pattern",
        "key": "q1",
    }
    routes = {"q1": ["memory", "semantic"]}
    assert (
        row_class(row, {"recall_topic": "memory"}, routes)
        == "execute_pattern/memory/semantic/cached"
    )
    assert row_class({**row, "pattern_name": None}, {}, routes) == "execute_pattern/llm"
    assert row_class({"method": "store_memory"}, {}, routes) == "store_memory"


def test_classes_come_from_probed_routes() -> None:
    routes = {"a": ["memory", "regex"], "b": ["memory", "semantic"], "c": ["llm", "none"]}
    classes = request_classes(routes, ["recall this"])
    assert {
        "execute_pattern/memory/regex/cached",
        "execute_pattern/memory/regex/uncached",
        "execute_pattern/memory/semantic/cached",
        "execute_pattern/memory/semantic/uncached",
        "execute_pattern/llm",
        "ping",
        "store_memory",
        "invalidate_cache",
    } <= set(classes)
    import random

    method, params = classes["execute_pattern/memory/regex/uncached"](0, random.Random(0))
    assert method == "execute_pattern" and params["query"] == "a" and params["use_cache"] is False


def test_the_cloud_mix_follows_the_workload_queries_routes() -> None:
    queries = workload_queries()
    routes = {
        q: (["infrastructure", "regex"] if i % 2 else ["llm", "none"])
        for i, q in enumerate(queries)
    }
    mix = cloud_mix(routes, cached_share=0.5)
    assert sum(mix.values()) == pytest.approx(sum(CLOUD_METHODS.values()))
    assert mix["store_memory"] == CLOUD_METHODS["store_memory"]
    assert "execute_pattern/infrastructure/regex/cached" in mix


def test_the_evaluation_set_has_every_route() -> None:
    assert {"infrastructure", "memory", "hybrid", "llm"} <= set(eval_queries())


def test_cpu_accounting_helpers() -> None:
    assert cpu_meter.tree_delta({1: 1.0, 2: 2.0}, {1: 1.5, 2: 2.0, 3: 0.25}) == pytest.approx(0.75)
    assert cpu_meter.split_threads({10: 3.0, 11: 1.0, 12: 0.5}, 10) == (3.0, 1.5)
    assert cpu_meter.busiest_thread({10: 1.0, 11: 1.0}, {10: 1.1, 11: 2.0}) == 11
    mine = cpu_meter.thread_times(os.getpid())
    assert os.getpid() in mine and all(v >= 0 for v in mine.values())
    assert cpu_meter.Contention().other_cores() >= 0
