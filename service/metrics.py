"""Prometheus figures of one instance, served as text on `/metrics`.

Counted as requests happen: JSON-RPC requests per method and error code, their server-side
latency, the stage timings of `execute_pattern` (the `timings` map of its result) and its cache
tiers, and reply serialisation. Read at scrape time from the live objects: the database pool,
the circuit breakers, the cache counters, the encoder and its query LRU, the sessions.

Each `Services` owns its registry (not the process-global one): tests and Ray actors run several
instances in one process, and each `/metrics` must describe its own instance only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # `Services` owns a `ServiceMetrics`: the arrow points this way at run time
    from service.context import Services

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds; from a cached answer (~1 ms) to the 2-5 s pattern and tool timeouts.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Method label of anything the server does not implement (client-chosen names stay unbounded).
OTHER_METHOD = "other"


class ServiceMetrics:
    """The counters and histograms of one instance, plus a collector of its live state."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tmws_requests",
            "JSON-RPC requests answered, by method and error code (0 = success)",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tmws_request_duration_seconds",
            "Server-side time of one JSON-RPC request, parse and serialise excluded",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "tmws_stage_duration_seconds",
            "Time of one stage of a request (execute_pattern timings; serialise of every reply)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pattern_cache = Counter(
            "tmws_pattern_cache",
            "execute_pattern answers by cache tier (l1, l2, none = computed or not cacheable)",
            ["tier"],
            registry=self.registry,
        )
        self._live: _LiveState | None = None
        self._children: dict[tuple[Any, ...], Any] = {}

    def watch(self, services: Services) -> None:
        """Report `services`' pool, breakers, cache, encoder and sessions at each scrape."""
        if self._live is None:
            self._live = _LiveState(services)
            self.registry.register(self._live)

    def observe_request(self, method: str, seconds: float, code: int) -> None:
        self._child(self.requests, method, str(code)).inc()
        self._child(self.latency, method).observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self._child(self.stages, stage).observe(seconds)

    def observe_pattern(self, timings: dict[str, float], cache_tier: str) -> None:
        for stage, ms in timings.items():
            self._child(self.stages, stage).observe(ms / 1000.0)
        self._child(self.pattern_cache, cache_tier).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        # `labels()` validates and locks on every call (~8 us, a tenth of a cached answer's
        # server time was metrics); the children are few and fixed, so keep them.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveState(Collector):
    """Gauges read from the running objects when Prometheus scrapes (nothing kept in between)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Any]:
        services = self._services
        for part in (_pool, _breakers, _cache, _embedding, _sessions):
            try:
                yield from part(services)
            except Exception:  # a scrape reports what it can; one broken part must not hide all
                log.exception("metrics: %s failed", part.__name__)


def _gauges(
    prefix: str, doc: str, stats: dict[str, Any], keys: tuple[str, ...]
) -> Iterator[GaugeMetricFamily]:
    for key in keys:
        value = stats.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield GaugeMetricFamily(f"{prefix}_{key}", f"{doc}: {key}", value=float(value))


def _counters(
    prefix: str, doc: str, stats: dict[str, Any], keys: tuple[str, ...]
) -> Iterator[CounterMetricFamily]:
    for key in keys:
        value = stats.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield CounterMetricFamily(f"{prefix}_{key}", f"{doc}: {key}", value=float(value))


def _pool(services: Services) -> Iterator[Any]:
    if services.db is None:
        return
    stats = services.db.pool_stats()
    yield from _gauges(
        "tmws_db_pool",
        "PostgreSQL pool",
        stats,
        ("size", "idle", "in_use", "max", "waiting", "waiting_peak", "acquire_wait_ms_max"),
    )
    yield from _counters(
        "tmws_db_pool",
        "PostgreSQL pool",
        stats,
        (
            "acquired_total",
            "queued_total",
            "exhausted_total",
            "outage_waits_total",
            "connections_lost_total",
        ),
    )


def _breakers(services: Services) -> Iterator[Any]:
    family = GaugeMetricFamily(
        "tmws_breaker_state",
        "Circuit breaker state (1 = the state it is in)",
        labels=["breaker", "state"],
    )
    found = False
    if services.db is not None:
        state = services.db.breaker.stats().get("state", "unknown")
        family.add_metric(["postgresql", str(state)], 1.0)
        found = True
    if services.cache is not None:
        redis = services.cache.stats().get("breaker")
        if isinstance(redis, dict):
            family.add_metric(["redis", str(redis.get("state", "unknown"))], 1.0)
            found = True
    if found:
        yield family


def _cache(services: Services) -> Iterator[Any]:
    cache = services.cache
    if cache is None:
        return
    stats = cache.stats()
    counted = (
        *cache.counters.as_dict(),
        "l1_evictions",
        "coalesced",
        "pubsub_pings",
        "pubsub_pings_unanswered",
    )
    yield from _counters("tmws_cache", "Result cache", stats, counted)
    yield from _gauges(
        "tmws_cache", "Result cache", stats, ("l1_size", "l1_max_entries", "loop_stall_longest_s")
    )
    yield GaugeMetricFamily(
        "tmws_cache_degraded",
        "1 while Redis is unreachable (answers from L1, marked degraded)",
        value=float(bool(stats.get("degraded"))),
    )


def _embedding(services: Services) -> Iterator[Any]:
    stats = services.embedder.stats()
    yield from _gauges("tmws_embed", "Encoder", stats, ("queued", "largest_batch", "torch_threads"))
    yield from _counters(
        "tmws_embed", "Encoder", stats, ("encodes", "encoded_texts", "encode_seconds")
    )
    lru = stats["cache"]
    yield from _gauges("tmws_embed_cache", "Query embedding LRU", lru, ("size", "max_entries"))
    yield from _counters(
        "tmws_embed_cache", "Query embedding LRU", lru, ("hits", "misses", "evictions")
    )


def _sessions(services: Services) -> Iterator[Any]:
    if services.sessions is None:
        return
    stats = services.sessions.stats()
    numbers = tuple(
        k for k, v in stats.items() if isinstance(v, int | float) and not isinstance(v, bool)
    )
    yield from _gauges("tmws_sessions", "WebSocket sessions", stats, numbers)
