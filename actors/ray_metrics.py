"""The swarm's figures as `ray.util.metrics`, so a cloud cluster's Ray dashboard and Grafana show them.

Per swarm: requests by method, instance and outcome (a Counter), end-to-end latency by method and
the server's stage timings by method and stage (Histograms, ms). The recorder keeps a small
sample per request (`Recorder.keep_samples`); `publish` hands them to Ray in one batch, off the
request path: counts are summed first (one `inc` per method/instance/outcome), only the
histograms take one `observe` per value (~4 µs each; ~24 µs per request with five stages). The
actor publishes whenever the driver polls its status (every ~0.5 s during a phase; at most
`PUBLISH_PER_POLL` samples at a time, so a poll never stalls the agents' loop for long) and
everything left at the end of each phase.

Ray exports these with a `ray_` prefix (e.g. `ray_tmws_swarm_requests_total`) from every node's
metrics agent; outside a Ray worker they are recorded and go nowhere.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from ray.util.metrics import Counter, Histogram

from actors.recorder import Sample

#: ms; from a cached answer (~1 ms) to the 2-10 s request timeouts.
LATENCY_BOUNDARIES_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]


class SwarmMetrics:
    """The Ray metrics of one swarm; `publish` a batch of samples at a time."""

    def __init__(self, swarm_id: str) -> None:
        # Names and descriptions must be ASCII (Ray's C++ side refuses anything else).
        self._tags = {"swarm": swarm_id}
        self.requests = Counter(
            "tmws_swarm_requests",
            "Requests an agent swarm sent, by method, instance and outcome (ok or error reason)",
            tag_keys=("swarm", "method", "instance", "outcome"),
        )
        self.latency = Histogram(
            "tmws_swarm_latency_ms",
            "End-to-end latency seen by the agents (from the intended send in open loop), ms",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("swarm", "method"),
        )
        self.stages = Histogram(
            "tmws_swarm_server_stage_ms",
            "The server's stage timings reported with each answer (queue, route, cache, ...), ms",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("swarm", "method", "stage"),
        )
        self.published = 0

    def publish(self, samples: Iterable[Sample]) -> int:
        """Record a batch of samples; returns how many."""
        counts: Tally[tuple[str, str, str]] = Tally()
        n = 0
        for s in samples:
            n += 1
            counts[(s.method, s.instance_id or "none", "ok" if s.success else s.outcome)] += 1
            if s.success:
                self.latency.observe(s.latency_ms, tags={**self._tags, "method": s.method})
            for stage, ms in (s.timings or {}).items():
                self.stages.observe(ms, tags={**self._tags, "method": s.method, "stage": stage})
        for (method, instance, outcome), count in counts.items():
            tags = {**self._tags, "method": method, "instance": instance, "outcome": outcome}
            self.requests.inc(count, tags=tags)
        self.published += n
        return n
