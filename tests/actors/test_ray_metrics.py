"""Ray metrics: the swarm's samples kept by the recorder and published in batches, and an
instance's Prometheus registry mirrored as gauges (no Ray cluster needed to record them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from actors.ray_metrics import SwarmMetrics
from actors.ray_mirror import PrometheusMirror, registry_of
from actors.recorder import CLIENT_TIMEOUT, Outcome, Recorder, SessionInfo
from actors.workload import RequestSpec

READ = RequestSpec("execute_pattern", {"query": "q"}, "read", "agent-1", key="q")


def _record(rec: Recorder, outcome: Outcome) -> None:
    rec.record(
        phase="load",
        request=READ,
        session=SessionInfo("agent-1", instance_id="i0"),
        outcome=outcome,
        t_send_ns=0,
        t_recv_ns=3_000_000,
    )


def test_samples_are_kept_only_when_asked_and_taken_once() -> None:
    rec = Recorder("run", "scn")
    _record(rec, Outcome.ok({"success": True}))
    assert rec.take_samples() == []  # nobody asked: nothing kept, nothing to pay
    rec.keep_samples()
    _record(rec, Outcome.ok({"success": True, "timings": {"route": 1.0, "total": 2.0}}))
    _record(rec, Outcome.client_failure(CLIENT_TIMEOUT, "late"))
    samples = rec.take_samples()
    assert [(s.success, s.outcome, s.instance_id) for s in samples] == [
        (True, "ok", "i0"),
        (False, "client_timeout", "i0"),
    ]
    assert samples[0].timings == {"route": 1.0, "total": 2.0} and samples[0].latency_ms == 3.0
    assert rec.take_samples() == []
    assert len(rec) == 3  # the rows are untouched by the samples
    for _ in range(5):
        _record(rec, Outcome.ok({"success": True}))
    assert len(rec.take_samples(limit=2)) == 2  # a bounded take leaves the rest for the next
    assert len(rec.take_samples()) == 3


def test_publish_counts_every_sample() -> None:
    rec = Recorder("run", "scn")
    rec.keep_samples()
    for i in range(5):
        timings = {"queue": 0.5, "route": 1.0, "total": 2.0} if i % 2 else None
        _record(rec, Outcome.ok({"success": True, "timings": timings}))
    _record(rec, Outcome.client_failure(CLIENT_TIMEOUT, "late"))
    metrics = SwarmMetrics("swarm-test")
    assert metrics.publish(rec.take_samples()) == 6
    assert metrics.publish(rec.take_samples()) == 0
    assert metrics.published == 6


def test_a_registry_is_mirrored_sample_by_sample() -> None:
    registry = CollectorRegistry()
    requests = Counter("tmws_requests", "Requests → by method", ["method"], registry=registry)
    latency = Histogram("tmws_lat_seconds", "Latency", buckets=(0.1, 1.0), registry=registry)
    requests.labels("ping").inc(3)
    latency.observe(0.5)
    mirror = PrometheusMirror("inst-0")
    # ping: _total and _created; the histogram: 3 buckets, _count, _sum, _created.
    assert mirror.publish(registry) == 8
    requests.labels("recall_memory").inc()
    assert mirror.publish(registry) == 10  # the gauges are reused, the new label set added
    assert mirror.publish(None) == 0
    assert registry_of(object()) is None  # an app without services yet
