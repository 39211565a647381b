"""The pool under load and failure: queueing instead of errors, bounded waits, mapped errors."""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np
import pytest

from service.bugs import InjectedBugs
from service.config import DatabaseSettings
from service.embedding import encode_sync
from service.errors import DatabaseUnavailable, ExecutionTimeout, PoolExhausted
from service.infra.embedded import free_port
from service.store.db import Database
from service.store.memories import MemoryStore

CONCURRENT = 50


async def test_50_concurrent_recalls_on_10_30_pool_raise_nothing(db: Database) -> None:
    store = MemoryStore(db)
    texts = [f"pool stress memory number {i} about topic {i % 7}" for i in range(60)]
    vectors = encode_sync(texts)
    for text, vector in zip(texts, vectors, strict=True):
        await store.store("ns-pool", "pool-agent", text, vector)
    before = db.pool_stats()

    async def one(i: int) -> list[dict]:
        return await store.recall("ns-pool", vectors[i], limit=5)

    results = await asyncio.gather(*(one(i) for i in range(CONCURRENT)), return_exceptions=True)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert all(r[0]["content"] == texts[i] for i, r in enumerate(results))
    stats = db.pool_stats()
    print(f"\npool stats after {CONCURRENT} concurrent recalls: {stats}")
    assert stats["max"] == 30 and stats["min"] == 10
    assert 10 <= stats["size"] <= 30
    assert stats["acquired_total"] - before["acquired_total"] == CONCURRENT
    assert stats["in_use"] == 0 and stats["waiting"] == 0
    assert stats["exhausted_total"] == 0


async def test_exhausted_pool_raises_pool_exhausted_after_bounded_wait(migrated_url: str) -> None:
    tiny = await Database.connect(
        DatabaseSettings(url=migrated_url, pool_min=1, pool_max=1, acquire_timeout_s=0.2)
    )
    try:
        async with tiny.acquire():
            with pytest.raises(PoolExhausted, match=r"no database connection within 0.2s"):
                async with tiny.acquire():
                    pass
        assert tiny.pool_stats()["exhausted_total"] == 1
        await tiny.ping()  # the held connection went back; the pool works again
    finally:
        await tiny.close()


async def test_connect_to_nothing_is_database_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/tmws"
    with pytest.raises(DatabaseUnavailable, match=r"^database unavailable: ") as caught:
        await Database.connect(DatabaseSettings(url=url, acquire_timeout_s=2.0))
    assert caught.value.code == -32002
    assert isinstance(caught.value.__cause__, OSError)


async def test_killed_backend_is_database_unavailable_and_pool_recovers(db: Database) -> None:
    with pytest.raises(DatabaseUnavailable):
        async with db.acquire() as conn:
            pid = conn.get_server_pid()
            async with db.acquire() as other:
                assert await other.fetchval("SELECT pg_terminate_backend($1)", pid) is True
            await conn.fetchval("SELECT 1")
    await db.ping()


async def test_vectors_round_trip_through_the_codec(db: Database) -> None:
    vector = np.linspace(-1, 1, 384, dtype=np.float32)
    async with db.acquire() as conn:
        back = await conn.fetchval("SELECT $1::vector(384)", vector)
    assert np.allclose(back.to_numpy(), vector)


async def test_query_errors_are_not_masked_as_unavailable(db: Database) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        async with db.acquire() as conn:
            await conn.fetch("SELECT * FROM no_such_table")


async def test_cancelled_query_returns_its_connection(db: Database) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), db.acquire() as conn:
            await conn.execute("SELECT pg_sleep(30)")
    assert db.pool_stats()["in_use"] == 0
    await db.ping()


async def test_query_timeout_is_execution_timeout(db: Database) -> None:
    with pytest.raises(ExecutionTimeout):
        async with db.acquire() as conn:
            await conn.execute("SELECT pg_sleep(30)", timeout=0.2)
    await db.ping()


@pytest.mark.parametrize("leak_every", [2, 0])
async def test_injected_pool_leak_drains_the_pool(migrated_url: str, leak_every: int) -> None:
    settings = DatabaseSettings(url=migrated_url, pool_min=1, pool_max=3, acquire_timeout_s=0.3)
    db = await Database.connect(settings, bugs=InjectedBugs(pool_leak_every=leak_every))
    try:
        for _ in range(6):
            await db.ping()
        stats = db.pool_stats()
        if leak_every:
            assert (stats["in_use"], stats["leaked_total"]) == (3, 3)
            with pytest.raises(PoolExhausted):
                await db.ping()
        else:
            assert (stats["in_use"], stats["leaked_total"]) == (0, 0)
            await db.ping()
    finally:
        await db.close()
