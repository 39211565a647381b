"""`execute_pattern` over a real `CoherentCache`: executor failures versus the cache's own.

The cache owns degraded behaviour (a Redis failure becomes a `degraded` answer, never an error);
the engine only decides what an executor failure becomes. Callers that joined a failing flight
must be treated like the caller that ran it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from service.cache.coherent import CoherentCache
from service.cache.result import CacheResult
from service.cache.singleflight import LocalFlights
from service.config import CacheSettings
from service.context import CallContext
from service.embedding import Embedder
from service.errors import ToolFailed
from service.tools.pattern_tools import FailToolArgs
from service.tools.registry import ToolRegistry, ToolSpec

QUERY = {"query": "slow pattern test"}


class Gate:
    """A tool that fails once released, so a second caller can join its flight first."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.runs = 0

    async def run(self, ctx: CallContext, args: FailToolArgs) -> dict[str, Any]:
        self.runs += 1
        self.started.set()
        async with asyncio.timeout(10):
            await self.release.wait()
        raise ToolFailed(f"gated: {args.reason}")

    def register(self, registry: ToolRegistry) -> None:
        registry.register(
            ToolSpec("gated_fail", "Test only: fails on release.", FailToolArgs, self.run)
        )


class WatchedFlights(LocalFlights[CacheResult]):
    """Sets `joining` when a caller is about to join a flight in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.joining = asyncio.Event()

    async def run(
        self, key: str, factory: Callable[[], Awaitable[CacheResult]]
    ) -> tuple[CacheResult, bool]:
        if len(self):  # one key in play: a flight in progress is the leader's
            self.joining.set()
        return await super().run(key, factory)


async def test_joined_failure_falls_back_like_its_leader(
    embedder: Embedder,
    infra: Any,
    make_services: Any,
    make_context: Any,
    catalogue: dict[str, Any],
    write_catalogue: Callable[[dict[str, Any]], Any],
    pattern_spec: Any,
) -> None:
    pattern_spec(catalogue, "slow_test_pattern").update(
        tool="gated_fail", arguments={}, cache_ttl_s=30.0
    )
    cache = await CoherentCache.start(
        infra.redis_url, CacheSettings(), f"inst-{uuid.uuid4().hex[:6]}"
    )
    gate = Gate()
    flights = cache._parts.flights = WatchedFlights()
    try:
        services = await make_services(
            embedder,
            patterns_path=write_catalogue(catalogue),
            cache=cache,
            extra_tools=gate.register,
        )
        ctx = make_context(services)
        call = services.tools.call
        leader = asyncio.create_task(call("execute_pattern", QUERY, ctx))
        async with asyncio.timeout(10):
            await gate.started.wait()
        joiner = asyncio.create_task(call("execute_pattern", QUERY, ctx))
        async with asyncio.timeout(10):
            await flights.joining.wait()
        gate.release.set()
        results = await asyncio.gather(leader, joiner)
    finally:
        gate.release.set()
        await cache.close()
    assert gate.runs == 1 and flights.coalesced == 1  # one computation for both callers
    for result in results:
        assert (result["route"], result["fallback"]) == ("llm_fallback", True), result
        assert result["error"].startswith("tool_failed"), result
        assert result["degraded"] is False
