"""Request classes for the capacity measurements, and the closed-loop driver that saturates one.

A class is what costs the same CPU per request: a method, and for `execute_pattern` the type of
the pattern it routes to, how it was routed (a regex, or MiniLM similarity — which encodes the
query on every call, even a cache hit) and whether the answer came from the cache. Queries come
from the routing evaluation set and the workloads' own queries, each routed once by the server
itself, so a class never depends on a guess about the router.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cluster.topology import PROJECT_ROOT
from service.client import RpcError, WsClient

EVAL_SET = PROJECT_ROOT / "configs" / "eval" / "routing_eval.jsonl"
TEAM = "team:capacity"
WRITE_TEAM = "team:capacity-writes"
SEED_MEMORIES = 300
#: The cloud preset's request mix (configs/scale/cloud.yaml), method → weight.
CLOUD_METHODS = {"execute_pattern": 6, "recall_memory": 2, "store_memory": 1, "get_agent_info": 1}
WRITE_CLASSES = frozenset({"store_memory", "invalidate_cache"})

MakeRequest = Callable[[int, random.Random], tuple[str, Any]]
Routes = Mapping[str, Sequence[str]]


def eval_queries() -> dict[str, list[str]]:
    """The routing evaluation set's queries by labelled route."""
    by_route: dict[str, list[str]] = {}
    for line in EVAL_SET.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            by_route.setdefault(item["route"], []).append(item["query"])
    return by_route


def workload_queries() -> list[str]:
    from actors.workload import DEFAULT_QUERIES

    return list(DEFAULT_QUERIES)


def execute_class(route: str, matched_by: str, cached: bool) -> str:
    """`execute_pattern/<type>/<regex|semantic>/<cached|uncached>`, or `execute_pattern/llm`."""
    if route == "llm":
        return "execute_pattern/llm"
    how = "regex" if matched_by == "regex" else "semantic"
    return f"execute_pattern/{route}/{how}/{'cached' if cached else 'uncached'}"


def class_of(result: Any, method: str) -> str:
    """The class a response says it was."""
    if method != "execute_pattern" or not isinstance(result, dict):
        return method
    route = str(result.get("route") or "")
    if route.startswith("llm") or not result.get("pattern_type"):
        return "execute_pattern/llm"
    return execute_class(
        str(result["pattern_type"]), str(result.get("matched_by")), bool(result.get("cache_hit"))
    )


def row_class(row: Mapping[str, Any], types: Mapping[str, str], routes: Routes) -> str:
    """A history row's class: the pattern's type, how its query (`key`) routes, cache hit."""
    method = str(row["method"])
    if method != "execute_pattern":
        return method
    if str(row.get("route") or "").startswith("llm") or row.get("pattern_name") not in types:
        return "execute_pattern/llm"
    matched_by = routes.get(str(row.get("key")), ("", "semantic"))[1]
    return execute_class(types[row["pattern_name"]], matched_by, bool(row.get("cache_hit")))


async def probe_routes(client: WsClient, queries: Sequence[str]) -> dict[str, list[str]]:
    """query → [pattern type or "llm", matched_by], as the server routes it."""
    out = {}
    for query in dict.fromkeys(queries):
        result = await client.call(
            "execute_pattern", {"query": query, "use_cache": False, "namespace": TEAM}
        )
        route = str(result.get("route") or "")
        kind = "llm" if route.startswith("llm") or not result.get("pattern_type") else None
        out[query] = [kind or str(result["pattern_type"]), str(result.get("matched_by"))]
    return out


def _pattern(queries: Sequence[str], use_cache: bool) -> MakeRequest:
    def make(seq: int, rng: random.Random) -> tuple[str, Any]:
        params = {"query": rng.choice(queries), "use_cache": use_cache, "namespace": TEAM}
        return "execute_pattern", {**params, "execution_mode": "balanced"}

    return make


def request_classes(routes: Routes, memory: Sequence[str]) -> dict[str, MakeRequest]:
    """Class name → a function (seq, rng) → (method, params)."""
    classes: dict[str, MakeRequest] = {
        "ping": lambda seq, rng: ("ping", None),
        "get_agent_info": lambda seq, rng: ("get_agent_info", {}),
    }
    pools: dict[tuple[str, str], list[str]] = {}
    for query, (route, matched_by) in routes.items():
        how = "regex" if matched_by == "regex" else "semantic"
        pools.setdefault((route, how), []).append(query)
    for (route, how), queries in sorted(pools.items()):
        if route == "llm":
            classes["execute_pattern/llm"] = _pattern(queries, False)
            continue
        # A few queries for the cached class: after the warm-up every one is a hit.
        classes[execute_class(route, how, True)] = _pattern(queries[:5], True)
        classes[execute_class(route, how, False)] = _pattern(queries, False)
    classes["recall_memory"] = lambda seq, rng: (
        "recall_memory",
        {"query": rng.choice(memory), "limit": 5, "namespace": TEAM},
    )
    classes["store_memory"] = lambda seq, rng: (
        "store_memory",
        {"content": f"{rng.choice(memory)} (capacity note {seq})", "namespace": WRITE_TEAM},
    )
    classes["invalidate_cache"] = lambda seq, rng: ("invalidate_cache", {"namespace": WRITE_TEAM})
    return classes


def cloud_mix(routes: Routes, cached_share: float = 0.0) -> dict[str, float]:
    """The cloud preset's mix as classes: each workload query is one route and way of routing."""
    queries = workload_queries()
    mix: Counter[str] = Counter()
    weight = CLOUD_METHODS["execute_pattern"] / len(queries)
    for query in queries:
        route, matched_by = routes[query]
        mix[execute_class(route, matched_by, True)] += weight * cached_share
        mix[execute_class(route, matched_by, False)] += weight * (1 - cached_share)
    for method in ("recall_memory", "store_memory", "get_agent_info"):
        mix[method] += CLOUD_METHODS[method]
    return {k: v for k, v in mix.items() if v > 0}


async def seed_memories(client: WsClient, count: int = SEED_MEMORIES) -> None:
    """Memories for the recall patterns to search (an empty namespace would flatter them)."""
    topics = [q for qs in eval_queries().values() for q in qs]
    for i in range(count):
        await client.call(
            "store_memory",
            {"content": f"{topics[i % len(topics)]} — note {i}", "namespace": TEAM},
            timeout=60,
        )


async def drive(
    clients: Sequence[WsClient], make: MakeRequest, seconds: float, in_flight: int, seed: int
) -> tuple[int, int, Counter[str]]:
    """Closed loop for `seconds`: (ok, errors, the classes the responses reported)."""
    ok = errors = 0
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker(client: WsClient, k: int) -> None:
        nonlocal ok, errors
        rng = random.Random(f"{seed}:{k}")
        while time.monotonic() < deadline:
            method, params = make(next(counter), rng)
            try:
                result = await client.call(method, params, timeout=30)
            except (RpcError, TimeoutError):
                errors += 1
                continue
            ok += 1
            seen[class_of(result, method)] += 1

    await asyncio.gather(
        *(worker(c, i * in_flight + j) for i, c in enumerate(clients) for j in range(in_flight))
    )
    return ok, errors, seen
