"""Memories: text plus a 384-d embedding per row, recalled by pgvector cosine top-k per namespace.

A namespace sees its own rows and, when asked, rows any namespace marked `shared`; never another
namespace's private rows.

`store_committing_later` is the injected bug `ack-before-commit` (service/bugs.py): the row is
handed back while its transaction is still open, and committed later.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import numpy as np

from service.store.data_errors import maps_data_errors
from service.store.db import Database

#: Candidates the HNSW graph walk keeps; above every `limit` the tools allow (1..100).
HNSW_EF_SEARCH = 100
#: IVFFlat lists probed per query (all of them on small tables, where lists is small).
IVFFLAT_PROBES = 10

# Filtered ANN scans can run out of candidates before `limit` rows pass the WHERE clause;
# pgvector 0.8's iterative scans keep walking the index until enough rows pass.
_SCAN_SETTINGS = (
    f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH};"
    " SET LOCAL hnsw.iterative_scan = relaxed_order;"
    f" SET LOCAL ivfflat.probes = {IVFFLAT_PROBES};"
    " SET LOCAL ivfflat.iterative_scan = relaxed_order;"
)

# The inner query orders by the bare distance operator so the planner can use the ANN index;
# the threshold is applied outside, and MATERIALIZED + re-sort restores exact order after a
# relaxed-order iterative scan (the pattern pgvector documents).
_RECALL_SQL = """
WITH hits AS MATERIALIZED (
    SELECT id, namespace, agent_id, content, tags, importance, shared, metadata, created_at,
           embedding <=> $1 AS distance
    FROM memories
    WHERE (namespace = $2 OR ($3 AND shared))
      AND ($4::text[] IS NULL OR tags && $4::text[])
    ORDER BY embedding <=> $1
    LIMIT $5
)
SELECT *, 1 - distance AS similarity
FROM hits
WHERE 1 - distance >= $6
ORDER BY distance + 0
"""

_INSERT_SQL = """
INSERT INTO memories (namespace, agent_id, content, embedding, tags, importance, shared, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
RETURNING id, created_at
"""


def _memory_row(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "memory_id": row["id"],
        "namespace": row["namespace"],
        "agent_id": row["agent_id"],
        "content": row["content"],
        "similarity": float(row["similarity"]),
        "tags": list(row["tags"]),
        "importance": float(row["importance"]),
        "shared": row["shared"],
        "metadata": json.loads(row["metadata"]),
        "created_at": row["created_at"].isoformat(),
    }


#: Transactions the injected ack-before-commit left open (the loop keeps only weak references).
_LATE_COMMITS: set[asyncio.Task[None]] = set()


class MemoryStore:
    """Store and recall memories through a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @maps_data_errors("content", "tags", "metadata", "namespace", "agent_id")
    async def store(
        self,
        namespace: str,
        agent_id: str,
        content: str,
        embedding: np.ndarray | Sequence[float],
        tags: Sequence[str] = (),
        importance: float = 0.5,
        shared: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Insert one memory; returns its id, namespace and creation time."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                _INSERT_SQL,
                *self._insert_args(
                    namespace, agent_id, content, embedding, tags, importance, shared, metadata
                ),
            )
        return {
            "memory_id": row["id"],
            "namespace": namespace,
            "agent_id": agent_id,
            "shared": shared,
            "created_at": row["created_at"].isoformat(),
        }

    async def store_committing_later(
        self,
        delay_s: float,
        after_commit: Callable[[], Awaitable[object]],
        namespace: str,
        agent_id: str,
        content: str,
        embedding: np.ndarray | Sequence[float],
        tags: Sequence[str] = (),
        importance: float = 0.5,
        shared: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Injected bug: insert, hand the row back at once, commit `delay_s` later, then `after_commit`."""
        inserted: asyncio.Future[asyncpg.Record] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            try:
                async with self._db.acquire() as conn, conn.transaction():
                    values = self._insert_args(
                        namespace, agent_id, content, embedding, tags, importance, shared, metadata
                    )
                    inserted.set_result(await conn.fetchrow(_INSERT_SQL, *values))
                    await asyncio.sleep(delay_s)
                await after_commit()
            except Exception as exc:  # the caller may still be waiting for the row
                if not inserted.done():
                    inserted.set_exception(exc)

        task = asyncio.create_task(run())
        _LATE_COMMITS.add(task)
        task.add_done_callback(_LATE_COMMITS.discard)
        row = await inserted
        return {
            "memory_id": row["id"],
            "namespace": namespace,
            "agent_id": agent_id,
            "shared": shared,
            "created_at": row["created_at"].isoformat(),
        }

    @staticmethod
    def _insert_args(
        namespace: str,
        agent_id: str,
        content: str,
        embedding: np.ndarray | Sequence[float],
        tags: Sequence[str],
        importance: float,
        shared: bool,
        metadata: dict[str, Any] | None,
    ) -> tuple[Any, ...]:
        return (
            namespace,
            agent_id,
            content,
            np.asarray(embedding, dtype=np.float32),
            list(tags),
            importance,
            shared,
            json.dumps(metadata or {}),
        )

    @maps_data_errors("tags", "namespace")
    async def recall(
        self,
        namespace: str,
        embedding: np.ndarray | Sequence[float],
        *,
        limit: int = 10,
        min_similarity: float = 0.0,
        tags: Sequence[str] | None = None,
        include_shared: bool = True,
    ) -> list[dict[str, Any]]:
        """Top-`limit` memories by cosine similarity (1 - cosine distance), best first."""
        args = self._recall_args(namespace, embedding, limit, min_similarity, tags, include_shared)
        async with self._db.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(_SCAN_SETTINGS)
            rows = await conn.fetch(_RECALL_SQL, *args)
        return [_memory_row(r) for r in rows]

    async def explain_recall(
        self,
        namespace: str,
        embedding: np.ndarray | Sequence[float],
        *,
        limit: int = 10,
        min_similarity: float = 0.0,
        tags: Sequence[str] | None = None,
        include_shared: bool = True,
        analyze: bool = False,
    ) -> str:
        """The PostgreSQL plan of exactly the query `recall` runs, as text."""
        args = self._recall_args(namespace, embedding, limit, min_similarity, tags, include_shared)
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
        async with self._db.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(_SCAN_SETTINGS)
            rows = await conn.fetch(prefix + _RECALL_SQL, *args)
        return "\n".join(r[0] for r in rows)

    async def count(self, namespace: str) -> int:
        """Memories owned by `namespace` (shared rows of other namespaces are not counted)."""
        async with self._db.acquire() as conn:
            return await conn.fetchval(
                "SELECT count(*) FROM memories WHERE namespace = $1", namespace
            )

    @staticmethod
    def _recall_args(
        namespace: str,
        embedding: np.ndarray | Sequence[float],
        limit: int,
        min_similarity: float,
        tags: Sequence[str] | None,
        include_shared: bool,
    ) -> tuple[Any, ...]:
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit={limit} must be within 1..1000")
        return (
            np.asarray(embedding, dtype=np.float32),
            namespace,
            include_shared,
            list(tags) if tags else None,
            limit,
            min_similarity,
        )
