"""The embedded default starts real servers on loopback, restarts them on the same port, stops them."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from service.infra.embedded import EmbeddedInfra, read_infra_file


async def test_servers_answer_and_pgvector_is_installed(infra: EmbeddedInfra) -> None:
    conn = await asyncpg.connect(infra.database_url)
    try:
        version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname='vector'")
    finally:
        await conn.close()
    assert version is not None and version.startswith("0.8")
    client = aioredis.Redis.from_url(infra.redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    assert "127.0.0.1" in infra.database_url and "127.0.0.1" in infra.redis_url


def test_restart_keeps_port_and_data(private_infra: EmbeddedInfra) -> None:
    recorded = read_infra_file(private_infra.state_dir)
    assert recorded is not None and recorded["database_url"] == private_infra.database_url
    url = private_infra.redis_url
    private_infra.stop_redis()
    assert private_infra.status()["redis"] == "stopped"
    private_infra.start_redis()
    assert private_infra.redis_url == url and private_infra.status()["redis"] == "running"
    private_infra.stop_postgres()
    assert private_infra.status()["postgres"] == "stopped"
    private_infra.start_postgres()
    assert private_infra.status()["postgres"] == "running"


def test_stop_leaves_no_server_processes(infra_dir: Path) -> None:
    embedded = EmbeddedInfra.start(infra_dir / "infra")
    pids = embedded.postgres.pids() + embedded.redis.pids()
    assert len(pids) == 2
    embedded.destroy()
    import psutil

    alive = [
        pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]
    assert alive == []


def test_starts_from_a_deep_folder_like_a_ray_job_working_dir(infra_dir: Path) -> None:
    """Unix socket paths are capped at 107 bytes; the servers listen on TCP only."""
    deep = infra_dir / ("runtime_resources_" * 4) / ("working_dir_files_" * 3) / ".tmws"
    assert len(str(deep / "postgres" / ".s.PGSQL.65535")) > 107
    embedded = EmbeddedInfra.start(deep)
    try:
        assert embedded.status()["postgres"] == "running"
    finally:
        embedded.destroy()
