"""Resource samples while a run lasts: each instance's CPU%/RSS, PostgreSQL connections, Redis memory.

Rows follow `analysis.resources.RESOURCE_SCHEMA` (one row per source per sample). Instance
figures come from the instances themselves (`ServiceInstance.stats`, psutil in their process),
so sampling works across nodes; PostgreSQL and Redis are asked over the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from analysis.resources import RESOURCE_SCHEMA, ResourceBuffer

log = logging.getLogger(__name__)

InstanceStats = Callable[[], list[dict[str, Any]]]


class ResourceSampler:
    """Takes samples into a `ResourceBuffer`; `sample_once` is the unit, `run` the bounded loop."""

    def __init__(self, run_id: str, database_url: str | None, redis_url: str | None) -> None:
        self.run_id = run_id
        self.database_url = database_url
        self.redis_url = redis_url
        self.buffer = ResourceBuffer()
        self._pg: Any = None
        self._redis: Any = None

    async def open(self) -> None:
        """Connect once to PostgreSQL and Redis (failures leave those columns null)."""
        if self.database_url:
            import asyncpg

            try:
                self._pg = await asyncpg.connect(self.database_url, timeout=5)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("resource sampler: no PostgreSQL connection: %s", exc)
        if self.redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.redis_url, socket_timeout=2)

    async def close(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(Exception):
                await self._pg.close()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    async def sample_once(self, instance_stats: list[dict[str, Any]]) -> int:
        """Add one row per instance plus one each for PostgreSQL and Redis; returns rows added."""
        now = time.time_ns()
        added = 0
        for stats in instance_stats:
            self.buffer.append(
                run_id=self.run_id,
                t_ns=int(stats.get("t_ns", now)),
                source=str(stats["instance_id"]),
                node_id=stats.get("node_id"),
                cpu_percent=stats.get("cpu_percent"),
                rss_bytes=stats.get("rss_bytes"),
                pool_in_use=stats.get("pool_in_use"),
                pool_wait_ms=stats.get("pool_wait_ms"),
            )
            added += 1
        connections = await self._pg_connections()
        if connections is not None:
            self.buffer.append(
                run_id=self.run_id, t_ns=now, source="postgres", db_connections=connections
            )
            added += 1
        used = await self._redis_memory()
        if used is not None:
            self.buffer.append(run_id=self.run_id, t_ns=now, source="redis", redis_used_memory=used)
            added += 1
        return added

    async def _pg_connections(self) -> int | None:
        if self._pg is None:
            return None
        try:
            return int(
                await self._pg.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
                    timeout=2,
                )
            )
        except Exception as exc:  # the database may be down on purpose (fault experiments)
            log.debug("pg_stat_activity sample failed: %s", exc)
            return None

    async def _redis_memory(self) -> int | None:
        if self._redis is None:
            return None
        try:
            info = await self._redis.info("memory")
            return int(info["used_memory"])
        except Exception as exc:  # Redis may be stopped on purpose (failover experiments)
            log.debug("redis INFO sample failed: %s", exc)
            return None

    def table(self) -> pa.Table:
        """Everything sampled so far as a table of `RESOURCE_SCHEMA`."""
        return pa.Table.from_batches([self.buffer.drain()], schema=RESOURCE_SCHEMA)


class SamplerThread:
    """Runs a `ResourceSampler` every `interval_s` in a background thread until `stop()`."""

    def __init__(
        self, sampler: ResourceSampler, instance_stats: InstanceStats, interval_s: float = 1.0
    ) -> None:
        self.sampler = sampler
        self._instance_stats = instance_stats
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="resource-sampler", daemon=True)
        self.samples = 0

    def start(self) -> SamplerThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> pa.Table:
        """Stop sampling and return the table."""
        self._stop.set()
        self._thread.join(timeout_s)
        return self.sampler.table()

    def _main(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        await self.sampler.open()
        try:
            while not self._stop.is_set():
                try:
                    stats = await asyncio.to_thread(self._instance_stats)
                except Exception as exc:  # an instance may be restarting: skip its sample
                    log.debug("instance stats failed: %s", exc)
                    stats = []
                self.samples += 1
                await self.sampler.sample_once(stats)
                # The stop event is the wake-up: wait on it with the interval as the bound.
                await asyncio.to_thread(self._stop.wait, self._interval_s)
        finally:
            await self.sampler.close()
