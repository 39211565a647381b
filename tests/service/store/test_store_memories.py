"""MemoryStore against real PostgreSQL + pgvector with real MiniLM embeddings."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.embedding import encode_sync
from service.store.db import Database
from service.store.memories import MemoryStore

TEXTS = [
    "The deployment pipeline failed because the Docker image was missing a CA certificate.",
    "Athena prefers strategic planning sessions on Monday mornings.",
    "PostgreSQL HNSW indexes trade build time for fast approximate nearest neighbour search.",
    "The cat sat on the warm windowsill all afternoon.",
]


async def test_recall_returns_own_text_as_top_hit(db: Database) -> None:
    store = MemoryStore(db)
    vectors = encode_sync(TEXTS)
    for text, vector in zip(TEXTS, vectors, strict=True):
        await store.store("ns-top", "agent-top", text, vector, tags=["t"], importance=0.7)
    for text, vector in zip(TEXTS, vectors, strict=True):
        hits = await store.recall("ns-top", vector, limit=3)
        assert hits[0]["content"] == text
        assert hits[0]["similarity"] > 0.99
        assert [h["similarity"] for h in hits] == sorted(
            (h["similarity"] for h in hits), reverse=True
        )
    assert await store.count("ns-top") == len(TEXTS)


async def test_paraphrase_query_finds_the_right_memory(db: Database) -> None:
    store = MemoryStore(db)
    for text, vector in zip(TEXTS, encode_sync(TEXTS), strict=True):
        await store.store("ns-para", "agent-para", text, vector)
    query = encode_sync(["why did the container build break? certificate problem"])[0]
    hits = await store.recall("ns-para", query, limit=2)
    assert hits[0]["content"] == TEXTS[0]


async def test_namespace_isolation_private_and_shared(db: Database) -> None:
    store = MemoryStore(db)
    private, shared = encode_sync(
        ["agent A's private launch codes", "agent A's shared team handbook"]
    )
    await store.store("ns-a", "agent-a", "agent A's private launch codes", private)
    await store.store("ns-a", "agent-a", "agent A's shared team handbook", shared, shared=True)

    seen_by_b = await store.recall("ns-b", private, limit=10)
    assert [h["content"] for h in seen_by_b] == ["agent A's shared team handbook"]
    assert seen_by_b[0]["namespace"] == "ns-a" and seen_by_b[0]["shared"] is True
    assert await store.recall("ns-b", private, limit=10, include_shared=False) == []
    seen_by_a = {h["content"] for h in await store.recall("ns-a", private, limit=10)}
    assert "agent A's private launch codes" in seen_by_a
    assert await store.count("ns-b") == 0


async def test_threshold_and_tags_filter(db: Database) -> None:
    store = MemoryStore(db)
    texts = ["redis cache invalidation via pub/sub", "baking sourdough bread at home"]
    vectors = encode_sync(texts)
    await store.store("ns-f", "agent-f", texts[0], vectors[0], tags=["infra", "cache"])
    await store.store("ns-f", "agent-f", texts[1], vectors[1], tags=["food"])

    strict = await store.recall("ns-f", vectors[0], limit=10, min_similarity=0.9)
    assert [h["content"] for h in strict] == [texts[0]]
    tagged = await store.recall("ns-f", vectors[0], limit=10, tags=["food"])
    assert [h["content"] for h in tagged] == [texts[1]]
    assert all(h["similarity"] >= 0.9 for h in strict)


async def test_metadata_and_fields_round_trip(db: Database) -> None:
    store = MemoryStore(db)
    vector = np.asarray(encode_sync(["metadata round trip"])[0])
    written = await store.store(
        "ns-m", "agent-m", "metadata round trip", vector, tags=["x", "y"], importance=0.25,
        metadata={"source": "test", "n": 3},
    )  # fmt: skip
    (hit,) = await store.recall("ns-m", vector, limit=1)
    assert hit["memory_id"] == written["memory_id"]
    assert hit["tags"] == ["x", "y"]
    assert hit["importance"] == 0.25
    assert hit["metadata"] == {"source": "test", "n": 3}
    assert hit["agent_id"] == "agent-m"


@pytest.mark.parametrize("late", [True, False])
async def test_injected_ack_before_commit_answers_before_the_row_is_visible(
    db: Database, late: bool
) -> None:
    store = MemoryStore(db)
    namespace = f"ns-ack-{late}"
    vector = encode_sync(["acknowledged but not yet committed"])[0]
    committed = asyncio.Event()

    async def after_commit() -> None:
        committed.set()

    if late:
        row = await store.store_committing_later(
            1.0, after_commit, namespace, "agent-ack", "acked early", vector
        )
    else:
        row = await store.store(namespace, "agent-ack", "acked early", vector)
    visible_at_ack = await store.count(namespace)
    assert row["memory_id"] > 0
    assert visible_at_ack == (0 if late else 1)
    if late:
        async with asyncio.timeout(10):
            await committed.wait()
    assert await store.count(namespace) == 1
