"""The asyncpg connection pool: pgvector on every connection, bounded waits, SERIALIZABLE retries.

Every use of a connection has a deadline (`call_timeout_s`, the tools' 5 s budget, or less when
the caller asks): borrowing and the caller's queries share it, and asyncpg's `command_timeout`
backs it up. Past the deadline, or when the caller is cancelled (a pattern's timeout), the
connection is TERMINATED, not cancelled gracefully: a graceful cancel and the pool's reset on
release both wait for the server, which a frozen (SIGSTOP'd) server never answers. The backend's
query is cancelled in the background (`pg_cancel_backend`), and a liveness probe decides whether
the server is frozen (breaker held open, -32002 fast) or the query was just slow (`liveness.py`).

Injected bug `pool-leak:N` (service/bugs.py): every Nth borrowed connection is never given back,
so the pool drains; it still counts as in use.

This module is the store's error boundary: asyncpg and OS connection errors become
`DatabaseUnavailable`, a pool that cannot hand out a connection in time becomes `PoolExhausted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from pgvector.asyncpg import register_vector

from service.bugs import InjectedBugs
from service.config import ConfigError, DatabaseSettings
from service.errors import DatabaseUnavailable, ExecutionTimeout, LimitExceeded, PoolExhausted
from service.resilience.breaker import CircuitBreaker
from service.resilience.timeouts import dependency_wait
from service.store.liveness import Callback, Liveness

T = TypeVar("T")

#: Errors that mean "the server or the socket is gone", not "the query was wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

#: How long `close` waits for borrowed connections before terminating them.
_CLOSE_GRACE_S = 5.0
#: Giving a healthy connection back resets it (one round trip); a frozen server gets this long.
_RELEASE_TIMEOUT_S = 0.5
#: The background `pg_cancel_backend` of a terminated connection's query.
_CANCEL_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """What a SERIALIZABLE transaction retries, how often, and how long it backs off between tries."""

    attempts: int = 5
    retry_on: tuple[type[BaseException], ...] = (
        asyncpg.SerializationError,
        asyncpg.DeadlockDetectedError,
    )
    base_delay_s: float = 0.002
    max_delay_s: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts={self.attempts} must be >= 1")

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff so conflicting writers stop colliding in lockstep."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """Our error for a lost or refused database connection."""
    return DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}")


async def connect_once(url: str, timeout_s: float) -> asyncpg.Connection:
    """One connection outside any pool (migrations, the start-up wait), with the pool's error
    mapping: no connection within `timeout_s` or a refused one is "database unavailable"."""
    try:
        return await asyncpg.connect(url, timeout=timeout_s)
    except TimeoutError as exc:
        raise DatabaseUnavailable(
            f"database unavailable: no connection within {timeout_s}s"
        ) from exc
    except UNAVAILABLE_ERRORS as exc:
        raise unavailable(exc) from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Every pooled connection decodes `vector` to pgvector.Vector and accepts numpy/list parameters.
    await register_vector(conn)


async def ensure_vector_extension(conn: asyncpg.Connection) -> None:
    """Create the pgvector extension if missing (codecs cannot register without it)."""
    if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'"):
        return
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except (asyncpg.UniqueViolationError, asyncpg.DuplicateObjectError):
        pass  # another instance created it at the same moment


def _gone(conn: asyncpg.Connection) -> bool:
    """True if the connection is closed, or asyncpg already detached it from our proxy."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        # The pool detaches a borrowed connection when the server drops it.
        return True


