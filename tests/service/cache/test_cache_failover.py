"""Redis stopped mid-test: serve L1 degraded -> Redis restarted on the same port -> reconnect + flush."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from service.cache.invalidation import ListenerState
from service.cache.keys import key_parts
from service.errors import CacheUnavailable
from service.infra.embedded import RedisServer

PARTS = key_parts("status of the build queue", registry_version=1, mode="fast")
OTHER = key_parts("list open tasks", registry_version=1, mode="fast")
TTL = 60.0


@pytest.mark.parametrize("mode", ["strict", "eventual"])
async def test_redis_loss_and_return(
    make_cache: Any, own_redis: RedisServer, namespace: str, source: Any, mode: str
) -> None:
    a = await make_cache(mode, url=own_redis.url)
    b = await make_cache(mode, url=own_redis.url)
    warm = await a.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert not warm.degraded
    gen_before = warm.generation
    assert gen_before is not None

    await asyncio.to_thread(own_redis.stop)
    async with asyncio.timeout(10):
        await a.wait_disconnected()
    assert a.stats()["redis_state"] == ListenerState.DOWN.value

    served = await a.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert (served.tier, served.degraded, served.value) == ("l1", True, warm.value)
    t0 = time.perf_counter()
    miss = await a.get_or_compute(namespace, OTHER, source.compute, TTL)
    miss_ms = (time.perf_counter() - t0) * 1000
    assert (miss.tier, miss.degraded, miss.generation) == ("none", True, None)
    assert (await b.get_or_compute(namespace, PARTS, source.compute, TTL)).degraded
    with pytest.raises(CacheUnavailable):
        await a.bump_generation(namespace, "write while down")
    assert await a.bump_generation_or_flush_local(namespace, "write while down") is None
    assert (await a.get_or_compute(namespace, PARTS, source.compute, TTL)).tier == "none"
    assert await a.generation(namespace) is None
    down = a.stats()
    assert down["degraded"] and down["breaker"]["state"] == "open"
    assert down["local_flushes"] == 1 and down["l1_size"] >= 1

    await asyncio.to_thread(own_redis.start)
    t_up = time.perf_counter()
    async with asyncio.timeout(15):
        await a.wait_connected()
        await b.wait_connected()
    reconnect_ms = (time.perf_counter() - t_up) * 1000
    up = a.stats()
    print(
        f"\n[{mode}] degraded miss {miss_ms:.2f} ms with breaker open; reconnected "
        f"{reconnect_ms:.0f} ms after restart; stats: reconnects={up['reconnects']} "
        f"l1_flushes={up['l1_flushes']} flushed_entries={up['l1_flushed_entries']} "
        f"breaker={up['breaker']['state']}"
    )
    assert up["reconnects"] == 1 and up["l1_flushes"] == 1 and up["l1_flushed_entries"] >= 1
    assert up["l1_size"] == 0 and not up["degraded"] and up["breaker"]["state"] == "closed"

    after = await a.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert (after.tier, after.degraded) == ("none", False)
    # Redis lost its data; the re-seeded counter is still ahead of the one before the outage.
    assert after.generation is not None and after.generation > gen_before
    assert (await b.get_or_compute(namespace, PARTS, source.compute, TTL)).tier == "l2"
    assert await a.bump_generation(namespace, "write after return") > after.generation


async def test_start_while_redis_is_down_then_it_appears(
    make_cache: Any, own_redis: RedisServer, namespace: str, source: Any
) -> None:
    await asyncio.to_thread(own_redis.stop)
    cache = await make_cache("strict", url=own_redis.url, startup_wait_s=0.2)
    assert cache.degraded
    got = await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert got.degraded and got.tier == "none"
    await asyncio.to_thread(own_redis.start)
    async with asyncio.timeout(15):
        await cache.wait_connected()
    assert not cache.degraded and cache.stats()["l1_size"] == 0
    assert not (await cache.get_or_compute(namespace, PARTS, source.compute, TTL)).degraded


async def test_an_idle_listener_notices_a_paused_redis_and_recovers_after(
    make_cache: Any, own_redis: RedisServer, namespace: str, source: Any
) -> None:
    """SIGSTOP keeps the sockets open: only the listener's PING can tell, with no request."""
    cache = await make_cache("eventual", url=own_redis.url)
    await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
    paused = own_redis.pause()
    try:
        started = time.perf_counter()
        async with asyncio.timeout(10):
            await cache.wait_disconnected()
        noticed_s = time.perf_counter() - started
        stats = cache.stats()
        assert stats["pubsub_pings_unanswered"] >= 1 and stats["link"]["suspect"], stats
        # Eventual mode no longer trusts pub/sub: the L1 answer is served, but marked degraded.
        served = await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
        assert (served.tier, served.degraded) == ("l1", True)
    finally:
        os.kill(paused[0], signal.SIGCONT)
    async with asyncio.timeout(15):
        await cache.wait_connected()
    link = cache.stats()["link"]
    print(f"\npaused Redis noticed by the idle listener in {noticed_s:.2f}s; recovery {link}")
    assert link["recoveries"] >= 1 and "*" in link["last_recovery"]["bumped"]
    after = await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert (after.tier, after.degraded) == ("none", False)  # L1 flushed, the fence moved "*"
