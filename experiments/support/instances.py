"""Driver-side looks at the servers behind a run: instance `/health`, SQL on the shared database.

The experiments read pool statistics, retry counters, breaker states and `pg_stat_activity`
before and after a scenario through these, each on its own short-lived HTTP client or database
connection (outside every instance's pool), and pick scenario sizes by scale.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import httpx
from pgvector.asyncpg import register_vector

if TYPE_CHECKING:  # the migration drill imports this module in a Ray worker: keep it light
    from cluster.run import ClusterRun

T = TypeVar("T")


def scale_name(run: ClusterRun) -> str:
    """The preset's name (ci, laptop, cloud, or a custom YAML's stem)."""
    return run.preset.name


def sized(table: Mapping[str, T], name: str) -> T:
    """The value for scale `name`; a custom preset gets the laptop figure (the plan's size)."""
    return table[name] if name in table else table["laptop"]


def http_urls(run: ClusterRun) -> list[str]:
    """Base HTTP url of every instance, in instance order."""
    return [info.url for info in run.instance_infos]


async def fetch_health(
    url: str, timeout_s: float = 10.0, *, raise_for_status: bool = False
) -> dict[str, Any]:
    """One instance's `/health` (any HTTP status is returned as data, with `http_status`)."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.get(f"{url}/health")
    if raise_for_status:
        response.raise_for_status()
    body = response.json() if response.headers.get("content-type", "").startswith("app") else {}
    return {"http_status": response.status_code, **body}


async def health_all(run: ClusterRun, *, strict: bool = False) -> list[dict[str, Any]]:
    """`/health` of every instance, in instance order.

    An unreachable instance becomes {"error": ...}; with `strict` it raises instead (and so does
    an error status), for figures that must not silently go missing.
    """

    async def one(url: str) -> dict[str, Any]:
        try:
            return await fetch_health(url, raise_for_status=strict)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            if strict:
                raise
            return {"error": f"{type(exc).__name__}: {exc}", "url": url}

    return list(await asyncio.gather(*(one(u) for u in http_urls(run))))


def pool_figures(health: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pool part of each instance's health, keyed by instance id (url if unreachable)."""
    return {str(h.get("instance_id") or h.get("url")): dict(h.get("pool") or {}) for h in health}


@asynccontextmanager
async def connection(
    database_url: str, timeout_s: float = 10.0, *, vectors: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A fresh connection of the driver's own (closed on exit); `vectors` registers pgvector."""
    conn = await asyncpg.connect(database_url, timeout=timeout_s)
    try:
        if vectors:
            await register_vector(conn)
        yield conn
    finally:
        await conn.close()


async def fetch(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of one query on a fresh connection."""
    async with connection(database_url) as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def fetchval(database_url: str, sql: str, *args: Any, timeout_s: float = 10.0) -> Any:
    """The first value of one query on a fresh connection."""
    async with connection(database_url, timeout_s) as conn:
        return await conn.fetchval(sql, *args)


async def count_connections(database_url: str) -> int:
    """Sessions on our database in `pg_stat_activity`, this probe's own excluded."""
    return int(
        await fetchval(
            database_url,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
            timeout_s=30,
        )
    )


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.2,
) -> tuple[T, float]:
    """Poll `probe` until `done(value)` or the bound; returns the last value and seconds waited."""
    started = time.monotonic()
    while True:
        value = await probe()
        waited = time.monotonic() - started
        if done(value) or waited >= timeout_s:
            return value, waited
        # Polling a server-side condition that has no event to wait on; bounded by timeout_s.
        await asyncio.sleep(interval_s)
