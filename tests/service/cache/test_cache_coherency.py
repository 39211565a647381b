"""Three cache instances on one real Redis: miss -> hit -> write via A -> B and C stay coherent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from service.cache.coherent import redis_client
from service.cache.generations import GenerationStore
from service.cache.keys import key_parts

PARTS = key_parts("What is the system status?", registry_version=1, mode="balanced")
TTL = 60.0


async def write(cache: Any, namespace: str, source: Any) -> int:
    """A write the way tools do it: change the data first, then bump."""
    source.version += 1
    return int(await cache.bump_generation(namespace, "test write"))


async def test_miss_then_l1_then_l2_on_another_instance(
    make_cache: Any, namespace: str, source: Any
) -> None:
    a, b, c = [await make_cache("strict") for _ in range(3)]
    first = await a.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert (first.hit, first.tier, first.degraded) == (False, "none", False)
    again = await a.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert (again.hit, again.tier) == (True, "l1")
    other = await b.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert (other.hit, other.tier) == (True, "l2")
    # Key normalisation: case, spacing and trailing punctuation do not split the key.
    variant = key_parts("  what IS the system   status ", registry_version=1, mode="balanced")
    assert (await c.get_or_compute(namespace, variant, source.compute, TTL)).tier == "l2"
    assert source.computes == 1
    assert first.generation == again.generation == other.generation is not None
    assert first.value == other.value == {"data_version": 1}
    # Another registry version or namespace is another key.
    bumped = key_parts("What is the system status?", registry_version=2, mode="balanced")
    assert (await a.get_or_compute(namespace, bumped, source.compute, TTL)).tier == "none"
    assert (await a.get_or_compute(namespace + "x", PARTS, source.compute, TTL)).tier == "none"
    assert a.stats()["hits_l1"] == 1 and b.stats()["hits_l2"] == 1


async def test_strict_mode_never_serves_the_old_generation(
    make_cache: Any, namespace: str, source: Any
) -> None:
    caches = [await make_cache("strict") for _ in range(3)]
    a = caches[0]
    for _ in range(5):
        for cache in caches:  # every instance holds the current answer in L1
            await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
        new_gen = await write(a, namespace, source)
        # Immediately, with no wait for pub/sub: strict reads must already be current.
        for cache in caches:
            got = await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
            assert got.value == {"data_version": source.version}
            assert got.generation == new_gen
    rejected = sum(c.stats()["stale_rejections"] for c in caches)
    print(f"\nstrict: stale L1/L2 entries rejected = {rejected}, computes = {source.computes}")
    assert source.computes == 6  # one per data version: each rewrite computed once, shared via L2


async def test_eventual_mode_propagation_delay(
    make_cache: Any, namespace: str, source: Any
) -> None:
    a, b, c = [await make_cache("eventual") for _ in range(3)]
    delays: dict[str, list[float]] = {"b": [], "c": []}
    for _ in range(10):
        for cache in (a, b, c):
            await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
        sent = time.perf_counter()
        new_gen = await write(a, namespace, source)

        async def arrival(cache: Any, gen: int = new_gen, t0: float = sent) -> float:
            await cache.wait_for_generation(namespace, gen)
            return (time.perf_counter() - t0) * 1000

        async with asyncio.timeout(5):
            db, dc = await asyncio.gather(arrival(b), arrival(c))
        delays["b"].append(db)
        delays["c"].append(dc)
        for cache in (b, c):
            got = await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
            assert got.value == {"data_version": source.version} and got.generation == new_gen
    med = {k: sorted(v)[len(v) // 2] for k, v in delays.items()}
    print(
        f"\neventual: pub/sub propagation A->B median {med['b']:.2f} ms "
        f"(max {max(delays['b']):.2f}), A->C median {med['c']:.2f} ms "
        f"(max {max(delays['c']):.2f}); publish-ts based on B: {b.stats()['propagation_ms']}"
    )
    assert b.stats()["invalidations_received"] >= 10


async def test_skip_invalidation_flag_makes_stale_reads_observable(
    make_cache: Any, namespace: str, source: Any
) -> None:
    for mode in ("strict", "eventual"):
        ns = f"{namespace}-{mode}"
        a, b, c = [await make_cache(mode, skip=True) for _ in range(3)]
        for cache in (a, b, c):
            await cache.get_or_compute(ns, PARTS, source.compute, TTL)
        old = source.version
        await write(a, ns, source)
        stale_b = await b.get_or_compute(ns, PARTS, source.compute, TTL)
        stale_c = await c.get_or_compute(ns, PARTS, source.compute, TTL)
        assert stale_b.value == stale_c.value == {"data_version": old}, mode
        assert stale_b.generation is not None
        assert stale_b.generation < int(await a.generation(ns))
        # The bumping instance itself is not fooled.
        fresh = await a.get_or_compute(ns, PARTS, source.compute, TTL)
        assert fresh.value == {"data_version": source.version}


async def test_answer_computed_across_a_bump_is_not_published(
    make_cache: Any, namespace: str, source: Any
) -> None:
    a, b = await make_cache("strict"), await make_cache("strict")
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> dict[str, Any]:
        started.set()
        await release.wait()
        return await source.compute()  # reads the data after the write: tagged old, never stored

    pending = asyncio.create_task(a.get_or_compute(namespace, PARTS, slow, TTL))
    async with asyncio.timeout(5):
        await started.wait()
    new_gen = await write(b, namespace, source)
    release.set()
    got = await pending
    assert got.tier == "none" and got.generation is not None and got.generation < new_gen
    assert a.stats()["stored_stale"] == 1
    # Neither instance serves that answer as current: B computes again at the new generation.
    after = await b.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert after.tier == "none" and after.generation == new_gen


async def test_global_generation_invalidates_every_namespace(
    make_cache: Any, namespace: str, source: Any
) -> None:
    a, b = await make_cache("eventual"), await make_cache("strict")
    for cache in (a, b):
        await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
    before = await a.generation("*")
    gen = await b.bump_generation("*", "reload_patterns")
    assert before is not None and gen == before + 1
    async with asyncio.timeout(5):
        await a.wait_for_generation("*", gen)
    for cache in (a, b):
        assert (await cache.get_or_compute(namespace, PARTS, source.compute, TTL)).tier != "l1"


async def test_timings_l1_and_l2(make_cache: Any, namespace: str, source: Any) -> None:
    eventual, strict = await make_cache("eventual"), await make_cache("strict")
    await eventual.get_or_compute(namespace, PARTS, source.compute, TTL)
    n = 300
    out: dict[str, float] = {}
    for name, cache in (("l1_eventual_us", eventual), ("l1_strict_us", strict)):
        await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
        t0 = time.perf_counter()
        for _ in range(n):
            assert (await cache.get_or_compute(namespace, PARTS, source.compute, TTL)).tier == "l1"
        out[name] = (time.perf_counter() - t0) / n * 1e6
    t_l2 = 0.0
    for _ in range(n):
        strict._l1.clear()  # force the L2 path each time
        t0 = time.perf_counter()
        assert (await strict.get_or_compute(namespace, PARTS, source.compute, TTL)).tier == "l2"
        t_l2 += time.perf_counter() - t0
    out["l2_ms"] = t_l2 / n * 1000
    print(
        f"\ntimings: L1 hit (eventual) {out['l1_eventual_us']:.1f} us, "
        f"L1 hit (strict, 1 Redis round trip) {out['l1_strict_us']:.1f} us, "
        f"L2 hit {out['l2_ms']:.3f} ms"
    )


async def test_strict_check_catches_a_lost_invalidation_message(
    make_cache: Any, redis_url: str, namespace: str, source: Any
) -> None:
    strict, eventual = await make_cache("strict"), await make_cache("eventual")
    for cache in (strict, eventual):
        await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
    client = redis_client(redis_url, connect_timeout_s=1.0, socket_timeout_s=1.0)
    try:
        source.version += 1  # a writer whose invalidation message is lost on the way
        gen = await GenerationStore(client, "lost-writer").bump(namespace, "lost", publish=False)
    finally:
        await client.aclose()
    got = await strict.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert got.value == {"data_version": source.version} and got.generation == gen
    assert strict.stats()["stale_rejections"] >= 1
    # Eventual mode trusts pub/sub, so it is (by design) stale until TTL or the next message.
    stale = await eventual.get_or_compute(namespace, PARTS, source.compute, TTL)
    assert stale.tier == "l1" and stale.value == {"data_version": source.version - 1}


async def test_reader_after_a_write_does_not_join_an_older_computation(
    make_cache: Any, namespace: str, source: Any
) -> None:
    """Single-flight shares a fill only among readers of the same generations (strict mode)."""
    a, b = await make_cache("strict"), await make_cache("strict")
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_old_read() -> dict[str, Any]:
        snapshot = source.version  # read the data before the write lands
        started.set()
        await release.wait()
        return {"data_version": snapshot}

    early = asyncio.create_task(a.get_or_compute(namespace, PARTS, slow_old_read, TTL))
    async with asyncio.timeout(5):
        await started.wait()
    new_gen = await write(b, namespace, source)
    late = asyncio.create_task(a.get_or_compute(namespace, PARTS, source.compute, TTL))
    release.set()
    late_result, early_result = await late, await early
    assert early_result.generation is not None and early_result.generation < new_gen
    assert late_result.generation == new_gen
    assert late_result.value == {"data_version": source.version}
