"""The content (set-full) check: answers judged by the memories they include, whatever version
labels the server reports — the check that catches a cache that is never invalidated."""

from __future__ import annotations

import pytest

from analysis.coherency import Needs, check_coherency
from analysis.content import check_content

T1, T2 = "orchard irrigation schedule 0 of team:x", "glacier survey results 1 of team:x"


def _crit(report, name):
    return {c.name: c for c in report.criteria}[name]


def test_reads_that_include_every_acknowledged_memory_pass(rows):
    r = rows()
    r.recall(topic=T1, seen_ids=["a"], send=0, recv=5)  # before the store: anything goes
    r.store(topic=T1, memory_id="m1", send=10, recv=20)
    r.recall(topic=T1, seen_ids=["m1", "a", "b"], send=21, recv=25, instance_id="i1")
    r.recall(topic=T1, seen_ids=["m1", "a"], send=30, recv=35, instance_id="i2")
    report = check_content(r.table(), min_pairs=2, min_reads=3)
    assert (report.pairs, report.violations) == (2, 0)
    assert all(c.passed for c in report.criteria), [c.message() for c in report.criteria]


@pytest.mark.parametrize("label", [None, 4], ids=["version_null", "old_generation_label"])
def test_a_cache_that_is_never_invalidated_fails_whatever_versions_it_reports(rows, label):
    """The issue's broken service: stores acknowledged with version_written null, or labelled
    with the generation the reads already saw (no bump); answers served from caches filled
    before the store. The version checks see no stale read; the content check fails."""
    r = rows()
    ids = ["x1", "x2", "x3"]
    for k, inst in enumerate(("i0", "i1", "i2")):  # every instance caches the answer
        r.recall(topic=T1, seen_ids=ids, send=k, recv=k + 1, instance_id=inst, version_seen=4)
    for n in range(3):
        r.store(topic=T1, memory_id=f"m{n}", send=10 + n, recv=12 + n, version_written=label)
    for k in range(30):  # later reads of the same topic keep the stale cached answer
        inst = ("i0", "i1", "i2")[k % 3]
        r.recall(topic=T1, seen_ids=ids, send=20 + k, recv=21 + k, instance_id=inst, version_seen=4)
    table = r.table()
    content = check_content(table)
    assert content.violations == content.pairs == 90 and content.lost == 90
    assert dict(content.by_instance) == {"i0": 30, "i1": 30, "i2": 30}
    ex = content.examples[0]
    assert ex["kind"] == "lost" and ex["memory_id"] == "m0" and ex["read_showed"] == ids
    assert _crit(content, "no_stale_reads_by_content").failed
    full = check_coherency(table, content=True, needs=Needs(own_writes=0))
    assert full.stale.count == 0  # the version labels alone say nothing is wrong
    assert not full.passed
    assert _crit(full, "no_stale_reads_by_content").blocks


def test_possibly_applied_writes_never_count_against_the_server(rows):
    r = rows()
    r.store(topic=T1, memory_id=None, send=0, recv=5000, success=False, error_code=-33002)
    r.store(topic=T1, memory_id=None, send=1, recv=2, success=False, error_code=-32002)
    r.store(topic=T1, memory_id=None, send=3, recv=4, success=False, applied=False)
    r.recall(topic=T1, seen_ids=["a"], send=6000, recv=6001)
    report = check_content(r.table(), min_pairs=0, min_reads=1)
    assert dict(report.writes) == {"possibly_applied": 2, "refused": 1}
    assert report.pairs == 0 and report.violations == 0


def test_tied_writes_need_as_many_in_the_answer_as_were_acknowledged(rows):
    """Four stores of one topic tie for a 3-memory answer: any 3 of them will do (unknown ids
    may be the unacknowledged store), fewer will not."""
    r = rows()
    for n in range(3):
        r.store(topic=T1, memory_id=f"m{n}", send=n, recv=n + 1)
    r.store(topic=T1, memory_id=None, send=3, recv=40, success=False)  # outcome unknown
    r.recall(topic=T1, seen_ids=["m0", "m2", "unknown"], send=50, recv=51)  # 3 of the 4: fine
    bad = r.recall(topic=T1, seen_ids=["m0", "other", "m1"], send=60, recv=61)
    r.store(topic=T2, memory_id="other", send=4, recv=5)
    report = check_content(r.table(), min_pairs=1, min_reads=1)
    assert report.tied_reads == 2
    assert report.violations == 1
    assert report.examples[0]["read_row"] == bad and report.examples[0]["memory_id"] == "m2"


