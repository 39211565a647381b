"""Migration 2.0 -> 2.2 on a database holding 2.0 data: backup first, nothing lost, idempotent."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import numpy as np

from service.store.migrate import discover_migrations, find_pg_dump, migrate, status


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _restore_listing(dump: Path) -> str:
    pg_restore = find_pg_dump().with_name("pg_restore")
    return subprocess.run(
        [str(pg_restore), "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout


async def _seed_v2_0(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # Plain text vector literals: a 2.0 client had no codec, and this needs none either.
        for i in range(25):
            await conn.execute(
                "INSERT INTO memories (namespace, agent_id, content, embedding, tags, shared)"
                " VALUES ($1, $2, $3, $4::vector, $5, $6)",
                f"ns-{i % 3}", f"agent-{i % 3}", f"v2.0 memory {i}",
                "[" + ",".join(f"{x:.6f}" for x in _unit(i)) + "]", ["legacy"], i % 5 == 0,
            )  # fmt: skip
        for i in range(10):
            await conn.execute(
                "INSERT INTO tasks (namespace, agent_id, title) VALUES ($1, $2, $3)",
                f"ns-{i % 3}", f"agent-{i % 3}", f"v2.0 task {i}",
            )  # fmt: skip
        await conn.execute(
            "INSERT INTO agents (agent_id, namespace, persona) VALUES ('agent-0', 'ns-0', 'athena')"
        )
    finally:
        await conn.close()


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("memories", "tasks", "agents")
        }
    finally:
        await conn.close()


async def test_migrate_2_0_to_2_2_keeps_data_backs_up_and_is_idempotent(
    fresh_database_url: str, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    first = await migrate(fresh_database_url, backups, target=1)
    assert first.applied == [1] and first.version_after == 1 and first.pending == [2]
    await _seed_v2_0(fresh_database_url)
    before = await _counts(fresh_database_url)
    assert before == {"memories": 25, "tasks": 10, "agents": 1}
    assert [e["applied"] for e in await status(fresh_database_url)] == [True, False]

    report = await migrate(fresh_database_url, backups)
    print(f"\n{report.message}")
    assert report.applied == [2]
    assert (report.version_before, report.version_after) == (1, 2)
    assert report.backup_path is not None and report.backup_path.parent == backups
    assert report.backup_path.stat().st_size > 0
    assert await _counts(fresh_database_url) == before

    # The backup is a real, restorable dump of the 2.0 database (it lists the 2.0 tables only).
    listing = await asyncio.to_thread(_restore_listing, report.backup_path)
    assert "TABLE DATA public memories" in listing
    assert "pattern_executions" not in listing

    conn = await asyncpg.connect(fresh_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('pattern_executions') IS NOT NULL")
        indexes = {r["indexname"] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'pattern_executions'"
        )}  # fmt: skip
        assert {"pattern_executions_pattern_created", "pattern_executions_agent_created"} <= indexes
        assert await conn.fetchval("SELECT count(*) FROM memories WHERE 'legacy' = ANY(tags)") == 25
    finally:
        await conn.close()

    again = await migrate(fresh_database_url, backups)
    assert again.nothing_to_do and again.applied == [] and again.backup_path is None
    assert "nothing applied" in again.message
    assert len(list(backups.iterdir())) == 2  # one per run that applied something
    entries = await status(fresh_database_url)
    assert [(e["version"], e["applied"], e["modified"]) for e in entries] == [
        (1, True, False),
        (2, True, False),
    ]


async def test_concurrent_migrators_apply_each_version_once(
    empty_database_url: str, tmp_path: Path
) -> None:
    reports = await asyncio.gather(
        *(migrate(empty_database_url, tmp_path / f"b{i}") for i in range(3))
    )
    applied = sorted(v for r in reports for v in r.applied)
    assert applied == [m.version for m in discover_migrations()]
    assert sum(1 for r in reports if r.nothing_to_do) == 2


async def test_vector_index_setting_is_applied_by_migrate(
    empty_database_url: str, tmp_path: Path
) -> None:
    from service.store.vector_index import vector_indexes

    report = await migrate(empty_database_url, tmp_path, vector_index="ivfflat")
    assert report.vector_index_rebuilt is True
    again = await migrate(empty_database_url, tmp_path, vector_index="ivfflat")
    assert again.nothing_to_do and again.vector_index_rebuilt is False
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert set((await vector_indexes(conn)).values()) == {"ivfflat"}
    finally:
        await conn.close()
    back = await migrate(empty_database_url, tmp_path, vector_index="hnsw")
    assert back.vector_index_rebuilt is True
