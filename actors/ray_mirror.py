"""An instance's Prometheus figures (`/metrics`) mirrored as `ray.util.metrics` gauges.

A cloud cluster's Ray dashboard and Grafana read Ray's metrics agent on each node, not every
instance's `/metrics`. The `ServiceInstance` actor copies its own registry into Ray gauges each
time the driver samples its stats (about once a second): request counts per method and code,
the latency and stage histograms (one gauge per bucket, `le` as a tag), cache tiers, pool,
breakers, encoder and sessions — the same names and labels, plus `instance`. Counters and
histogram buckets are cumulative values set as gauges (Ray counters only add, and would need the
previous value kept): `rate()` works on them as on the original counters.

Ray exports them with a `ray_` prefix (`ray_tmws_requests_total{instance,method,code}`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from prometheus_client import CollectorRegistry
from ray.util.metrics import Gauge

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class PrometheusMirror:
    """Copies one Prometheus registry into Ray gauges, tagged with the instance id."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self._gauges: dict[str, tuple[Gauge, tuple[str, ...]] | None] = {}
        self.published = 0

    def publish(self, registry: CollectorRegistry | None) -> int:
        """Set every sample of `registry` on its gauge; returns how many were set."""
        if registry is None:
            return 0
        n = 0
        for family in registry.collect():
            for sample in family.samples:
                gauge = self._gauge(sample.name, family.documentation, tuple(sample.labels))
                if gauge is None:
                    continue
                g, keys = gauge
                tags = {k: str(sample.labels.get(k, "")) for k in keys if k != "instance"}
                g.set(float(sample.value), tags={**tags, "instance": self.instance_id})
                n += 1
        self.published += n
        return n

    def _gauge(
        self, name: str, doc: str, labels: tuple[str, ...]
    ) -> tuple[Gauge, tuple[str, ...]] | None:
        if name in self._gauges:
            found = self._gauges[name]
            # A sample whose labels differ from the first one's cannot share its gauge.
            return found if found is not None and set(labels) <= set(found[1]) else None
        keys = tuple(sorted({*labels, "instance"}))
        made: tuple[Gauge, tuple[str, ...]] | None = None
        if _NAME.match(name):
            # Ray's C++ side takes ASCII only.
            description = doc.encode("ascii", "replace").decode() or name
            try:
                made = (Gauge(name, description, tag_keys=keys), keys)
            except (ValueError, TypeError) as exc:  # a name Ray refuses: skip it, once
                log.warning("ray metrics: cannot mirror %s: %s", name, exc)
        self._gauges[name] = made
        return made


def registry_of(app: Any) -> CollectorRegistry | None:
    """The running app's Prometheus registry, or None before its services exist."""
    try:
        return app.state.services.metrics.registry
    except AttributeError:
        return None
