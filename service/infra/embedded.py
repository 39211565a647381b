"""The embedded default: real PostgreSQL 18 + pgvector and Redis from PyPI wheels, on 127.0.0.1 TCP.

Used when `TMWS_DATABASE_URL` / `TMWS_REDIS_URL` are not set. Both servers keep their data under
one state folder and write `infra.json` there, so other processes (CLI, Ray nodes, tests) share
one pair of servers. Each server can be stopped and restarted on the same port, which is how
the failover experiments take Redis or PostgreSQL away for real.

The servers themselves (start, stop, pause, which pid is ours) are in `servers.py`.

Faults: beside stop/start, each server can be PAUSED (SIGSTOP: sockets stay open, nothing
answers — the harder case) and resumed; for PostgreSQL that is the postmaster and all its
backends. Paused pids are recorded (`processes.py`), and `stop` resumes them first.

Ownership: `infra.json` records who started the pair — `tmws infra up` ("cli": it stays up until
`tmws infra down`) or a process ("process": `tmws serve`, an experiment driver), with that
process's pid and start time. A process that finds the pair running under a dead owner (a crash)
adopts it and stops it on exit; servers found running without a record are adopted too. Only
processes verified to be ours (executable, data folder or port) are ever signalled.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from service.infra.processes import (
    process_identity,
    read_paused,
    record_paused,
    signal_all,
    with_children,
)
from service.infra.servers import (
    DATABASE_NAME,
    PG_SYSTEM_USER,
    InfraError,
    PostgresServer,
    RedisServer,
    free_port,
    port_open,
)

__all__ = [
    "DATABASE_NAME",
    "INFRA_FILE",
    "PG_SYSTEM_USER",
    "EmbeddedInfra",
    "InfraError",
    "PostgresServer",
    "RedisServer",
    "free_port",
    "port_open",
    "read_infra_file",
]

log = logging.getLogger(__name__)

INFRA_FILE = "infra.json"


Owner = Literal["cli", "process"]


@dataclass
class EmbeddedInfra:
    """The pair of embedded servers under one state folder."""

    state_dir: Path
    postgres: PostgresServer
    redis: RedisServer
    #: Servers this object found already running and took over (instead of starting them).
    adopted: list[str] = field(default_factory=list)

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
        """Servers for `state_dir`: ports as recorded, else as the running servers show, else free."""
        state_dir = state_dir.resolve()
        recorded = read_infra_file(state_dir) or {}
        pg_port = pg_port or recorded.get("postgres_port")
        redis_port = redis_port or recorded.get("redis_port")
        if not pg_port:
            pg_port = PostgresServer(state_dir / "postgres", 0).recorded_port() or free_port()
        if not redis_port:
            redis_port = RedisServer(state_dir / "redis", 0).recorded_port() or free_port()
        return cls(
            state_dir,
            PostgresServer(state_dir / "postgres", int(pg_port)),
            RedisServer(state_dir / "redis", int(redis_port)),
        )

    @classmethod
    def start(cls, state_dir: Path, *, owner: Owner = "process") -> EmbeddedInfra:
        """Start both servers (adopting any of ours still running) and record URLs and owner."""
        infra = cls.create(state_dir)
        started = time.monotonic()
        infra.adopted = [
            name for name, server in (("postgres", infra.postgres), ("redis", infra.redis))
            if server.running()
        ]  # fmt: skip
        infra.postgres.init()
        infra.postgres.start()
        infra.redis.start()
        infra._write_file(owner)
        log.info(
            "embedded infra up in %.1fs: %s %s%s",
            time.monotonic() - started,
            infra.database_url,
            infra.redis_url,
            f" (adopted running: {', '.join(infra.adopted)})" if infra.adopted else "",
        )
        return infra

    def owner_alive(self) -> bool:
        """True if the recorded owner is `tmws infra up` or a process that still runs."""
        recorded = read_infra_file(self.state_dir) or {}
        if recorded.get("owner", "cli") != "process":
            return True
        pid, since = recorded.get("owner_pid"), recorded.get("owner_started")
        if not isinstance(pid, int):
            return False
        identity = process_identity(pid)
        # The same pid with another start time is a new process that reused the number.
        return identity is not None and (since is None or abs(identity - float(since)) < 1.0)

    def stop(self) -> None:
        """Stop both servers (resuming paused ones first); data stays in the state folder."""
        errors: list[str] = []
        self.resume()
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
        self.resume_redis()
        self.redis.stop()

    def start_redis(self) -> None:
        self.redis.start()

    def stop_postgres(self) -> None:
        self.resume_postgres()
        self.postgres.stop()

    def start_postgres(self) -> None:
        self.postgres.start()

    def pause_redis(self) -> list[int]:
        """SIGSTOP Redis (connections stay open, nothing answers); the pids, also recorded."""
        return self._pause("redis", self.redis.pause)

    def resume_redis(self) -> list[int]:
        """SIGCONT what `pause_redis` stopped (a no-op if nothing is paused)."""
        return self._resume("redis")

    def pause_postgres(self) -> list[int]:
        """SIGSTOP the postmaster and every backend; the pids, also recorded."""
        return self._pause("postgres", self.postgres.pause)

    def resume_postgres(self) -> list[int]:
        """SIGCONT what `pause_postgres` stopped (a no-op if nothing is paused)."""
        return self._resume("postgres")

    def resume(self) -> None:
        """Continue every paused server of this state folder."""
        self.resume_redis()
        self.resume_postgres()

    def paused(self) -> dict[str, list[int]]:
        """Recorded paused pids per server."""
        return read_paused(self.state_dir)

    def _pause(self, name: str, pause: Any) -> list[int]:
        if name in self.paused():
            raise InfraError(f"{name} is already paused (pids {self.paused()[name]})")
        pids: list[int] = pause()
        record_paused(self.state_dir, name, pids)
        return pids

    def _resume(self, name: str) -> list[int]:
        pids = self.paused().get(name, [])
        if not pids:
            return []
        server = self.postgres if name == "postgres" else self.redis
        # Only pids that are still the server (checked by its main pid) or its children.
        main = server.server_pid()
        ours = set(with_children(main)) if main is not None else set()
        sent = signal_all([pid for pid in pids if pid in ours], signal.SIGCONT)
        record_paused(self.state_dir, name, None)
        return sent

    def status(self) -> dict[str, Any]:
        paused = self.paused()

        def state(name: str, server: PostgresServer | RedisServer) -> str:
            if name in paused:
                return "paused"
            return "running" if server.running() else "stopped"

        return {
            "state_dir": str(self.state_dir),
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "postgres": state("postgres", self.postgres),
            "redis": state("redis", self.redis),
            "owner": (read_infra_file(self.state_dir) or {}).get("owner"),
        }

    def _write_file(self, owner: Owner) -> None:
        payload: dict[str, Any] = {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "postgres_port": self.postgres.port,
            "redis_port": self.redis.port,
            "owner": owner,
        }
        if owner == "process":
            payload["owner_pid"] = os.getpid()
            payload["owner_started"] = process_identity(os.getpid())
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
