"""Two-tier cache (in-process L1 over Redis L2) kept coherent across instances by generations.

Every cached answer is tagged with the (namespace, global "*") generations read before it was
computed; writers change the data first, then bump (INCR + PUBLISH in one Lua step). See
`coherent.py` for the read path and the two modes.

The rule under faults (issue 9): a write whose bump fails must never leave a tier able to serve
an answer older than it without saying so (`degraded: true`).

- Strict mode: a write is acknowledged only after its bump succeeded. While Redis is lost (the
  breaker open, or a loss not yet recovered) a write is refused before it touches the database:
  -32002, `data.reason = "cache_unavailable"`, `data.applied = false`. A bump that fails after
  the commit answers -32002 with `applied: true` (the write is in the database; the client sees
  an error, so checkers treat it as possibly applied) and stays PENDING. No stale read is ever
  served outside answers marked degraded.
- Eventual mode: writes are acknowledged (`version_written: null` when the bump failed) and the
  bump stays pending. Staleness bound after an acknowledged write: the pub/sub propagation delay
  while Redis is healthy (a silent pub/sub stall is noticed within 1.5 s); otherwise the outage
  + the writer's recovery (<= ~1 s listener backoff + one round trip per pending bump) +
  propagation. If the writer dies before Redis returns, every instance that saw the outage fences
  L2 with a "*" bump when it recovers; if none did, the entry's TTL.
- Recovery gate: an instance that has seen Redis fail — the breaker opened, the pub/sub
  listener lost its connection, or its PING went unanswered (a SIGSTOP'd Redis keeps its sockets
  open, so only that health check notices a pause) — is recovering once Redis answers again. It
  applies its pending bumps, bumps "*" (the fence), flushes L1, and only then serves non-degraded
  answers. An answer is degraded unless the link was healthy when its request started and stayed
  so until it returned. Same for a stop/start and a pause.
- A write whose database outcome is unknown (deadline, lost connection, cancelled) announces
  itself once PostgreSQL answers again (`tools/store_access.write_outcome`): a paused server may
  still commit it when it resumes.
- Pool exhaustion is not a Redis failure: requests wait up to TMWS_REDIS_POOL_TIMEOUT for one of
  TMWS_REDIS_POOL_MAX connections, then get -32003 `redis_pool_exhausted`; the breaker never
  hears of it. Nor is a timeout caused by our own stalled event loop (`resilience/lag.py`).
"""

from service.cache.coherent import CacheResult, CoherentCache
from service.cache.keys import key_parts, normalise_query, result_key
from service.cache.l1 import GLOBAL_NAMESPACE

__all__ = [
    "GLOBAL_NAMESPACE",
    "CacheResult",
    "CoherentCache",
    "key_parts",
    "normalise_query",
    "result_key",
]
