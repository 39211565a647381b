"""A busy Redis pool is not a dead Redis: requests wait (boundedly) for a connection, and running
out is -32003 `redis_pool_exhausted` that never opens the breaker."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from service.cache.client import REDIS_FAILURES, BoundedPool, RedisPoolExhausted
from service.cache.coherent import CoherentCache
from service.cache.keys import key_parts
from service.config import CacheSettings
from tests.service.cache.conftest import Source

PARTS = key_parts("how busy is the pool", registry_version=1, mode="fast")
HOLD_S = 0.5  # below the 1 s socket timeout: holding a connection is not a Redis failure


async def hold(cache: CoherentCache, key: str) -> None:
    """Occupy one pooled data connection for HOLD_S (a blocking pop on an empty list)."""
    await cache.redis.blpop([key], timeout=HOLD_S)


@pytest.mark.parametrize("wait_s", [0.1, 3.0])
async def test_exhausted_pool_is_its_own_error_and_never_opens_the_breaker(
    redis_url: str, namespace: str, source: Source, wait_s: float
) -> None:
    settings = CacheSettings(redis_pool_max=2, redis_pool_timeout_s=wait_s)
    cache = await CoherentCache.start(redis_url, settings, f"pool-{namespace}")
    try:
        holders = [asyncio.create_task(hold(cache, f"{namespace}:{i}")) for i in range(2)]
        await asyncio.sleep(0.05)  # both connections are out
        if wait_s < HOLD_S:
            with pytest.raises(RedisPoolExhausted) as caught:
                await cache.get_or_compute(namespace, PARTS, source.compute, 60)
            error: Any = caught.value.to_error_object()
            assert error["code"] == -32003 and error["data"]["reason"] == "redis_pool_exhausted"
        else:
            got = await cache.get_or_compute(namespace, PARTS, source.compute, 60)
            assert not got.degraded  # it waited for a connection instead
        await asyncio.gather(*holders)
        stats = cache.stats()
        assert stats["breaker"]["state"] == "closed" and stats["breaker"]["failures"] == 0
        assert stats["redis_pool"]["waits_total"] >= 1
        assert stats["redis_pool"]["exhausted_total"] == (1 if wait_s < HOLD_S else 0)
        assert not cache.degraded
    finally:
        await cache.close()


async def test_failed_connects_give_their_slot_back_once(redis_url: str) -> None:
    """redis-py releases a connection it could not connect before raising; the slot must go
    back once, or the pool hands out more than its size and redis-py's MaxConnectionsError
    (a ConnectionError: "Redis is dead" to the breaker) follows under load."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    pool = BoundedPool.from_url(
        f"redis://127.0.0.1:{dead_port}", max_connections=2, timeout=0.2, protocol=2
    )
    try:
        for _ in range(5):
            with pytest.raises(REDIS_FAILURES):
                await pool.get_connection()
        # The same pool, now pointed at the real server: two connections, then a bounded wait.
        pool.connection_kwargs["port"] = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        pool.reset()  # forget the dead connections (our slots are untouched)
        held = [await pool.get_connection() for _ in range(2)]
        with pytest.raises(RedisPoolExhausted):
            await pool.get_connection()
        for connection in held:
            await pool.release(connection)
        again = await pool.get_connection()
        await pool.release(again)
    finally:
        await pool.aclose()
