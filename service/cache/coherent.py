"""`CoherentCache`: in-process L1 over Redis L2, coherent across instances through generations.

Model (see ../shared/DESIGN.md, "Cache coherency model"):
- Keys hash namespace + normalised key parts (query, registry version, mode); see `keys.py`.
- Every answer is tagged with the (namespace, global) generations read when its computation
  STARTED. L2 writes happen in one Lua step only if those generations are still current, so
  an answer computed across a bump is returned to its own caller but never stored as fresh.
- Writers change the data first and bump after (`announce_write`; "*" = global): a reader that
  computes in between gets the old tag on new data, which is harmless; the reverse order could
  cache old data as new. The bump script publishes on `tmws:invalidate` and every instance's
  listener drops older L1 entries.
- `strict` mode: each L1 hit checks the generations in Redis (one round trip), so no stale
  read while Redis is up. `eventual` mode: an L1 hit trusts pub/sub (staleness bounded by the
  propagation delay) but only while the link is healthy; otherwise it checks like strict.
  L2 hits are always compared with the current generations (same round trip as the GET).

Faults: the rule is written down in the package docstring (`service/cache/__init__.py`); the
link state and recovery live in `link.py`, what the listener's events do in `listening.py`, the
bounded pool in `client.py`, the miss path in `fill.py`, the counters in `stats.py`.

Injected bugs (service/bugs.py, negative controls only), each switched at one place:
`skip-publish` (bumps are not published AND L1 hits skip the strict generation check, so other
instances serve stale L1 entries in either mode until TTL; L2 hits are still checked, and the
bumping instance still drops its own entries), `skip-generation-check` (L1 and L2 hits are
served without comparing generations), `no-flush-on-reconnect` (recovery skipped, `link.py`),
`late-invalidation:MS` (messages from other instances apply MS ms late) and
`shared-l2-across-namespaces` (result keys ignore the namespace; an L1 entry is checked against
the generations of the namespace that stored it, so another namespace on the same instance is
served it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.bugs import InjectedBugs
from service.cache.client import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_SOCKET_TIMEOUT_S,
    REDIS_FAILURES,
    pool_stats,
    redis_client,
)
from service.cache.fill import Compute, Filler
from service.cache.generations import Generations, GenerationStore
from service.cache.invalidation import InvalidationListener
from service.cache.keys import result_key
from service.cache.l1 import GLOBAL_NAMESPACE, L1Cache, L1Entry
from service.cache.l2 import Envelope, L2Store
from service.cache.link import RedisLink
from service.cache.listening import ChangeSignal, ListenerHooks
from service.cache.result import CacheResult
from service.cache.singleflight import FillWaiters, LocalFlights, RedisLock
from service.cache.stats import CacheCounters, PropagationDelays
from service.config import CacheSettings
from service.errors import CacheUnavailable
from service.resilience.breaker import CircuitBreaker
from service.resilience.lag import DEFAULT_STALL_S, LoopMonitor
from service.resilience.retry import Backoff

__all__ = ["REDIS_FAILURES", "CacheResult", "CoherentCache", "redis_client"]


DEFAULT_LOCK_TTL_S = 6.0  # above the 5 s execution ceiling, so a live holder keeps its lock
DEFAULT_POLL_S = 0.1
DEFAULT_BREAKER_RESET_S = 1.0
DEFAULT_STARTUP_WAIT_S = 2.0


class CoherentCache:
    """Two-tier cache of JSON dicts with cross-instance invalidation."""

    def __init__(
        self,
        data: Redis,
        pubsub: Redis,
        settings: CacheSettings,
        instance_id: str,
        *,
        lock_ttl_s: float = DEFAULT_LOCK_TTL_S,
        poll_s: float = DEFAULT_POLL_S,
        breaker_reset_s: float = DEFAULT_BREAKER_RESET_S,
        bugs: InjectedBugs | None = None,
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.mode = settings.mode
        self.bugs = bugs or InjectedBugs()
        self._skip = self.bugs.skip_publish
        self._data = data
        self._pubsub_client = pubsub
        self._lock_ttl_s = lock_ttl_s
        self._poll_s = poll_s
        self._l1 = L1Cache(settings.l1_max_entries)
        self._gens = GenerationStore(data, instance_id)
        self._l2 = L2Store(data, instance_id)
        self._lock = RedisLock(data, instance_id, lock_ttl_s)
        self._flights: LocalFlights[CacheResult] = LocalFlights()
        self._waiters = FillWaiters()
        self._lag = LoopMonitor()
        self._signal = ChangeSignal(self._l1, lambda: self._link.healthy)
        self._delays = PropagationDelays()
        self.counters = CacheCounters()
        self._breaker = CircuitBreaker(
            "redis",
            error_cls=CacheUnavailable,
            failure_types=REDIS_FAILURES,
            failure_threshold=2,
            reset_timeout_s=breaker_reset_s,
            on_open=lambda reason: self._link.lost(f"breaker opened: {reason}"),
            excuse=self._stalled_here,
        )
        self._link = RedisLink(
            self._gens,
            self._l1,
            self._breaker,
            strict=self.mode == "strict",
            bugs=self.bugs,
            on_change=self._signal.pulse,
        )
        hooks = ListenerHooks(
            instance_id=instance_id,
            l1=self._l1,
            link=self._link,
            breaker=self._breaker,
            waiters=self._waiters,
            counters=self.counters,
            delays=self._delays,
            signal=self._signal,
            bugs=self.bugs,
        )
        self._listener = InvalidationListener(
            pubsub,
            on_invalidate=hooks.on_invalidate,
            on_filled=self._waiters.notify,
            on_subscribed=hooks.on_subscribed,
            on_lost=hooks.on_lost,
            on_tick=hooks.on_tick,
            backoff=Backoff(retry_on=REDIS_FAILURES, initial_s=0.05, max_s=1.0),
            stalled_since=self._lag.stalled_since,
        )
        self._filler = Filler(
            l1=self._l1,
            l2=self._l2,
            gens=self._gens,
            lock=self._lock,
            waiters=self._waiters,
            call=self._breaker.call,
            read=self._read,
            accept=self._accept_l2,
            degraded=lambda: self.degraded,
            counters=self.counters,
            instance_id=instance_id,
            lock_ttl_s=lock_ttl_s,
            poll_s=poll_s,
        )

    @classmethod
    async def start(
        cls,
        redis_url: str,
        settings: CacheSettings,
        instance_id: str,
        *,
        lock_ttl_s: float = DEFAULT_LOCK_TTL_S,
        poll_s: float = DEFAULT_POLL_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
        breaker_reset_s: float = DEFAULT_BREAKER_RESET_S,
        startup_wait_s: float = DEFAULT_STARTUP_WAIT_S,
        bugs: InjectedBugs | None = None,
    ) -> CoherentCache:
        """Connect and subscribe; with Redis down it still returns, degraded, and keeps trying."""

        def make(pool_max: int) -> Redis:
            return redis_client(
                redis_url,
                connect_timeout_s=connect_timeout_s,
                socket_timeout_s=socket_timeout_s,
                pool_max=pool_max,
                pool_timeout_s=settings.redis_pool_timeout_s,
            )

        cache = cls(
            make(settings.redis_pool_max),
            make(2),  # pub/sub holds one connection for good
            settings,
            instance_id,
            lock_ttl_s=lock_ttl_s,
            poll_s=poll_s,
            breaker_reset_s=breaker_reset_s,
            bugs=bugs,
        )
        cache._lag.start()
        cache._listener.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(startup_wait_s):
                await cache._listener.subscribed.wait()
        return cache

    # ----------------------------------------------------------------- reads

    async def get_or_compute(
        self, namespace: str, key_parts: dict[str, Any], compute: Compute, ttl_s: float
    ) -> CacheResult:
        """The cached answer for (namespace, key_parts), or `compute()`'s, computed once."""
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        token = self._link.token()
        # Injected bug shared-l2-across-namespaces: one key for every namespace's answer.
        key_ns = "" if self.bugs.shared_l2_across_namespaces else namespace
        key = result_key(key_ns, key_parts)
        result = await self._lookup_or_fill(namespace, key, compute, ttl_s)
        self.counters.count_lookup(result.tier)
        if not result.degraded and not self._link.trusted(token):
            # Redis was lost or not yet recovered at some point of this request.
            result = replace(result, degraded=True)
        return result

    async def _lookup_or_fill(
        self, namespace: str, key: str, compute: Compute, ttl_s: float
    ) -> CacheResult:
        epoch = self._l1.epoch
        entry = self._l1.get(key)
        if entry is not None:
            served = await self._serve_l1(key, entry)
            if served is not None:
                return served
        try:
            gens, payload = await self._read(self._gens.lookup, namespace, key)
        except CacheUnavailable:
            return await self._shared(
                key, lambda: self._filler.compute_degraded(namespace, key, compute, ttl_s, epoch)
            )
        self._observe(namespace, gens)
        if payload is not None:
            hit = self._accept_l2(namespace, key, payload, gens, ttl_s, epoch)
            if hit is not None:
                return hit
        # A computation started under older generations must not answer a reader that began
        # after a newer write: joiners share an in-flight fill only for the same generations.
        flight = f"{key}@{gens.namespace}:{gens.global_}"
        return await self._shared(
            flight, lambda: self._filler.fill(namespace, key, gens, compute, ttl_s, epoch)
        )

    async def _shared(self, key: str, factory: Callable[[], Awaitable[CacheResult]]) -> CacheResult:
        result, joined = await self._flights.run(key, factory)
        if joined:
            # Each caller gets its own dict, so one caller's edits cannot leak into another's.
            return replace(result, value=json.loads(json.dumps(result.value)))
        return result

    async def _serve_l1(self, key: str, entry: L1Entry) -> CacheResult | None:
        if self.bugs.skip_generation_check:
            return self._l1_result(key, entry, self.degraded)  # injected bug: no check at all
        trust_pubsub = self._skip or (self.mode == "eventual" and self._link.healthy)
        if trust_pubsub:
            if not self._l1.is_current(entry.namespace, entry.generation, entry.global_generation):
                self._l1.drop(key)
                self.counters.stale_rejections += 1
                return None
            return self._l1_result(key, entry, self.degraded)
        try:
            gens = await self._read(self._gens.read, entry.namespace)
        except CacheUnavailable:
            # Redis is gone: the last answer we have beats no answer; say so.
            self.counters.degraded_serves += 1
            return self._l1_result(key, entry, True)
        if entry.generation == gens.namespace and entry.global_generation == gens.global_:
            return self._l1_result(key, entry, self.degraded)
        self._l1.drop(key)
        self.counters.stale_rejections += 1
        self._observe(entry.namespace, gens)
        return None

    def _l1_result(self, key: str, entry: L1Entry, degraded: bool) -> CacheResult:
        value = json.loads(entry.payload)
        return CacheResult(
            value, True, "l1", entry.generation, degraded, key, entry.global_generation
        )

    def _accept_l2(
        self, namespace: str, key: str, payload: str, gens: Generations, ttl_s: float, epoch: int
    ) -> CacheResult | None:
        try:
            env = Envelope.decode(payload)
        except ValueError:
            self.counters.l2_corrupt += 1
            return None
        if not env.matches(gens) and not self.bugs.skip_generation_check:
            self.counters.stale_rejections += 1
            return None
        self._l1.put(
            key, env.value_json, namespace, env.generation, env.global_generation, ttl_s, epoch
        )
        value = json.loads(env.value_json)
        return CacheResult(
            value, True, "l2", env.generation, self.degraded, key, env.global_generation
        )

    # ---------------------------------------------------------------- writes

    def check_writable(self) -> None:
        """Before a write touches the database (strict mode refuses what it could not announce)."""
        self._link.check_writable()

    async def announce_write(self, namespaces: list[str], reason: str) -> int | None:
        """After a committed write: bump each namespace; see `RedisLink.announce` for failures."""
        gen = await self._link.announce(namespaces, reason)
        if gen is not None:
            self.counters.bumps += len(namespaces)
        return gen

    async def bump_generation(self, namespace: str, reason: str) -> int:
        """Atomically bump and publish `namespace`'s generation ("*" = global); new value."""
        gen = await self._link.bump(namespace, reason)
        self.counters.bumps += 1
        return gen

    async def bump_generation_or_flush_local(self, namespace: str, reason: str) -> int | None:
        """Bump; if Redis is down, drop this instance's L1 for it, keep it pending, return None."""
        try:
            return await self.bump_generation(namespace, reason)
        except CacheUnavailable:
            self._link.leave_pending(namespace)
            self.counters.local_flushes += 1
            return None

    async def generation(self, namespace: str) -> int | None:
        """Current generation of `namespace` ("*" = global), or None when Redis is down."""
        try:
            gens = await self._read(self._gens.read, namespace)
        except CacheUnavailable:
            return None
        return gens.global_ if namespace == GLOBAL_NAMESPACE else gens.namespace

    # ------------------------------------------------------- Redis round trips

    async def _read(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """A read-only Redis call, tried once more if it only failed because our loop stalled."""
        excused = self._breaker.counts["excused"]
        try:
            return await self._breaker.call(fn, *args)
        except CacheUnavailable:
            if self._breaker.counts["excused"] == excused:
                raise
            self.counters.stall_retries += 1
            return await self._breaker.call(fn, *args)

    def _stalled_here(self, exc: BaseException, started: float) -> bool:
        # A read timed out while this process's loop did not run: not Redis's fault.
        timeout = isinstance(exc, RedisTimeoutError | TimeoutError)
        return timeout and self._lag.stalled_since(started) >= DEFAULT_STALL_S

    def _observe(self, namespace: str, gens: Generations) -> None:
        self._l1.observe_generation(namespace, gens.namespace)
        self._l1.observe_generation(GLOBAL_NAMESPACE, gens.global_)

    # ------------------------------------------------------------ observers

    async def wait_for_generation(self, namespace: str, generation: int) -> None:
        """Return once this instance has heard of `generation` for `namespace` (bound it yourself)."""
        await self._signal.wait_for_generation(namespace, generation)

    async def wait_connected(self) -> None:
        """Return once subscribed and recovered: answers are no longer degraded (bound it yourself)."""
        await self._signal.wait_connected()

    async def wait_disconnected(self) -> None:
        """Return once this instance has noticed Redis is gone (bound it yourself)."""
        await self._signal.wait_disconnected()

    @property
    def redis(self) -> Redis:
        """The data client (for health pings); pub/sub uses a separate one."""
        return self._data

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable, or lost and not yet recovered."""
        return not self._link.healthy

    def propagation_ms(self) -> dict[str, float | int | None]:
        """Delays of invalidations from other instances (publish to arrival), in ms."""
        return self._delays.summary()

    def stats(self) -> dict[str, Any]:
        """Counters and state for get_cache_stats and /health."""
        return {
            **self.counters.as_dict(),
            "instance_id": self.instance_id,
            "mode": self.mode,
            "skip_invalidation_publish": self._skip,
            "injected_bugs": self.bugs.names(),
            "degraded": self.degraded,
            "redis_state": self._listener.state.value,
            "link": self._link.stats(),
            "breaker": self._breaker.stats(),
            "redis_pool": pool_stats(self._data),
            "pubsub_pings": self._listener.pings,
            "pubsub_pings_unanswered": self._listener.pings_unanswered,
            "loop_stall_longest_s": round(self._lag.longest_s, 3),
            "l1_size": len(self._l1),
            "l1_max_entries": self._l1.max_entries,
            "l1_evictions": self._l1.evictions,
            "coalesced": self._flights.coalesced,
            "filled_notes": self._waiters.notes_received,
            "propagation_ms": self.propagation_ms(),
        }

    async def close(self) -> None:
        """Stop the listener and close both Redis clients."""
        await self._listener.close()
        await self._lag.close()
        for client in (self._data, self._pubsub_client):
            with contextlib.suppress(*REDIS_FAILURES):
                await client.aclose()
