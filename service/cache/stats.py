"""What one instance's cache has done: typed counters and invalidation propagation delays.

Counters only grow; `get_cache_stats` and `/health` report them by name (`as_dict`), and the
experiments' facts read them from there.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, fields


@dataclass(slots=True)
class CacheCounters:
    """Events since start; the link's own counters (losses, recoveries) live in `link.py`."""

    hits_l1: int = 0
    hits_l2: int = 0
    misses: int = 0
    #: answers computed (a miss that joined another's fill computes nothing)
    computes: int = 0
    #: cached answers refused because a generation moved on
    stale_rejections: int = 0
    invalidations_received: int = 0
    bumps: int = 0
    #: bumps that failed with Redis down: this instance's L1 entries dropped instead
    local_flushes: int = 0
    reconnects: int = 0
    l1_flushes: int = 0
    l1_flushed_entries: int = 0
    pubsub_failures: int = 0
    #: L1 hits served without their generation check because Redis was unreachable
    degraded_serves: int = 0
    degraded_computes: int = 0
    singleflight_waits: int = 0
    #: fills that computed without the lock because its holder did not finish in time
    lock_fallbacks: int = 0
    #: answers computed across a bump: returned to their caller, never stored as fresh
    stored_stale: int = 0
    l2_corrupt: int = 0
    #: reads retried because this process's own loop stalled, not Redis
    stall_retries: int = 0

    def count_lookup(self, tier: str) -> None:
        """One answered lookup, by the tier that answered it ("none": computed)."""
        if tier == "l1":
            self.hits_l1 += 1
        elif tier == "l2":
            self.hits_l2 += 1
        else:
            self.misses += 1

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class PropagationDelays:
    """Publish-to-arrival delays of invalidations from other instances (the last 1000), in ms."""

    def __init__(self, keep: int = 1000) -> None:
        self._delays: collections.deque[float] = collections.deque(maxlen=keep)

    def add(self, delay_ms: float) -> None:
        self._delays.append(max(0.0, delay_ms))

    def summary(self) -> dict[str, float | int | None]:
        delays = sorted(self._delays)
        if not delays:
            return {"count": 0, "last": None, "p50": None, "max": None}
        return {
            "count": len(delays),
            "last": round(self._delays[-1], 3),
            "p50": round(delays[len(delays) // 2], 3),
            "max": round(delays[-1], 3),
        }


@dataclass(slots=True)
class LinkCounters:
    """Transitions of the Redis link (`link.py`)."""

    losses: int = 0
    recoveries: int = 0
    recovery_failures: int = 0
    #: pending bumps sent on recovery
    pending_applied: int = 0
    #: strict-mode writes refused because they could not have been announced
    writes_refused: int = 0
    #: bumps that could not be sent: their namespaces left pending (sent on recovery) and
    #: this instance's L1 entries for them dropped
    writes_unannounced: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
