"""store_memory / recall_memory through ToolRegistry.call with real PostgreSQL and MiniLM."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import pytest

from service.cache.coherent import CoherentCache
from service.config import CacheSettings
from service.context import CallContext, Services
from service.errors import InvalidParams

Ctx = Callable[[str], CallContext]


async def test_store_then_recall_own_text_is_top_hit(services: Services, make_ctx: Ctx) -> None:
    ctx = make_ctx("agent-mem")
    texts = [
        "Hestia audits the security posture of the payment gateway every sprint.",
        "Artemis optimised the vector search to under five milliseconds.",
        "Muses keeps the documentation for the memory service up to date.",
    ]
    for text in texts:
        stored = await services.tools.call("store_memory", {"content": text, "tags": ["team"]}, ctx)
        assert stored["namespace"] == "agent-mem" and stored["version_written"] is None
    for text in texts:
        out = await services.tools.call("recall_memory", {"query": text, "limit": 3}, ctx)
        assert out["results"][0]["content"] == text
        assert out["results"][0]["similarity"] > 0.99
        assert out["count"] == len(out["results"]) and out["version_seen"] is None
    assert set(out["results"][0]) == {
        "memory_id", "content", "similarity", "tags", "importance", "namespace", "shared",
    }  # fmt: skip


async def test_agent_b_cannot_recall_a_private_memory_but_can_a_shared_one(
    services: Services, make_ctx: Ctx
) -> None:
    a, b = make_ctx("agent-iso-a"), make_ctx("agent-iso-b")
    secret = "the vault combination for agent A is 4-8-15-16-23-42"
    handbook = "agent A's onboarding handbook, shared with every agent"
    await services.tools.call("store_memory", {"content": secret}, a)
    await services.tools.call("store_memory", {"content": handbook, "shared": True}, a)

    seen = await services.tools.call("recall_memory", {"query": secret, "limit": 100}, b)
    contents = [r["content"] for r in seen["results"]]
    assert secret not in contents
    assert handbook in contents
    alone = await services.tools.call(
        "recall_memory", {"query": secret, "include_shared": False}, b
    )
    assert alone["results"] == []
    own = await services.tools.call("recall_memory", {"query": secret, "limit": 1}, a)
    assert own["results"][0]["content"] == secret


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("store_memory", {"content": ""}, "content"),
        ("store_memory", {"content": "x" * 10_001}, "content"),
        ("store_memory", {"content": "ok", "importance": 1.5}, "importance"),
        ("store_memory", {"content": "ok", "tags": [""]}, "tags.0"),
        ("store_memory", {"content": "ok", "owner": "someone-else"}, "owner"),
        ("recall_memory", {"query": "q", "limit": 0}, "limit"),
        ("recall_memory", {"query": "q", "limit": 101}, "limit"),
        ("recall_memory", {"query": "q", "min_similarity": -0.1}, "min_similarity"),
        ("recall_memory", {"limit": 5}, "query"),
    ],
)
async def test_bounds_are_enforced(
    services: Services, make_ctx: Ctx, tool: str, arguments: dict, field: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        await services.tools.call(tool, arguments, make_ctx("agent-bounds"))
    assert caught.value.field == field


async def test_schemas_describe_bounds(services: Services) -> None:
    schemas = {t["name"]: t["inputSchema"] for t in services.tools.describe()}
    recall = schemas["recall_memory"]["properties"]
    assert (recall["limit"]["minimum"], recall["limit"]["maximum"]) == (1, 100)
    assert recall["min_similarity"]["maximum"] == 1.0
    assert schemas["store_memory"]["properties"]["content"]["maxLength"] == 10_000
    assert schemas["store_memory"]["properties"]["content"]["description"]


async def test_50_concurrent_recall_tool_calls_raise_nothing(
    services: Services, make_ctx: Ctx
) -> None:
    ctx = make_ctx("agent-load")
    texts = [
        f"load memory {i}: the {['red', 'green', 'blue'][i % 3]} service #{i}" for i in range(50)
    ]
    for text in texts:
        await services.tools.call("store_memory", {"content": text}, ctx)

    async def recall(i: int) -> float:
        started = time.perf_counter()
        out = await services.tools.call("recall_memory", {"query": texts[i], "limit": 5}, ctx)
        assert out["results"][0]["content"] == texts[i]
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    results = await asyncio.gather(*(recall(i) for i in range(50)), return_exceptions=True)
    wall = time.perf_counter() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    latencies = sorted(r for r in results if isinstance(r, float))
    print(
        f"\n50 concurrent recall_memory (embed + pgvector): wall {wall * 1000:.0f} ms, "
        f"p50 {statistics.median(latencies):.0f} ms, max {latencies[-1]:.0f} ms; "
        f"pool {services.db.pool_stats()}"
    )


async def test_writes_bump_and_reads_report_the_cache_generation(
    services: Services, make_ctx: Ctx, infra: object
) -> None:
    cache = await CoherentCache.start(
        infra.redis_url,  # type: ignore[attr-defined]
        CacheSettings(),
        services.instance_id,
    )
    services.cache = cache
    try:
        ctx = make_ctx("agent-gen")
        first = await services.tools.call("store_memory", {"content": "generation one"}, ctx)
        second = await services.tools.call("store_memory", {"content": "generation two"}, ctx)
        assert isinstance(first["version_written"], int)
        assert second["version_written"] > first["version_written"]
        out = await services.tools.call("recall_memory", {"query": "generation two"}, ctx)
        assert out["version_seen"] == second["version_written"]
    finally:
        services.cache = None
        await cache.close()
