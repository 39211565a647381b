"""The swarm's Ray metrics: samples kept by the recorder, published in batches (no Ray needed)."""

from __future__ import annotations

from actors.ray_metrics import SwarmMetrics
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
