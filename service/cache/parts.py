"""The collaborators of one `CoherentCache`, wired together once, and their joint statistics.

Who owns what (each has one job): `L1Cache` the in-process entries, `GenerationStore` and
`L2Store` the Redis data, `RedisLink` + `CircuitBreaker` the link state (lost, recovering,
healthy), `InvalidationListener` + `ListenerHooks` the pub/sub events, `HitPath` whether a
cached entry may answer, `Filler` the miss path, `CacheCounters` + `PropagationDelays` the
statistics, `ChangeSignal` the waits of observers.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.bugs import InjectedBugs
from service.cache.client import REDIS_FAILURES, pool_stats
from service.cache.fill import Filler
from service.cache.generations import GenerationStore
from service.cache.hits import HitPath, stall_excuse
from service.cache.invalidation import InvalidationListener
from service.cache.l1 import L1Cache
from service.cache.l2 import L2Store
from service.cache.link import RedisLink
from service.cache.listening import ChangeSignal, ListenerHooks
from service.cache.result import CacheResult
from service.cache.singleflight import FillWaiters, LocalFlights, RedisLock
from service.cache.stats import CacheCounters, PropagationDelays
from service.config import CacheSettings
from service.errors import CacheUnavailable
from service.resilience.breaker import CircuitBreaker
from service.resilience.lag import LoopMonitor
from service.resilience.retry import Backoff


@dataclass
class CacheParts:
    """Everything one cache instance holds; built by `CacheParts.build`."""

    data: Redis
    pubsub: Redis
    l1: L1Cache
    gens: GenerationStore
    flights: LocalFlights[CacheResult]
    waiters: FillWaiters
    lag: LoopMonitor
    signal: ChangeSignal
    delays: PropagationDelays
    counters: CacheCounters
    breaker: CircuitBreaker
    link: RedisLink
    listener: InvalidationListener
    hits: HitPath
    filler: Filler

    @classmethod
    def build(
        cls,
        data: Redis,
        pubsub: Redis,
        settings: CacheSettings,
        instance_id: str,
        *,
        lock_ttl_s: float,
        poll_s: float,
        breaker_reset_s: float,
        bugs: InjectedBugs,
    ) -> CacheParts:
        """Wire the collaborators (the breaker and the link refer to each other through hooks)."""
        l1 = L1Cache(settings.l1_max_entries)
        gens = GenerationStore(data, instance_id)
        waiters = FillWaiters()
        lag = LoopMonitor()
        counters = CacheCounters()
        delays = PropagationDelays()
        link: RedisLink | None = None  # set below; the breaker's hook runs only after that
        signal = ChangeSignal(l1, lambda: link is not None and link.healthy)
        breaker = CircuitBreaker(
            "redis",
            error_cls=CacheUnavailable,
            failure_types=REDIS_FAILURES,
            failure_threshold=2,
            reset_timeout_s=breaker_reset_s,
            on_open=lambda reason: _link(link).lost(f"breaker opened: {reason}"),
            excuse=stall_excuse(lag),
        )
        link = RedisLink(
            gens, l1, breaker, strict=settings.mode == "strict", bugs=bugs, on_change=signal.pulse
        )
        hooks = ListenerHooks(
            instance_id=instance_id,
            l1=l1,
            link=link,
            breaker=breaker,
            waiters=waiters,
            counters=counters,
            delays=delays,
            signal=signal,
            bugs=bugs,
        )
        listener = InvalidationListener(
            pubsub,
            on_invalidate=hooks.on_invalidate,
            on_filled=waiters.notify,
            on_subscribed=hooks.on_subscribed,
            on_lost=hooks.on_lost,
            on_tick=hooks.on_tick,
            backoff=Backoff(retry_on=REDIS_FAILURES, initial_s=0.05, max_s=1.0),
            stalled_since=lag.stalled_since,
        )
        hits = HitPath(
            l1=l1,
            gens=gens,
            link=link,
            breaker=breaker,
            counters=counters,
            bugs=bugs,
            strict=settings.mode == "strict",
        )
        filler = Filler(
            l1=l1,
            l2=L2Store(data, instance_id),
            gens=gens,
            lock=RedisLock(data, instance_id, lock_ttl_s),
            waiters=waiters,
            call=breaker.call,
            read=hits.read,
            accept=hits.accept_l2,
            degraded=lambda: hits.degraded,
            counters=counters,
            instance_id=instance_id,
            lock_ttl_s=lock_ttl_s,
            poll_s=poll_s,
        )
        return cls(
            data, pubsub, l1, gens, LocalFlights(), waiters, lag, signal, delays, counters,
            breaker, link, listener, hits, filler,
        )  # fmt: skip

    async def start(self, wait_s: float) -> None:
        """Start the loop monitor and the listener; wait up to `wait_s` for the subscription."""
        self.lag.start()
        self.listener.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self.listener.subscribed.wait()

    def stats(self) -> dict[str, Any]:
        """Link, pool, listener and L1 state (`CoherentCache.stats` adds counters and identity)."""
        return {
            "degraded": self.hits.degraded,
            "redis_state": self.listener.state.value,
            "link": self.link.stats(),
            "breaker": self.breaker.stats(),
            "redis_pool": pool_stats(self.data),
            "pubsub_pings": self.listener.pings,
            "pubsub_pings_unanswered": self.listener.pings_unanswered,
            "loop_stall_longest_s": round(self.lag.longest_s, 3),
            "l1_size": len(self.l1),
            "l1_max_entries": self.l1.max_entries,
            "l1_evictions": self.l1.evictions,
            "coalesced": self.flights.coalesced,
            "filled_notes": self.waiters.notes_received,
            "propagation_ms": self.delays.summary(),
        }

    async def close(self) -> None:
        """Stop the listener and the loop monitor, then close both Redis clients."""
        await self.listener.close()
        await self.lag.close()
        for client in (self.data, self.pubsub):
            with contextlib.suppress(*REDIS_FAILURES):
                await client.aclose()


def _link(link: RedisLink | None) -> RedisLink:
    # The breaker opens only on a failed call, and calls start after `build` returns.
    assert link is not None, "breaker opened before the link was wired"
    return link
