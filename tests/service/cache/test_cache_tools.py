"""`invalidate_cache` and `get_cache_stats` through the tool registry, on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.cache.coherent import CoherentCache
from service.config import CacheSettings, Settings
from service.context import CallContext, Services
from service.embedding import Embedder
from service.errors import CacheUnavailable, InvalidParams
from service.infra.embedded import RedisServer, free_port
from service.tools.cache_tools import register_cache_tools
from service.tools.registry import ToolRegistry


def context(cache: CoherentCache, agent: str) -> CallContext:
    services = Services(settings=Settings(), tools=ToolRegistry(), embedder=Embedder(), cache=cache)
    return CallContext(agent, "s1", "inst-a", services)


@pytest.fixture
def tools() -> ToolRegistry:
    registry = ToolRegistry()
    register_cache_tools(registry)
    return registry


async def test_invalidate_and_stats(tools: ToolRegistry, infra: Any) -> None:
    a = await CoherentCache.start(infra.redis_url, CacheSettings(), "inst-a")
    b = await CoherentCache.start(infra.redis_url, CacheSettings(mode="eventual"), "inst-b")
    try:
        agent = "agent-tools-test"

        async def compute() -> dict[str, Any]:
            return {"x": 1}

        for cache in (a, b):
            await cache.get_or_compute(agent, {"query": "q"}, compute, 30)
        out = await tools.call("invalidate_cache", {}, context(a, agent))
        assert out["namespace"] == agent and out["degraded"] is False
        async with asyncio.timeout(5):
            await b.wait_for_generation(agent, out["generation"])
        assert (await b.get_or_compute(agent, {"query": "q"}, compute, 30)).tier != "l1"
        stats = await tools.call("get_cache_stats", {}, context(b, agent))
        assert stats["enabled"] and stats["invalidations_received"] >= 1
        assert stats["hits_l2"] + stats["misses"] >= 1 and 0.0 <= stats["hit_rate"] <= 1.0
        with pytest.raises(InvalidParams):
            await tools.call("invalidate_cache", {"bogus": 1}, context(a, agent))
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_invalidate_with_redis_down_flushes_local_and_reports_degraded(
    tools: ToolRegistry, tmp_path: Any
) -> None:
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    cache = await CoherentCache.start(server.url, CacheSettings(), "inst-a")
    try:

        async def compute() -> dict[str, Any]:
            return {"x": 1}

        await cache.get_or_compute("ns1", {"query": "q"}, compute, 30)
        await asyncio.to_thread(server.stop)
        out = await tools.call("invalidate_cache", {"namespace": "ns1"}, context(cache, "ns1"))
        assert out == {
            "namespace": "ns1",
            "generation": None,
            "degraded": True,
            "instance_id": "inst-a",
        }
        assert cache.stats()["l1_size"] == 0
        stats = await tools.call("get_cache_stats", {}, context(cache, "ns1"))
        assert stats["degraded"] is True
    finally:
        await cache.close()
        server.stop()


async def test_tools_without_a_cache(tools: ToolRegistry) -> None:
    assert (await tools.call("get_cache_stats", {}, context(None, "a")))["enabled"] is False
    with pytest.raises(CacheUnavailable):
        await tools.call("invalidate_cache", {}, context(None, "a"))
