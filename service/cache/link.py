"""This instance's link to Redis: when its cached knowledge can be trusted, and how it is regained.

The link is HEALTHY while the Redis breaker is closed, the pub/sub listener is subscribed and no
loss is pending recovery. Anything served while it is not healthy (or across a change of
`epoch`) is marked degraded by the cache.

Loss: the breaker opens (data calls failed), the listener loses its connection, or the listener's
PING goes unanswered (a SIGSTOP'd Redis keeps its sockets open, so only a health check notices a
pause). Every loss bumps `epoch` and makes the link SUSPECT: invalidations may have been missed
and this instance's own bumps may have failed.

Recovery (once Redis answers again; run by the listener, one at a time): apply every PENDING
bump (namespaces whose bump failed after their write committed), bump the global generation "*"
as a fence (every cached answer depends on it, so nothing stored in L2 before the loss is valid
afterwards — this also covers a writer that died with pending bumps, if this instance saw the
outage), flush L1, and only then become healthy. A bump that fails later without a loss (e.g.
a busy pool) stays pending and is retried at the listener's next tick.

Writes (`check_writable` before touching the database, `announce` after the commit):
- strict: refused with -32002 `cache_unavailable`, `applied: false` while the breaker is open or
  the link is suspect; a bump that fails after the commit answers -32002 `applied: true` (the
  write is in the database; its bump is pending and applied at recovery).
- eventual: always acknowledged; a failed bump is pending (`version_written: null`).

Injected bug `no-flush-on-reconnect` (service/bugs.py): recovery only clears the suspect flag —
the pending bumps are dropped (not retried), no fence, no L1 flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from service.bugs import InjectedBugs
from service.cache.client import REDIS_FAILURES
from service.cache.generations import GenerationStore
from service.cache.l1 import GLOBAL_NAMESPACE, L1Cache
from service.cache.stats import LinkCounters
from service.errors import CacheUnavailable, TMWSError
from service.resilience.breaker import BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

RECOVERY_REASON = "redis recovery"


class RedisLink:
    """Health of this instance's view of Redis, its pending bumps, and the recovery procedure."""

    def __init__(
        self,
        gens: GenerationStore,
        l1: L1Cache,
        breaker: CircuitBreaker,
        *,
        strict: bool,
        bugs: InjectedBugs,
        on_change: Callable[[], None],
    ) -> None:
        self._gens = gens
        self._l1 = l1
        self.breaker = breaker
        self.strict = strict
        self._bugs = bugs
        self._on_change = on_change
        self.listener_up = False
        self.suspect = False
        self.epoch = 0
        self.pending: set[str] = set()
        self.lost_reason: str | None = None
        self._lost_at: float | None = None
        self.last_recovery: dict[str, Any] | None = None
        self.counters = LinkCounters()

    # ------------------------------------------------------------------ state

    @property
    def healthy(self) -> bool:
        return self.listener_up and not self.suspect and self.breaker.state is BreakerState.CLOSED

    def token(self) -> int | None:
        """Taken when a request starts: the epoch if the link is healthy now, else None."""
        return self.epoch if self.healthy else None

    def trusted(self, token: int | None) -> bool:
        """True if the link was healthy when `token` was taken and has stayed so since."""
        return token is not None and token == self.epoch and self.healthy

    def lost(self, reason: str) -> None:
        """Redis failed us (breaker opened, listener lost, PING unanswered)."""
        self.epoch += 1
        if not self.suspect:
            self.suspect = True
            self.counters.losses += 1
            self._lost_at = time.monotonic()
            log.warning("cache: lost Redis (%s); degraded until recovery", reason)
        self.lost_reason = reason
        self._on_change()

    def listener_lost(self, reason: str) -> None:
        self.listener_up = False
        self.lost(reason)

    @property
    def needs_recovery(self) -> bool:
        return self.suspect or bool(self.pending)

    # ----------------------------------------------------------------- writes

    def check_writable(self) -> None:
        """Strict mode: refuse a write before it touches the database if it could not be announced."""
        if not self.strict:
            return
        if self.breaker.state is BreakerState.OPEN or self.suspect:
            self.counters.writes_refused += 1
            raise CacheUnavailable(
                "write refused: the cache cannot announce it (Redis unavailable); nothing was "
                "written, retry once Redis is back",
                {"applied": False, "dependency": "redis", "breaker": self.breaker.state.value},
            )

    async def bump(self, namespace: str, reason: str) -> int:
        """INCR + PUBLISH through the breaker; raises `CacheUnavailable` when Redis is down."""
        publish = not self._bugs.skip_publish
        gen = await self.breaker.call(self._gens.bump, namespace, reason, publish=publish)
        # Our own instance must not wait for the echo of its own message.
        self._l1.observe_generation(namespace, gen)
        self._on_change()
        return gen

    async def announce(self, namespaces: list[str], reason: str) -> int | None:
        """After a commit: bump each namespace (last one's generation returned).

        A bump that fails leaves that namespace (and the rest) pending and this instance's L1
        for them flushed; strict mode then raises -32002 with `applied: true`, eventual mode
        returns None.
        """
        gen: int | None = None
        for index, namespace in enumerate(namespaces):
            try:
                gen = await self.bump(namespace, reason)
            except (CacheUnavailable, TMWSError) as exc:
                self._leave_pending(namespaces[index:])
                if self.strict:
                    raise CacheUnavailable(
                        "write applied but the cache could not announce it (Redis unavailable); "
                        "its invalidation is pending and will be sent when Redis is back",
                        {"applied": True, "dependency": "redis", "cause": exc.reason},
                    ) from exc
                return None
        return gen

    def _leave_pending(self, namespaces: list[str]) -> None:
        self.counters.writes_unannounced += 1
        for namespace in namespaces:
            self.pending.add(namespace)
            self._l1.drop_namespace(namespace)

    def leave_pending(self, namespace: str) -> None:
        """A bump that could not be sent (e.g. `invalidate_cache` while Redis is down)."""
        self._leave_pending([namespace])

    # --------------------------------------------------------------- recovery

    async def recover(self) -> bool:
        """Apply pending bumps (+ the "*" fence after a loss), flush L1, become healthy.

        Returns False (and stays suspect) if Redis failed meanwhile; call again later.
        Must not run concurrently with itself (the listener task is its only caller).
        """
        if not self.needs_recovery:
            return True
        after_loss = self.suspect
        if after_loss and self._bugs.no_flush_on_reconnect:
            # Injected bug: trust everything we had before the loss. The pending bumps are
            # forgotten too: retried at the next tick, they would do the fence's work and
            # hide the bug (writes acknowledged during the outage never invalidate anything).
            self.pending.clear()
            self.suspect = False
            self._on_change()
            return True
        started = time.monotonic()
        epoch = self.epoch
        bumped: dict[str, int] = {}
        todo = set(self.pending) | ({GLOBAL_NAMESPACE} if after_loss else set())
        try:
            for namespace in sorted(todo):
                bumped[namespace] = await self._gens.bump(
                    namespace, RECOVERY_REASON, publish=not self._bugs.skip_publish
                )
                if namespace in self.pending:
                    self.pending.discard(namespace)
                    self.counters.pending_applied += 1
        except (*REDIS_FAILURES, TMWSError) as exc:  # TMWSError: a busy pool
            self.counters.recovery_failures += 1
            log.info("cache recovery interrupted: %r", exc)
            return False
        if not after_loss:
            for namespace, gen in bumped.items():
                self._l1.observe_generation(namespace, gen)
            self._on_change()
            return True
        # Flush after the bumps: an entry put between flush and bump could otherwise survive.
        flushed = self._l1.clear()
        for namespace, gen in bumped.items():
            self._l1.observe_generation(namespace, gen)
        if epoch != self.epoch:
            return False  # lost again while recovering: start over
        self.suspect = False
        self.counters.recoveries += 1
        self.breaker.reset("recovered: pending bumps applied, L1 flushed")
        self.last_recovery = {
            "at": time.time(),
            "since_loss_s": round(started - self._lost_at, 3) if self._lost_at else None,
            "took_ms": round((time.monotonic() - started) * 1000.0, 3),
            "bumped": sorted(bumped),
            "l1_flushed": flushed,
            "after": self.lost_reason,
        }
        log.info("cache: Redis recovered: %s", self.last_recovery)
        self._on_change()
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "suspect": self.suspect,
            "listener_up": self.listener_up,
            "epoch": self.epoch,
            "pending_bumps": sorted(self.pending),
            "lost_reason": self.lost_reason,
            "last_recovery": self.last_recovery,
            **self.counters.as_dict(),
        }
