"""Each injected cache bug changes what a reader gets; with the switch off the same steps stay fresh."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from service.bugs import InjectedBugs
from service.cache.keys import key_parts
from service.infra.embedded import RedisServer
from tests.service.cache.conftest import Source

PARTS = key_parts("which tasks are blocked", registry_version=1, mode="balanced")
TTL = 60.0


async def write(cache: Any, namespace: str, source: Source) -> int:
    source.version += 1
    return int(await cache.bump_generation(namespace, "test write"))


@pytest.mark.parametrize("bugged", [True, False])
async def test_skip_generation_check_serves_the_pre_write_l2_entry(
    make_cache: Any, namespace: str, source: Source, bugged: bool
) -> None:
    bugs = InjectedBugs(skip_generation_check=bugged)
    a, b = await make_cache("strict"), await make_cache("strict", bugs=bugs)
    await a.get_or_compute(namespace, PARTS, source.compute, TTL)
    old = source.version
    await write(a, namespace, source)
    got = await b.get_or_compute(namespace, PARTS, source.compute, TTL)
    if bugged:
        assert (got.tier, got.value) == ("l2", {"data_version": old})
    else:
        assert (got.tier, got.value) == ("none", {"data_version": source.version})


@pytest.mark.parametrize("bugged", [True, False])
async def test_shared_l2_across_namespaces_serves_another_namespaces_answer(
    make_cache: Any, namespace: str, bugged: bool
) -> None:
    cache = await make_cache("strict", bugs=InjectedBugs(shared_l2_across_namespaces=bugged))
    mine, theirs = Source(), Source()
    theirs.version = 99
    await cache.get_or_compute(f"{namespace}-a", PARTS, mine.compute, TTL)
    got = await cache.get_or_compute(f"{namespace}-b", PARTS, theirs.compute, TTL)
    if bugged:
        assert got.hit and got.value == {"data_version": 1}
    else:
        assert not got.hit and got.value == {"data_version": 99}


@pytest.mark.parametrize("bugged", [True, False])
async def test_late_invalidation_keeps_eventual_l1_stale_after_the_message_arrived(
    make_cache: Any, namespace: str, source: Source, bugged: bool
) -> None:
    late_ms = 1500 if bugged else 0
    a, witness = await make_cache("eventual"), await make_cache("eventual")
    b = await make_cache("eventual", bugs=InjectedBugs(late_invalidation_ms=late_ms))
    for cache in (a, b):
        await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
    old = source.version
    gen = await write(a, namespace, source)
    async with asyncio.timeout(5):
        await witness.wait_for_generation(namespace, gen)  # the message is out and delivered
        if not bugged:
            await b.wait_for_generation(namespace, gen)
    got = await b.get_or_compute(namespace, PARTS, source.compute, TTL)
    expected = old if bugged else source.version
    assert got.value == {"data_version": expected}
    async with asyncio.timeout(10):
        await b.wait_for_generation(namespace, gen)  # it does arrive, late
    assert (await b.get_or_compute(namespace, PARTS, source.compute, TTL)).value == {
        "data_version": source.version
    }


@pytest.mark.parametrize("bugged", [True, False])
async def test_no_flush_on_reconnect_keeps_l1_from_before_the_outage(
    make_cache: Any, own_redis: RedisServer, namespace: str, source: Source, bugged: bool
) -> None:
    bugs = InjectedBugs(no_flush_on_reconnect=bugged)
    cache = await make_cache("eventual", url=own_redis.url, bugs=bugs)
    await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
    await asyncio.to_thread(own_redis.stop)
    async with asyncio.timeout(10):
        await cache.wait_disconnected()
    source.version += 1  # a write elsewhere whose invalidation this instance never heard
    await asyncio.to_thread(own_redis.start)
    async with asyncio.timeout(15):
        await cache.wait_connected()
    got = await cache.get_or_compute(namespace, PARTS, source.compute, TTL)
    if bugged:
        assert (got.tier, got.value) == ("l1", {"data_version": source.version - 1})
    else:
        assert (got.tier, got.value) == ("none", {"data_version": source.version})


@pytest.mark.parametrize("bugged", [True, False])
async def test_no_flush_on_reconnect_forgets_writes_acknowledged_during_the_outage(
    make_cache: Any, own_redis: RedisServer, namespace: str, source: Source, bugged: bool
) -> None:
    """Eventual mode acknowledges a write while Redis is away and keeps its bump pending; the
    bugged recovery drops the pending bump (and skips the fence), so an instance that starts
    afterwards is served the pre-write L2 entry."""
    a = await make_cache(
        "eventual", url=own_redis.url, bugs=InjectedBugs(no_flush_on_reconnect=bugged)
    )
    await a.get_or_compute(namespace, PARTS, source.compute, TTL)
    old = source.version
    # Paused, not stopped: a restarted Redis (no persistence) would have lost L2 anyway.
    frozen = own_redis.pause()
    async with asyncio.timeout(15):
        await a.wait_disconnected()
    source.version += 1
    assert await a.announce_write([namespace], "write during the outage") is None  # pending
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)
    async with asyncio.timeout(15):
        await a.wait_connected()
    fresh = await make_cache("eventual", url=own_redis.url)
    got = await fresh.get_or_compute(namespace, PARTS, source.compute, TTL)
    if bugged:
        assert (got.tier, got.value) == ("l2", {"data_version": old})
    else:
        assert (got.tier, got.value) == ("none", {"data_version": source.version})
