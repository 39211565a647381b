"""Seed memories straight into PostgreSQL (driver side) for the recall-heavy experiments.

Storing thousands of memories through `store_memory` would measure the write path, not seed
data; here texts are embedded in batches with the real MiniLM model (`encode_sync`) and inserted
with asyncpg, in the same columns `store_memory` writes. Seeds go to one namespace (a
run-unique namespace); `shared=True` makes them visible to every agent's recall for the run
(memory patterns recall from the caller's own namespace plus shared rows), and the experiment
deletes them at the end.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from experiments.support.instances import connection
from service.embedding import EMBEDDING_DIM, encode_sync

SEED_AGENT = "perf-seed"
_BATCH = 256
_INSERT = """
INSERT INTO memories (namespace, agent_id, content, embedding, tags, importance, shared)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

TOPICS: tuple[str, ...] = (
    "deployment",
    "redis failover",
    "postgres tuning",
    "release schedule",
    "api rate limits",
    "payment service",
    "onboarding flow",
    "kubernetes upgrade",
    "vendor contract",
    "incident review",
    "test environment",
    "database migration",
)
_FACTS = (
    "the rollout needs a manual approval step",
    "connection pools were exhausted under load",
    "latency rose after the cache was disabled",
    "the owner is the platform team",
    "we agreed to retry three times with backoff",
    "the window is Friday night after 22:00",
    "metrics are exported to the staging dashboard",
    "the root cause was a missing index",
    "customers asked for weekly email updates",
    "the fix shipped in version 2.2",
)


@dataclass(frozen=True)
class SeedReport:
    """What was inserted and how long embedding and inserting took."""

    namespace: str
    rows: int
    embed_s: float
    insert_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_notes(count: int, seed: int = 0) -> list[str]:
    """`count` distinct, varied note texts about the seed topics (deterministic per seed)."""
    rng = random.Random(seed)
    notes = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        fact_a, fact_b = rng.sample(_FACTS, 2)
        notes.append(f"Note {i} about the {topic}: {fact_a}; also {fact_b}.")
    return notes


async def seed_memories(
    database_url: str,
    namespace: str,
    texts: Sequence[str],
    *,
    agent_id: str = SEED_AGENT,
    shared: bool = False,
) -> SeedReport:
    """Embed `texts` in batches and insert them as memories of `namespace` (shared: every
    namespace's recall sees them, which is how memory patterns of many agents find data)."""
    embed_s = insert_s = 0.0
    async with connection(database_url, 30, vectors=True) as conn:
        for start in range(0, len(texts), _BATCH):
            chunk = list(texts[start : start + _BATCH])
            t0 = time.perf_counter()
            vectors = encode_sync(chunk)
            t1 = time.perf_counter()
            assert vectors.shape[1] == EMBEDDING_DIM
            rows = [
                (namespace, agent_id, text, np.asarray(vec), ["seed"], 0.5, shared)
                for text, vec in zip(chunk, vectors, strict=True)
            ]
            await conn.executemany(_INSERT, rows)
            embed_s += t1 - t0
            insert_s += time.perf_counter() - t1
        await conn.execute("ANALYZE memories")  # fresh statistics: the planner sees the rows
    return SeedReport(namespace, len(texts), round(embed_s, 3), round(insert_s, 3))


async def delete_seeded(database_url: str, namespace: str) -> int:
    """Remove the memories of `namespace` (the run's seeds); returns how many went."""
    async with connection(database_url, 30) as conn:
        status = await conn.execute("DELETE FROM memories WHERE namespace = $1", namespace)
    return int(status.split()[-1])
