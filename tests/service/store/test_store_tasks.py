"""TaskStore and SERIALIZABLE retries against real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from service.errors import LimitExceeded, NotFound, ToolFailed
from service.store.db import Database, RetryPolicy
from service.store.tasks import TaskStore

BOUND_S = 30


async def test_create_get_list_update(db: Database) -> None:
    store = TaskStore(db)
    first = await store.create("ns-t", "agent-t", "write report", "quarterly numbers", "high")
    second = await store.create("ns-t", "agent-t", "file taxes")
    assert first["version"] == 1 and first["status"] == "pending" and first["priority"] == "high"
    assert await store.get("ns-t", first["task_id"]) == first

    updated = await store.update(
        "ns-t", first["task_id"], {"status": "completed", "result": {"pages": 12}}
    )
    assert updated["version"] == 2 and updated["status"] == "completed"
    assert updated["result"] == {"pages": 12}
    assert updated["title"] == "write report"

    listed = await store.list("ns-t")
    assert [t["task_id"] for t in listed] == [second["task_id"], first["task_id"]]
    assert [t["task_id"] for t in await store.list("ns-t", status="completed")] == [
        first["task_id"]
    ]
    assert await store.count("ns-t") == 2


async def test_other_namespace_sees_not_found(db: Database) -> None:
    store = TaskStore(db)
    task = await store.create("ns-owner", "owner", "private plan")
    with pytest.raises(NotFound):
        await store.get("ns-intruder", task["task_id"])
    with pytest.raises(NotFound):
        await store.update("ns-intruder", task["task_id"], {"status": "cancelled"})
    with pytest.raises(NotFound):
        await store.get("ns-owner", str(uuid.uuid4()))
    with pytest.raises(NotFound):
        await store.get("ns-owner", "not-a-uuid")
    assert (await store.get("ns-owner", task["task_id"]))["status"] == "pending"
    assert await store.list("ns-intruder") == []


async def test_compare_and_set_lets_exactly_one_concurrent_writer_win(db: Database) -> None:
    store = TaskStore(db)
    task = await store.create("ns-cas", "agent-cas", "contended")
    writers = 8

    async def write(i: int) -> dict:
        return await store.update(
            "ns-cas", task["task_id"], {"description": f"writer {i}"}, expected_version=1
        )

    async with asyncio.timeout(BOUND_S):
        results = await asyncio.gather(*(write(i) for i in range(writers)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1 and len(losers) == writers - 1
    assert all(isinstance(e, ToolFailed) for e in losers), losers
    final = await store.get("ns-cas", task["task_id"])
    assert final["version"] == 2
    assert final["description"] == winners[0]["description"]


async def test_serializable_retries_conflicting_read_modify_writes(db: Database) -> None:
    """N transactions all read the counter before any writes: only retries keep the sum exact."""
    store = TaskStore(db)
    task = await store.create("ns-ser", "agent-ser", "counter")
    key = uuid.UUID(task["task_id"])
    await store.update("ns-ser", task["task_id"], {"result": {"count": 0}})
    writers = 6
    barrier = asyncio.Barrier(writers)
    first_attempt: set[int] = set()
    retries_before = db.pool_stats()["serializable_retries_total"]

    def increment(i: int) -> Callable[[asyncpg.Connection], Awaitable[int]]:
        async def run(conn: asyncpg.Connection) -> int:
            raw = await conn.fetchval("SELECT result FROM tasks WHERE id = $1", key)
            count = json.loads(raw)["count"]
            if i not in first_attempt:
                first_attempt.add(i)
                await barrier.wait()  # every writer has read the same count before anyone writes
            await conn.execute(
                "UPDATE tasks SET result = $2::jsonb, version = version + 1 WHERE id = $1",
                key,
                json.dumps({"count": count + 1}),
            )
            return count + 1

        return run

    async with asyncio.timeout(BOUND_S):
        await asyncio.gather(
            *(db.serializable(increment(i), attempts=writers + 2) for i in range(writers))
        )

    final = await store.get("ns-ser", task["task_id"])
    retries = db.pool_stats()["serializable_retries_total"] - retries_before
    print(f"\n{writers} conflicting serializable increments: {retries} retries")
    assert final["result"] == {"count": writers}
    assert final["version"] == 2 + writers
    assert retries >= writers - 1  # all but the first committer failed at least once


async def test_deadlock_is_detected_and_retried(db: Database) -> None:
    store = TaskStore(db)
    a = uuid.UUID((await store.create("ns-dl", "agent-dl", "a"))["task_id"])
    b = uuid.UUID((await store.create("ns-dl", "agent-dl", "b"))["task_id"])
    barrier = asyncio.Barrier(2)
    first_attempt: set[str] = set()
    retries_before = db.pool_stats()["serializable_retries_total"]

    def lock_in_order(
        name: str, first: uuid.UUID, second: uuid.UUID
    ) -> Callable[[asyncpg.Connection], Awaitable[None]]:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", first)
            if name not in first_attempt:
                first_attempt.add(name)
                await barrier.wait()  # both hold their first lock: the second locks cross
            await conn.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", second)
            await conn.execute("UPDATE tasks SET description = $2 WHERE id = $1", first, name)

        return run

    async with asyncio.timeout(BOUND_S):
        await asyncio.gather(
            db.serializable(lock_in_order("ab", a, b)), db.serializable(lock_in_order("ba", b, a))
        )
    assert db.pool_stats()["serializable_retries_total"] - retries_before >= 1


async def test_retries_are_bounded(db: Database) -> None:
    calls = 0

    async def always_conflicts(conn: asyncpg.Connection) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.SerializationError("simulated: could not serialize access")

    before = db.pool_stats()["serializable_retries_exhausted_total"]
    with pytest.raises(LimitExceeded, match="after 3 attempts"):
        await db.serializable(always_conflicts, policy=RetryPolicy(attempts=3))
    assert calls == 3
    assert db.pool_stats()["serializable_retries_exhausted_total"] == before + 1


async def test_non_retryable_errors_are_not_retried(db: Database) -> None:
    calls = 0

    async def bad(conn: asyncpg.Connection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(asyncpg.UndefinedTableError):
        await db.serializable(bad)
    assert calls == 1
