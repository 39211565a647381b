"""Typed cache counters report the names `get_cache_stats` and the experiments read."""

from __future__ import annotations

from service.cache.stats import CacheCounters, LinkCounters, PropagationDelays

#: The names (and order) the string counters had; experiments' facts read them by name.
CACHE_COUNTERS = [
    "hits_l1", "hits_l2", "misses", "computes", "stale_rejections", "invalidations_received",
    "bumps", "local_flushes", "reconnects", "l1_flushes", "l1_flushed_entries",
    "pubsub_failures", "degraded_serves", "degraded_computes", "singleflight_waits",
    "lock_fallbacks", "stored_stale", "l2_corrupt", "stall_retries",
]  # fmt: skip
LINK_COUNTERS = [
    "losses", "recoveries", "recovery_failures", "pending_applied", "writes_refused",
    "writes_unannounced",
]  # fmt: skip


def test_counter_names_are_unchanged() -> None:
    assert list(CacheCounters().as_dict()) == CACHE_COUNTERS
    assert list(LinkCounters().as_dict()) == LINK_COUNTERS


def test_lookups_count_by_tier() -> None:
    counters = CacheCounters()
    for tier in ("l1", "l1", "l2", "none"):
        counters.count_lookup(tier)
    figures = counters.as_dict()
    assert (figures["hits_l1"], figures["hits_l2"], figures["misses"]) == (2, 1, 1)


def test_propagation_summary() -> None:
    delays = PropagationDelays(keep=3)
    assert delays.summary() == {"count": 0, "last": None, "p50": None, "max": None}
    for ms in (5.0, -1.0, 2.0, 9.0):  # a negative delay (clock skew) counts as 0
        delays.add(ms)
    assert delays.summary() == {"count": 3, "last": 9.0, "p50": 2.0, "max": 9.0}
