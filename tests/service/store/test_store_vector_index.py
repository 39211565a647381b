"""The ANN index really serves recall (EXPLAIN), for HNSW and IVFFlat, at a few thousand rows."""

from __future__ import annotations

import asyncio
import statistics
import time

import numpy as np
import pytest

from service.embedding import encode_sync
from service.store.db import Database
from service.store.memories import MemoryStore
from service.store.vector_index import ensure_vector_index, vector_indexes

BULK_ROWS = 5_000
BULK_NS = "ns-bulk"
BULK_DEADLINE_S = 120.0


def _short(plan: str) -> str:
    """The plan with the 384 numbers of the query vector elided, for readable output."""
    return "\n".join(
        line if len(line) < 200 else line[:120] + " ...]" for line in plan.splitlines()
    )


def _random_unit_vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
async def bulk(db: Database) -> np.ndarray:
    """5k rows in one namespace, 20 in a small one, and fresh planner statistics."""
    vectors = _random_unit_vectors(BULK_ROWS, seed=7)
    records = [(BULK_NS, "bulk-agent", f"bulk row {i}", v) for i, v in enumerate(vectors)]
    records += [
        ("ns-small", "small-agent", f"small row {i}", v) for i, v in enumerate(vectors[:20])
    ]
    # Bulk work: past the request path's 5 s deadline on a busy machine.
    async with db.acquire(deadline_s=BULK_DEADLINE_S) as conn:
        await conn.copy_records_to_table(
            "memories",
            records=records,
            columns=["namespace", "agent_id", "content", "embedding"],
            timeout=BULK_DEADLINE_S,
        )
        await conn.execute("ANALYZE memories", timeout=BULK_DEADLINE_S)
    return vectors


async def test_explain_shows_hnsw_index(db: Database, bulk: np.ndarray) -> None:
    plan = await MemoryStore(db).explain_recall(BULK_NS, bulk[0], limit=10)
    print(_short(plan))
    assert "memories_embedding_hnsw" in plan
    assert "Seq Scan" not in plan


async def test_hnsw_recall_latency_and_exactness(db: Database, bulk: np.ndarray) -> None:
    store = MemoryStore(db)
    timings = []
    for i in range(50):
        started = time.perf_counter()
        hits = await store.recall(BULK_NS, bulk[i * 7], limit=10)
        timings.append((time.perf_counter() - started) * 1000)
        assert hits[0]["content"] == f"bulk row {i * 7}"
        assert len(hits) == 10
    timings.sort()
    print(
        f"\nHNSW recall over {BULK_ROWS} rows, k=10: p50 {statistics.median(timings):.2f} ms, "
        f"p95 {timings[int(0.95 * len(timings)) - 1]:.2f} ms, max {timings[-1]:.2f} ms"
    )
    print(_short(await store.explain_recall(BULK_NS, bulk[0], limit=10, analyze=True)))


async def test_filtered_recall_fills_k_from_a_small_namespace(
    db: Database, bulk: np.ndarray
) -> None:
    # 20 rows of ns-small hide among 5k others: the filter must not starve the top-k.
    hits = await MemoryStore(db).recall("ns-small", bulk[3], limit=10, include_shared=False)
    assert len(hits) == 10
    assert hits[0]["content"] == "small row 3"
    assert {h["namespace"] for h in hits} == {"ns-small"}


async def test_ivfflat_selectable_and_used(db: Database, bulk: np.ndarray) -> None:
    store = MemoryStore(db)
    async with db.acquire(deadline_s=BULK_DEADLINE_S) as conn:
        assert (
            await ensure_vector_index(conn, "ivfflat", statement_timeout_s=BULK_DEADLINE_S) is True
        )
        assert set((await vector_indexes(conn)).values()) == {"ivfflat"}
        assert await ensure_vector_index(conn, "ivfflat") is False
        await conn.execute("ANALYZE memories", timeout=BULK_DEADLINE_S)
    try:
        plan = await store.explain_recall(BULK_NS, bulk[0], limit=10)
        print(_short(plan))
        assert "memories_embedding_ivfflat" in plan
        hits = await store.recall(BULK_NS, bulk[11], limit=5)
        assert hits[0]["content"] == "bulk row 11"
    finally:
        async with db.acquire(deadline_s=BULK_DEADLINE_S) as conn:
            await ensure_vector_index(conn, "hnsw", statement_timeout_s=BULK_DEADLINE_S)
            assert set((await vector_indexes(conn)).values()) == {"hnsw"}


async def test_real_embedding_recall_among_bulk(db: Database, bulk: np.ndarray) -> None:
    store = MemoryStore(db)
    text = "the quarterly revenue report is due on Friday"
    vector = encode_sync([text])[0]
    await store.store(BULK_NS, "bulk-agent", text, vector)
    hits = await store.recall(BULK_NS, encode_sync(["when is the revenue report due?"])[0], limit=5)
    assert hits[0]["content"] == text


async def test_50_concurrent_hnsw_recalls(db: Database, bulk: np.ndarray) -> None:
    store = MemoryStore(db)

    async def one(i: int) -> float:
        started = time.perf_counter()
        hits = await store.recall(BULK_NS, bulk[i], limit=10)
        assert hits[0]["content"] == f"bulk row {i}"
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    timings = sorted(await asyncio.gather(*(one(i) for i in range(50))))
    wall = (time.perf_counter() - started) * 1000
    print(
        f"\n50 concurrent HNSW recalls over {BULK_ROWS} rows: wall {wall:.0f} ms, "
        f"p50 {statistics.median(timings):.1f} ms, p95 {timings[46]:.1f} ms; pool {db.pool_stats()}"
    )
