"""Single-flight on a miss: one computation per key across three instances, with lock takeover."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.cache.coherent import redis_client
from service.cache.keys import key_parts, lock_key, result_key
from service.cache.singleflight import LocalFlights

PARTS = key_parts("recall my notes about the deploy", registry_version=1, mode="balanced")
TTL = 60.0


async def wait_until(predicate: Any, timeout_s: float = 5.0) -> None:
    """Poll a condition with a bound: plain counters have no change notification to await."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_twenty_concurrent_requests_on_three_instances_compute_once(
    make_cache: Any, namespace: str
) -> None:
    caches = [await make_cache("strict") for _ in range(3)]
    gate = asyncio.Event()
    computes = 0

    async def compute() -> dict[str, Any]:
        nonlocal computes
        computes += 1
        await gate.wait()
        return {"answer": 42}

    tasks = [
        asyncio.create_task(caches[i % 3].get_or_compute(namespace, PARTS, compute, TTL))
        for i in range(20)
    ]
    # 17 callers join a local flight; the 2 non-computing instances wait on the Redis lock.
    await wait_until(
        lambda: sum(c.stats()["coalesced"] + c.stats()["singleflight_waits"] for c in caches) == 19
    )
    gate.set()
    async with asyncio.timeout(10):
        results = await asyncio.gather(*tasks)
    print(f"\nsingle-flight: 20 requests on 3 instances -> compute ran {computes} time(s)")
    assert computes == 1
    assert all(r.value == {"answer": 42} for r in results)
    tiers = sorted(r.tier for r in results)
    assert tiers.count("none") in (6, 7) and tiers.count("l2") == 20 - tiers.count("none")
    assert len({r.generation for r in results}) == 1


async def test_waiter_takes_over_when_the_lock_holder_dies(
    make_cache: Any, redis_url: str, namespace: str
) -> None:
    cache = await make_cache("strict", lock_ttl_s=5.0)
    key = result_key(namespace, PARTS)
    client = redis_client(redis_url, connect_timeout_s=1.0, socket_timeout_s=1.0)
    try:
        # A "dead instance" holds the lock and will never fill: its lock just expires.
        assert await client.set(lock_key(key), "dead-instance:token", nx=True, px=300)

        async def compute() -> dict[str, Any]:
            return {"computed_by": "survivor"}

        async with asyncio.timeout(5):
            got = await cache.get_or_compute(namespace, PARTS, compute, TTL)
        assert got.value == {"computed_by": "survivor"} and got.tier == "none"
        assert cache.stats()["singleflight_waits"] == 1
        assert await client.exists(lock_key(key)) == 0  # released after the fill
    finally:
        await client.aclose()


async def test_failed_compute_releases_the_lock_and_others_retry(
    make_cache: Any, redis_url: str, namespace: str
) -> None:
    a, b = await make_cache("strict"), await make_cache("strict")
    key = result_key(namespace, PARTS)

    async def broken() -> dict[str, Any]:
        raise ValueError("pattern failed")

    with pytest.raises(ValueError, match="pattern failed"):
        await a.get_or_compute(namespace, PARTS, broken, TTL)
    client = redis_client(redis_url, connect_timeout_s=1.0, socket_timeout_s=1.0)
    try:
        assert await client.exists(lock_key(key), key) == 0
    finally:
        await client.aclose()

    async def ok() -> dict[str, Any]:
        return {"ok": True}

    async with asyncio.timeout(2):
        assert (await b.get_or_compute(namespace, PARTS, ok, TTL)).value == {"ok": True}


async def test_local_flight_is_cancelled_when_every_caller_leaves() -> None:
    flights: LocalFlights[int] = LocalFlights()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    callers = [asyncio.create_task(flights.run("k", work)) for _ in range(2)]
    async with asyncio.timeout(2):
        await started.wait()
    callers[0].cancel()
    await asyncio.gather(callers[0], return_exceptions=True)
    assert not cancelled.is_set()  # one caller still wants the result
    callers[1].cancel()
    await asyncio.gather(callers[1], return_exceptions=True)
    async with asyncio.timeout(2):
        await cancelled.wait()
    await wait_until(lambda: len(flights) == 0)
