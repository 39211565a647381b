"""What this instance does when its invalidation listener hears something, and who waits for it.

`ListenerHooks` turns the listener's events (an invalidation, a (re)subscription, a loss, a poll
tick) into changes of the link state (`link.py`), the breaker and L1; `ChangeSignal` wakes every
coroutine waiting for such a change (a generation heard of, the link up or down).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from service.bugs import InjectedBugs
from service.cache.generations import InvalidationMessage
from service.cache.l1 import L1Cache
from service.cache.link import RedisLink
from service.cache.singleflight import FillWaiters
from service.cache.stats import CacheCounters, PropagationDelays
from service.resilience.breaker import BreakerState, CircuitBreaker


class ChangeSignal:
    """Wakes all waiters on every change; each waiter re-checks its own condition."""

    def __init__(self, l1: L1Cache, healthy: Callable[[], bool]) -> None:
        self._l1 = l1
        self._healthy = healthy
        self._event = asyncio.Event()

    def pulse(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for_generation(self, namespace: str, generation: int) -> None:
        while (self._l1.known_generation(namespace) or 0) < generation:
            await self._event.wait()

    async def wait_connected(self) -> None:
        while not self._healthy():
            await self._event.wait()

    async def wait_disconnected(self) -> None:
        while self._healthy():
            await self._event.wait()


class ListenerHooks:
    """The listener's callbacks, acting on the link, the breaker, L1 and the counters."""

    def __init__(
        self,
        *,
        instance_id: str,
        l1: L1Cache,
        link: RedisLink,
        breaker: CircuitBreaker,
        waiters: FillWaiters,
        counters: CacheCounters,
        delays: PropagationDelays,
        signal: ChangeSignal,
        bugs: InjectedBugs,
    ) -> None:
        self._instance_id = instance_id
        self._l1 = l1
        self._link = link
        self._breaker = breaker
        self._waiters = waiters
        self._counters = counters
        self._delays = delays
        self._signal = signal
        self._bugs = bugs

    def on_invalidate(self, msg: InvalidationMessage) -> None:
        late_s = self._bugs.late_invalidation_ms / 1000.0
        if late_s and msg.origin != self._instance_id:
            # Injected bug late-invalidation: another instance's bump takes effect late here.
            asyncio.get_running_loop().call_later(late_s, self._apply_invalidation, msg)
            return
        self._apply_invalidation(msg)

    def _apply_invalidation(self, msg: InvalidationMessage) -> None:
        self._counters.invalidations_received += 1
        self._l1.observe_generation(msg.namespace, msg.generation)
        if msg.origin != self._instance_id and msg.ts_ms > 0:
            self._delays.add(time.time() * 1000 - msg.ts_ms)
        self._signal.pulse()

    async def on_subscribed(self, reconnected: bool) -> None:
        if reconnected:
            self._counters.reconnects += 1
        before = self._link.counters.recoveries
        if not await self._link.recover():
            raise ConnectionError("cache recovery after (re)subscribing did not complete")
        if self._link.counters.recoveries > before:
            last = self._link.last_recovery or {}
            self._counters.l1_flushes += 1
            self._counters.l1_flushed_entries += int(last.get("l1_flushed", 0))
        self._link.listener_up = True
        self._breaker.reset("pub/sub subscribed: Redis reachable")
        self._waiters.wake_all()
        self._signal.pulse()

    def on_lost(self, exc: BaseException) -> None:
        # Called on the loss and on every failed reconnect attempt: keeps requests off Redis
        # until the listener has proved it reachable again.
        self._counters.pubsub_failures += 1
        self._link.listener_lost(f"pub/sub: {exc!r}")
        self._breaker.trip(f"pub/sub connection lost: {exc!r}")

    async def on_tick(self) -> None:
        # Recovery without a reconnect: the data path's breaker closed again (or is probing),
        # or a bump failed on a busy pool. Never while the breaker says Redis is down.
        if self._link.needs_recovery and self._breaker.state is not BreakerState.OPEN:
            await self._link.recover()
