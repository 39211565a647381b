"""Coherency checker on hand-built histories: it passes clean runs and names every violation."""

from __future__ import annotations

import pytest

from analysis.coherency import check_coherency


def _by_name(report):
    return {c.name: c for c in report.criteria}


def test_clean_history_passes(rows):
    r = rows()
    r.write(version=1, send=0, recv=10, agent_id="w")
    r.read(seen=0, send=1, recv=5, agent_id="a", session_id="s1")  # before the write: fine
    r.read(seen=1, send=11, recv=12, agent_id="a", session_id="s1", instance_id="i1")
    r.read(seen=1, send=13, recv=14, agent_id="b", session_id="s2", instance_id="i2")
    report = check_coherency(r.table())
    assert report.reads_checked == 3 and report.writes_checked == 1
    assert report.stale.count == 0
    assert report.read_your_writes.count == 0 and report.monotonic.count == 0
    assert report.duplicates == []
    assert report.passed
    assert {c.name for c in report.criteria} >= {
        "no_stale_reads",
        "read_your_writes",
        "monotonic_reads",
        "no_duplicate_keys",
    }
    assert all(c.passed and not c.skipped for c in report.criteria)


def test_injected_stale_read_is_found_with_its_row(rows):
    r = rows()
    r.write(version=1, send=0, recv=10, agent_id="w")
    missed = r.write(version=2, send=15, recv=20, agent_id="w", instance_id="i0")
    r.read(seen=2, send=21, recv=22, agent_id="a", instance_id="i0")
    stale = r.read(seen=1, send=25, recv=27, agent_id="b", instance_id="i1", session_id="sb")
    r.read(seen=2, send=30, recv=31, agent_id="c", instance_id="i2")
    report = check_coherency(r.table())
    assert report.stale.count == 1
    ex = report.stale.examples[0]
    assert ex["read"]["row"] == stale
    assert ex["missed"]["row"] == missed
    assert ex["instance_id"] == "i1"
    assert ex["staleness"] == 1
    assert ex["since_ack_ms"] == pytest.approx(5.0)
    assert dict(report.stale.by_instance) == {"i1": 1}
    criterion = _by_name(report)["no_stale_reads"]
    assert criterion.failed and criterion.critical
    assert "measured 1" in criterion.message()
    assert not report.passed


def test_read_concurrent_with_write_is_not_stale(rows):
    r = rows()
    r.write(version=2, send=10, recv=20)
    r.read(seen=1, send=15, recv=30, agent_id="a")  # began before the ack
    r.read(seen=1, send=20, recv=21, agent_id="b")  # began exactly at the ack: not after it
    report = check_coherency(r.table())
    assert report.stale.count == 0
    assert report.passed


def test_writes_to_other_namespaces_do_not_count(rows):
    r = rows()
    r.write(version=5, send=0, recv=1, namespace="other")
    r.write(version=1, send=0, recv=1, namespace="ns")
    r.read(seen=1, send=2, recv=3, namespace="ns")
    assert check_coherency(r.table()).stale.count == 0


def test_read_your_writes_violation(rows):
    r = rows()
    r.write(version=3, send=0, recv=10, agent_id="a")
    own = r.read(seen=2, send=12, recv=13, agent_id="a", instance_id="i2")
    r.read(seen=2, send=14, recv=15, agent_id="b", instance_id="i2")  # stale, but not b's write
    report = check_coherency(r.table())
    assert report.stale.count == 2
    assert report.read_your_writes.count == 1
    assert report.read_your_writes.examples[0]["read"]["row"] == own
    assert _by_name(report)["read_your_writes"].failed


def test_monotonic_read_violation_within_session(rows):
    r = rows()
    r.read(seen=5, send=10, recv=12, session_id="s")
    r.read(seen=4, send=11, recv=15, session_id="s")  # overlaps the first read: allowed
    back = r.read(seen=4, send=13, recv=14, session_id="s")  # began after seeing 5
    r.read(seen=3, send=20, recv=21, session_id="other")  # another session
    report = check_coherency(r.table())
    assert report.monotonic.count == 1
    assert report.monotonic.examples[0]["read"]["row"] == back
    assert report.monotonic.examples[0]["missed"]["version"] == 5
    names = _by_name(report)
    assert names["monotonic_reads"].failed
    assert names["no_stale_reads"].skipped  # no writes: nothing to judge, not a silent pass


