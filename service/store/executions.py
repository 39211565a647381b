"""The v2.2 learning record: one `pattern_executions` row per pattern run, and per-pattern stats."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from service.store.db import Database

#: Columns a caller supplies; `id` and `created_at` are the database's.
COLUMNS = (
    "agent_id",
    "instance_id",
    "namespace",
    "pattern_name",
    "pattern_type",
    "route",
    "execution_mode",
    "success",
    "error",
    "latency_ms",
    "tokens_used",
    "tokens_baseline",
    "cache_hit",
    "cache_tier",
)
_OPTIONAL = {"route": None, "error": None, "tokens_used": 0, "tokens_baseline": 0,
             "cache_hit": False, "cache_tier": None}  # fmt: skip

_INSERT_SQL = (
    f"INSERT INTO pattern_executions ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"
)

_STATS_SQL = """
SELECT pattern_name,
       min(pattern_type) AS pattern_type,
       count(*) AS count,
       avg(success::int)::float8 AS success_rate,
       avg(latency_ms) AS avg_latency_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms,
       avg(tokens_used)::float8 AS avg_tokens_used,
       avg(tokens_baseline)::float8 AS avg_tokens_baseline,
       avg(cache_hit::int)::float8 AS cache_hit_rate
FROM pattern_executions
WHERE $1::text IS NULL OR namespace = $1
GROUP BY pattern_name
ORDER BY pattern_name
"""


def values_of(row: dict[str, Any]) -> tuple[Any, ...]:
    """A row's values in `COLUMNS` order; unknown or missing columns fail naming them."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown pattern_executions columns: {', '.join(sorted(unknown))}")
    values = {**_OPTIONAL, **row}
    missing = [c for c in COLUMNS if c not in values]
    if missing:
        raise ValueError(f"missing pattern_executions columns: {', '.join(missing)}")
    return tuple(values[c] for c in COLUMNS)


class ExecutionLog:
    """Append pattern executions and summarise them per pattern."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, **row: Any) -> int:
        """Insert one row (keys from `COLUMNS`; optional ones default); returns its id."""
        async with self._db.acquire() as conn:
            return await conn.fetchval(_INSERT_SQL + " RETURNING id", *values_of(row))

    async def record_many(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows already in `COLUMNS` order (see `values_of`) in one transaction."""
        async with self._db.acquire() as conn, conn.transaction():
            await conn.executemany(_INSERT_SQL, rows)

    async def stats(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Per pattern: count, success rate, avg/p95 latency (ms), avg tokens, cache hit rate."""
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_STATS_SQL, namespace)
        return [dict(r) for r in rows]


class ExecutionWriter:
    """Group commit for the learning record: one INSERT batch per database round trip.

    Every caller still waits until its own row is committed (nothing is buffered past the
    response), but callers arriving while a batch is being written share the next one, so under
    load the per-request cost is a fraction of a round trip instead of a pooled connection each.
    """

    def __init__(self, db: Database, *, max_batch: int = 500) -> None:
        self._log = ExecutionLog(db)
        self._max_batch = max_batch
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0

    async def record(self, **row: Any) -> None:
        """Commit one row (batched with concurrent callers); database errors propagate."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((values_of(row), future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._log.record_many([values for values, _ in batch])
            except Exception as exc:  # every waiter of this batch hears of the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.rows += len(batch)
            for _, future in batch:
                if not future.done():  # a caller that timed out has cancelled its future
                    future.set_result(None)


_WRITERS: weakref.WeakKeyDictionary[Database, ExecutionWriter] = weakref.WeakKeyDictionary()


def writer_for(db: Database) -> ExecutionWriter:
    """The one group-commit writer of `db` (created on first use)."""
    writer = _WRITERS.get(db)
    if writer is None:
        writer = _WRITERS[db] = ExecutionWriter(db)
    return writer
