"""The embedded default starts real servers on loopback, restarts them on the same port, stops them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.bootstrap import resolve_urls
from service.config import Settings
from service.infra.embedded import (
    EmbeddedInfra,
    InfraError,
    PostgresServer,
    RedisServer,
    free_port,
    read_infra_file,
)


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


async def test_pause_and_resume_each_server(private_infra: EmbeddedInfra) -> None:
    redis_pids = private_infra.pause_redis()
    assert redis_pids == private_infra.redis.pids()
    assert private_infra.status()["redis"] == "paused"
    client = aioredis.Redis.from_url(private_infra.redis_url, socket_timeout=0.5)
    try:
        with pytest.raises(RedisTimeoutError):
            await client.ping()
        assert private_infra.resume_redis() == redis_pids
        assert await client.ping()
    finally:
        await client.aclose()
    conn = await asyncpg.connect(private_infra.database_url)
    try:
        pg_pids = private_infra.pause_postgres()
        assert pg_pids[0] == private_infra.postgres.pids()[0] and len(pg_pids) >= 2
        assert private_infra.paused() == {"postgres": pg_pids}
        with pytest.raises(TimeoutError):
            await conn.fetchval("SELECT 1", timeout=0.5)  # an open session does not answer
        assert set(private_infra.resume_postgres()) <= set(pg_pids)
    finally:
        conn.terminate()
    assert private_infra.paused() == {} and private_infra.status()["postgres"] == "running"
    fresh = await asyncpg.connect(private_infra.database_url)
    assert await fresh.fetchval("SELECT 1") == 1
    await fresh.close()


def test_stop_resumes_paused_servers_first(infra_dir: Path) -> None:
    embedded = EmbeddedInfra.start(infra_dir / "infra")
    pids = embedded.pause_redis() + embedded.pause_postgres()
    embedded.destroy()
    assert [pid for pid in pids if psutil.pid_exists(pid) and _not_zombie(pid)] == []


def test_a_stale_pid_file_never_signals_someone_elses_process(infra_dir: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        redis = RedisServer(infra_dir / "redis", free_port())
        redis.data_dir.mkdir(parents=True)
        redis.pid_file.write_text(str(stranger.pid))
        postgres = PostgresServer(infra_dir / "postgres", free_port())
        postgres.data_dir.mkdir(parents=True)
        (postgres.data_dir / "postmaster.pid").write_text(f"{stranger.pid}\n")
        assert not redis.running() and not postgres.running()
        redis.stop()
        postgres.stop()
        with pytest.raises(InfraError, match="none of ours"):
            redis.pause()
        assert stranger.poll() is None  # still alive: nothing was sent to it
        assert not redis.pid_file.exists()
        assert not (postgres.data_dir / "postmaster.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_restarted_process_adopts_servers_of_a_dead_owner_and_stops_them(
    infra_dir: Path,
) -> None:
    state = infra_dir / "infra"
    first = EmbeddedInfra.start(state)
    try:
        settings = Settings(state_dir=state)
        # The recorded owner (this test process) is alive: use the servers, do not own them.
        assert resolve_urls(settings)[2] is None
        dead = subprocess.Popen(["true"])
        dead.wait()
        record = json.loads((state / "infra.json").read_text())
        (state / "infra.json").write_text(json.dumps({**record, "owner_pid": dead.pid}))
        urls = resolve_urls(settings)
        owned = urls[2]
        assert owned is not None and sorted(owned.adopted) == ["postgres", "redis"]
        assert urls[:2] == (first.database_url, first.redis_url)
        pids = owned.postgres.pids() + owned.redis.pids()
        owned.stop()
        assert [pid for pid in pids if psutil.pid_exists(pid) and _not_zombie(pid)] == []
    finally:
        first.destroy()


def test_servers_running_without_a_record_are_found_on_their_ports(infra_dir: Path) -> None:
    state = infra_dir / "infra"
    first = EmbeddedInfra.start(state)
    try:
        (state / "infra.json").unlink()
        again = EmbeddedInfra.start(state)
        assert sorted(again.adopted) == ["postgres", "redis"]
        assert (again.database_url, again.redis_url) == (first.database_url, first.redis_url)
    finally:
        first.destroy()


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
