"""Which approximate-nearest-neighbour index serves `memories.embedding`: HNSW (default) or IVFFlat."""

from __future__ import annotations

from typing import Literal

import asyncpg

VectorIndexKind = Literal["hnsw", "ivfflat"]

INDEX_NAMES: dict[str, str] = {
    "hnsw": "memories_embedding_hnsw",
    "ivfflat": "memories_embedding_ivfflat",
}

_CREATE: dict[str, str] = {
    "hnsw": (
        "CREATE INDEX memories_embedding_hnsw ON memories "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    ),
    "ivfflat": (
        "CREATE INDEX memories_embedding_ivfflat ON memories "
        "USING ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})"
    ),
}


async def vector_indexes(conn: asyncpg.Connection) -> dict[str, str]:
    """Index name -> access method for every ANN index on `memories`."""
    rows = await conn.fetch(
        """
        SELECT c.relname AS name, am.amname AS method
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_am am ON am.oid = c.relam
        WHERE i.indrelid = 'memories'::regclass AND am.amname IN ('hnsw', 'ivfflat')
        """
    )
    return {r["name"]: r["method"] for r in rows}


#: Fewest IVFFlat lists: with recall probing 10 lists, fewer would make every query a full scan
#: (and the planner rightly prefers a sequential scan then).
MIN_IVFFLAT_LISTS = 50


def ivfflat_lists(rows: int) -> int:
    """pgvector's guidance (rows / 1000 up to a million rows), but at least `MIN_IVFFLAT_LISTS`."""
    return max(MIN_IVFFLAT_LISTS, rows // 1000)


async def ensure_vector_index(
    conn: asyncpg.Connection,
    kind: VectorIndexKind,
    *,
    lists: int | None = None,
    statement_timeout_s: float | None = None,
) -> bool:
    """Make `kind` the only ANN index on `memories`; returns True if anything was rebuilt.

    `statement_timeout_s` per statement: an index build on a pooled connection outlasts the pool's
    request-path `command_timeout`.
    """
    if kind not in _CREATE:
        raise ValueError(f"vector index kind {kind!r} must be one of {', '.join(_CREATE)}")
    existing = await vector_indexes(conn)
    if set(existing.values()) == {kind} and lists is None:
        return False
    async with conn.transaction():
        for name in existing:
            await conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        if kind == "ivfflat":
            # IVFFlat clusters the rows present at build time, so size the lists from them;
            # rebuild (ensure_vector_index with lists=...) after a large load.
            count = await conn.fetchval("SELECT count(*) FROM memories")
            create = _CREATE[kind].format(lists=lists or ivfflat_lists(count))
            await conn.execute(create, timeout=statement_timeout_s)
        else:
            await conn.execute(_CREATE[kind], timeout=statement_timeout_s)
    return True
