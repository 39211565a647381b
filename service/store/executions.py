"""The v2.2 learning record: one `pattern_executions` row per pattern run, and per-pattern stats."""

from __future__ import annotations

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
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))}) RETURNING id"
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


class ExecutionLog:
    """Append pattern executions and summarise them per pattern."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, **row: Any) -> int:
        """Insert one row (keys from `COLUMNS`; optional ones default); returns its id."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown pattern_executions columns: {', '.join(sorted(unknown))}")
        values = {**_OPTIONAL, **row}
        missing = [c for c in COLUMNS if c not in values]
        if missing:
            raise ValueError(f"missing pattern_executions columns: {', '.join(missing)}")
        async with self._db.acquire() as conn:
            return await conn.fetchval(_INSERT_SQL, *(values[c] for c in COLUMNS))

    async def stats(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Per pattern: count, success rate, avg/p95 latency (ms), avg tokens, cache hit rate."""
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_STATS_SQL, namespace)
        return [dict(r) for r in rows]