def test_duplicate_keys_detected(rows):
    r = rows()
    r.write(version=1, send=0, recv=1)
    r.read(seen=1, send=2, recv=3, key="q", pattern_name="execute_tool")
    r.read(seen=1, send=4, recv=5, key="q", pattern_name="recall_memory")
    r.read(seen=1, send=6, recv=7, key="other", pattern_name="recall_memory")
    report = check_coherency(r.table())
    assert report.duplicates == [
        {"namespace": "ns", "key": "q", "version": 1, "patterns": ["execute_tool", "recall_memory"]}
    ]
    assert _by_name(report)["no_duplicate_keys"].failed


def test_propagation_delays_are_exact(rows):
    r = rows()
    r.write(version=2, send=95, recv=100, instance_id="i1")
    # i1: one concurrent read (ignored), one stale read, then fresh.
    r.read(seen=1, send=90, recv=105, instance_id="i1")
    r.read(seen=1, send=101, recv=103, instance_id="i1")
    r.read(seen=2, send=104, recv=106, instance_id="i1")
    # i2: fresh at once.
    r.read(seen=2, send=102, recv=104, instance_id="i2")
    # i3: only stale reads before the run ends.
    r.read(seen=1, send=101, recv=102, instance_id="i3")
    report = check_coherency(r.table(), mode="eventual")
    p = report.propagation
    assert p["i1"].delays_ms == [pytest.approx(6.0)]
    assert p["i1"].windows_ms == [pytest.approx(3.0)]
    assert p["i2"].delays_ms == [pytest.approx(4.0)] and p["i2"].windows_ms == [0.0]
    assert p["i3"].delays_ms == [] and p["i3"].unobserved == 1
    assert p["i3"].windows_ms == [pytest.approx(2.0)]
    stats = p["i1"].stats()
    assert stats["delay_ms"] == {"count": 1, "p50": 6.0, "p95": 6.0, "max": 6.0}
    # Eventual mode reports the two stale reads without failing the run on them.
    stale = {c.name: c for c in report.criteria}["no_stale_reads"]
    assert report.stale.count == 2 and stale.failed and not stale.critical


def test_eventual_mode_with_staleness_bound(rows):
    r = rows()
    r.write(version=2, send=0, recv=100, agent_id="w")
    r.read(seen=1, send=105, recv=106, agent_id="a")  # 5 ms after the ack
    table = r.table()
    within = check_coherency(table, mode="eventual", staleness_bound_ms=10)
    beyond = check_coherency(table, mode="eventual", staleness_bound_ms=1)
    assert within.passed
    assert not beyond.passed
    assert {c.name for c in beyond.criteria if c.failed} == {"no_stale_reads_beyond_bound"}


def test_degraded_stale_reads_are_counted_apart(rows):
    r = rows()
    r.write(version=2, send=0, recv=10)
    r.read(seen=1, send=20, recv=21, degraded=True)
    report = check_coherency(r.table())
    assert report.stale.count == 0 and report.stale.degraded == 1
    assert report.passed


def test_failed_requests_are_ignored(rows):
    r = rows()
    r.add(op="write", version_written=9, success=False, send=0, recv=1)
    r.write(version=1, send=0, recv=1)
    r.read(seen=1, send=2, recv=3)
    r.add(op="read", version_seen=0, success=False, send=4, recv=5)
    report = check_coherency(r.table())
    assert report.writes_checked == 1 and report.reads_checked == 1
    assert report.passed


def test_empty_history_skips_instead_of_passing(rows):
    report = check_coherency(rows().table())
    assert [c.name for c in report.criteria] == ["no_stale_reads"]
    assert report.criteria[0].skipped


def test_propagation_criterion_and_bad_mode(rows):
    r = rows()
    r.write(version=2, send=0, recv=100, instance_id="i1")
    r.read(seen=2, send=150, recv=160, instance_id="i1")
    report = check_coherency(r.table(), max_propagation_p95_ms=50)
    crit = {c.name: c for c in report.criteria}["propagation_p95"]
    assert crit.measured == pytest.approx(60.0) and crit.failed
    with pytest.raises(ValueError):
        check_coherency(r.table(), mode="sloppy")


def test_summary_and_dict_are_complete(rows):
    r = rows()
    r.write(version=2, send=0, recv=10)
    r.read(seen=1, send=20, recv=21, instance_id="i9")
    report = check_coherency(r.table())
    d = report.to_dict()
    assert d["stale_reads"]["count"] == 1
    assert d["stale_reads"]["examples"][0]["read"]["instance_id"] == "i9"
    assert "i9" in d["propagation"]
    assert any("stale reads: 1" in line for line in report.summary_lines())
