"""PostgreSQL going away and coming back: clear errors while down, a working pool after."""

from __future__ import annotations

import asyncio

import pytest

from service.config import DatabaseSettings
from service.errors import DatabaseUnavailable
from service.store.db import Database


async def test_database_down_then_back(private_infra: object) -> None:
    db = await Database.connect(
        DatabaseSettings(
            url=private_infra.database_url, pool_min=3, pool_max=5, acquire_timeout_s=2.0
        )  # type: ignore[attr-defined]
    )
    try:
        await db.ping()
        await asyncio.to_thread(private_infra.stop_postgres)  # type: ignore[attr-defined]
        for _ in range(db.breaker.failure_threshold):
            with pytest.raises(DatabaseUnavailable, match=r"^database unavailable: "):
                await db.ping()
        # Enough failures in a row: the breaker opens and callers fail fast without a connect.
        assert db.breaker.state == "open"
        with pytest.raises(DatabaseUnavailable, match=r"^database unavailable \(circuit open\)"):
            await db.ping()

        await asyncio.to_thread(private_infra.start_postgres)  # type: ignore[attr-defined]
        # Recovery needs no restart: once the breaker's pause is over a trial call goes
        # through and closes it. Bounded wait on that state change.
        async with asyncio.timeout(db.breaker.reset_timeout_s + 10):
            while True:
                try:
                    await db.ping()
                    break
                except DatabaseUnavailable:
                    await asyncio.sleep(0.1)  # polling a remote server: no event to wait on
        assert db.breaker.state == "closed"
        stats = db.pool_stats()
        print(f"\npool after restart: {stats}")
        assert stats["in_use"] == 0 and stats["size"] >= 1
    finally:
        await db.close()
