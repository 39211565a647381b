"""The v2.2 learning record: one `pattern_executions` row per pattern run, and per-pattern stats.

Rows go through `ExecutionWriter`, a bounded write-behind queue: the record never holds an
answer longer than `DEFAULT_RECORD_WAIT_S`, and is retried until PostgreSQL takes it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import weakref
from typing import Any

import asyncpg

from service.errors import TMWSError
from service.resilience.retry import Backoff
from service.store.db import Database

log = logging.getLogger(__name__)

#: A request waits this long for its learning-record row; past it the row is written behind.
DEFAULT_RECORD_WAIT_S = 0.1
#: Rows kept while PostgreSQL is away (~0.5 kB each); beyond it new rows are dropped and counted.
DEFAULT_MAX_QUEUED_ROWS = 50_000
DEFAULT_CLOSE_WAIT_S = 5.0

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
    """Write-behind for the learning record: rows queue in memory, committed in batches.

    A caller waits for its row's commit at most `wait_s` (so with a healthy database the row is
    committed before the answer it describes goes out), then returns; the row stays queued. A
    batch that fails because the database is unavailable, slow or saturated is retried with
    backoff until it commits; a batch PostgreSQL rejects as data is dropped and counted. The
    queue is bounded: past `max_rows` new rows are dropped and counted (`dropped`), never the
    answers. What a crash costs: the rows still queued — normally none or the last `wait_s`,
    during a PostgreSQL outage every row since it began (up to `max_rows`).
    """

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 500,
        max_rows: int = DEFAULT_MAX_QUEUED_ROWS,
        wait_s: float = DEFAULT_RECORD_WAIT_S,
        backoff: Backoff | None = None,
    ) -> None:
        self._log = ExecutionLog(db)
        self._max_batch = max_batch
        self._max_rows = max_rows
        self._wait_s = wait_s
        self._backoff = backoff or Backoff(initial_s=0.05, max_s=2.0)
        self._queue: collections.deque[tuple[tuple[Any, ...], asyncio.Future[None]]] = (
            collections.deque()
        )
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0
        self.retries = 0
        self.dropped = 0
        self.rejected = 0
        self.last_error: str | None = None

    async def record(self, **row: Any) -> bool:
        """Queue one row; wait up to `wait_s` for its commit. True if committed by then."""
        values = values_of(row)  # a malformed row is the caller's bug: fail it now
        if len(self._queue) >= self._max_rows:
            self.dropped += 1
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((values, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="tmws-learning-record")
        try:
            async with asyncio.timeout(self._wait_s):
                await asyncio.shield(future)
        except TimeoutError:
            return False
        return True

    async def _drain(self) -> None:
        attempt = 0
        while self._queue:
            batch = list(itertools.islice(self._queue, self._max_batch))
            try:
                await self._log.record_many([values for values, _ in batch])
            except (TMWSError, OSError) as exc:
                # Unavailable, timed out or saturated: keep the rows, try again later.
                self.retries += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1
                continue
            except asyncpg.PostgresError as exc:
                self.rejected += len(batch)
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("learning record: batch of %d rows rejected: %s", len(batch), exc)
            else:
                attempt = 0
                self.batches += 1
                self.rows += len(batch)
            for _ in batch:
                _, future = self._queue.popleft()
                if not future.done():
                    future.set_result(None)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self._queue),
            "committed": self.rows,
            "batches": self.batches,
            "retries": self.retries,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "max_rows": self._max_rows,
            "last_error": self.last_error,
        }

    async def close(self, timeout_s: float = DEFAULT_CLOSE_WAIT_S) -> int:
        """Flush what is queued, for at most `timeout_s`; returns the rows left unwritten."""
        if self._drainer is not None and not self._drainer.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self._drainer)
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        if self._queue:
            log.warning("learning record: %d rows not written at shutdown", len(self._queue))
        return len(self._queue)


_WRITERS: weakref.WeakKeyDictionary[Database, ExecutionWriter] = weakref.WeakKeyDictionary()


def writer_for(db: Database) -> ExecutionWriter:
    """The one write-behind writer of `db` (created on first use)."""
    writer = _WRITERS.get(db)
    if writer is None:
        writer = _WRITERS[db] = ExecutionWriter(db)
    return writer


def writer_stats(db: Database) -> dict[str, Any] | None:
    """The writer's figures, or None if `db` has none yet."""
    writer = _WRITERS.get(db)
    return writer.stats() if writer is not None else None


async def close_writer(db: Database, timeout_s: float = DEFAULT_CLOSE_WAIT_S) -> int:
    """Flush and stop `db`'s writer (before closing the pool); rows left unwritten."""
    writer = _WRITERS.pop(db, None)
    return 0 if writer is None else await writer.close(timeout_s)
