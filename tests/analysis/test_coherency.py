"""Coherency checker on hand-built histories: it passes clean runs with enough evidence, names every
violation, and fails — never passes, never skips — when the rows cannot show anything."""

from __future__ import annotations

import pytest

from analysis.coherency import Needs, check_coherency

#: Evidence minimums small enough for hand-built histories.
SMALL = Needs(
    stale_pairs=1, own_writes=1, session_pairs=1, reads=1, writes=1, fills=1, content_pairs=1
)


def _by_name(report):
    return {c.name: c for c in report.criteria}


def _clean(r):
    r.write(version=1, send=0, recv=10, agent_id="a")
    computed = dict(cache_tier="none", method="execute_pattern")
    r.read(seen=0, send=1, recv=5, agent_id="a", session_id="s1", **computed)
    r.read(seen=1, send=11, recv=12, agent_id="a", session_id="s1", instance_id="i1")
    r.read(seen=1, send=13, recv=14, agent_id="b", session_id="s2", instance_id="i2")
    r.read(seen=1, send=15, recv=16, agent_id="b", session_id="s2", **computed)


def test_clean_history_passes(rows):
    r = rows()
    _clean(r)
    report = check_coherency(r.table(), needs=SMALL)
    assert report.reads_checked == 4 and report.writes_checked == 1
    assert report.stale.count == 0 and report.stale.comparable == 3
    assert report.read_your_writes.count == 0 and report.monotonic.count == 0
    assert report.routing == [] and report.duplicate_fills == []
    assert report.passed
    assert {c.name for c in report.criteria} == {
        "checkable_reads",
        "versioned_writes",
        "no_stale_reads",
        "read_your_writes",
        "monotonic_reads",
        "no_duplicate_keys",
        "consistent_routing",
    }
    assert all(c.passed for c in report.criteria), [c.message() for c in report.criteria]


def test_injected_stale_read_is_found_with_its_row(rows):
    r = rows()
    r.write(version=1, send=0, recv=10, agent_id="w")
    missed = r.write(version=2, send=15, recv=20, agent_id="w", instance_id="i0")
    r.read(seen=2, send=21, recv=22, agent_id="a", instance_id="i0")
    stale = r.read(seen=1, send=25, recv=27, agent_id="b", instance_id="i1", session_id="sb")
    r.read(seen=2, send=30, recv=31, agent_id="c", instance_id="i2")
    report = check_coherency(r.table(), needs=SMALL)
    assert report.stale.count == 1
    ex = report.stale.examples[0]
    assert ex["read"]["row"] == stale and ex["missed"]["row"] == missed
    assert ex["instance_id"] == "i1" and ex["dimension"] == "namespace"
    assert ex["staleness"] == 1
    assert ex["since_ack_ms"] == pytest.approx(5.0)
    assert dict(report.stale.by_instance) == {"i1": 1}
    criterion = _by_name(report)["no_stale_reads"]
    assert criterion.failed and criterion.critical and not criterion.insufficient
    assert "measured 1" in criterion.message()
    assert not report.passed


def test_read_concurrent_with_write_is_not_stale(rows):
    r = rows()
    r.write(version=2, send=10, recv=20)
    r.read(seen=1, send=15, recv=30, agent_id="a")  # began before the ack
    r.read(seen=1, send=20, recv=21, agent_id="b")  # began exactly at the ack: not after it
    report = check_coherency(r.table(), needs=SMALL)
    assert report.stale.count == 0 and report.stale.comparable == 0
    # ...and with no read begun after the ack there is no evidence: the criterion fails.
    assert _by_name(report)["no_stale_reads"].insufficient


def test_no_comparable_read_is_a_failure_not_a_pass(rows):
    """1.2's old no_stale_data passed when no read could be compared with a write."""
    r = rows()
    r.write(version=1, send=100, recv=110)
    for i in range(30):  # every read before the write: nothing to compare
        r.read(seen=0, send=i, recv=i + 1, session_id=f"s{i}")
    report = check_coherency(r.table())
    crit = _by_name(report)["no_stale_reads"]
    assert crit.failed and crit.insufficient and not crit.skipped
    assert "insufficient evidence: 0 reads begun after an acked write" in crit.message()
    assert "(need ≥ 20)" in crit.message()
    assert not report.passed


