"""The miss path: compute an answer once across instances, and store it only if still current.

Under the cross-instance lock (`RedisLock`) one instance computes; the others wait for its
"filled" note (or poll L2 with a bound) and take its answer from L2. Past the lock's TTL a
waiter computes by itself. The answer is tagged with the generations read before computing and
stored in L2 by one Lua step only if they are still current (`l2.py`). With Redis unusable
the answer is computed here and kept in L1 only (flushed when Redis returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from service.cache.generations import Generations, GenerationStore
from service.cache.l1 import GLOBAL_NAMESPACE, L1Cache
from service.cache.l2 import L2Store, new_envelope
from service.cache.result import CacheResult
from service.cache.singleflight import FillWaiters, RedisLock
from service.cache.stats import CacheCounters
from service.errors import CacheUnavailable, InternalError

Compute = Callable[[], Awaitable[dict[str, Any]]]
#: Runs a Redis call behind the breaker (`read` also retries once after a loop stall).
RedisCall = Callable[..., Awaitable[Any]]
AcceptL2 = Callable[[str, str, str, Generations, float, int], CacheResult | None]


class Filler:
    """Computes misses for one `CoherentCache` (which owns every collaborator passed in)."""

    def __init__(
        self,
        *,
        l1: L1Cache,
        l2: L2Store,
        gens: GenerationStore,
        lock: RedisLock,
        waiters: FillWaiters,
        call: RedisCall,
        read: RedisCall,
        accept: AcceptL2,
        degraded: Callable[[], bool],
        counters: CacheCounters,
        instance_id: str,
        lock_ttl_s: float,
        poll_s: float,
    ) -> None:
        self._l1 = l1
        self._l2 = l2
        self._gens = gens
        self._lock = lock
        self._waiters = waiters
        self._call = call
        self._read = read
        self._accept = accept
        self._degraded = degraded
        self.counters = counters
        self.instance_id = instance_id
        self._lock_ttl_s = lock_ttl_s
        self._poll_s = poll_s

    async def fill(
        self,
        namespace: str,
        key: str,
        gens: Generations,
        compute: Compute,
        ttl_s: float,
        epoch: int,
    ) -> CacheResult:
        """Compute under the cross-instance lock, or wait for the instance that holds it."""
        try:
            outcome = await self._acquire_or_wait(namespace, key, gens, ttl_s, epoch)
        except CacheUnavailable:
            return await self.compute_degraded(namespace, key, compute, ttl_s, epoch)
        if isinstance(outcome, CacheResult):
            return outcome
        token, gens = outcome
        return await self._compute_and_store(namespace, key, gens, compute, ttl_s, token, epoch)

    async def _acquire_or_wait(
        self, namespace: str, key: str, gens: Generations, ttl_s: float, epoch: int
    ) -> CacheResult | tuple[str | None, Generations]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_ttl_s
        waited = False
        while True:
            token = await self._call(self._lock.acquire, key)
            if token is not None or loop.time() >= deadline:
                if token is None:
                    # Holder silent past the lock's TTL and the lock is still held (a new
                    # holder?): stop waiting and compute ourselves; correctness does not need it.
                    self.counters.lock_fallbacks += 1
                # Another instance may have filled the key and released the lock between our
                # last look at L2 and this acquire (a busy loop makes that window long): look
                # again, or the same key and generation is computed twice.
                gens, payload = await self._read(self._gens.lookup, namespace, key)
                if payload is not None:
                    hit = self._accept(namespace, key, payload, gens, ttl_s, epoch)
                    if hit is not None:
                        if token is not None:
                            await self._release_quietly(key, token)
                        return hit
                return token, gens
            if not waited:
                self.counters.singleflight_waits += 1
                waited = True
            await self._waiters.wait(key, min(self._poll_s, max(0.0, deadline - loop.time())))
            now_gens, payload = await self._read(self._gens.lookup, namespace, key)
            if payload is not None:
                hit = self._accept(namespace, key, payload, now_gens, ttl_s, epoch)
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
        epoch: int,
    ) -> CacheResult:
        try:
            value = await compute()
        except BaseException:
            if token is not None:
                await self._release_quietly(key, token)
            raise
        self.counters.computes += 1
        value_json = encode(value)
        env = new_envelope(value_json, gens, self.instance_id)
        degraded = False
        try:
            stored = await self._call(self._l2.store_if_current, key, namespace, env, ttl_s, token)
        except CacheUnavailable:
            stored, degraded = False, True
        if stored:
            self._l1.put(key, value_json, namespace, gens.namespace, gens.global_, ttl_s, epoch)
        elif not degraded:
            # A bump landed while we computed: the answer goes to our caller only.
            self.counters.stored_stale += 1
        return CacheResult(
            value, False, "none", gens.namespace, degraded or self._degraded(), key, gens.global_
        )

    async def compute_degraded(
        self, namespace: str, key: str, compute: Compute, ttl_s: float, epoch: int
    ) -> CacheResult:
        """Redis unusable: compute here, keep it in L1 only (flushed when Redis returns)."""
        value = await compute()
        self.counters.computes += 1
        self.counters.degraded_computes += 1
        self._l1.put(
            key,
            encode(value),
            namespace,
            self._l1.known_generation(namespace),
            self._l1.known_generation(GLOBAL_NAMESPACE),
            ttl_s,
            epoch,
        )
        return CacheResult(value, False, "none", None, True, key)

    async def _release_quietly(self, key: str, token: str) -> None:
        note = json.dumps({"key": key, "instance": self.instance_id, "g": None})
        with contextlib.suppress(CacheUnavailable):
            await self._call(self._lock.release, key, token, note)


def encode(value: dict[str, Any]) -> str:
    """Compact JSON of an answer (L1 and L2 keep the same text)."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InternalError(f"cached value is not JSON-serialisable: {exc}") from exc
