"""The hit path: when an L1 entry or an L2 payload may answer, and the reads it needs.

- L1 hit, `strict` mode: one round trip compares the entry's generations with Redis's.
  `eventual` mode: trusted while the link is healthy (pub/sub drops stale entries), otherwise
  checked like strict. With Redis gone, the entry is served marked degraded.
- L2 hit: always compared with the generations read in the same round trip as the GET; an
  accepted payload is copied into L1.
- A read that timed out only because this process's event loop stalled is tried once more and
  does not count against Redis (`stall_excuse`, the breaker's excuse).

Injected bugs switched here (service/bugs.py, negative controls only): `skip-publish` (L1
hits skip the strict generation check, so with bumps unpublished other instances serve stale
L1 entries in either mode until TTL; L2 hits are still checked), `skip-generation-check` (L1
and L2 hits are served without comparing generations). `shared-l2-across-namespaces` is
switched at the key (`coherent.py`): an L1 entry is checked against the generations of the
namespace that stored it, so another namespace on the same instance is served it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from service.bugs import InjectedBugs
from service.cache.generations import Generations, GenerationStore
from service.cache.l1 import GLOBAL_NAMESPACE, L1Cache, L1Entry
from service.cache.l2 import Envelope
from service.cache.link import RedisLink
from service.cache.result import CacheResult
from service.cache.stats import CacheCounters
from service.errors import CacheUnavailable
from service.resilience.breaker import CircuitBreaker
from service.resilience.lag import DEFAULT_STALL_S, LoopMonitor


def stall_excuse(lag: LoopMonitor) -> Callable[[BaseException, float], bool]:
    """The breaker's excuse: a timeout while this process's loop did not run is not Redis's fault."""

    def excused(exc: BaseException, started: float) -> bool:
        timeout = isinstance(exc, RedisTimeoutError | TimeoutError)
        return timeout and lag.stalled_since(started) >= DEFAULT_STALL_S

    return excused


class HitPath:
    """Decides whether a cached entry may answer; owns no state beyond what it is given."""

    def __init__(
        self,
        *,
        l1: L1Cache,
        gens: GenerationStore,
        link: RedisLink,
        breaker: CircuitBreaker,
        counters: CacheCounters,
        bugs: InjectedBugs,
        strict: bool,
    ) -> None:
        self._l1 = l1
        self._gens = gens
        self._link = link
        self._breaker = breaker
        self.counters = counters
        self.bugs = bugs
        self._strict = strict

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable, or lost and not yet recovered."""
        return not self._link.healthy

    async def read(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """A read-only Redis call, tried once more if it only failed because our loop stalled."""
        excused = self._breaker.counts["excused"]
        try:
            return await self._breaker.call(fn, *args)
        except CacheUnavailable:
            if self._breaker.counts["excused"] == excused:
                raise
            self.counters.stall_retries += 1
            return await self._breaker.call(fn, *args)

    def observe(self, namespace: str, gens: Generations) -> None:
        """Remember generations seen in Redis (L1 drops entries older than them)."""
        self._l1.observe_generation(namespace, gens.namespace)
        self._l1.observe_generation(GLOBAL_NAMESPACE, gens.global_)

    async def serve_l1(self, key: str, entry: L1Entry) -> CacheResult | None:
        """The L1 entry's answer if it is still current (or Redis is gone); None drops it."""
        if self.bugs.skip_generation_check:
            return _l1_result(key, entry, self.degraded)  # injected bug: no check at all
        trust_pubsub = self.bugs.skip_publish or (not self._strict and self._link.healthy)
        if trust_pubsub:
            if not self._l1.is_current(entry.namespace, entry.generation, entry.global_generation):
                self._l1.drop(key)
                self.counters.stale_rejections += 1
                return None
            return _l1_result(key, entry, self.degraded)
        try:
            gens = await self.read(self._gens.read, entry.namespace)
        except CacheUnavailable:
            # Redis is gone: the last answer we have beats no answer; say so.
            self.counters.degraded_serves += 1
            return _l1_result(key, entry, True)
        if entry.generation == gens.namespace and entry.global_generation == gens.global_:
            return _l1_result(key, entry, self.degraded)
        self._l1.drop(key)
        self.counters.stale_rejections += 1
        self.observe(entry.namespace, gens)
        return None

    def accept_l2(
        self, namespace: str, key: str, payload: str, gens: Generations, ttl_s: float, epoch: int
    ) -> CacheResult | None:
        """The L2 payload's answer if it matches `gens` (then also kept in L1); else None."""
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


def _l1_result(key: str, entry: L1Entry, degraded: bool) -> CacheResult:
    value = json.loads(entry.payload)
    return CacheResult(value, True, "l1", entry.generation, degraded, key, entry.global_generation)