def test_empty_history_fails_every_criterion_for_lack_of_evidence(rows):
    report = check_coherency(rows().table())
    assert report.criteria and all(c.insufficient for c in report.criteria)
    assert not any(c.passed or c.skipped for c in report.criteria)
    assert not report.passed


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
    report = check_coherency(r.table(), needs=SMALL)
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
    report = check_coherency(r.table(), needs=SMALL)
    assert report.monotonic.count == 1
    assert report.monotonic.examples[0]["read"]["row"] == back
    assert report.monotonic.examples[0]["missed"]["version"] == 5
    names = _by_name(report)
    assert names["monotonic_reads"].failed
    assert names["no_stale_reads"].insufficient  # no writes: nothing to judge, not a pass


def test_routing_conflicts_detected(rows):
    r = rows()
    r.write(version=1, send=0, recv=1)
    r.read(seen=1, send=2, recv=3, key="q", pattern_name="execute_tool")
    r.read(seen=1, send=4, recv=5, key="q", pattern_name="recall_memory")
    r.read(seen=1, send=6, recv=7, key="other", pattern_name="recall_memory")
    report = check_coherency(r.table(), needs=SMALL)
    assert report.routing == [
        {"namespace": "ns", "key": "q", "version": 1, "patterns": ["execute_tool", "recall_memory"]}
    ]
    assert _by_name(report)["consistent_routing"].failed


def _fill(r, instance, send, version=1, key="q", **row):
    row.setdefault("method", "execute_pattern")
    return r.read(
        seen=version, send=send, recv=send + 5, key=key, instance_id=instance,
        cache_tier="none", pattern_name="recall_topic", **row,
    )  # fmt: skip


def test_duplicate_fills_fail_no_duplicate_keys(rows):
    """The real duplication figure: one (namespace, key, generation) computed on two instances."""
    r = rows()
    a = _fill(r, "i0", 10)
    b = _fill(r, "i1", 12)
    _fill(r, "i0", 14, key="other")
    _fill(r, "i2", 30, version=2)  # a new generation: its own fill
    r.read(seen=1, send=40, recv=41, key="q", cache_tier="l2", instance_id="i2")  # a hit
    report = check_coherency(r.table(), needs=SMALL)
    assert [(d["key"], d["version"], d["instances"]) for d in report.duplicate_fills] == [
        ("q", 1, ["i0", "i1"])
    ]
    assert report.duplicate_fills[0]["rows"] == [a, b]
    crit = _by_name(report)["no_duplicate_keys"]
    assert crit.failed and crit.measured == 1 and crit.evidence.got == 3


def test_refill_after_the_entry_expired_is_not_duplication(rows):
    r = rows()
    _fill(r, "i0", 0)
    _fill(r, "i1", 2000)  # 2 s later: the 1 s entry had expired
    table = r.table()
    assert check_coherency(table, fill_ttl_s={"recall_topic": 1.0}).duplicate_fills == []
    assert len(check_coherency(table).duplicate_fills) == 1  # without the TTL it would count
    # Fills computed by callers that joined one flight on one instance are one fill.
    r2 = rows()
    _fill(r2, "i0", 0)
    _fill(r2, "i0", 1)
    assert check_coherency(r2.table()).duplicate_fills == []


def test_fills_across_a_global_bump_are_not_duplicates(rows):
    """Without global_version, two fills of one namespace generation with a global bump between
    them may be two entries (two global generations): not judged as duplication."""
    r = rows()
    _fill(r, "i0", 0)
    r.add(op="invalidate", namespace="*", version_written=9, send=10, recv=12)
    _fill(r, "i1", 20)
    table = r.table()
    assert check_coherency(table).duplicate_fills == []
    r2 = rows()  # with the global generation reported, the same global generation duplicates
    _fill(r2, "i0", 0, global_version_seen=9)
    r2.add(op="invalidate", namespace="*", version_written=9, send=10, recv=12)
    _fill(r2, "i1", 20, global_version_seen=9)
    assert len(check_coherency(r2.table()).duplicate_fills) == 1


