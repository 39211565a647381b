"""A frozen PostgreSQL (SIGSTOP): every database use ends at its deadline, the connection is
terminated (nothing waits on the server), the probe holds the breaker open, and callbacks
waiting for the server run once it answers again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from service.config import DatabaseSettings
from service.errors import DatabaseUnavailable, ExecutionTimeout
from service.infra.embedded import EmbeddedInfra
from service.store.db import Database

DEADLINE_S = 1.0


@pytest.fixture
async def frozen_db(private_infra: EmbeddedInfra) -> AsyncIterator[Database]:
    settings = DatabaseSettings(
        url=private_infra.database_url, pool_min=2, pool_max=4, call_timeout_s=DEADLINE_S
    )
    db = await Database.connect(settings)
    try:
        yield db
    finally:
        await asyncio.to_thread(private_infra.resume_postgres)
        await db.close()


async def test_paused_server_costs_each_call_its_deadline_then_fails_fast(
    frozen_db: Database, private_infra: EmbeddedInfra
) -> None:
    await frozen_db.ping()
    await asyncio.to_thread(private_infra.pause_postgres)
    started = time.perf_counter()
    with pytest.raises(ExecutionTimeout, match="deadline; connection terminated") as caught:
        await frozen_db.ping()
    first_s = time.perf_counter() - started
    assert caught.value.code == -32001 and caught.value.data["dependency"] == "database"
    assert DEADLINE_S * 0.9 <= first_s < DEADLINE_S + 0.5, first_s
    stats = frozen_db.pool_stats()
    assert stats["in_use"] == 0 and stats["terminated_total"] == 1, stats
    # The probe finds no answer and opens the breaker: later calls fail at once, with a reason.
    async with asyncio.timeout(5):
        while frozen_db.breaker.state != "open":  # noqa: ASYNC110 - the probe runs in a task
            await asyncio.sleep(0.05)
    started = time.perf_counter()
    with pytest.raises(DatabaseUnavailable, match="circuit open"):
        await frozen_db.ping()
    assert time.perf_counter() - started < 0.1
    assert "liveness probe failed" in frozen_db.breaker.stats()["last_transition"]

    ran = asyncio.Event()

    async def announce() -> None:
        ran.set()

    frozen_db.when_reachable(announce)
    await asyncio.sleep(2 * DEADLINE_S)
    assert not ran.is_set()  # not while the server is frozen
    await asyncio.to_thread(private_infra.resume_postgres)
    resumed = time.perf_counter()
    async with asyncio.timeout(10):
        await ran.wait()
    print(f"\nfrozen PostgreSQL: first call {first_s:.2f}s (deadline {DEADLINE_S}s); "
          f"back -> callback {time.perf_counter() - resumed:.2f}s")  # fmt: skip
    assert frozen_db.breaker.state == "closed"
    await frozen_db.ping()


async def test_cancelled_caller_does_not_wait_for_a_frozen_server(
    frozen_db: Database, private_infra: EmbeddedInfra
) -> None:
    await frozen_db.ping()
    await asyncio.to_thread(private_infra.pause_postgres)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), frozen_db.acquire() as conn:
            await conn.fetchval("SELECT 1")
    # Cancelled at 0.2 s: the connection was terminated, not reset on a server that is gone.
    assert time.perf_counter() - started < 0.5
    assert frozen_db.pool_stats()["in_use"] == 0


async def test_slow_query_past_its_deadline_is_cancelled_on_the_server(db: Database) -> None:
    with pytest.raises(ExecutionTimeout):
        async with db.acquire(deadline_s=0.3) as conn:
            await conn.execute("SELECT pg_sleep(30)")
    async with asyncio.timeout(5):
        while True:  # the background pg_cancel_backend ends the sleep on the server too
            async with db.acquire() as conn:
                sleeping = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
                    " AND state = 'active' AND pid <> pg_backend_pid()"
                )
            if sleeping == 0:
                break
            await asyncio.sleep(0.05)
    assert db.breaker.state == "closed"  # the probe answered: a slow query, not a dead server
