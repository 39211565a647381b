"""`CoherentCache`: in-process L1 over Redis L2, coherent across instances through generations.

Model (see ../shared/DESIGN.md, "Cache coherency model"): every answer is tagged with the
(namespace, global "*") generations read when its computation STARTED, and stored in L2 only
if they are still current (one Lua step), so an answer computed across a bump goes to its own
caller but is never stored as fresh. Writers change the data first and bump after
(`announce_write`); the bump publishes on `tmws:invalidate` and every instance's listener drops
older L1 entries. Keys: `keys.py`. How a hit is checked in `strict` and `eventual` mode:
`hits.py`.

Faults: the rule is written down in the package docstring (`service/cache/__init__.py`). This
module is the one owner of degraded behaviour: a Redis failure never escapes `get_or_compute`
as an error; the answer is computed without Redis (`Filler.compute_degraded`) or served from
L1, marked `degraded`. What `compute` raises reaches the caller (and every caller that joined
its flight) unchanged. Collaborators, one job each, are listed in `parts.py`; the hit path
with its injected bugs is `hits.py`, the miss path `fill.py`.

Injected bugs (service/bugs.py, negative controls only), each switched at one place:
`shared-l2-across-namespaces` here (result keys ignore the namespace); `skip-generation-check`
and the read half of `skip-publish` in `hits.py`; the publish half of `skip-publish` (bumps are
not published; the bumping instance still drops its own entries) and `no-flush-on-reconnect`
(recovery skipped) in `link.py`; `late-invalidation:MS` (messages from other instances apply
MS ms late) in `listening.py`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis

from service.bugs import InjectedBugs
from service.cache.client import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_SOCKET_TIMEOUT_S,
    REDIS_FAILURES,
    redis_client,
    redis_pair,
)
from service.cache.fill import Compute
from service.cache.keys import result_key
from service.cache.l1 import GLOBAL_NAMESPACE
from service.cache.parts import CacheParts
from service.cache.result import CacheResult
from service.config import CacheSettings
from service.errors import CacheUnavailable

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
        self._parts = parts = CacheParts.build(
            data,
            pubsub,
            settings,
            instance_id,
            lock_ttl_s=lock_ttl_s,
            poll_s=poll_s,
            breaker_reset_s=breaker_reset_s,
            bugs=self.bugs,
        )
        self.counters = parts.counters
        self._l1 = parts.l1
        self._link = parts.link
        self._hits = parts.hits
        self._filler = parts.filler

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

        data, pubsub = redis_pair(
            redis_url,
            pool_max=settings.redis_pool_max,
            pool_timeout_s=settings.redis_pool_timeout_s,
            connect_timeout_s=connect_timeout_s,
            socket_timeout_s=socket_timeout_s,
        )
        cache = cls(
            data,
            pubsub,
            settings,
            instance_id,
            lock_ttl_s=lock_ttl_s,
            poll_s=poll_s,
            breaker_reset_s=breaker_reset_s,
            bugs=bugs,
        )
        await cache._parts.start(startup_wait_s)
        return cache

    # ----------------------------------------------------------------- reads

    async def get_or_compute(
        self, namespace: str, key_parts: dict[str, Any], compute: Compute, ttl_s: float
    ) -> CacheResult:
        """The cached answer for (namespace, key_parts), or `compute()`'s, computed once.

        Never raises for Redis failures (the answer says `degraded`); re-raises what `compute`
        raised, also to callers that joined its flight.
        """
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
            served = await self._hits.serve_l1(key, entry)
            if served is not None:
                return served
        try:
            gens, payload = await self._hits.read(self._parts.gens.lookup, namespace, key)
        except CacheUnavailable:
            return await self._shared(
                key, lambda: self._filler.compute_degraded(namespace, key, compute, ttl_s, epoch)
            )
        self._hits.observe(namespace, gens)
        if payload is not None:
            hit = self._hits.accept_l2(namespace, key, payload, gens, ttl_s, epoch)
            if hit is not None:
                return hit
        # A computation started under older generations must not answer a reader that began
        # after a newer write: joiners share an in-flight fill only for the same generations.
        flight = f"{key}@{gens.namespace}:{gens.global_}"
        return await self._shared(
            flight, lambda: self._filler.fill(namespace, key, gens, compute, ttl_s, epoch)
        )

    async def _shared(self, key: str, factory: Callable[[], Awaitable[CacheResult]]) -> CacheResult:
        result, joined = await self._parts.flights.run(key, factory)
        if joined:
            # Each caller gets its own dict, so one caller's edits cannot leak into another's.
            return replace(result, value=json.loads(json.dumps(result.value)))
        return result

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
            gens = await self._hits.read(self._parts.gens.read, namespace)
        except CacheUnavailable:
            return None
        return gens.global_ if namespace == GLOBAL_NAMESPACE else gens.namespace

    # ------------------------------------------------------------ observers

    async def wait_for_generation(self, namespace: str, generation: int) -> None:
        """Return once this instance has heard of `generation` for `namespace` (bound it yourself)."""
        await self._parts.signal.wait_for_generation(namespace, generation)

    async def wait_connected(self) -> None:
        """Return once subscribed and recovered: answers are no longer degraded (bound it yourself)."""
        await self._parts.signal.wait_connected()

    async def wait_disconnected(self) -> None:
        """Return once this instance has noticed Redis is gone (bound it yourself)."""
        await self._parts.signal.wait_disconnected()

    @property
    def redis(self) -> Redis:
        """The data client (for health pings); pub/sub uses a separate one."""
        return self._parts.data

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable, or lost and not yet recovered."""
        return self._hits.degraded

    def stats(self) -> dict[str, Any]:
        """Counters and state for get_cache_stats and /health."""
        return {
            **self.counters.as_dict(),
            "instance_id": self.instance_id,
            "mode": self.mode,
            "skip_invalidation_publish": self.bugs.skip_publish,
            "injected_bugs": self.bugs.names(),
            **self._parts.stats(),
        }

    async def close(self) -> None:
        """Stop the listener and close both Redis clients."""
        await self._parts.close()