def test_unversioned_reads_are_counted_by_reason_and_gated(rows):
    r = rows()
    r.write(version=1, send=0, recv=1)
    for i in range(18):
        r.read(seen=1, send=10 + i, recv=11 + i, session_id=f"s{i}")
    r.read(seen=None, send=40, recv=41, route="llm")
    r.read(seen=None, send=42, recv=43, degraded=True)
    r.read(seen=None, send=44, recv=45, route="memory")
    report = check_coherency(r.table(), needs=SMALL)
    assert dict(report.read_reasons) == {
        "checkable": 18,
        "llm_routed": 1,
        "degraded": 1,
        "no_version": 1,
    }
    gate = _by_name(report)["checkable_reads"]
    assert gate.failed and gate.measured == pytest.approx(100 * 18 / 21)
    assert "llm_routed 1" in gate.description
    eventual = check_coherency(r.table(), mode="eventual", needs=SMALL)
    assert not _by_name(eventual)["checkable_reads"].critical


def test_writes_acknowledged_without_a_generation_fail_the_gate(rows):
    """The issue's broken service: every store acked with version_written null."""
    r = rows()
    for i in range(10):
        r.write(version=None, send=i * 10, recv=i * 10 + 5, agent_id=f"w{i}")
        r.read(seen=0, send=i * 10 + 6, recv=i * 10 + 7, session_id="s")
    report = check_coherency(r.table(), needs=SMALL)
    assert report.writes_unversioned == 10 and report.writes_checked == 0
    gate = _by_name(report)["versioned_writes"]
    assert gate.failed and gate.measured == 0.0
    assert _by_name(report)["no_stale_reads"].insufficient  # nothing versioned to compare
    assert not report.passed


def test_global_bumps_are_checked_against_namespace_scoped_answers(rows):
    r = rows()
    r.add(op="invalidate", namespace="*", version_written=7, send=0, recv=10, agent_id="g")
    ok = dict(cache_tier="l1", seen=3)
    r.read(send=11, recv=12, global_version_seen=7, session_id="s1", **ok)
    stale = r.read(send=13, recv=14, global_version_seen=6, session_id="s2", **ok)
    report = check_coherency(r.table(), needs=SMALL)
    assert report.stale.count == 1
    ex = report.stale.examples[0]
    assert ex["dimension"] == "global" and ex["read"]["row"] == stale
    names = _by_name(report)
    assert names["no_stale_reads"].failed
    assert names["global_generation_known"].passed


def test_missing_global_generation_is_unknown_not_fine(rows):
    """An older server that does not report global_version: reads after a global bump are
    unknown, and the global check fails instead of trusting them."""
    r = rows()
    r.add(op="invalidate", namespace="*", version_written=7, send=0, recv=10)
    r.read(seen=3, send=11, recv=12, cache_tier="l1")
    r.read(seen=3, send=13, recv=14, method="recall_memory")  # no cache: no global dependency
    report = check_coherency(r.table(), needs=SMALL)
    assert report.global_unknown == 1
    crit = _by_name(report)["global_generation_known"]
    assert crit.failed and crit.measured == 1
    # When the run is expected to make global bumps and made none, that is no evidence either.
    r2 = rows()
    _clean(r2)
    demanded = check_coherency(r2.table(), needs=SMALL, expect_global=True)
    assert _by_name(demanded)["global_generation_known"].insufficient


def test_clock_uncertainty_makes_close_pairs_ambiguous(rows):
    r = rows()
    unc = 2_000_000  # 2 ms each
    r.write(version=2, send=0, recv=10, clock_offset_ns=0, clock_uncertainty_ns=unc)
    r.read(seen=1, send=11, recv=12, clock_offset_ns=0, clock_uncertainty_ns=unc)  # 1 ms after
    r.read(seen=1, send=20, recv=21, clock_offset_ns=0, clock_uncertainty_ns=unc)  # 10 ms after
    report = check_coherency(r.table(), needs=SMALL)
    assert report.stale.count == 1 and report.stale.ambiguous == 1
    assert report.stale.examples[0]["since_ack_ms"] == pytest.approx(10.0)
    assert report.clock["max_uncertainty_ms"] == pytest.approx(2.0)
    assert "clock: uncertainty up to 2.000 ms" in "\n".join(report.summary_lines())


