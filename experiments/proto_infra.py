"""Driver-side looks at the servers behind a run: instance `/health`, SQL on the shared database.

Used by the protocol, database and recovery experiments to read pool statistics, retry counters
and `pg_stat_activity` before and after a scenario, and to pick scenario sizes by scale.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg
import httpx

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


async def fetch_health(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """One instance's `/health` (any HTTP status is returned as data, with `http_status`)."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.get(f"{url}/health")
    body = response.json() if response.headers.get("content-type", "").startswith("app") else {}
    return {"http_status": response.status_code, **body}


async def health_all(run: ClusterRun) -> list[dict[str, Any]]:
    """`/health` of every instance; an unreachable one becomes {"error": ...}."""

    async def one(url: str) -> dict[str, Any]:
        try:
            return await fetch_health(url)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}", "url": url}

    return list(await asyncio.gather(*(one(u) for u in http_urls(run))))


def pool_figures(health: list[dict[str, Any]], *names: str) -> dict[str, list[Any]]:
    """Pick pool counters (e.g. in_use, serializable_retries_total) from each instance's health."""
    return {n: [(h.get("pool") or {}).get(n) for h in health] for n in names}


async def fetch(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of one query on a fresh connection (the driver's own, outside every pool)."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


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