def test_stale_versus_lost_and_ambiguous_by_clock(rows):
    r = rows()
    r.store(topic=T1, memory_id="m1", send=0, recv=10)
    unc = dict(clock_offset_ns=0, clock_uncertainty_ns=3_000_000)
    r.recall(topic=T1, seen_ids=[], send=11, recv=12, **unc)  # 1 ms after: within 2×3 ms
    stale = r.recall(topic=T1, seen_ids=[], send=20, recv=21, instance_id="i1")
    r.recall(topic=T1, seen_ids=["m1"], send=30, recv=31, instance_id="i2")
    r.store(topic=T2, memory_id="m2", send=0, recv=10)
    lost = r.recall(topic=T2, seen_ids=["zz"], send=40, recv=41)
    report = check_content(r.table(), min_pairs=1, min_reads=1)
    assert report.ambiguous_pairs == 1
    assert (report.stale, report.lost) == (1, 1)
    kinds = {ex["read_row"]: ex["kind"] for ex in report.examples}
    assert kinds == {stale: "stale", lost: "lost"}


def test_eventual_mode_tolerates_lag_but_not_going_back(rows):
    r = rows()
    r.store(topic=T1, memory_id="m1", send=0, recv=10)
    r.recall(topic=T1, seen_ids=[], send=20, recv=21, instance_id="i1")  # lagging: allowed
    r.recall(topic=T1, seen_ids=["m1"], send=30, recv=31, instance_id="i1")
    back = r.recall(topic=T1, seen_ids=[], send=40, recv=41, instance_id="i1")  # went back
    report = check_content(r.table(), mode="eventual", min_pairs=1, min_reads=1)
    assert report.lagging == 1 and report.violations == 1
    assert report.examples[0]["read_row"] == back
    crit = _crit(report, "no_stale_reads_by_content")
    assert crit.failed and not crit.critical
    bounded = check_content(_same(rows), mode="eventual", staleness_bound_ms=5.0)
    assert bounded.violations == 2 and _crit(bounded, "no_stale_reads_by_content").critical


def _same(rows):
    r = rows()
    r.store(topic=T1, memory_id="m1", send=0, recv=10)
    r.recall(topic=T1, seen_ids=[], send=20, recv=21, instance_id="i1")
    r.recall(topic=T1, seen_ids=["m1"], send=30, recv=31, instance_id="i1")
    r.recall(topic=T1, seen_ids=[], send=40, recv=41, instance_id="i1")
    return r.table()


def test_reads_whose_answer_shows_no_memories_are_counted_and_gated(rows):
    r = rows()
    r.store(topic=T1, memory_id="m1", send=0, recv=1)
    for i in range(18):
        r.recall(topic=T1, seen_ids=["m1"], send=10 + i, recv=11 + i)
    r.recall(topic=T1, seen_ids=None, send=40, recv=41, route="llm")
    r.recall(topic=T1, seen_ids=None, send=42, recv=43, route="memory")
    r.recall(topic=T1, seen_ids=["m1"], send=44, recv=45, degraded=True)
    r.recall(topic=T1, seen_ids=None, send=46, recv=47, success=False, error_code=-32001)
    report = check_content(r.table(), min_pairs=1, min_reads=1)
    assert dict(report.reads) == {
        "checkable": 18,
        "llm_routed": 1,
        "no_memories": 1,
        "degraded": 1,
    }
    gate = _crit(report, "content_checkable_reads")
    assert gate.failed and gate.measured == pytest.approx(100 * 18 / 21)


def test_no_tracked_rows_is_no_evidence(rows):
    r = rows()
    r.write(version=1, send=0, recv=1)
    report = check_content(r.table())
    assert all(c.insufficient for c in report.criteria)