def test_clock_offsets_put_rows_on_the_driver_clock(rows):
    r = rows()
    r.write(version=2, send=0, recv=10, clock_offset_ns=0, clock_uncertainty_ns=0)
    # This swarm's clock runs 50 ms ahead: sent at 40 on its clock = -10 on the driver's.
    r.read(seen=1, send=40, recv=41, clock_offset_ns=50_000_000, clock_uncertainty_ns=0)
    # This one runs 50 ms behind: "5" on its clock is 55 on the driver's, after the ack.
    late = r.read(seen=1, send=5, recv=6, clock_offset_ns=-50_000_000, clock_uncertainty_ns=0)
    report = check_coherency(r.table(), needs=SMALL)
    assert report.stale.count == 1 and report.stale.examples[0]["read"]["row"] == late


def test_actual_send_time_is_when_a_read_began(rows):
    r = rows()
    r.write(version=2, send=0, recv=10)
    # Open loop: scheduled at 5 (before the ack) but really sent at 15 (after it).
    r.read(seen=1, send=5, recv=20, t_intended_ns=5_000_000, t_actual_send_ns=15_000_000)
    assert check_coherency(r.table(), needs=SMALL).stale.count == 1


def test_eventual_mode_with_staleness_bound(rows):
    r = rows()
    r.write(version=2, send=0, recv=100, agent_id="w")
    r.read(seen=1, send=105, recv=106, agent_id="a", session_id="s")  # 5 ms after the ack
    r.read(seen=2, send=107, recv=108, agent_id="a", session_id="s")
    table = r.table()
    within = check_coherency(table, mode="eventual", staleness_bound_ms=10, needs=SMALL)
    beyond = check_coherency(table, mode="eventual", staleness_bound_ms=1, needs=SMALL)
    name = "no_stale_reads_beyond_bound"
    assert _by_name(within)[name].passed and _by_name(within)[name].critical
    assert _by_name(beyond)[name].failed and not beyond.passed


def test_degraded_stale_reads_are_counted_apart(rows):
    r = rows()
    r.write(version=2, send=0, recv=10)
    r.read(seen=1, send=20, recv=21, degraded=True)
    r.read(seen=2, send=22, recv=23)
    report = check_coherency(r.table(), needs=SMALL)
    assert report.stale.count == 0 and report.stale.degraded == 1
    assert report.read_reasons["degraded"] == 1


def test_failed_requests_are_ignored(rows):
    r = rows()
    r.add(op="write", version_written=9, success=False, send=0, recv=1)
    r.write(version=1, send=0, recv=1)
    r.read(seen=1, send=2, recv=3)
    r.add(op="read", version_seen=0, success=False, send=4, recv=5)
    report = check_coherency(r.table())
    assert report.writes_checked == 1 and report.reads_checked == 1
    assert report.stale.count == 0


def test_propagation_criterion_and_bad_mode(rows):
    r = rows()
    r.write(version=2, send=0, recv=100, instance_id="i1")
    r.read(seen=2, send=150, recv=160, instance_id="i1")
    report = check_coherency(r.table(), max_propagation_p95_ms=50)
    crit = _by_name(report)["propagation_p95"]
    assert crit.measured == pytest.approx(60.0) and crit.failed
    with pytest.raises(ValueError):
        check_coherency(r.table(), mode="sloppy")


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
    assert p["i1"].stats()["delay_ms"] == {"count": 1, "p50": 6.0, "p95": 6.0, "max": 6.0}
    # Eventual mode reports the two stale reads without failing the run on them.
    stale = _by_name(report)["no_stale_reads"]
    assert report.stale.count == 2 and stale.failed and not stale.critical


def test_summary_and_dict_are_complete(rows):
    r = rows()
    r.write(version=2, send=0, recv=10)
    r.read(seen=1, send=20, recv=21, instance_id="i9")
    report = check_coherency(r.table())
    d = report.to_dict()
    assert d["stale_reads"]["count"] == 1 and d["stale_reads"]["comparable"] == 1
    assert d["stale_reads"]["examples"][0]["read"]["instance_id"] == "i9"
    assert "i9" in d["propagation"] and d["read_reasons"] == {"checkable": 1}
    assert d["content"] is None
    assert any("stale reads: 1" in line for line in report.summary_lines())
