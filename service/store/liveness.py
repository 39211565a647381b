"""Is PostgreSQL answering? A probe on a fresh connection, run after a database deadline expired.

A query that runs past its deadline says nothing by itself: the query may be slow (`pg_sleep`)
or the server frozen (a SIGSTOP'd server keeps its sockets open and nothing ever errors). The
probe tells the two apart: a fresh connection and `SELECT 1` within `timeout_s`. While it fails
the PostgreSQL breaker is held open, so requests fail fast with -32002 instead of each waiting
out its own deadline; the first answer closes it again.

`when_reachable` callbacks run once a probe has succeeded: a write whose outcome is unknown (its
connection was terminated while the statement was on the wire) may still commit when a paused
server resumes, and must announce itself only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from service.resilience.breaker import CircuitBreaker

log = logging.getLogger(__name__)

DEFAULT_PROBE_TIMEOUT_S = 1.0
DEFAULT_PROBE_INTERVAL_S = 0.5

Callback = Callable[[], Awaitable[object]]


class Liveness:
    """Probes the server after a suspicious deadline and drives the breaker from the answer."""

    def __init__(
        self,
        url: str,
        breaker: CircuitBreaker,
        *,
        timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        interval_s: float = DEFAULT_PROBE_INTERVAL_S,
    ) -> None:
        self._url = url
        self._breaker = breaker
        self._timeout_s = timeout_s
        self._interval_s = interval_s
        self._callbacks: list[Callback] = []
        self._task: asyncio.Task[None] | None = None
        self.probes = 0
        self.probe_failures = 0
        self.callbacks_run = 0
        self.callback_failures = 0

    def suspect(self) -> None:
        """A deadline expired: find out (in the background) whether the server still answers."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="tmws-db-liveness")

    def when_reachable(self, callback: Callback) -> None:
        """Run `callback` once the server has answered a probe (soon, if it is fine)."""
        self._callbacks.append(callback)
        self.suspect()

    @property
    def in_doubt(self) -> bool:
        """A deadline expired and no probe has answered since: the server may be frozen."""
        return self._task is not None and not self._task.done()

    @property
    def pending_callbacks(self) -> int:
        return len(self._callbacks)

    async def _watch(self) -> None:
        while True:
            if await self._probe():
                break
            await asyncio.sleep(self._interval_s)
        self._breaker.reset("probe answered: PostgreSQL is back")
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                await callback()
                self.callbacks_run += 1
            except Exception as exc:  # one failed announcement must not stop the others
                self.callback_failures += 1
                log.warning("after-reconnect callback failed: %r", exc)

    async def _probe(self) -> bool:
        self.probes += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                conn = await asyncpg.connect(self._url)
                try:
                    await conn.fetchval("SELECT 1")
                finally:
                    conn.terminate()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.probe_failures += 1
            reason = str(exc) or f"no answer within {self._timeout_s:g}s"
            self._breaker.trip(f"liveness probe failed: {type(exc).__name__}: {reason}")
            return False
        return True

    def stats(self) -> dict[str, int]:
        return {
            "probes": self.probes,
            "probe_failures": self.probe_failures,
            "after_reconnect_pending": len(self._callbacks),
            "after_reconnect_run": self.callbacks_run,
            "after_reconnect_failed": self.callback_failures,
        }

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