class Database:
    """A pool of PostgreSQL connections with pgvector codecs, usage statistics and retries."""

    def __init__(
        self, pool: asyncpg.Pool, settings: DatabaseSettings, bugs: InjectedBugs | None = None
    ) -> None:
        self._pool = pool
        self._settings = settings
        bugs = bugs or InjectedBugs()
        self._leak_every = bugs.pool_leak_every
        self._leaked: list[asyncpg.Connection] = []
        # Injected bug no-cancel-on-timeout: no deadline, nothing terminated.
        self._call_timeout_s = None if bugs.no_cancel_on_timeout else settings.call_timeout_s
        self._deadlines_total = 0
        self._terminated_total = 0
        self._background: set[asyncio.Task[None]] = set()
        self._in_use = 0
        self._in_use_peak = 0
        self._waiting = 0
        self._waiting_peak = 0
        self._acquired_total = 0
        self._exhausted_total = 0
        # Borrows that timed out while PostgreSQL was not answering: an outage, not a busy pool,
        # so they are not counted as exhausted (pool_stress judges exhaustion).
        self._outage_waits_total = 0
        self._wait_ms_max = 0.0
        self._wait_ms_sum = 0.0
        self._retries_total = 0
        self._lost_total = 0
        self._retries_exhausted_total = 0
        # Borrows begun while every connection was out: they had to queue (a lower bound, since
        # `_in_use` lags a connection asyncpg has handed out but its caller has not yet taken).
        self._queued_total = 0
        self._closed = False
        # Only "database unavailable" says the server is down; a busy pool or a bad query does not.
        self.breaker = CircuitBreaker(
            "database",
            error_cls=DatabaseUnavailable,
            failure_types=(DatabaseUnavailable,),
            map_failures=False,
            failure_threshold=3,
            reset_timeout_s=2.0,
        )
        self.liveness = Liveness(settings.url or "", self.breaker)

    @classmethod
    async def connect(
        cls, settings: DatabaseSettings, *, bugs: InjectedBugs | None = None
    ) -> Database:
        """Open the pool (min/max from settings), creating the vector extension if needed."""
        if not settings.url:
            raise ConfigError("TMWS_DATABASE_URL is not set")
        try:
            first = await asyncpg.connect(settings.url, timeout=settings.acquire_timeout_s)
            try:
                await ensure_vector_extension(first)
            finally:
                await first.close()
            pool = await asyncpg.create_pool(
                settings.url,
                min_size=settings.pool_min,
                max_size=settings.pool_max,
                init=_init_connection,
                timeout=settings.acquire_timeout_s,
                # A backstop under the per-use deadline (which also covers borrowing).
                command_timeout=None
                if bugs and bugs.no_cancel_on_timeout
                else settings.call_timeout_s,
            )
        except TimeoutError as exc:
            raise DatabaseUnavailable(
                f"database unavailable: no connection within {settings.acquire_timeout_s}s"
            ) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc) from exc
        return cls(pool, settings, bugs)

    @property
    def settings(self) -> DatabaseSettings:
        return self._settings

    @asynccontextmanager
    async def acquire(self, deadline_s: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """Borrow a connection behind the PostgreSQL circuit breaker (fails fast while open).

        Borrowing plus everything done with the connection must end within `deadline_s`
        (default `call_timeout_s`; bulk/admin work passes more, and per-query `timeout=` past
        asyncpg's `command_timeout`), else `ExecutionTimeout` and the connection is terminated.
        """
        self.breaker.before_call()
        try:
            async with self._acquire_unguarded(deadline_s) as conn:
                yield conn
        except DatabaseUnavailable as exc:
            self.breaker.record_failure(exc)
            raise
        except BaseException:
            self.breaker.record_neutral()
            raise
        self.breaker.record_success()

    def _budget(self, deadline_s: float | None) -> float | None:
        if self._call_timeout_s is None:
            return None
        return dependency_wait(self._call_timeout_s if deadline_s is None else deadline_s)

    @asynccontextmanager
    async def _acquire_unguarded(
        self, deadline_s: float | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """Borrow and use a connection within one deadline; errors map to ours."""
        budget = self._budget(deadline_s)
        loop = asyncio.get_running_loop()
        started = loop.time()
        conn = await self._borrow(budget)
        leak = bool(self._leak_every) and self._acquired_total % self._leak_every == 0
        self._in_use += 1
        self._in_use_peak = max(self._in_use_peak, self._in_use)
        try:
            if budget is None:
                yield conn
            else:
                async with asyncio.timeout(max(0.0, budget - (loop.time() - started))):
                    yield conn
        except TimeoutError as exc:
            # Our deadline or asyncpg's command timeout (TimeoutError is also an OSError).
            self._deadlines_total += 1
            self._terminate(conn)
            self.liveness.suspect()
            raise ExecutionTimeout(
                f"database call exceeded its {budget:g}s deadline; connection terminated "
                "(the server is slow or not answering)",
                {"timeout_s": budget, "dependency": "database"},
            ) from exc
        except asyncio.CancelledError:
            # The caller's own timeout: do not let release wait on a server that may be frozen.
            self._terminate(conn)
            raise
        except UNAVAILABLE_ERRORS as exc:
            await self._lost(conn)
            raise unavailable(exc) from exc
        except asyncpg.InternalClientError as exc:
            # Seen when the server ends the session (e.g. pg_terminate_backend, fast shutdown)
            # while the connection is idle: the protocol state is broken, the socket is useless.
            await self._lost(conn)
            raise unavailable(exc) from exc
        except asyncpg.InterfaceError as exc:
            if _gone(conn):
                await self._lost(conn)
                raise unavailable(exc) from exc
            raise
        finally:
            if leak:
                self._leaked.append(conn)  # injected bug pool-leak: never given back
            else:
                self._in_use -= 1
                await self._give_back(conn)

    async def _lost(self, conn: asyncpg.Connection) -> None:
        # One dead connection usually means the server restarted and every idle one is dead
        # too: replace them all on their next acquire instead of failing one caller each.
        self._lost_total += 1
        if not _gone(conn):
            conn.terminate()
        await self._pool.expire_connections()

    def _terminate(self, conn: asyncpg.Connection) -> None:
        """Drop the socket now; cancel the backend's query in the background."""
        if _gone(conn):
            return
        pid = conn.get_server_pid()
        conn.terminate()
        self._terminated_total += 1
        task = asyncio.create_task(self._cancel_backend(pid))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel_backend(self, pid: int) -> None:
        # Without it a terminated pg_sleep(8) runs on in its backend; failure is harmless.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CANCEL_TIMEOUT_S):
                conn = await self._pool.acquire()
                try:
                    await conn.fetchval("SELECT pg_cancel_backend($1)", pid)
                finally:
                    await self._pool.release(conn, timeout=_RELEASE_TIMEOUT_S)

    def when_reachable(self, callback: Callback) -> None:
        """Run `callback` once the server answers a fresh connection (see `liveness.py`)."""
        self.liveness.when_reachable(callback)

    async def _borrow(self, budget: float | None = None) -> asyncpg.Connection:
        timeout = self._settings.acquire_timeout_s
        if budget is not None:
            timeout = min(timeout, budget)
        if self._in_use >= self._pool.get_max_size():
            self._queued_total += 1
        self._waiting += 1
        self._waiting_peak = max(self._waiting_peak, self._waiting)
        started = time.perf_counter()
        try:
            conn = await self._pool.acquire(timeout=timeout)
        except TimeoutError as exc:
            # Usually every connection is busy; a server too slow to accept a new one lands
            # here as well, and from the caller's view it is the same bound being hit.
            if self.liveness.in_doubt:
                self._outage_waits_total += 1
                # The connections are held by calls stuck on a server that stopped answering
                # (a deadline expired, no probe has answered since): that is the database's
                # outage, not a busy pool, and the caller must hear so.
                raise DatabaseUnavailable(
                    f"database unavailable: no connection within {timeout}s while PostgreSQL "
                    f"is not answering ({self._in_use}/{self._pool.get_max_size()} connections "
                    "stuck past their deadline; liveness probe pending)",
                    {"timeout_s": timeout, "dependency": "database"},
                ) from exc
            self._exhausted_total += 1
            raise PoolExhausted(
                f"no database connection within {timeout}s: {self._in_use}/"
                f"{self._pool.get_max_size()} connections in use, "
                f"{self._waiting - 1} other callers waiting",
                {"timeout_s": timeout, "pool_max": self._pool.get_max_size()},
            ) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc) from exc
        except asyncpg.InterfaceError as exc:
            # Raised when the pool is closing or closed: from the caller's view, no database.
            raise unavailable(exc) from exc
        finally:
            self._waiting -= 1
        waited_ms = (time.perf_counter() - started) * 1000.0
        self._acquired_total += 1
        self._wait_ms_sum += waited_ms
        self._wait_ms_max = max(self._wait_ms_max, waited_ms)
        return conn

    async def _give_back(self, conn: asyncpg.Connection) -> None:
        try:
            await self._pool.release(conn, timeout=_RELEASE_TIMEOUT_S)
        except (*UNAVAILABLE_ERRORS, asyncpg.InterfaceError):
            # Releasing a broken connection resets it; the pool already replaced it, nothing to do.
            pass

    async def serializable(
        self,
        fn: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        attempts: int = 5,
        policy: RetryPolicy | None = None,
    ) -> T:
        """Run `fn(conn)` in a SERIALIZABLE transaction, retrying conflicts up to `attempts` times."""
        policy = policy or RetryPolicy(attempts=attempts)
        for attempt in range(policy.attempts):
            try:
                async with self.acquire() as conn, conn.transaction(isolation="serializable"):
                    return await fn(conn)
            except policy.retry_on as exc:
                if attempt + 1 >= policy.attempts:
                    self._retries_exhausted_total += 1
                    raise LimitExceeded(
                        f"transaction still conflicting after {policy.attempts} attempts: {exc}",
                        {"attempts": policy.attempts, "sqlstate": getattr(exc, "sqlstate", None)},
                    ) from exc
                self._retries_total += 1
                await asyncio.sleep(policy.delay(attempt))
        raise AssertionError("unreachable: the loop returns or raises")

    async def ping(self, deadline_s: float | None = None) -> None:
        """Round-trip `SELECT 1`; raises `DatabaseUnavailable`, `PoolExhausted` or `ExecutionTimeout`."""
        async with self.acquire(deadline_s) as conn:
            await conn.fetchval("SELECT 1")

    def pool_stats(self) -> dict[str, Any]:
        """Pool size and usage counters, for /health, metrics and the pool stress experiment."""
        acquired = self._acquired_total
        return {
            "size": self._pool.get_size(),
            "idle": self._pool.get_idle_size(),
            "in_use": self._in_use,
            "in_use_peak": self._in_use_peak,
            "min": self._pool.get_min_size(),
            "max": self._pool.get_max_size(),
            "waiting": self._waiting,
            "waiting_peak": self._waiting_peak,
            "acquired_total": acquired,
            "exhausted_total": self._exhausted_total,
            "outage_waits_total": self._outage_waits_total,
            "queued_total": self._queued_total,
            "acquire_wait_ms_max": round(self._wait_ms_max, 3),
            "acquire_wait_ms_avg": round(self._wait_ms_sum / acquired, 3) if acquired else 0.0,
            "connections_lost_total": self._lost_total,
            "serializable_retries_total": self._retries_total,
            "serializable_retries_exhausted_total": self._retries_exhausted_total,
            "leaked_total": len(self._leaked),
            "call_timeout_s": self._call_timeout_s,
            "deadlines_total": self._deadlines_total,
            "terminated_total": self._terminated_total,
            **self.liveness.stats(),
        }

    async def close(self) -> None:
        """Close the pool; connections still borrowed after a grace period are terminated."""
        if self._closed:
            return
        self._closed = True
        await self.liveness.close()
        for conn in self._leaked:
            conn.terminate()  # injected pool-leak: nobody else will ever give these back
        try:
            await asyncio.wait_for(self._pool.close(), timeout=_CLOSE_GRACE_S)
        except TimeoutError:
            # A caller is stuck holding a connection (e.g. the server vanished mid-query):
            # terminating is the only way to free the sockets without waiting forever.
            self._pool.terminate()
